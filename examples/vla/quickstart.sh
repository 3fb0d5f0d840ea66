#!/usr/bin/env bash
# Train a tiny VLA on the bundled robotics data (about 35 s on 2 CPU cores), then run the policy on recorded
# samples: raw camera frames + proprioception + instruction in, denormalised action chunk out.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Tiny models on a CPU: one intra-op thread is several times faster than two (no thread synchronisation).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

uv run python vla_foundry/main.py \
    --config_path config_presets/training_jobs/vla_diffusion_tiny_quickstart.yaml \
    --save_path experiments --name vla_quickstart

uv run python -m vla_foundry.inference.sample_prediction \
    --run_dir experiments/vla_quickstart --dataset examples/data/robotics_lerobot --num_samples 2
