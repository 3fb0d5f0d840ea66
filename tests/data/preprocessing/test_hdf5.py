"""HDF5 episodes (ALOHA/ACT and robomimic, layout detected per file): frames and values per anchor, mapping
overrides, and missing datasets / cameras named by episode and key."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.data.preprocessing.conftest import (
    check_frames_and_rows,
    decode_jpeg,
    load_npz,
    preprocess_robotics,
    read_dataset,
    robotics_argv,
)
from tests.data.preprocessing.robot_log_files import make_aloha, make_robomimic
from vla_foundry.data.scripts.make_synthetic_lerobot import decode_colour
from vla_foundry.params.base_params import ConfigError

pytestmark = pytest.mark.usefixtures("ray_cluster")


def check_actions(samples: dict[str, dict[str, bytes]], field: str = "action") -> None:
    """Every valid action row is [100 episode + t, -t] for its source row t."""
    for members in samples.values():
        meta = json.loads(members["metadata.json"])
        episode = int(meta["episode_id"].rsplit("_", 1)[-1])
        lowdim = load_npz(members["lowdim.npz"])
        valid = lowdim["past_mask"] | lowdim["future_mask"]
        rows = (np.arange(len(valid)) - meta["anchor_relative_idx"] + meta["anchor_timestep"])[valid]
        np.testing.assert_array_equal(lowdim[field][valid], np.stack([100 * episode + rows, -rows], axis=1))


@pytest.fixture(scope="module")
def aloha_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("aloha")
    source = make_aloha(root / "sim_transfer_cube")
    outcome = preprocess_robotics(robotics_argv([source], root / "out", type_="hdf5"))
    return outcome, read_dataset(root / "out" / "shards")


def test_aloha_files_give_every_anchor_its_frames_raw_and_jpeg_and_its_state_and_action_rows(aloha_run):
    outcome, samples = aloha_run
    # Episodes of 6 and 8 steps, 1 past + 3 future rows with padding allowed: every step is an anchor.
    assert len(samples) == 14 and outcome.metadata["inputs_failed"] == 0
    metas = [json.loads(s["metadata.json"]) for s in samples.values()]
    assert {m["episode_id"] for m in metas} == {"sim_transfer_cube_episode_0", "sim_transfer_cube_episode_1"}
    assert {tuple(m["camera_names"]) for m in metas} == {("top", "wrist")}
    assert check_frames_and_rows(samples, {"top": 0, "wrist": 1}) == 14 * 4
    check_actions(samples)
    language = {json.loads(s["language_instructions.json"])["original"][0] for s in samples.values()}
    assert language == {"sim transfer cube"}  # no instruction stored: the folder's name


def test_robomimic_demos_are_episodes_with_their_obs_fields_and_image_cameras(tmp_path: Path):
    source = make_robomimic(tmp_path / "lift" / "demo.hdf5")
    preprocess_robotics(robotics_argv([source.parent], tmp_path / "out", type_="hdf5"))
    samples = read_dataset(tmp_path / "out" / "shards")
    assert len(samples) == 5 + 7
    for members in samples.values():
        meta = json.loads(members["metadata.json"])
        episode = int(meta["episode_id"].rsplit("_", 1)[-1])
        assert meta["episode_id"].startswith("lift_demo_demo_")
        for offset, t in zip(meta["image_indices"], meta["image_timesteps"]):
            assert decode_colour(decode_jpeg(members[f"agentview_image_t{offset}.jpg"])) == (episode, t, 0)
        lowdim = load_npz(members["lowdim.npz"])
        valid = lowdim["past_mask"] | lowdim["future_mask"]
        rows = (np.arange(len(valid)) - meta["anchor_relative_idx"] + meta["anchor_timestep"])[valid]
        np.testing.assert_array_equal(lowdim["robot0_eef_pos"][valid, :2], np.stack([rows * 0 + episode, rows], 1))
        assert json.loads(members["language_instructions.json"]) == {"original": ["lift the cube"]}
    check_actions(samples)


def test_a_dataset_the_mapping_names_missing_fails_that_episode_naming_it(tmp_path: Path):
    source = make_aloha(tmp_path / "aloha", lengths=[5, 5, 5], drop={1: "observations/qvel"})
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        yaml.safe_dump(
            {
                "cameras": {"overhead": "observations/images/top"},
                "lowdim": {"joints": "observations/qpos", "velocity": "observations/qvel", "command": "action"},
                "language": "transfer the cube",
            }
        )
    )
    argv = ["--mapping_path", str(mapping), "--max_failure_fraction", "0.5"]
    outcome = preprocess_robotics(robotics_argv([source], tmp_path / "out", *argv, type_="hdf5"))
    failures = outcome.metadata["failures"]
    assert [f["id"] for f in failures] == ["aloha_episode_1"] and failures[0]["kind"] == "missing_field"
    assert "/observations/qvel" in failures[0]["reason"] and "velocity" in failures[0]["reason"]
    samples = read_dataset(tmp_path / "out" / "shards")
    assert len(samples) == 10
    members = next(iter(samples.values()))
    assert set(load_npz(members["lowdim.npz"])) == {"joints", "velocity", "command", "past_mask", "future_mask"}
    assert json.loads(members["metadata.json"])["camera_names"] == ["overhead"]
    check_actions(samples, "command")


def test_a_requested_camera_an_episode_lacks_is_skipped_naming_it(tmp_path: Path):
    source = make_aloha(tmp_path / "aloha", lengths=[5, 5], drop={0: "observations/images/wrist"})
    outcome = preprocess_robotics(robotics_argv([source], tmp_path / "out", "--camera_names", "[wrist]", type_="hdf5"))
    assert outcome.metadata["counters"]["episodes_skipped_missing_camera"] == 1
    assert outcome.metadata["samples"]["dropped"] == {"missing_camera": 5}
    episodes = {
        json.loads(s["metadata.json"])["episode_id"] for s in read_dataset(tmp_path / "out" / "shards").values()
    }
    assert episodes == {"aloha_episode_1"}


def test_a_file_of_neither_layout_is_refused_before_reading_naming_it(tmp_path: Path):
    import h5py

    (tmp_path / "logs").mkdir()
    with h5py.File(tmp_path / "logs" / "run.h5", "w") as f:
        f.create_dataset("joint_positions", data=np.zeros((3, 2)))
    with pytest.raises(ConfigError, match=r"run\.h5.*top-level keys: \['joint_positions'\]"):
        preprocess_robotics(robotics_argv([tmp_path / "logs"], tmp_path / "out", type_="hdf5"))


def test_s3_files_are_planned_from_ranged_metadata_reads_and_read_whole(tmp_path: Path, s3_bucket: str):
    import os

    import boto3

    from vla_foundry.data.preprocessing.hdf5_source import Hdf5Converter
    from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams, parse_preprocessing_params

    make_aloha(tmp_path / "aloha", lengths=[4])
    make_robomimic(tmp_path / "lift" / "demo.hdf5", lengths=[3, 5])
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    bucket = s3_bucket.removeprefix("s3://")
    client.upload_file(str(tmp_path / "aloha" / "episode_0.hdf5"), bucket, "aloha/episode_0.hdf5")
    client.upload_file(str(tmp_path / "lift" / "demo.hdf5"), bucket, "lift/demo.hdf5")
    params = parse_preprocessing_params(
        RoboticsPreprocessingParams,
        robotics_argv([f"{s3_bucket}/aloha", f"{s3_bucket}/lift"], tmp_path / "out", type_="hdf5"),
    )
    converter = Hdf5Converter(params)
    tasks = converter.plan_read_tasks()
    assert [(t.spec["layout"], t.episode_ids) for t in tasks] == [
        ("aloha", ["aloha_episode_0"]),
        ("robomimic", ["lift_demo_demo_0", "lift_demo_demo_1"]),
    ]
    # Each episode's frames are read before the next episode is asked for (the file closes after the last).
    shown = [[decode_colour(f["agentview_image"]) for _, f in ep.frames] for ep in converter.read_task(tasks[1])]
    assert shown == [[(e, t, 0) for t in range(n)] for e, n in enumerate([3, 5])]
