"""LeRobot v3.0 and v2.1 sources: file-group read tasks, frame placement, codecs, image features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.data.preprocessing.conftest import check_frames_and_rows, preprocess_robotics, read_dataset, robotics_argv
from vla_foundry.data.preprocessing.lerobot_source import LeRobotConverter
from vla_foundry.data.preprocessing.sample_cutting import plan_anchors
from vla_foundry.data.scripts.make_synthetic_lerobot import make_lerobot_v3, make_lerobot_v21
from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams, parse_preprocessing_params

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture(scope="module")
def v3_output(lerobot_v3: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("v3_out")
    outcome = preprocess_robotics(robotics_argv([lerobot_v3], out))
    return outcome, read_dataset(out / "shards")


def test_v3_read_tasks_group_episodes_by_the_files_they_share(lerobot_v3: Path):
    params = parse_preprocessing_params(RoboticsPreprocessingParams, robotics_argv([lerobot_v3], "/tmp/unused"))
    tasks = LeRobotConverter(params).plan_read_tasks()
    # data files {0,1,2} {3,4}; cam_high {0,1} {2,3,4}; cam_wrist {0,1,2,3} {4}.
    assert [[int(e[-6:]) for e in t.episode_ids] for t in tasks] == [[0, 1], [2], [3], [4]]


def test_v3_every_frame_and_state_row_lands_where_its_anchor_and_offset_say(v3_output):
    _, samples = v3_output
    checked = check_frames_and_rows(samples, {"cam_high": 0, "cam_wrist": 1})
    assert checked == len(samples) * 4


def test_v3_writes_every_potential_sample_once(v3_output, lerobot_v3: Path):
    outcome, samples = v3_output
    params = parse_preprocessing_params(RoboticsPreprocessingParams, robotics_argv([lerobot_v3], "/tmp/unused"))
    expected = sum(len(plan_anchors(n, params)) for n in (12, 9, 15, 10, 11))
    assert len(samples) == expected
    assert outcome.metadata["samples"] == {"potential": expected, "written": expected, "dropped": {}}
    assert sum(outcome.shard_counts) == expected and max(outcome.shard_counts) == 7


def test_v3_opens_each_video_file_once_per_read_task(v3_output):
    outcome, _ = v3_output
    # 4 read tasks x 2 cameras.
    assert outcome.metadata["counters"]["video_opens"] == 8


def test_v3_language_comes_from_the_episode_tasks(v3_output):
    _, samples = v3_output
    key = next(k for k in samples if "episode_000001" in k)
    assert json.loads(samples[key]["language_instructions.json"]) == {"original": ["stack the blue cup"]}


def test_v3_av1_videos_decode_to_the_right_frames(tmp_path: Path):
    src = make_lerobot_v3(
        tmp_path / "av1",
        lengths=(6, 5),
        data_files=[[0, 1]],
        video_files={"observation.images.cam_high": [[0], [1]]},
        codec="libsvtav1",
        episode_meta_files=[[0, 1]],
    )
    preprocess_robotics(robotics_argv([src], tmp_path / "out"))
    samples = read_dataset(tmp_path / "out" / "shards")
    assert check_frames_and_rows(samples, {"cam_high": 0}) == len(samples) * 2


def test_v3_image_features_embedded_as_png_become_cameras(tmp_path: Path):
    src = make_lerobot_v3(
        tmp_path / "png",
        lengths=(5, 4),
        data_files=[[0], [1]],
        video_files={"observation.images.cam_high": [[0, 1]]},
        image_keys=["observation.images.gripper"],
        episode_meta_files=[[0, 1]],
    )
    preprocess_robotics(robotics_argv([src], tmp_path / "out", "--camera_names", "[gripper, cam_high]"))
    samples = read_dataset(tmp_path / "out" / "shards")
    assert {tuple(json.loads(s["metadata.json"])["camera_names"]) for s in samples.values()} == {
        ("gripper", "cam_high")
    }
    assert check_frames_and_rows(samples, {"cam_high": 0, "gripper": 2}) == len(samples) * 4


def test_camera_rename_map_names_the_stored_cameras(tmp_path: Path, lerobot_v3: Path):
    argv = robotics_argv(
        [lerobot_v3],
        tmp_path / "out",
        "--camera_rename",
        '{"observation.images.cam_high": "scene_top"}',
        "--camera_names",
        "[cam_wrist, scene_top]",
        "--max_episodes_to_process",
        "2",
    )
    preprocess_robotics(argv)
    samples = read_dataset(tmp_path / "out" / "shards")
    key = sorted(samples)[0]
    assert json.loads(samples[key]["metadata.json"])["camera_names"] == ["cam_wrist", "scene_top"]
    assert {"cam_wrist_t0.jpg", "scene_top_t-1.jpg"} <= set(samples[key])
    assert {json.loads(s["metadata.json"])["episode_id"] for s in samples.values()} == {
        "toy_v3_episode_000000",
        "toy_v3_episode_000001",
    }


def test_v21_one_file_per_episode_converts_with_each_episode_its_own_task(tmp_path: Path):
    src = make_lerobot_v21(tmp_path / "toy_v21")
    outcome = preprocess_robotics(robotics_argv([src], tmp_path / "out"))
    samples = read_dataset(tmp_path / "out" / "shards")
    assert check_frames_and_rows(samples, {"top": 0}) == len(samples) * 2
    assert outcome.metadata["num_read_tasks"] == 3
    assert outcome.metadata["counters"]["video_opens"] == 3
