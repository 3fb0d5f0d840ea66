"""Checkpoints on s3: a local copy to read (`local_checkpoint`, `local_files`) or to resume from
(`fetch_checkpoint`)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence

from vla_foundry import storage
from vla_foundry.checkpoint.integrity import verify_checkpoint
from vla_foundry.checkpoint.layout import CheckpointRef, checkpoint_dir, file_sizes
from vla_foundry.distributed import DistributedContext, barrier


@contextlib.contextmanager
def local_checkpoint(ref: CheckpointRef) -> Iterator[CheckpointRef]:
    """The checkpoint itself when local; an s3 checkpoint is downloaded to a temporary directory (and verified)."""
    if not storage.is_s3(ref.path):
        yield ref
        return
    with tempfile.TemporaryDirectory(prefix="vla_foundry_ckpt_") as tmp:
        local = os.path.join(tmp, storage.basename(ref.path))
        if ref.sharded:
            for rel in file_sizes(ref.path):
                storage.download_file(ref.file(rel), os.path.join(local, rel))
            out = CheckpointRef(ref.run_dir, ref.number, local)
            verify_checkpoint(out)
        else:
            storage.download_file(ref.path, local)
            out = CheckpointRef(ref.run_dir, ref.number, local, sharded=False)
        yield out


@contextlib.contextmanager
def local_files(ref: CheckpointRef, names: Sequence[str]) -> Iterator[str]:
    """A local directory holding the named files of checkpoint directory `ref` (those it has): the checkpoint itself
    when local, else a temporary directory with only those files downloaded."""
    if not storage.is_s3(ref.path):
        yield ref.path
        return
    present = file_sizes(ref.path)
    with tempfile.TemporaryDirectory(prefix="vla_foundry_meta_") as tmp:
        for name in names:
            if name in present:
                storage.download_file(ref.file(name), os.path.join(tmp, name))
        yield tmp


def fetch_checkpoint(
    ref: CheckpointRef, run_dir: str, ctx: DistributedContext, run_files: Sequence[str] = ()
) -> CheckpointRef:
    """Copy checkpoint `ref` (its whole directory, checked against its index) and the run's small `run_files` from
    s3 into the local run dir. The first process of every node downloads (nodes need not share a file system)."""
    local = CheckpointRef(run_dir, ref.number, checkpoint_dir(run_dir, ref.number))
    if ctx.local_rank == 0:
        for name in run_files:
            url = storage.join(ref.run_dir, name)
            if storage.exists(url):
                storage.download_file(url, os.path.join(run_dir, name))
        if ref.sharded:
            for url in storage.list_files(ref.path):
                storage.download_file(url, os.path.join(local.path, url[len(ref.path) + 1 :]))
            verify_checkpoint(local)
    barrier()
    return local if ref.sharded else ref
