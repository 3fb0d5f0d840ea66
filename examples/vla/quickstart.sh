#!/usr/bin/env bash
# Train a tiny VLA on the bundled robotics data, then run the policy on recorded samples: raw camera frames +
# proprioception + instruction in, denormalised action chunk out. Timing: see the README quickstart.
#   bash examples/vla/quickstart.sh                      # run dir experiments/vla_quickstart_example
#   NAME=other bash examples/vla/quickstart.sh --hparams.lr 1e-3   # extra flags go to the training command
# Its run dir differs from the README quickstart's (experiments/vla_quickstart), so both can be run.
# DRY_RUN=1 prints the commands only.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=${NAME:-vla_quickstart_example}
run() { if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" && echo; else "$@"; fi; }

run uv run python vla_foundry/main.py \
    --config_path config_presets/training_jobs/vla_diffusion_tiny_quickstart.yaml \
    --save_path experiments --name "$NAME" "$@"

run uv run python -m vla_foundry.inference.sample_prediction \
    --run_dir "experiments/$NAME" --dataset examples/data/robotics_lerobot --num_samples 2
