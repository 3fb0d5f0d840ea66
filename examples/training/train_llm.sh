#!/usr/bin/env bash
# Train a small byte-level LLM on the bundled text (examples/data/text_untokenized).
# Single process:      bash examples/training/train_llm.sh
# Several processes:   NPROC=2 bash examples/training/train_llm.sh        (torchrun, FSDP2; gloo on CPU, nccl on GPU)
# Extra flags are passed on:  bash examples/training/train_llm.sh --hparams.lr 1e-3
# The run goes to experiments/llm_tiny; a second run there is refused (pass --name NEW, or resume with resume.sh).
# DRY_RUN=1 prints the commands only.
set -euo pipefail
cd "$(dirname "$0")/../.."

NPROC="${NPROC:-1}"
run() { if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" && echo; else "$@"; fi; }
if [ "$NPROC" -gt 1 ]; then
  LAUNCH=(uv run torchrun --standalone --nproc_per_node "$NPROC")
else
  LAUNCH=(uv run python)
fi

run "${LAUNCH[@]}" vla_foundry/main.py \
  --model "include config_presets/models/transformer_tiny.yaml" \
  --data "include config_presets/data/tiny_text_untokenized.yaml" \
  --hparams "include config_presets/hparams/cpu_tiny.yaml" \
  --hparams.per_gpu_batch_size 8 \
  --hparams.global_batch_size 16 \
  --total_train_samples 1024 \
  --num_checkpoints 2 \
  --log_every_n_steps 8 \
  --save_path experiments \
  --name llm_tiny \
  "$@"

run uv run python -m vla_foundry.plot_metrics --run_dir experiments/llm_tiny --output experiments/llm_tiny/metrics.png
