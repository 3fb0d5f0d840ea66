"""Two `torchrun` ranks (gloo on CPU) train the tiny VLA from a LeRobot stream: rank 0 starts the local Ray, rank 1
joins it, and each rank consumes its own share of every window."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT, tiny_vla_stream_args
from vla_foundry.data.scripts.make_synthetic_lerobot import make_lerobot_v3


def test_two_torchrun_ranks_train_from_one_local_ray(tmp_path):
    root = make_lerobot_v3(tmp_path / "toy_v3", lengths=(8, 6, 9, 7, 8))
    args = tiny_vla_stream_args(root, tmp_path / "runs", "stream_torchrun")
    env = {**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    env.pop("RAY_AUTH_MODE", None)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(REPO_ROOT / "vla_foundry" / "main.py"), *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "runs" / "stream_torchrun" / "metrics.jsonl").open()]
    # Each checkpoint interval: 16 samples over 2 ranks x batch 4 -> 2 steps; the samples read are summed over the ranks.
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert [r["interval_samples_read"] for r in records if "interval_samples_read" in r] == [16, 16]
