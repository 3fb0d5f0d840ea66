"""Robot episodes (LeRobot v3.0 / v2.1, Spartan, MCAP, ALOHA/robomimic HDF5, Robo-DM) -> WebDataset shards, on Ray.

    python vla_foundry/data/preprocessing/preprocess_robotics_to_tar.py --type lerobot|spartan|mcap|hdf5|robodm \\
        --source_episodes "[dir_or_s3, ...]" --output_dir DIR_or_s3 \\
        --config_path config_presets/data/robotics_preprocessing_params_1past_14future.yaml \\
        [--mapping_path topics.yaml --fps 30] [--camera_names "include cams.yaml"] [--samples_per_shard 100] \\
        [--ray_address auto] [--plugins my_pkg.my_source] [--qa_fail_on "[black_frame]"]

The dataset lands in <output_dir>/shards/ (manifest.jsonl, shard_*.tar, stats.json, preprocessing_config.yaml,
processing_metadata.json, with a per-episode quality report). Every field of RoboticsPreprocessingParams
is a flag; see docs/preprocessing.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vla_foundry.data.preprocessing.command_line import run_preprocessing_command
from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams


def main(argv: Sequence[str] | None = None) -> int:
    from vla_foundry.data.preprocessing.robotics import run_robotics_preprocessing

    return run_preprocessing_command(__doc__, RoboticsPreprocessingParams, run_robotics_preprocessing, "episodes", argv)


if __name__ == "__main__":
    sys.exit(main())
