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


def _converter(type_: str, sources: list[Path], out: Path, rename: str, *extra: str):
    from vla_foundry.data.preprocessing.episodes import get_converter

    argv = robotics_argv(sources, out, "--camera_rename", rename, *extra, type_=type_)
    return get_converter(type_)(parse_preprocessing_params(RoboticsPreprocessingParams, argv))


def test_an_hdf5_rename_key_matching_no_camera_names_the_files_cameras(tmp_path: Path):
    from tests.data.preprocessing.robot_log_files import make_aloha

    source = make_aloha(tmp_path / "cube")
    with pytest.raises(ConfigError) as err:
        _converter("hdf5", [source], tmp_path / "out", '{"wirst": "gripper"}').plan_read_tasks()
    assert str(err.value) == (
        f"HDF5 files under {source}: camera_rename key 'wirst' (did you mean 'wrist'?) matches no camera; its "
        "cameras: top, wrist"
    )
    assert _converter("hdf5", [source], tmp_path / "out", '{"wrist": "gripper"}').plan_read_tasks()


def test_a_robodm_rename_key_matching_no_camera_names_the_trajectorys_cameras(tmp_path: Path):
    from tests.data.preprocessing.robot_log_files import make_robodm

    source = make_robodm(tmp_path / "trajectories")
    trust = ("--trust_pickle", "True")
    with pytest.raises(ConfigError) as err:
        _converter("robodm", [source], tmp_path / "out", '{"cam_hihg": "scene"}', *trust).plan_read_tasks()
    assert str(err.value) == (
        f"{source / 'episode_0.vla'}: camera_rename key 'cam_hihg' (did you mean 'cam_high'?) matches no camera; "
        "its cameras: cam_high"
    )
    assert _converter("robodm", [source], tmp_path / "out", '{"cam_high": "scene"}', *trust).plan_read_tasks()


def test_a_spartan_rename_key_matching_no_camera_names_the_episodes_cameras(tmp_path: Path):
    import yaml

    from tests.data.preprocessing.conftest import SPARTAN_ACTION_FIELDS, make_spartan

    task_dir = make_spartan(tmp_path)
    fields = tmp_path / "fields.yaml"
    fields.write_text(yaml.safe_dump(SPARTAN_ACTION_FIELDS, sort_keys=False))
    extra = ("--action_fields_config_path", str(fields))
    with pytest.raises(ConfigError) as err:
        _converter("spartan", [task_dir], tmp_path / "out", '{"wrist_lfet": "gripper"}', *extra).plan_read_tasks()
    metadata = task_dir / "episode_0" / "processed" / "metadata.yaml"
    assert str(err.value) == (
        f"{metadata}: camera_rename key 'wrist_lfet' (did you mean 'wrist_left'?) matches no camera; its cameras: "
        "scene_left_0, scene_right_0, wrist_left"
    )
    assert _converter("spartan", [task_dir], tmp_path / "out", '{"wrist_left": "gripper"}', *extra).plan_read_tasks()
