#!/usr/bin/env bash
# Image + caption pairs -> image_caption training shards (224x224 JPEGs) on a local Ray, then validated.
# SOURCE: parquet / jsonl tables whose rows name an image (path relative to the table, absolute, or s3://) or hold
# its bytes, plus a caption; or folders of images with same-named .txt captions. Comma-separated, local or s3://.
#   SOURCE=captions.parquet bash examples/preprocessing/captions_to_shards.sh
#   SOURCE="images_dir/, s3://bucket/captions.jsonl" OUTPUT=s3://bucket/captions \
#     bash examples/preprocessing/captions_to_shards.sh
# Extra flags go to the job, e.g. --image_key url --caption_key text, --image_size "[384, 384]", --num_cpus 8.
# Re-running resumes; DRY_RUN=1 prints the commands only.
set -euo pipefail
cd "$(dirname "$0")/../.."  # relative SOURCE and OUTPUT paths are read from the repository root

SOURCE="${SOURCE:?set SOURCE to caption tables or image folders, comma-separated, e.g. SOURCE=captions.parquet}"
OUTPUT="${OUTPUT:-/tmp/preprocessed/captions}"
run() { if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" && echo; else "$@"; fi; }

run uv run python vla_foundry/data/preprocessing/preprocess_captions_to_tar.py \
  --config_path config_presets/preprocessing/captions_224.yaml \
  --source "[$SOURCE]" \
  --output_dir "$OUTPUT" \
  "$@"

run uv run python -m vla_foundry.data.validate "$OUTPUT/shards"
