#!/usr/bin/env bash
# MCAP logs (one .mcap per episode, or rosbag2 folders of split files; ROS 2 CDR and JSON channels) -> training
# shards on a local Ray, then validated. MAPPING names the camera, low-dim and language topics (default: the
# ROS 2 arm example config_presets/preprocessing/mappings/mcap_ros2_arm.yaml); topics are aligned to FPS on the
# log times, and messages older than one period are reported as gaps in processing_metadata.json "quality".
#   SOURCE=/data/raw-mcap/2026-06-10 MAPPING=my_robot.yaml FPS=30 bash examples/preprocessing/mcap_to_shards.sh
# Extra flags go to the job (e.g. --tolerance_s 0.05, --qa_fail_on "[timestamp_gap]", --num_cpus 8).
# Re-running resumes; DRY_RUN=1 prints the commands only.
set -euo pipefail
cd "$(dirname "$0")/../.."  # relative SOURCE, MAPPING and OUTPUT paths are read from the repository root

SOURCE="${SOURCE:?set SOURCE to a folder of .mcap files (or one file), e.g. SOURCE=/data/raw-mcap/2026-06-10}"
MAPPING="${MAPPING:-config_presets/preprocessing/mappings/mcap_ros2_arm.yaml}"
FPS="${FPS:-30}"
OUTPUT="${OUTPUT:-/tmp/preprocessed/mcap}"
run() { if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" && echo; else "$@"; fi; }

run uv run python vla_foundry/data/preprocessing/preprocess_robotics_to_tar.py \
  --type mcap \
  --config_path config_presets/data/robotics_preprocessing_params_1past_14future.yaml \
  --source_episodes "[$SOURCE]" \
  --mapping_path "$MAPPING" \
  --fps "$FPS" \
  --output_dir "$OUTPUT" \
  "$@"

run uv run python -m vla_foundry.data.validate "$OUTPUT/shards"
