#!/usr/bin/env bash
# ALOHA/ACT (episode_*.hdf5) or robomimic (data/demo_*) HDF5 files -> training shards on a local Ray, then
# validated. The layout is detected per file, so no mapping is needed for either; MAPPING (a YAML of cameras,
# low-dim fields, language, timestamps) renames or picks other datasets (see
# config_presets/preprocessing/mappings/hdf5_aloha.yaml). Window: 1 past + anchor + 14 future rows.
#   SOURCE=/data/aloha/sim_transfer_cube_human bash examples/preprocessing/hdf5_to_shards.sh
#   SOURCE=/data/robomimic/lift/ph MAPPING=my_mapping.yaml OUTPUT=/data/shards/lift bash examples/preprocessing/hdf5_to_shards.sh
# Extra flags go to the job (e.g. --num_cpus 8, --qa_fail_on "[black_frame]"). Re-running resumes; DRY_RUN=1
# prints the commands only.
set -euo pipefail
cd "$(dirname "$0")/../.."  # relative SOURCE, MAPPING and OUTPUT paths are read from the repository root

SOURCE="${SOURCE:?set SOURCE to a folder of .hdf5 files (or one file), e.g. SOURCE=/data/aloha/sim_transfer_cube}"
OUTPUT="${OUTPUT:-/tmp/preprocessed/hdf5}"
run() { if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" && echo; else "$@"; fi; }

mapping=()
if [ -n "${MAPPING:-}" ]; then
  mapping=(--mapping_path "$MAPPING")
fi

run uv run python vla_foundry/data/preprocessing/preprocess_robotics_to_tar.py \
  --type hdf5 \
  --config_path config_presets/data/robotics_preprocessing_params_1past_14future.yaml \
  --source_episodes "[$SOURCE]" \
  --output_dir "$OUTPUT" \
  "${mapping[@]}" \
  "$@"

run uv run python -m vla_foundry.data.validate "$OUTPUT/shards"
