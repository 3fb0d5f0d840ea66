"""Spartan episode folders: camera map, action-field slicing, discard keys, language by task, intrinsics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.data.preprocessing.conftest import (
    SPARTAN_ACTION_FIELDS,
    check_frames_and_rows,
    load_npz,
    make_spartan,
    preprocess_robotics,
    read_dataset,
    robotics_argv,
)
from vla_foundry.params.base_params import ConfigError

pytestmark = pytest.mark.usefixtures("ray_cluster")

ANNOTATIONS = {
    "BimanualPutRedBellPepperInBin": {"original": ["put the pepper in the bin"], "verbose": ["pick it, drop it"]}
}


@pytest.fixture(scope="module")
def spartan_configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("spartan_configs")
    (d / "fields.yaml").write_text(yaml.safe_dump(SPARTAN_ACTION_FIELDS, sort_keys=False))
    (d / "language.yaml").write_text(yaml.safe_dump(ANNOTATIONS))
    (d / "cameras.yaml").write_text(yaml.safe_dump({"camera_names": ["wrist_left", "scene_left_0"]}))
    (d / "discard.yaml").write_text(yaml.safe_dump(["robot__debug__timing"]))
    return {
        "fields": d / "fields.yaml",
        "language": d / "language.yaml",
        "cameras": d / "cameras.yaml",
        "discard": d / "discard.yaml",
    }


def spartan_argv(task_dir: Path, out: Path, configs: dict[str, Path], *extra: str) -> list[str]:
    return robotics_argv(
        [task_dir],
        out,
        "--action_fields_config_path",
        str(configs["fields"]),
        "--language_annotations_path",
        str(configs["language"]),
        "--camera_names",
        f"include {configs['cameras']}",
        "--data_discard_keys",
        f"include {configs['discard']}",
        *extra,
        type_="spartan",
    )


@pytest.fixture(scope="module")
def spartan_output(tmp_path_factory: pytest.TempPathFactory, spartan_configs):
    root = tmp_path_factory.mktemp("spartan")
    task_dir = make_spartan(root)
    outcome = preprocess_robotics(spartan_argv(task_dir, root / "out", spartan_configs))
    return outcome, read_dataset(root / "out" / "shards")


def test_spartan_frames_land_where_their_anchor_says_with_cameras_in_the_requested_order(spartan_output):
    _, samples = spartan_output
    metas = [json.loads(s["metadata.json"]) for s in samples.values()]
    assert {tuple(m["camera_names"]) for m in metas} == {("wrist_left", "scene_left_0")}
    # Episode ids end in "episode_<N>"; the check reads N after the last underscore.
    # camera index = position in the source camera map (cam0 scene_left_0, cam2 wrist_left).
    assert check_frames_and_rows(samples, {"scene_left_0": 0, "wrist_left": 2}) == len(samples) * 4


def test_spartan_actions_are_sliced_into_named_fields_and_discarded_keys_dropped(spartan_output):
    _, samples = spartan_output
    key = next(k for k in samples if k.endswith("episode_1__t000005"))
    lowdim = load_npz(samples[key]["lowdim.npz"])
    assert lowdim["right::xyz"].shape == (5, 3) and lowdim["right::rot_6d"].shape == (5, 6)
    assert lowdim["gripper"].shape == (5, 1)
    assert lowdim["right::xyz"][:, 0].tolist() == [104, 105, 106, 107, 108]
    assert "robot__debug__timing" not in lowdim
    assert lowdim["robot__actual__poses__right::panda__xyz"][1].tolist() == [1, 5, 2.5]
    np.testing.assert_array_equal(lowdim["intrinsics__wrist_left"], np.eye(3) * 3)


def test_spartan_language_comes_from_the_annotations_of_the_task(spartan_output):
    _, samples = spartan_output
    language = json.loads(next(iter(samples.values()))["language_instructions.json"])
    assert language == ANNOTATIONS["BimanualPutRedBellPepperInBin"]


def test_spartan_stats_cover_named_action_fields(spartan_output):
    outcome, _ = spartan_output
    stats = json.loads((Path(outcome.dataset_dir) / "stats.json").read_text())
    assert {"right::xyz", "gripper", "robot__actual__poses__right::panda__xyz"} <= set(stats)
    assert "intrinsics__wrist_left" not in stats


def test_spartan_episode_missing_a_camera_is_skipped_and_counted(tmp_path: Path, spartan_configs):
    task_dir = make_spartan(tmp_path, lengths=(6, 7, 5), missing_camera_in=1)
    outcome = preprocess_robotics(spartan_argv(task_dir, tmp_path / "out", spartan_configs))
    samples = read_dataset(tmp_path / "out" / "shards")
    assert {json.loads(s["metadata.json"])["episode_id"] for s in samples.values()} == {
        "BimanualPutRedBellPepperInBin_episode_0",
        "BimanualPutRedBellPepperInBin_episode_2",
    }
    assert outcome.metadata["counters"]["episodes_skipped_missing_camera"] == 1
    # Episode 1 (7 steps, anchors 0..6) would have given 7 samples.
    assert outcome.metadata["samples"]["dropped"] == {"missing_camera": 7}


def test_spartan_missing_camera_with_error_policy_fails_naming_the_episode(tmp_path: Path, spartan_configs):
    task_dir = make_spartan(tmp_path, lengths=(6, 7), missing_camera_in=1)
    argv = spartan_argv(task_dir, tmp_path / "out", spartan_configs, "--missing_camera", "error")
    with pytest.raises(Exception, match="episode_1.*missing camera"):
        preprocess_robotics(argv)


def test_spartan_action_fields_config_must_cover_the_action_width(tmp_path: Path, spartan_configs):
    bad = tmp_path / "fields.yaml"
    bad.write_text(yaml.safe_dump({"a": 3, "b": 2}))
    task_dir = make_spartan(tmp_path, lengths=(6,))
    argv = spartan_argv(task_dir, tmp_path / "out", {**spartan_configs, "fields": bad})
    with pytest.raises(ConfigError, match="end index of 'b'"):
        preprocess_robotics(argv)


def test_spartan_corrupt_observations_fail_only_that_episode(tmp_path: Path, spartan_configs):
    task_dir = make_spartan(tmp_path, lengths=(6, 7))
    (task_dir / "episode_0" / "processed" / "observations.npz").write_bytes(b"PK\x03\x04 not a zip")
    argv = spartan_argv(task_dir, tmp_path / "out", spartan_configs, "--max_failure_fraction", "0.5")
    outcome = preprocess_robotics(argv)
    (failure,) = outcome.metadata["failures"]
    assert failure["id"] == "BimanualPutRedBellPepperInBin_episode_0" and failure["kind"] == "read_error"
    assert "observations.npz" in failure["reason"]
    assert outcome.metadata["samples"]["written"] == 7


def test_spartan_preprocessing_config_records_the_action_slicing(spartan_output):
    outcome, _ = spartan_output
    config = yaml.safe_load((Path(outcome.dataset_dir) / "preprocessing_config.yaml").read_text())
    assert config["action_fields"] == {"right::xyz": [0, 3], "right::rot_6d": [3, 9], "gripper": [9, 10]}
    assert config["camera_names"] == ["wrist_left", "scene_left_0"]
