#!/usr/bin/env bash
# Text (.jsonl / .jsonl.gz / .parquet / .txt files, or folders of them; local or s3://) -> training shards on a
# local Ray, then validated.
#   SOURCE=corpus/ bash examples/preprocessing/text_to_shards.sh                # text_untokenized: {"text": ...}
#   SOURCE=corpus/ TOKENIZED=1 bash examples/preprocessing/text_to_shards.sh    # byte tokens, 2049-token samples
#   SOURCE="corpus/a.jsonl, s3://bucket/b.parquet" OUTPUT=s3://bucket/text bash examples/preprocessing/text_to_shards.sh
# Extra flags go to the job, e.g. --text_key content, --tokenizer /path/to/hf_tokenizer --seq_len 4096,
# --num_cpus 8. Re-running resumes; DRY_RUN=1 prints the commands only.
set -euo pipefail
cd "$(dirname "$0")/../.."  # relative SOURCE and OUTPUT paths are read from the repository root

SOURCE="${SOURCE:?set SOURCE to text files or folders, comma-separated, e.g. SOURCE=corpus/}"
OUTPUT="${OUTPUT:-/tmp/preprocessed/text}"
run() { if [ "${DRY_RUN:-0}" = 1 ]; then printf '%q ' "$@" && echo; else "$@"; fi; }

preset=()
if [ "${TOKENIZED:-0}" = 1 ]; then
  preset=(--config_path config_presets/preprocessing/text_byte_2048.yaml)
fi

run uv run python vla_foundry/data/preprocessing/preprocess_text_to_tar.py \
  "${preset[@]}" \
  --source "[$SOURCE]" \
  --output_dir "$OUTPUT" \
  --samples_per_shard 1000 \
  "$@"

run uv run python -m vla_foundry.data.validate "$OUTPUT/shards"
