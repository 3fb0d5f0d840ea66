#!/usr/bin/env bash
# Resume a run exactly where its last checkpoint left off (model, optimizer, scheduler, EMA, data position, RNG),
# in the same run dir. The training flags must be the run's own: the saved config.yaml gives them back.
#   bash examples/training/resume.sh experiments/llm_tiny
#   bash examples/training/resume.sh s3://bucket/runs/llm_tiny     (the local copy may be gone)
# Fine-tune from a run's weights instead (new run, fresh optimizer): add
#   --model.resume_weights_only True --name my_finetune
# DRY_RUN=1 prints the commands only.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUN="${1:?usage: resume.sh RUN_DIR_OR_CHECKPOINT [extra flags...]}"
shift
run() { if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" && echo; else "$@"; fi; }

# The saved config is the whole resolved experiment; reading it back (local or s3) repeats the run's flags.
CONFIG="$(mktemp -d)/config.yaml"
run uv run python -c "import sys; from vla_foundry import storage; storage.download_file(sys.argv[1], sys.argv[2])" \
  "${RUN%/}/config.yaml" "$CONFIG"

run uv run python vla_foundry/main.py --config_path "$CONFIG" --model.resume_from_checkpoint "$RUN" "$@"
