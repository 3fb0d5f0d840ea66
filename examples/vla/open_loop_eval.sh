#!/usr/bin/env bash
# Open-loop evaluation: predicted vs recorded action chunks on a dataset (MSE per field and per horizon step, and a
# PNG of a few trajectories) written to <run>/open_loop/.
#   RUN=experiments/vla_quickstart bash examples/vla/open_loop_eval.sh [--num_samples 32 ...]
# Extra flags go to vla_foundry.inference.open_loop_eval; DRY_RUN=1 prints the command only.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${RUN:-experiments/vla_quickstart}
DATASET=${DATASET:-examples/data/robotics_lerobot}
run() { if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" && echo; else "$@"; fi; }

run uv run python -m vla_foundry.inference.open_loop_eval --run_dir "$RUN" --dataset "$DATASET" \
    --num_samples 128 --num_plots 4 "$@"
