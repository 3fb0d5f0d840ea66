"""NaN/Inf in an episode's low-dim data: named and fatal by default (fail_on_nan), or skipped and counted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.data.preprocessing.conftest import make_spartan, preprocess_robotics, read_dataset, robotics_argv

pytestmark = pytest.mark.usefixtures("ray_cluster")

EPISODE_1 = "BimanualPutRedBellPepperInBin_episode_1"


def poisoned_spartan(root: Path) -> Path:
    """Two Spartan episodes (6 and 7 steps); episode 1's actions hold one NaN at timestep 2, column 0."""
    task_dir = make_spartan(root, lengths=(6, 7))
    path = task_dir / "episode_1" / "processed" / "actions.npz"
    actions = np.load(path)["actions"].copy()
    actions[2, 0] = np.nan
    np.savez(path, actions=actions)
    return task_dir


def test_by_default_the_job_fails_naming_the_episode_and_field(tmp_path: Path, capsys):
    from vla_foundry.data.preprocessing.preprocess_robotics_to_tar import main

    task_dir = poisoned_spartan(tmp_path)
    assert main(robotics_argv([task_dir], tmp_path / "out", type_="spartan")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        f"error: episode {EPISODE_1}: non-finite low-dim values (NaN/Inf): actions: 1 value(s), first at index (2, 0); "
        "fail_on_nan is on"
    ), err[-1]
    assert not (tmp_path / "out" / "shards" / "manifest.jsonl").exists()


def test_with_fail_on_nan_off_the_episode_is_skipped_and_counted(tmp_path: Path):
    task_dir = poisoned_spartan(tmp_path)
    extra = ("--fail_on_nan", "false", "--max_failure_fraction", "0.5")
    outcome = preprocess_robotics(robotics_argv([task_dir], tmp_path / "out", *extra, type_="spartan"))
    samples = read_dataset(tmp_path / "out" / "shards")
    assert {json.loads(s["metadata.json"])["episode_id"] for s in samples.values()} == {
        "BimanualPutRedBellPepperInBin_episode_0"
    }
    # Episode 1 (7 steps, anchors 0..6 with 1 past / 3 future rows of padding allowed) would have given 7 samples.
    assert outcome.metadata["samples"]["dropped"] == {"non_finite": 7}
    assert [(f["id"], f["kind"]) for f in outcome.metadata["failures"]] == [(EPISODE_1, "non_finite")]
    written = json.loads((tmp_path / "out" / "shards" / "processing_metadata.json").read_text())
    assert written["samples"]["dropped"] == {"non_finite": 7}
