"""Tar shards written directly, byte-reproducibly, and the per-task spools they are assembled from.

A read task appends its samples to one spool: a plain tar of the samples' members (written by
`tar_stream.sample_bytes`, the project's one tar writer), with an index of each sample's byte range. Since a tar
member is a self-contained run of 512-byte blocks, a shard is the concatenation of its samples' byte ranges plus
the end-of-archive marker: no sample is decoded or re-encoded when shards are assembled, and the same samples in the same order
give the same bytes. Shards are written under a temporary name and renamed (local) or PUT whole (S3), so a
shard name always means a finished shard.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from vla_foundry import storage
from vla_foundry.data.tar_stream import END_OF_ARCHIVE, sample_bytes


@dataclass
class SpoolEntry:
    key: str
    offset: int
    length: int


class SpoolWriter:
    """Appends samples to a local spool tar; an episode's samples can be rolled back if the episode fails."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.file = open(path, "wb")  # noqa: SIM115 (held open across add() calls, closed by close())
        self.entries: list[SpoolEntry] = []

    def add(self, key: str, members: dict[str, bytes]) -> None:
        data = sample_bytes(key, members)
        self.entries.append(SpoolEntry(key, self.file.tell(), len(data)))
        self.file.write(data)

    def mark(self) -> tuple[int, int]:
        return self.file.tell(), len(self.entries)

    def rollback(self, mark: tuple[int, int]) -> None:
        offset, n = mark
        self.file.seek(offset)
        self.file.truncate()
        del self.entries[n:]

    def close(self) -> list[SpoolEntry]:
        self.file.write(END_OF_ARCHIVE)  # a spool is a valid tar on its own (handy for inspection)
        self.file.close()
        return self.entries


def read_range(path: str, offset: int, length: int) -> bytes:
    """`length` bytes of a local file or s3 object from `offset` (an S3 ranged GET)."""
    if not storage.is_s3(path):
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)
    bucket, key = storage.split_s3(path)
    rng = f"bytes={offset}-{offset + length - 1}"
    get = storage.with_retries(path, "reading")(
        lambda: storage.s3_client().get_object(Bucket=bucket, Key=key, Range=rng)["Body"].read()
    )
    return get()


def write_shard(path: str, parts: list[tuple[str, int, int]]) -> int:
    """Write a shard from (spool path, offset, length) ranges, atomically; returns its size in bytes."""
    if storage.is_s3(path):
        data = b"".join(read_range(p, o, n) for p, o, n in parts) + END_OF_ARCHIVE
        storage.write_bytes(path, data)
        return len(data)
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    size = 0
    try:
        with open(tmp, "wb") as out:
            for p, o, n in parts:
                chunk = read_range(p, o, n)
                out.write(chunk)
                size += len(chunk)
            out.write(END_OF_ARCHIVE)
            size += len(END_OF_ARCHIVE)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return size


def shard_name(index: int) -> str:
    return f"shard_{index:06d}"


def write_manifest(dataset_dir: str, counts: list[int]) -> None:
    """manifest.jsonl: one line per shard, in shard order."""
    lines = [json.dumps({"shard": shard_name(i), "num_sequences": n}) for i, n in enumerate(counts)]
    storage.write_text(storage.join(dataset_dir, "manifest.jsonl"), "\n".join(lines) + "\n")


def plan_shards(entries: list[tuple[str, SpoolEntry]], samples_per_shard: int, seed: int) -> list[list[int]]:
    """A seeded permutation of all samples cut into shards: indices into `entries` per shard."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(entries)).tolist()
    return [order[i : i + samples_per_shard] for i in range(0, len(order), samples_per_shard)]
