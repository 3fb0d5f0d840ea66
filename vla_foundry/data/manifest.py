"""Dataset manifests: `manifest.jsonl` (one line per tar shard) read from a local directory or s3://.

A dataset is named by its directory or by the path of its `manifest.jsonl`; both resolve to the same
`Manifest`. Each line is `{"shard": "<tar basename without .tar>", "num_sequences": <samples>}`; extra keys are
ignored (docs/formats.md §1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from vla_foundry import storage

MANIFEST_NAME = "manifest.jsonl"


class ManifestError(ValueError):
    """A manifest is missing or malformed; the message names the file and, where known, the line."""


@dataclass(frozen=True)
class ShardInfo:
    name: str
    num_sequences: int


@dataclass(frozen=True)
class Manifest:
    """The shards of one dataset directory, in manifest order."""

    dataset_dir: str
    path: str
    shards: tuple[ShardInfo, ...]

    @property
    def num_samples(self) -> int:
        return sum(s.num_sequences for s in self.shards)

    def shard_url(self, name: str) -> str:
        return storage.join(self.dataset_dir, f"{name}.tar")


def dataset_paths(path: str) -> tuple[str, str]:
    """(dataset directory, manifest path) for a dataset given as its directory or its manifest.jsonl path."""
    path = str(path).rstrip("/")
    if path.endswith(".jsonl"):
        return storage.dirname(path), path
    return path, storage.join(path, MANIFEST_NAME)


def parse_manifest_line(line: str) -> ShardInfo:
    """One manifest line -> `ShardInfo`; raises ValueError saying what is wrong with it (no location)."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg}): {line[:80]!r}") from None
    if not isinstance(entry, dict):
        raise ValueError("expected a JSON object with 'shard' and 'num_sequences'")
    shard, count = entry.get("shard"), entry.get("num_sequences")
    if not isinstance(shard, str) or not shard:
        raise ValueError(f"'shard' must be a non-empty string (tar basename), got {shard!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"'num_sequences' must be an integer >= 0, got {count!r}")
    return ShardInfo(shard.removesuffix(".tar"), count)


def parse_manifest(text: str, path: str) -> list[ShardInfo]:
    """Parse manifest lines; any bad line raises `ManifestError` naming `path` and the 1-based line number."""
    shards: list[ShardInfo] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            shard = parse_manifest_line(line)
        except ValueError as e:
            raise ManifestError(f"{path}:{lineno}: {e}") from None
        if shard.name in seen:
            raise ManifestError(f"{path}:{lineno}: shard {shard.name!r} is listed twice")
        seen.add(shard.name)
        shards.append(shard)
    if not shards:
        raise ManifestError(f"{path}: the manifest lists no shards")
    return shards


def read_manifest(path: str) -> Manifest:
    """Read the manifest of a dataset given as its directory or manifest path (local or s3://)."""
    dataset_dir, manifest_path = dataset_paths(path)
    try:
        text = storage.read_text(manifest_path)
    except (FileNotFoundError, IsADirectoryError):
        raise ManifestError(
            f"{manifest_path} does not exist; a dataset directory must hold {MANIFEST_NAME} (docs/formats.md §1)"
        ) from None
    except UnicodeDecodeError as e:
        raise ManifestError(
            f"{manifest_path} is not a text file (undecodable byte at offset {e.start}; corrupt?): re-run "
            "preprocessing to rewrite it"
        ) from None
    return Manifest(dataset_dir, manifest_path, tuple(parse_manifest(text, manifest_path)))
