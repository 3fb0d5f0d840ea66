"""Image + caption pairs (parquet / jsonl tables or folders, local or s3) -> image_caption shards, on Ray.

    python vla_foundry/data/preprocessing/preprocess_captions_to_tar.py --source "[captions.parquet]" \
        --output_dir out/ [--image_key image_path --caption_key caption] [--image_size "[224, 224]"]

A table row names an image (a path, relative to the table's folder, or s3://) or holds its bytes, and a caption;
a folder holds images with same-named .txt captions. Each pair becomes KEY.jpg|png|webp + KEY.txt + KEY.json
(modality image_caption) in <output_dir>/shards/; missing or undecodable images are counted and listed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.preprocessing_params import CaptionPreprocessingParams, parse_preprocessing_params


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        from vla_foundry.params.help_text import field_lines

        print(
            (__doc__ or "").strip()
            + "\n\nFlags (field, type, default):\n"
            + "\n".join(field_lines(CaptionPreprocessingParams))
        )
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from vla_foundry.data.preprocessing.job import JobError

    try:
        params = parse_preprocessing_params(CaptionPreprocessingParams, args)
        from vla_foundry.data.preprocessing.text_sources import run_caption_preprocessing

        outcome = run_caption_preprocessing(params)
    except (ConfigError, JobError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{outcome.dataset_dir}: {len(outcome.shard_counts)} shards, {sum(outcome.shard_counts)} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
