#!/usr/bin/env bash
# Train a tiny VLM whose language model starts from the LLM run of train_llm.sh (run that first).
#   bash examples/training/train_vlm_from_llm.sh [LLM_RUN_DIR] [extra flags...]
# LLM_RUN_DIR may be a local run dir, a checkpoint file, or an s3:// run dir; the latest checkpoint is used.
# DRY_RUN=1 prints the command only.
set -euo pipefail
cd "$(dirname "$0")/../.."

LLM_RUN=experiments/llm_tiny
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then LLM_RUN=$1; shift; fi
run() { if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" && echo; else "$@"; fi; }

run uv run python vla_foundry/main.py \
  --model "include config_presets/models/vlm_tiny.yaml" \
  --model.transformer.resume_from_checkpoint "$LLM_RUN" \
  --data "include config_presets/data/tiny_image_caption.yaml" \
  --hparams "include config_presets/hparams/cpu_tiny.yaml" \
  --hparams.per_gpu_batch_size 8 \
  --total_train_samples 512 \
  --num_checkpoints 2 \
  --log_every_n_steps 8 \
  --save_path experiments \
  --name vlm_tiny \
  "$@"
