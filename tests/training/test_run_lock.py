"""The run-dir lock between real processes: a second writer is refused naming the holder, a killed holder's lock
is taken over with a warning, a training job on a locked run dir stops with one line, other ranks never take it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.training.conftest import lm_run_args
from vla_foundry.distributed import DistributedContext
from vla_foundry.run_lock import RunLockError, acquire_run_lock, lock_path, lock_run_dir

HOLD = (
    "import sys\n"
    "from vla_foundry.run_lock import acquire_run_lock\n"
    "acquire_run_lock(sys.argv[1])\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"  # hold until the test closes stdin (or kills the process)
)


@pytest.fixture
def holder(tmp_path) -> Iterator[tuple[subprocess.Popen, str]]:
    """Another process holding the lock of `<tmp_path>/run`; yields (process, run dir)."""
    run_dir = str(tmp_path / "run")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, run_dir], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().strip() == "locked"
    try:
        yield proc, run_dir
    finally:
        if proc.poll() is None:
            proc.stdin.close()
            proc.wait(timeout=30)


def test_a_second_writer_is_refused_naming_host_pid_and_start(holder):
    proc, run_dir = holder
    with pytest.raises(RunLockError) as caught:
        acquire_run_lock(run_dir)
    message = str(caught.value)
    assert f"run dir {run_dir} is being written by another job: host {socket.gethostname()} pid {proc.pid} " in message
    written = json.loads(Path(lock_path(run_dir)).read_text())
    assert f"(started {written['start_time']})" in message and "\n" not in message


def test_the_lock_of_a_killed_process_is_taken_over_with_a_warning(holder):
    proc, run_dir = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    warnings: list[str] = []
    lock = acquire_run_lock(run_dir, warn=warnings.append)
    try:
        assert len(warnings) == 1 and f"pid {proc.pid}" in warnings[0] and "stale" in warnings[0]
        assert json.loads(Path(lock_path(run_dir)).read_text())["pid"] == os.getpid()
    finally:
        lock.release()
    assert not os.path.exists(lock_path(run_dir))
    acquire_run_lock(run_dir).release()  # released: free again, without a warning


def test_a_lock_written_on_another_host_is_refused_with_what_to_do(tmp_path):
    run_dir = tmp_path / "run"
    lock_file = tmp_path / ".run.lock"
    lock_file.write_text(json.dumps({"host": "node-7", "pid": 123, "start_time": "2026-01-01T00:00:00+00:00"}))
    with pytest.raises(RunLockError, match=rf"host node-7 pid 123 .*on another host.*delete {lock_file}"):
        acquire_run_lock(str(run_dir))


def test_other_ranks_of_a_job_do_not_take_the_lock(holder):
    _, run_dir = holder
    rank1 = DistributedContext(
        rank=1, world_size=1, local_rank=1, device=torch.device("cpu"), backend=None, wrapping="none"
    )
    assert lock_run_dir(run_dir, rank1) is None  # rank 0 of its job holds it; this rank does not even look
    rank0 = DistributedContext(
        rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None, wrapping="none"
    )
    with pytest.raises(RunLockError, match="being written by another job"):
        lock_run_dir(run_dir, rank0)


def test_a_training_job_on_a_locked_run_dir_stops_with_one_line(holder, tiny_datasets, capsys):
    from vla_foundry.main import main

    proc, run_dir = holder
    save_path, name = os.path.split(run_dir)
    assert main(lm_run_args(tiny_datasets, save_path, name)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: run dir {run_dir} is being written by another job: host ")
    assert f"pid {proc.pid}" in err[-1]
    assert not os.path.exists(os.path.join(run_dir, "config.yaml"))  # nothing written into the holder's run dir
