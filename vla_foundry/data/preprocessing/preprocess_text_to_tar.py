"""Text files (jsonl / parquet / txt, local or s3) -> text_untokenized or tokenized text shards, on Ray.

    python vla_foundry/data/preprocessing/preprocess_text_to_tar.py --source "[corpus/]" --output_dir out/ \\
        [--tokenizer byte --seq_len 2048] [--text_key text] [--samples_per_shard 1000]

Without --tokenizer each document becomes `KEY.json` {"text": ...} (modality text_untokenized); with it, token
ids in `KEY.json.gz` (modality text), one document per sample or packed into seq_len + 1 tokens with --seq_len.
The dataset lands in <output_dir>/shards/ (manifest.jsonl, shard_*.tar, processing_metadata.json).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.preprocessing_params import TextPreprocessingParams, parse_preprocessing_params


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        from vla_foundry.params.help_text import field_lines

        print(
            (__doc__ or "").strip()
            + "\n\nFlags (field, type, default):\n"
            + "\n".join(field_lines(TextPreprocessingParams))
        )
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from vla_foundry.data.preprocessing.job import JobError

    try:
        params = parse_preprocessing_params(TextPreprocessingParams, args)
        from vla_foundry.data.preprocessing.text_sources import run_text_preprocessing

        outcome = run_text_preprocessing(params)
    except (ConfigError, JobError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{outcome.dataset_dir}: {len(outcome.shard_counts)} shards, {sum(outcome.shard_counts)} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
