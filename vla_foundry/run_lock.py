"""One writer per run directory: the lock file `<save_path>/.<run name>.lock`, next to the run dir, names the job
writing it (host, pid, start time). It lives beside the run dir, not in it, so it is never part of the run's files
(remote copies, listings).

The lock is an exclusive `flock` on that file, held by the job's rank 0 for the whole run (the other ranks of the
same job never take it), so it is released by the kernel however the holder ends. A second job on the same run dir
stops with one line naming the holder. A lock file left by a process that is gone (same host, flock free) is taken
over with a warning. A lock file written on another host cannot be checked from here (a shared file system may not
carry flock between hosts): it is refused, naming the holder, and removing the file is left to the user.
Remote (s3://) run dirs are not locked: training writes a local run dir and syncs it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

LOCK_SUFFIX = ".lock"

# Locks this process holds (released by `release_run_locks` when a run ends, however it ends).
_HELD: list[RunLock] = []


class RunLockError(RuntimeError):
    """The run dir is being written by another job; the message names it and what to do."""


@dataclass
class RunLock:
    """A held run-dir lock: the open, flocked lock file and what it says."""

    path: str
    fd: int
    holder: dict[str, Any]

    def release(self) -> None:
        """Remove the lock file (when it is still ours) and drop the flock."""
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            if _read_holder(self.path) == self.holder:
                os.remove(self.path)
        os.close(self.fd)  # closing the descriptor releases the flock
        self.fd = -1
        if self in _HELD:
            _HELD.remove(self)


def _read_holder(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            holder = json.loads(f.read() or "null")
    except (OSError, json.JSONDecodeError):
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "an unknown process (unreadable lock file)"
    return f"host {holder.get('host')} pid {holder.get('pid')} (started {holder.get('start_time')})"


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def lock_path(run_dir: str) -> str:
    """The lock file of `run_dir`: `.<run dir name>.lock` in the folder holding the run dir."""
    parent, name = os.path.split(os.path.normpath(run_dir))
    return os.path.join(parent, f".{name}{LOCK_SUFFIX}")


def acquire_run_lock(run_dir: str, warn: Callable[[str], None] | None = None) -> RunLock:
    """Take the lock of `run_dir`; RunLockError naming the holder if another job has it. `warn` receives the
    message when a stale lock of a dead process is taken over."""
    import fcntl

    path = lock_path(run_dir)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLockError(
            f"run dir {run_dir} is being written by another job: {_describe(_read_holder(path))}; wait for it to "
            "finish, stop it, or start this run with another --name (or --save_path)"
        ) from None
    host = socket.gethostname()
    previous = _read_holder(path)
    if previous is not None:
        if previous.get("host") != host:
            os.close(fd)
            raise RunLockError(
                f"run dir {run_dir} is locked by {_describe(previous)}, on another host, so this host cannot tell "
                f"whether it still runs; if that job is gone, delete {path} and start again"
            )
        # The flock is free, so the process named there no longer holds it: it ended (or its pid was reused).
        state = "whose pid is in use by another process now" if _pid_alive(previous.get("pid")) else "which is gone"
        if warn is not None:
            warn(f"warning: taking over the stale run-dir lock {path} of {_describe(previous)}, {state}")
    holder = {
        "host": host,
        "pid": os.getpid(),
        "start_time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    os.fsync(fd)
    lock = RunLock(path, fd, holder)
    _HELD.append(lock)
    return lock


def lock_run_dir(run_dir: str, ctx: Any, warn: Callable[[str], None] | None = None) -> RunLock | None:
    """The job's lock on `run_dir`: taken by rank 0 only; every rank raises the same RunLockError when it is held
    by another job (so no rank goes on to wait for the others). None on other ranks and for s3:// run dirs."""
    from vla_foundry import storage
    from vla_foundry.distributed import broadcast_object

    lock, error = None, None
    if ctx.is_main and not storage.is_s3(run_dir):
        try:
            lock = acquire_run_lock(run_dir, warn)
        except RunLockError as e:
            error = str(e)
    error = broadcast_object(error)
    if error is not None:
        raise RunLockError(error)
    return lock


def release_run_locks() -> None:
    """Release every run-dir lock this process holds (the end of a run, normal or not)."""
    for lock in list(_HELD):
        lock.release()
