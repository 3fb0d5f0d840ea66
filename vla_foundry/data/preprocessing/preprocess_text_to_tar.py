"""Text files (jsonl / parquet / txt, local or s3) -> text_untokenized or tokenized text shards, on Ray.

    python vla_foundry/data/preprocessing/preprocess_text_to_tar.py --source "[corpus/]" --output_dir out/ \\
        [--tokenizer byte --seq_len 2048] [--text_key text] [--samples_per_shard 1000]

Without --tokenizer each document becomes `KEY.json` {"text": ...} (modality text_untokenized); with it, token
ids in `KEY.json.gz` (modality text), one document per sample or packed into seq_len + 1 tokens with --seq_len.
The dataset lands in <output_dir>/shards/ (manifest.jsonl, shard_*.tar, processing_metadata.json).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vla_foundry.data.preprocessing.command_line import run_preprocessing_command
from vla_foundry.params.preprocessing_params import TextPreprocessingParams


def main(argv: Sequence[str] | None = None) -> int:
    from vla_foundry.data.preprocessing.text_sources import run_text_preprocessing

    return run_preprocessing_command(__doc__, TextPreprocessingParams, run_text_preprocessing, "files", argv)


if __name__ == "__main__":
    sys.exit(main())
