"""Image + caption pairs (parquet / jsonl tables or folders, local or s3) -> image_caption shards, on Ray.

    python vla_foundry/data/preprocessing/preprocess_captions_to_tar.py --source "[captions.parquet]" \\
        --output_dir out/ [--image_key image_path --caption_key caption] [--image_size "[224, 224]"]

A table row names an image (a path, relative to the table's folder, or s3://) or holds its bytes, and a caption;
a folder holds images with same-named .txt captions. Each pair becomes KEY.jpg|png|webp + KEY.txt + KEY.json
(modality image_caption) in <output_dir>/shards/; missing or undecodable images are counted and listed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vla_foundry.data.preprocessing.command_line import run_preprocessing_command
from vla_foundry.params.preprocessing_params import CaptionPreprocessingParams


def main(argv: Sequence[str] | None = None) -> int:
    from vla_foundry.data.preprocessing.text_sources import run_caption_preprocessing

    return run_preprocessing_command(__doc__, CaptionPreprocessingParams, run_caption_preprocessing, "records", argv)


if __name__ == "__main__":
    sys.exit(main())
