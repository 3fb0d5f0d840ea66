"""The integrity index: `index.json`, written LAST into a checkpoint directory, holds every file's size and sha256
and the backend that wrote it. A checkpoint is complete only when its index exists and every file matches it."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from vla_foundry import storage
from vla_foundry.checkpoint.layout import INDEX_FILE, CheckpointError, CheckpointRef, file_sizes, is_temporary

INDEX_FORMAT = "vla_foundry.checkpoint/1"
# Indexes written before backends were named hold no `backend` key: they are DCP checkpoints.
DEFAULT_BACKEND = "dcp"
_HASH_CHUNK = 8 << 20


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def index_problem(ckpt_dir: str, sizes: dict[str, int]) -> str | None:
    """Why the checkpoint directory is not complete (index missing / unreadable / a file missing or of another
    size), or None when it is. Cheap: sizes only; `verify_checkpoint` also checks the checksums."""
    if INDEX_FILE not in sizes:
        return f"{ckpt_dir} is incomplete (no {INDEX_FILE}: the save did not finish)"
    try:
        files = read_index(ckpt_dir)["files"]
    except Exception as e:
        return f"{storage.join(ckpt_dir, INDEX_FILE)} is unreadable ({type(e).__name__}: {e})"
    for name, entry in files.items():
        if name not in sizes:
            return f"{storage.join(ckpt_dir, name)} is missing (listed in {INDEX_FILE})"
        if sizes[name] != entry["size"]:
            return f"{storage.join(ckpt_dir, name)} has {sizes[name]} bytes, {INDEX_FILE} says {entry['size']}"
    return None


def read_index(ckpt_dir: str) -> dict[str, Any]:
    return json.loads(storage.read_text(storage.join(ckpt_dir, INDEX_FILE)))


def backend_name(ckpt_dir: str) -> str:
    """The name of the backend that wrote a complete checkpoint directory (local or s3)."""
    return str(read_index(ckpt_dir).get("backend") or DEFAULT_BACKEND)


def write_index(ckpt_dir: str, info: dict[str, Any]) -> None:
    """Checksum every file of a finished checkpoint directory and write `index.json` last (atomically)."""
    files = {}
    for rel, size in sorted(file_sizes(ckpt_dir).items()):
        if rel == INDEX_FILE or is_temporary(rel):
            continue
        files[rel] = {"size": size, "sha256": sha256_file(os.path.join(ckpt_dir, rel))}
    storage.write_text(
        os.path.join(ckpt_dir, INDEX_FILE), json.dumps({"format": INDEX_FORMAT, **info, "files": files}, indent=1)
    )


def verify_checkpoint(ref: CheckpointRef) -> None:
    """Check a checkpoint directory against its index: every file present with its size and (local) checksum.
    Raises `CheckpointError` naming the first file that does not match."""
    problem = index_problem(ref.path, file_sizes(ref.path))
    if problem:
        raise CheckpointError(problem)
    if storage.is_s3(ref.path):
        return  # checksums are checked on the local copy after download
    for name, entry in read_index(ref.path)["files"].items():
        if sha256_file(ref.file(name)) != entry["sha256"]:
            raise CheckpointError(
                f"{ref.file(name)} is corrupt (its sha256 differs from {INDEX_FILE}); delete {ref.path} to use the "
                "previous checkpoint"
            )
