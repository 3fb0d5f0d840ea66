#!/usr/bin/env bash
# A LeRobot dataset (v3.0 or v2.1, read from meta/info.json; local or s3://) -> training shards, on a local Ray,
# then validated. Window: 1 past + anchor + 14 future low-dim rows, camera frames at offsets -1 and 0.
#   bash examples/preprocessing/lerobot_to_shards.sh          # makes a small synthetic v3.0 dataset first
#   SOURCE=/data/lerobot/aloha_sim_insertion_human OUTPUT=/data/shards/aloha \
#     bash examples/preprocessing/lerobot_to_shards.sh
# Extra flags go to the preprocessing job, e.g. --num_cpus 8, --ray_address auto, --image_size "[224, 224]",
# --camera_rename '{"observation.images.top": "scene"}'. Re-running resumes; DRY_RUN=1 prints the commands only.
# Train on the result with --data.dataset_manifest "[$OUTPUT/shards]" (see tutorials/lerobot.ipynb).
set -euo pipefail
cd "$(dirname "$0")/../.."  # relative paths in SOURCE, OUTPUT, RAW are read from the repository root

SOURCE="${SOURCE:-}"
RAW="${RAW:-/tmp/raw_data}"  # where the synthetic dataset goes when SOURCE is not given
OUTPUT="${OUTPUT:-/tmp/preprocessed/toy_lerobot}"
run() { if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" && echo; else "$@"; fi; }

if [ -z "$SOURCE" ]; then
  SOURCE="$RAW/toy_lerobot"
  if [ ! -e "$SOURCE/meta/info.json" ]; then
    run uv run python -m vla_foundry.data.scripts.make_synthetic_lerobot --output_dir "$SOURCE" --episodes 8
  fi
fi

run uv run python vla_foundry/data/preprocessing/preprocess_robotics_to_tar.py \
  --config_path config_presets/preprocessing/lerobot_1past_14future.yaml \
  --source_episodes "[$SOURCE]" \
  --output_dir "$OUTPUT" \
  --samples_per_shard 100 \
  "$@"

run uv run python -m vla_foundry.data.validate "$OUTPUT/shards"
