"""The per-episode quality report: planted faults (black frame, frozen camera, timestamp gap, NaN, action jump,
still segment) are flagged on the episode that has them and nowhere else; still samples can be dropped; rules
chosen by --qa_fail_on end the job; LeRobot episodes get a report too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.data.preprocessing.conftest import preprocess_robotics, read_dataset, robotics_argv
from tests.data.preprocessing.robot_log_files import make_aloha
from vla_foundry.data.preprocessing.command_line import outcome_summary
from vla_foundry.data.preprocessing.job import JobError
from vla_foundry.params.base_params import ConfigError

pytestmark = pytest.mark.usefixtures("ray_cluster")

LENGTHS = [10, 10, 16, 8]
STILL = (2, 13)  # episode 2 holds every field constant over these rows
TIMES_0 = np.arange(10) * 0.1 + np.where(np.arange(10) >= 6, 0.5, 0.0)  # a 0.6 s step after row 5


def plant_black_and_frozen(qpos, action, top):
    top[3] = 0  # a black frame
    top[5:10] = top[5]  # the camera repeats one frame for 5 steps


def plant_nan_and_jump(qpos, action, top):
    qpos[2, 1] = np.nan
    action[6, 0] += 50.0


def plant_still(qpos, action, top):
    qpos[STILL[0] : STILL[1] + 1] = qpos[STILL[0]]
    action[STILL[0] : STILL[1] + 1] = action[STILL[0]]


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("quality")
    source = make_aloha(
        root / "aloha",
        LENGTHS,
        timestamps={0: TIMES_0, 1: np.arange(10) * 0.1, 2: np.arange(16) * 0.1, 3: np.arange(8) * 0.1},
        edit={0: plant_black_and_frozen, 1: plant_nan_and_jump, 2: plant_still},
    )
    mapping = root / "mapping.yaml"
    mapping.write_text(yaml.safe_dump({"timestamps": "timestamps"}))
    return source, mapping


def argv(faulty, out: Path, *extra: str) -> list[str]:
    source, mapping = faulty
    # The NaN episode is skipped (counted) rather than fatal, so the report covers all four episodes.
    flags = [
        "--mapping_path",
        str(mapping),
        "--qa_action_jump_threshold",
        "20",
        "--fail_on_nan",
        "false",
        "--max_failure_fraction",
        "0.5",
        *extra,
    ]
    return robotics_argv([source], out, *flags, type_="hdf5")


@pytest.fixture(scope="module")
def report_run(faulty, tmp_path_factory: pytest.TempPathFactory):
    return preprocess_robotics(argv(faulty, tmp_path_factory.mktemp("quality_out")))


def test_each_planted_fault_is_flagged_on_its_episode_only(report_run):
    quality = report_run.metadata["quality"]["episodes"]
    e = [quality[f"aloha_episode_{i}"] for i in range(4)]
    assert [r["frames"] for r in e] == LENGTHS
    assert e[0]["failed_rules"] == ["timestamp_gap", "black_frame", "frozen_frame"]
    assert e[0]["cameras"]["top"]["black_steps"] == [3] and e[0]["cameras"]["wrist"]["black_frames"] == 0
    assert e[0]["cameras"]["top"]["frozen_segments"] == [[5, 9]]
    assert e[0]["timestamps"]["gaps"] == [{"after_step": 5, "gap_s": pytest.approx(0.6)}]
    assert e[0]["duration_s"] == pytest.approx(1.4)
    assert e[1]["failed_rules"] == ["non_finite", "action_jump"]
    assert e[1]["non_finite"] == {"observation.state": 1}
    assert e[1]["action_jumps"] == {"action": {"count": 2, "steps": [6, 7]}}  # up at 6, back down at 7
    assert e[2]["failed_rules"] == ["still_segment"] and e[2]["still_segments"] == [list(STILL)]
    assert e[3]["failed_rules"] == []


def test_the_summary_lists_the_episodes_breaking_each_rule(report_run):
    summary = report_run.metadata["quality"]["summary"]
    assert summary["episodes"] == 4 and summary["frames"] == sum(LENGTHS)
    assert summary["flagged"] == {
        "timestamp_gap": ["aloha_episode_0"],
        "black_frame": ["aloha_episode_0"],
        "frozen_frame": ["aloha_episode_0"],
        "non_finite": ["aloha_episode_1"],
        "action_jump": ["aloha_episode_1"],
        "still_segment": ["aloha_episode_2"],
    }
    printed = outcome_summary(report_run, "episodes")
    assert "quality: 4 episodes, 44 frames" in printed
    assert "  black_frame: 1 episode(s): aloha_episode_0" in printed.splitlines()


def test_filter_still_samples_drops_exactly_the_windows_inside_the_still_rows(faulty, tmp_path: Path):
    outcome = preprocess_robotics(argv(faulty, tmp_path / "out", "--filter_still_samples", "True"))
    # 1 past + 3 future rows; a window is still when all its valid rows lie in the still run of episode 2.
    n = LENGTHS[2]
    still = [a for a in range(n) if STILL[0] <= max(a - 1, 0) and min(a + 3, n - 1) <= STILL[1]]
    assert outcome.metadata["samples"]["dropped"]["still"] == len(still)
    anchors = {
        json.loads(s["metadata.json"])["anchor_timestep"]
        for s in read_dataset(tmp_path / "out" / "shards").values()
        if json.loads(s["metadata.json"])["episode_id"] == "aloha_episode_2"
    }
    assert anchors == set(range(n)) - set(still)


def test_rules_named_in_qa_fail_on_end_the_job_listing_the_episodes(faulty, tmp_path: Path):
    with pytest.raises(JobError, match=r"aloha_episode_0: black_frame; aloha_episode_2: still_segment\. "):
        preprocess_robotics(argv(faulty, tmp_path / "out", "--qa_fail_on", "[black_frame, still_segment]"))
    assert not (tmp_path / "out" / "shards" / "manifest.jsonl").exists()


def test_an_unknown_rule_is_refused_with_the_closest_name(faulty, tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown rule 'black_frames' \\(did you mean black_frame"):
        preprocess_robotics(argv(faulty, tmp_path / "out", "--qa_fail_on", "[black_frames]"))


def test_lerobot_episodes_get_a_clean_report_from_their_timestamps(lerobot_v3: Path, tmp_path: Path):
    outcome = preprocess_robotics(robotics_argv([lerobot_v3], tmp_path / "out"))
    quality = outcome.metadata["quality"]
    info = json.loads((lerobot_v3 / "meta" / "info.json").read_text())
    assert quality["summary"]["episodes"] == info["total_episodes"] and quality["summary"]["flagged"] == {}
    for report in quality["episodes"].values():
        assert report["timestamps"]["period_s"] == pytest.approx(1 / info["fps"])
        cameras = {
            k.removeprefix("observation.images.") for k in info["features"] if k.startswith("observation.images.")
        }
        assert report["timestamps"]["num_gaps"] == 0 and set(report["cameras"]) == cameras
