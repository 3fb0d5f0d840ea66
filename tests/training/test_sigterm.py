"""A real training process stopped by a real SIGTERM (a scheduler, a spot reclaim) says where it stands in one line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT
from tests.training.conftest import lm_run_args
from vla_foundry.checkpoint import checkpoint_dir
from vla_foundry.metrics import read_metrics


def _run_until_checkpoint_one_then_sigterm(args: list[str], run_dir: str, before_signal=None) -> tuple[int, str, float]:
    """Start training, send SIGTERM once checkpoint 1 is complete; returns (exit code, stderr, seconds to exit)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "vla_foundry/main.py", *args], cwd=REPO_ROOT, env=env, stderr=subprocess.PIPE, text=True
    )
    index = os.path.join(checkpoint_dir(run_dir, 1), "index.json")
    deadline = time.monotonic() + 600
    while not os.path.exists(index) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if before_signal is not None:
        before_signal()
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err, time.monotonic() - sent


def _last_logged_step(run_dir: str) -> int:
    return max(r["step"] for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "loss" in r)


def _stop_line_rest(line: str, run_dir: str) -> str:
    """The stop line after its step, once the step is checked against metrics.jsonl: the signal can land between an
    optimizer step and that step's metrics line, so the step named is the last one logged or the one after it."""
    match = re.match(r"stopped by SIGTERM at step (\d+): ", line)
    assert match, line
    logged = _last_logged_step(run_dir)
    assert logged <= int(match.group(1)) <= logged + 1, (line, logged)
    return line[match.end() :]


@pytest.mark.slow
def test_sigterm_prints_one_line_naming_the_step_the_complete_checkpoint_and_the_remote_copy(
    tmp_path, tiny_datasets, s3_bucket
):
    run_dir = str(tmp_path / "spot")
    args = lm_run_args(tiny_datasets, str(tmp_path), "spot", "--remote_sync", f"{s3_bucket}/runs")
    code, err, _ = _run_until_checkpoint_one_then_sigterm(args, run_dir)
    assert code == 143, err[-2000:]
    assert "Traceback" not in err
    assert _stop_line_rest(err.strip().splitlines()[-1], run_dir) == (
        "checkpoint 1 is complete "
        f"({checkpoint_dir(run_dir, 1)}; resume with --model.resume_from_checkpoint {run_dir}); "
        f"remote copy {s3_bucket}/runs/spot complete"
    )


@pytest.mark.slow
def test_sigterm_with_a_hung_endpoint_exits_within_the_deadline_saying_the_remote_copy_is_incomplete(
    tmp_path, tiny_datasets, stoppable_s3
):
    _, server = stoppable_s3
    run_dir = str(tmp_path / "spot")
    args = lm_run_args(
        tiny_datasets, str(tmp_path), "spot", "--remote_sync", "s3://runs/prefix", "--remote_sync_timeout_s", "6"
    )
    # The endpoint stops answering just as checkpoint 1 is complete (its upload may be under way), then the reclaim.
    code, err, elapsed = _run_until_checkpoint_one_then_sigterm(
        args, run_dir, before_signal=lambda: server.send_signal(signal.SIGSTOP)
    )
    assert code == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert _stop_line_rest(last, run_dir).startswith("checkpoint 1 is complete")
    assert "remote copy s3://runs/prefix/spot incomplete: " in last and last.endswith(" files not uploaded")
    # The 6 s deadline of the flush, plus the rest of the exit (saving a pending checkpoint, the interpreter).
    assert elapsed < 6 + 8, elapsed
