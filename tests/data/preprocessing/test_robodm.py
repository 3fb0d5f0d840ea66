"""Robo-DM .vla trajectories written by robodm: frames and values per anchor, and the pickle gate (files whose
features are pickled are refused, naming them, unless --trust_pickle True)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.data.preprocessing.conftest import check_frames_and_rows, preprocess_robotics, read_dataset, robotics_argv
from tests.data.preprocessing.robot_log_files import make_robodm
from tests.data.preprocessing.test_hdf5 import check_actions
from vla_foundry.params.base_params import ConfigError

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture(scope="module")
def trajectories(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_robodm(tmp_path_factory.mktemp("robodm") / "cache")


def test_trusted_trajectories_give_every_anchor_its_frames_and_rows(trajectories: Path, tmp_path: Path):
    outcome = preprocess_robotics(
        robotics_argv([trajectories], tmp_path / "out", "--trust_pickle", "True", type_="robodm")
    )
    samples = read_dataset(tmp_path / "out" / "shards")
    assert len(samples) == 5 + 7 and outcome.metadata["inputs_failed"] == 0
    assert check_frames_and_rows(samples, {"cam_high": 0}) == len(samples) * 2
    check_actions(samples)
    # The container's packet times are the steps' times: 10 Hz, no gap.
    report = outcome.metadata["quality"]["episodes"]["cache_episode_1"]
    assert report["timestamps"]["period_s"] == pytest.approx(0.1, abs=1e-3) and report["timestamps"]["num_gaps"] == 0


def test_pickled_features_are_refused_without_trust_pickle_naming_file_and_features(trajectories: Path, tmp_path):
    with pytest.raises(ConfigError) as error:
        preprocess_robotics(robotics_argv([trajectories], tmp_path / "out", type_="robodm"))
    message = str(error.value)
    assert "episode_0.vla" in message and "'action'" in message and "--trust_pickle True" in message
    assert not (tmp_path / "out").exists()  # refused before the job started


def test_a_mapped_feature_the_file_lacks_fails_the_episode_naming_it(trajectories: Path, tmp_path: Path):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(yaml.safe_dump({"lowdim": {"action": "action", "torque": "observation/torque"}}))
    argv = ["--trust_pickle", "True", "--mapping_path", str(mapping), "--max_failure_fraction", "1.0"]
    with pytest.raises(Exception, match="no samples"):
        preprocess_robotics(robotics_argv([trajectories], tmp_path / "out", *argv, type_="robodm"))
    done = [json.loads(p.read_text()) for p in sorted((tmp_path / "out" / "_work" / "tasks").glob("*.done.json"))]
    reasons = [f["reason"] for d in done for f in d["failures"]]
    assert len(reasons) == 2 and all("'observation/torque' ('torque') not found" in r for r in reasons)
