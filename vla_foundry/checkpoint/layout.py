"""Where checkpoints live and what they are called: the one checkpoint-name rule, paths, `CheckpointRef`.

<run_dir>/checkpoints/checkpoint_<n>/        checkpoint n (a directory; every backend writes one)
<run_dir>/checkpoints/checkpoint_<n>.pt      older consolidated weights (with trainer_state_<n>.pt, ema_<n>.pt)
<run_dir>/model.safetensors, ema.safetensors consolidated weights exported at the end of a run
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass

from vla_foundry import storage

# THE checkpoint-name rule: `checkpoint_<n>` (a directory) or `checkpoint_<n>.pt|.safetensors` (an older
# consolidated weights file). Every module that recognises a checkpoint by its name calls `checkpoint_number`.
CHECKPOINT_NAME_RE = re.compile(r"^checkpoint_(\d+)(?:\.(pt|safetensors))?$")
INDEX_FILE = "index.json"
TRAINER_STATE_FILE = "trainer_state.pt"
# Consolidated weights written at the end of a run (and by `python -m vla_foundry.checkpoint export`).
EXPORTED_MODEL = "model.safetensors"
EXPORTED_EMA = "ema.safetensors"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, corrupt or does not fit the model; the message names the file."""


def warn_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def checkpoint_number(name: str) -> tuple[int, bool] | None:
    """(n, is a directory) when `name` (a base name) is a checkpoint's name, else None."""
    match = CHECKPOINT_NAME_RE.match(name)
    if match is None:
        return None
    return int(match.group(1)), match.group(2) is None


def checkpoints_dir(run_dir: str) -> str:
    return storage.join(run_dir, "checkpoints")


def checkpoint_dir(run_dir: str, n: int) -> str:
    """The directory of checkpoint n."""
    return storage.join(checkpoints_dir(run_dir), f"checkpoint_{n}")


def checkpoint_file(run_dir: str, n: int, kind: str = "checkpoint") -> str:
    """A file of the older consolidated layout (`<kind>_<n>.pt`), still readable for weights."""
    return storage.join(checkpoints_dir(run_dir), f"{kind}_{n}.pt")


@dataclass(frozen=True)
class CheckpointRef:
    """A resolved checkpoint: its run dir, number and path (a checkpoint directory, or a consolidated weights file;
    number -1 for a weights file outside a run's checkpoints)."""

    run_dir: str
    number: int
    path: str
    sharded: bool = True

    def file(self, name: str) -> str:
        return storage.join(self.path, name)

    def sibling(self, kind: str) -> str:
        """A file of the consolidated layout next to a `checkpoint_<n>.pt` (`ema`, `trainer_state`, ...)."""
        return checkpoint_file(self.run_dir, self.number, kind)


def file_sizes(directory: str) -> dict[str, int]:
    """{path relative to directory: size} of every file below it (local or s3)."""
    if storage.is_s3(directory):
        prefix = directory.rstrip("/") + "/"
        return {url[len(prefix) :]: size for url, size in storage.list_s3_objects(prefix)}
    out = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with contextlib.suppress(FileNotFoundError):
                out[os.path.relpath(path, directory).replace(os.sep, "/")] = os.path.getsize(path)
    return out


def is_temporary(name: str) -> bool:
    """A file a writer has not renamed into place yet (an interrupted save leaves these)."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(".tmp-") or ".tmp-" in base or base.endswith(".tmp")
