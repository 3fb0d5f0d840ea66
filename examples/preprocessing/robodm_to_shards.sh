#!/usr/bin/env bash
# Robo-DM .vla trajectories (read with robodm: `uv sync --extra robodm`) -> training shards on a local Ray, then
# validated. Robo-DM stores low-dim features pickled, so reading runs pickle: set TRUST_PICKLE=1 only for files
# you made or trust (without it the job stops naming the file and its pickled features).
#   SOURCE=/data/robodm-cache/g1-pick-bin-v1 TRUST_PICKLE=1 bash examples/preprocessing/robodm_to_shards.sh
# Extra flags go to the job (e.g. --mapping_path my_features.yaml, --fps 10 to resample, --num_cpus 8).
# Re-running resumes; DRY_RUN=1 prints the commands only.
set -euo pipefail
cd "$(dirname "$0")/../.."  # relative SOURCE and OUTPUT paths are read from the repository root

SOURCE="${SOURCE:?set SOURCE to a folder of .vla files, e.g. SOURCE=/data/robodm-cache/g1-pick-bin-v1}"
OUTPUT="${OUTPUT:-/tmp/preprocessed/robodm}"
TRUST="False"
if [ "${TRUST_PICKLE:-0}" = 1 ]; then
  TRUST="True"
fi
run() { if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" && echo; else "$@"; fi; }

run uv run python vla_foundry/data/preprocessing/preprocess_robotics_to_tar.py \
  --type robodm \
  --config_path config_presets/data/robotics_preprocessing_params_1past_14future.yaml \
  --source_episodes "[$SOURCE]" \
  --trust_pickle "$TRUST" \
  --output_dir "$OUTPUT" \
  "$@"

run uv run python -m vla_foundry.data.validate "$OUTPUT/shards"
