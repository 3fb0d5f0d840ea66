"""Deleting checkpoints: all but the newest `keep_last`, and the leftovers of interrupted saves."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable

from vla_foundry import storage
from vla_foundry.checkpoint.layout import (
    checkpoint_dir,
    checkpoint_number,
    checkpoints_dir,
    file_sizes,
    is_temporary,
    warn_stderr,
)
from vla_foundry.checkpoint.legacy import remove_legacy_checkpoint
from vla_foundry.checkpoint.scan import incomplete_checkpoints, scan


def remove_incomplete_checkpoints(run_dir: str, warn: Callable[[str], None] = warn_stderr) -> list[str]:
    """Delete interrupted saves (checkpoint directories without a valid index) and temporary files of a local run
    dir; returns what was removed. Run on rank 0 before training starts."""
    removed: list[str] = []
    if storage.is_s3(run_dir) or not os.path.isdir(checkpoints_dir(run_dir)):
        return removed
    for path in incomplete_checkpoints(run_dir) + _empty_checkpoint_dirs(run_dir):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    for rel in file_sizes(checkpoints_dir(run_dir)):
        if is_temporary(rel):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(checkpoints_dir(run_dir), rel))
            removed.append(os.path.join(checkpoints_dir(run_dir), rel))
    if removed:
        warn(f"removed {len(removed)} leftovers of interrupted saves: {', '.join(removed[:5])}")
    return removed


def _empty_checkpoint_dirs(run_dir: str) -> list[str]:
    """Checkpoint directories holding no file: a save killed between creating its directory and writing to it
    (the file scan above cannot see them)."""
    out = []
    for name in sorted(os.listdir(checkpoints_dir(run_dir))):
        path = os.path.join(checkpoints_dir(run_dir), name)
        named = checkpoint_number(name)
        if named is not None and named[1] and os.path.isdir(path) and not file_sizes(path):
            out.append(path)
    return out


def prune_checkpoints(run_dir: str, limit: int | None) -> list[int]:
    """Delete all but the newest `limit` complete checkpoints (whole directories, or all consolidated files);
    returns the removed numbers."""
    if limit is None:
        return []
    sharded, legacy = scan(run_dir)
    complete = {n for n, problem in sharded.items() if problem is None}
    numbers = sorted(complete | legacy)
    removed = numbers[:-limit] if len(numbers) > limit else []
    for n in removed:
        if n in complete:
            storage.remove(checkpoint_dir(run_dir, n))
        else:
            remove_legacy_checkpoint(run_dir, n)
    return removed
