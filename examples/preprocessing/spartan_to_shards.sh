#!/usr/bin/env bash
# LBM / Spartan tasks -> one training dataset: download the raw episodes from the public registry (unsigned S3
# requests, no credentials), preprocess them together on a local Ray with the LBM presets (cameras, action fields,
# language annotations, discarded observation keys; window 1 past + anchor + 14 future), then validate.
#   bash examples/preprocessing/spartan_to_shards.sh
#   TASKS="BimanualPutRedBellPepperInBin OtherTask" CAMERAS=2 OUTPUT=/data/shards/lbm \
#     bash examples/preprocessing/spartan_to_shards.sh
#   uv run python vla_foundry/data/scripts/download_dataset.py --list --raw      # the tasks available
# CAMERAS=4: two scene + two wrist cameras (episodes lacking one are skipped and counted); CAMERAS=2: scene only.
# Files already downloaded are skipped and re-running the preprocessing resumes. Extra flags go to the
# preprocessing job (e.g. --num_cpus 8, --ray_address auto). DRY_RUN=1 prints the commands only.
set -euo pipefail
cd "$(dirname "$0")/../.."  # relative RAW and OUTPUT paths are read from the repository root

TASKS="${TASKS:-BimanualPutRedBellPepperInBin}"
RAW="${RAW:-/tmp/raw_data}"
OUTPUT="${OUTPUT:-/tmp/preprocessed/lbm}"
CAMERAS="${CAMERAS:-4}"
run() { if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" && echo; else "$@"; fi; }

tasks=()
sources=()
for task in $TASKS; do
  tasks+=("$task")
  sources+=("$RAW/tasks/$task/")
done
run uv run python vla_foundry/data/scripts/download_dataset.py --task "[$(IFS=,; echo "${tasks[*]}")]" \
  --local_path "$RAW" --raw

run uv run python vla_foundry/data/preprocessing/preprocess_robotics_to_tar.py \
  --type spartan \
  --config_path config_presets/data/robotics_preprocessing_params_1past_14future.yaml \
  --source_episodes "[$(IFS=,; echo "${sources[*]}")]" \
  --output_dir "$OUTPUT" \
  --camera_names "include config_presets/data/lbm/lbm_data_camera_names_${CAMERAS}cameras.yaml" \
  --action_fields_config_path config_presets/data/lbm/lbm_action_fields.yaml \
  --language_annotations_path config_presets/data/lbm/lbm_language_annotations.yaml \
  --data_discard_keys "include config_presets/data/lbm/lbm_data_discard_key.yaml" \
  --missing_camera skip_episode \
  --samples_per_shard 100 \
  "$@"

run uv run python -m vla_foundry.data.validate "$OUTPUT/shards"
