"""Stream WebDataset samples out of a tar shard (a local file or a streaming S3 GET, never downloaded first).

A sample is the run of consecutive members sharing a key: the member path up to the first dot of its basename
(`abc123.lowdim.npz` -> key `abc123`, extension `lowdim.npz`). FORMATS.md §1.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import Any

from vla_foundry import storage


class ShardReadError(OSError):
    """A shard could not be opened or its tar stream broke part-way; names the shard and how far it got."""


def split_member_name(name: str) -> tuple[str, str]:
    """`dir/abc.lowdim.npz` -> (`dir/abc`, `lowdim.npz`); a name without a dot has an empty extension."""
    head, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), ext


def iter_tar_samples(url: str) -> Iterator[dict[str, Any]]:
    """Yield `{"__key__", "__url__", ext: bytes, ...}` per sample, in tar order.

    A tar error part-way raises `ShardReadError` after the complete samples before it were yielded.
    """
    # Storage failures (after their retries) propagate as StorageError naming the URL: they are not data problems.
    try:
        stream = storage.open_read(url)
    except FileNotFoundError:
        raise FileNotFoundError(f"shard {url} does not exist") from None
    sample: dict[str, Any] | None = None
    count = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = split_member_name(member.name)
                if ext.startswith("_") or key.startswith("__"):
                    continue
                f = tar.extractfile(member)
                data = f.read() if f is not None else b""
                if len(data) != member.size:
                    raise tarfile.ReadError(f"member {member.name} is truncated ({len(data)} of {member.size} bytes)")
                if sample is not None and sample["__key__"] != key:
                    yield sample
                    count += 1
                    sample = None
                if sample is None:
                    sample = {"__key__": key, "__url__": url}
                sample[ext] = data
    except storage.StorageError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        # The pending sample may be incomplete (its last member was cut): it is dropped with the error.
        raise ShardReadError(f"shard {url}: tar stream broke after {count} complete samples: {e}") from e
    finally:
        stream.close()
    if sample is not None:
        yield sample


def write_tar_shard(path: str, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    """Write samples `(key, {extension: bytes})` as a tar (local or s3://), members grouped by key.

    Member metadata is fixed (mtime 0, uid 0) so the same samples give byte-identical shards.
    """
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            if "." in key.rpartition("/")[2]:
                raise ValueError(f"sample key {key!r} must not contain a dot (the extension starts at the first dot)")
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                info.mtime = 0
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
    storage.write_bytes(path, buf.getvalue())
