"""Which checkpoint a resume continues from, decided once on rank 0 and shared with every rank."""

from __future__ import annotations

from collections.abc import Callable

from vla_foundry.checkpoint.layout import CheckpointError, CheckpointRef
from vla_foundry.checkpoint.scan import resolve_checkpoint
from vla_foundry.distributed import DistributedContext, broadcast_object


def resolve_resume_checkpoint(path: str, ctx: DistributedContext, warn: Callable[[str], None]) -> CheckpointRef:
    """`resolve_checkpoint` with checksums, on rank 0 only (one read of the files), shared with every rank; a
    failure raises the same `CheckpointError` on every rank."""
    result: CheckpointRef | str | None = None
    if ctx.is_main:
        try:
            result = resolve_checkpoint(path, verify=True, warn=warn)
        except CheckpointError as e:
            result = str(e)
    result = broadcast_object(result)
    if isinstance(result, str):
        raise CheckpointError(result)
    return result
