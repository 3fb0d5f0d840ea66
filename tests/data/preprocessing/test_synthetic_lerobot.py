"""The synthetic LeRobot generator's command line: datasets the LeRobot converter reads back value for value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.data.preprocessing.conftest import robotics_argv
from vla_foundry.data.preprocessing.episodes import Episode
from vla_foundry.data.preprocessing.lerobot_source import LeRobotConverter
from vla_foundry.data.scripts.make_synthetic_lerobot import action_rows, decode_colour, main, state_rows
from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams, parse_preprocessing_params


def converter(source: Path) -> LeRobotConverter:
    return LeRobotConverter(parse_preprocessing_params(RoboticsPreprocessingParams, robotics_argv([source], "/tmp/x")))


def test_v3_files_roll_over_at_different_episodes_so_read_tasks_split_where_any_file_changes(tmp_path: Path):
    assert main(["--output_dir", str(tmp_path / "ds"), "--episodes", "6", "--length", "5"]) == 0
    info = json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())
    assert (info["codebase_version"], info["total_episodes"], info["total_frames"]) == ("v3.0", 6, 30)
    assert len(list((tmp_path / "ds" / "data").rglob("*.parquet"))) == 2  # a data file every 3 episodes
    assert len(list((tmp_path / "ds" / "videos" / "observation.images.cam_high").rglob("*.mp4"))) == 3  # every 2
    assert len(list((tmp_path / "ds" / "videos" / "observation.images.cam_wrist").rglob("*.mp4"))) == 2  # every 4
    tasks = converter(tmp_path / "ds").plan_read_tasks()
    assert [[int(e[-6:]) for e in t.episode_ids] for t in tasks] == [[0, 1], [2], [3], [4, 5]]


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_every_frame_and_row_read_back_encodes_its_episode_and_step(tmp_path: Path, version: str):
    assert main(["--output_dir", str(tmp_path / "ds"), "--version", version, "--episodes", "3"]) == 0
    source = converter(tmp_path / "ds")
    lengths = []
    for task in source.plan_read_tasks():
        # An episode's frames stream from the task's open videos: check each before the task moves on.
        for episode in source.read_task(task):
            assert isinstance(episode, Episode), episode
            index = len(lengths)
            lengths.append(episode.length)
            np.testing.assert_array_equal(episode.lowdim["observation.state"], state_rows(index, episode.length))
            np.testing.assert_array_equal(episode.lowdim["action"], action_rows(index, episode.length))
            colours = [[decode_colour(f[cam]) for cam in ("cam_high", "cam_wrist")] for _, f in episode.frames]
            assert colours == [[(index, t, 0), (index, t, 1)] for t in range(episode.length)]
    assert lengths == [12, 9, 15]


def test_a_non_empty_output_dir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture):
    (tmp_path / "old.txt").write_text("x")
    assert main(["--output_dir", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: output_dir {tmp_path} is not empty; choose a new directory or remove it"
    )
