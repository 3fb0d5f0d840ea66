"""Robot episodes (LeRobot v3.0 / v2.1, Spartan) -> training-ready WebDataset shards, on Ray.

    python vla_foundry/data/preprocessing/preprocess_robotics_to_tar.py --type lerobot|spartan \\
        --source_episodes "[dir_or_s3, ...]" --output_dir DIR_or_s3 \\
        --config_path config_presets/data/robotics_preprocessing_params_1past_14future.yaml \\
        [--camera_names "include cams.yaml"] [--samples_per_shard 100] [--ray_address auto]

The dataset lands in <output_dir>/shards/ (manifest.jsonl, shard_*.tar, stats.json, preprocessing_config.yaml,
processing_metadata.json). Every field of RoboticsPreprocessingParams is a flag; see docs/preprocessing.md.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams, parse_preprocessing_params


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        from vla_foundry.params.help_text import field_lines

        print(
            (__doc__ or "").strip()
            + "\n\nFlags (field, type, default):\n"
            + "\n".join(field_lines(RoboticsPreprocessingParams))
        )
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from vla_foundry.data.preprocessing.job import JobError

    try:
        params = parse_preprocessing_params(RoboticsPreprocessingParams, args)
        from vla_foundry.data.preprocessing.robotics import run_robotics_preprocessing

        outcome = run_robotics_preprocessing(params)
    except (ConfigError, JobError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    samples = outcome.metadata.get("samples", {})
    print(
        f"{outcome.dataset_dir}: {len(outcome.shard_counts)} shards, {samples.get('written')} samples "
        f"(potential {samples.get('potential')}, dropped {samples.get('dropped')}), "
        f"{outcome.metadata.get('inputs_failed', 0)} failed episodes"
        + (" (already complete)" if outcome.already_complete else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
