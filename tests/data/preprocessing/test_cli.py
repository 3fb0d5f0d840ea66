"""The entry point as users run it: a separate process joining an existing Ray cluster through --ray_address."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.data.preprocessing.conftest import read_dataset, robotics_argv

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_cli_joins_an_existing_cluster_and_writes_the_dataset(lerobot_v3: Path, tmp_path: Path):
    import ray

    address = ray.get_runtime_context().gcs_address
    script = REPO_ROOT / "vla_foundry" / "data" / "preprocessing" / "preprocess_robotics_to_tar.py"
    argv = robotics_argv([lerobot_v3], tmp_path, "--ray_address", address, "--max_episodes_to_process", "2")
    env = {**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    proc = subprocess.run(
        [sys.executable, str(script), *argv], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 failed" not in proc.stdout and "shards" in proc.stdout
    samples = read_dataset(tmp_path / "shards")
    assert {json.loads(s["metadata.json"])["episode_id"] for s in samples.values()} == {
        "toy_v3_episode_000000",
        "toy_v3_episode_000001",
    }
    command = json.loads((tmp_path / "shards" / "processing_metadata.json").read_text())["command"]
    assert "--ray_address" in command


def test_cli_reports_a_bad_flag_in_one_line_without_starting_ray(tmp_path: Path):
    script = REPO_ROOT / "vla_foundry" / "data" / "preprocessing" / "preprocess_robotics_to_tar.py"
    proc = subprocess.run(
        [sys.executable, str(script), *robotics_argv(["/nowhere"], tmp_path, "--jpeg_quality", "0")],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: jpeg_quality=0 must be within [1, 100]"
