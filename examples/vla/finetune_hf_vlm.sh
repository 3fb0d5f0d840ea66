#!/usr/bin/env bash
# A VLA on a pretrained Hugging Face VLM (SmolVLM-256M; needs the weights: the hub or a local copy), on a robotics
# dataset preprocessed with vla_foundry/data/preprocessing/preprocess_robotics_to_tar.py. The instruction is
# tokenized by the VLM's own tokenizer; the backbone learns 10x slower than the head (see the preset).
#   DATASET=/data/shards/my_robot GPUS=8 bash examples/vla/finetune_hf_vlm.sh [extra training flags]
# DRY_RUN=1 prints the command only.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATASET=${DATASET:-s3://your-bucket/datasets/my_robot}
HF_VLM=${HF_VLM:-HuggingFaceTB/SmolVLM-256M-Instruct}
run() { if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" && echo; else "$@"; fi; }

run uv run torchrun --nproc_per_node "${GPUS:-1}" vla_foundry/main.py \
    --model "include config_presets/models/vla_diffusion_smolvlm.yaml" \
    --model.backbone.hf_pretrained "$HF_VLM" \
    --data.type robotics --data.tokenizer "$HF_VLM" --data.image_size 384 \
    --data.dataset_manifest "[$DATASET]" --data.dataset_weighting "[1.0]" --data.dataset_modality "[robotics]" \
    --data.action_fields "[action]" --data.proprioception_fields "[observation.state]" \
    --hparams.lr 1e-4 --hparams.per_gpu_batch_size 32 --ema.enabled True \
    --hparams.global_batch_size 256 \
    --total_train_samples 1_000_000 --num_checkpoints 10 --name vla_smolvlm "$@"
