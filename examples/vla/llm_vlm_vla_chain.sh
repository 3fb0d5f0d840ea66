#!/usr/bin/env bash
# The whole chain on tiny settings: an LLM, a VLM whose language model starts from it, a VLA whose backbone is the
# VLM run (its config_model.yaml and latest checkpoint). The tiny CPU presets run each on one torch thread.
#   RUNS=experiments/chain bash examples/vla/llm_vlm_vla_chain.sh [extra flags for every training command]
# DRY_RUN=1 prints the commands only.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-experiments/chain}
CPU=(--hparams "include config_presets/hparams/cpu_tiny.yaml" --wandb False)
run() { if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" && echo; else "$@"; fi; }

run uv run python vla_foundry/main.py --model "include config_presets/models/transformer_tiny.yaml" \
    --data "include config_presets/data/tiny_text.yaml" --total_train_samples 2048 \
    --save_path "$RUNS" --name llm "${CPU[@]}" "$@"

run uv run python vla_foundry/main.py --model "include config_presets/models/vlm_tiny.yaml" \
    --model.transformer.resume_from_checkpoint "$RUNS/llm" \
    --data "include config_presets/data/tiny_image_caption.yaml" --total_train_samples 2048 \
    --save_path "$RUNS" --name vlm "${CPU[@]}" "$@"

run uv run python vla_foundry/main.py \
    --config_path config_presets/training_jobs/vla_diffusion_tiny_quickstart.yaml \
    --model.backbone_run "$RUNS/vlm" --save_path "$RUNS" --name vla "$@"

run uv run python -m vla_foundry.inference.sample_prediction \
    --run_dir "$RUNS/vla" --dataset examples/data/robotics_lerobot --num_samples 1
