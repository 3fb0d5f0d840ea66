"""A `camera_rename` key that matches no camera of the source is an error naming the cameras, before any reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.preprocessing.conftest import robotics_argv
from vla_foundry.data.preprocessing.lerobot_source import LeRobotConverter
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams, parse_preprocessing_params


def _plan(lerobot_v3: Path, rename: str) -> list:
    argv = robotics_argv([lerobot_v3], "/tmp/unused", "--camera_rename", rename)
    return LeRobotConverter(parse_preprocessing_params(RoboticsPreprocessingParams, argv)).plan_read_tasks()


def test_a_rename_key_matching_no_camera_names_the_cameras_and_the_closest(lerobot_v3: Path):
    with pytest.raises(ConfigError) as err:
        _plan(lerobot_v3, '{"observation.images.cam_hihg": "scene"}')
    assert str(err.value) == (
        f"{lerobot_v3}: camera_rename key 'observation.images.cam_hihg' (did you mean "
        "'observation.images.cam_high'?) matches no camera; its cameras: observation.images.cam_high, "
        "observation.images.cam_wrist"
    )


def test_a_rename_key_given_as_the_stored_short_name_points_to_the_source_name(lerobot_v3: Path):
    with pytest.raises(
        ConfigError, match=r"camera_rename key 'cam_wrist' \(did you mean 'observation.images.cam_wrist'"
    ):
        _plan(lerobot_v3, '{"cam_wrist": "gripper"}')


def test_a_rename_key_naming_a_camera_is_accepted(lerobot_v3: Path):
    assert _plan(lerobot_v3, '{"observation.images.cam_high": "scene"}')


def test_an_mcap_rename_key_matching_no_mapped_camera_names_the_mapping_and_its_cameras(tmp_path: Path):
    import yaml

    from tests.data.preprocessing.robot_log_files import MCAP_MAPPING
    from vla_foundry.data.preprocessing.mcap_source import McapConverter

    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(yaml.safe_dump(MCAP_MAPPING))
    argv = robotics_argv(
        [tmp_path], tmp_path / "out", "--mapping_path", str(mapping), "--fps", "10", "--camera_rename",
        '{"hed": "scene"}', type_="mcap",
    )  # fmt: skip
    with pytest.raises(ConfigError) as err:
        McapConverter(parse_preprocessing_params(RoboticsPreprocessingParams, argv))
    cameras = ", ".join(MCAP_MAPPING["cameras"])
    assert str(err.value) == (
        f"mapping_path={mapping}: camera_rename key 'hed' (did you mean 'head'?) matches no camera; its cameras: "
        f"{cameras}"
    )
