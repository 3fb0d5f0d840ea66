"""Stream WebDataset samples out of a tar shard (a local file or a streaming S3 GET, never downloaded first).

A sample is the run of consecutive members sharing a key: the member path up to the first dot of its basename
(`abc123.lowdim.npz` -> key `abc123`, extension `lowdim.npz`). See docs/formats.md §1.

Writing goes through `webdataset.TarWriter` (`sample_bytes`). Reading keeps its own small reader rather than
`webdataset.tariterators`, for what that one does not do: it is about 5x cheaper per member (tarfile's stream mode
underneath webdataset; measured on 40,000 small members), it reads through `vla_foundry.storage` (a streaming S3
GET with the project's retries and endpoint), and a broken stream raises `ShardReadError` saying how many complete
samples came before the break, which the loader counts against the manifest instead of skipping silently.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from typing import IO, Any

from vla_foundry import storage


class ShardReadError(OSError):
    """A shard could not be opened or its tar stream broke part-way; names the shard and how far it got."""


def split_member_name(name: str) -> tuple[str, str]:
    """`dir/abc.lowdim.npz` -> (`dir/abc`, `lowdim.npz`); a name without a dot has an empty extension."""
    head, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), ext


BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
# Regular-file type flags ("0", NUL from old tars, "7" contiguous); other members (directories, links) are skipped.
FILE_TYPES = (b"0", b"\0", b"7")


class TarFormatError(ValueError):
    """The bytes are not a well-formed tar stream (bad header checksum, truncated member)."""


def _read_exact(stream: IO[bytes], n: int) -> bytes:
    data = stream.read(n)
    if len(data) == n or not data:  # the common case: one read from the buffered stream
        return data
    chunks = [data]
    n -= len(data)
    while n > 0:
        data = stream.read(n)
        if not data:
            break
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def _number(field: bytes) -> int:
    """A tar numeric field: octal text, or GNU base-256 when the high bit of the first byte is set."""
    if field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _pax_path(data: bytes) -> bytes | None:
    """The `path` record of a PAX extended header (records are `<len> <key>=<value>\\n`)."""
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        if key == b"path":
            return value
        pos += length
    return None


def iter_tar_members(stream: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the regular files of an uncompressed tar stream, in order.

    A small reader instead of `tarfile`: it is several times cheaper per member, which matters for shards of many
    small files. It understands ustar prefixes, GNU long names and PAX `path` records, checks each header's
    checksum, and raises `TarFormatError` for a truncated member. A stream that simply ends (no end-of-archive
    blocks) ends the iteration; the loader compares the sample count with the manifest to catch that.
    """
    long_name: bytes | None = None
    while True:
        header = _read_exact(stream, BLOCK)
        if not header or header == ZERO_BLOCK:
            return
        if len(header) < BLOCK:
            raise TarFormatError(f"truncated header ({len(header)} of {BLOCK} bytes)")
        try:
            stored, size = _number(header[148:156]), _number(header[124:136])
        except ValueError:
            raise TarFormatError("bad header checksum (not a tar, or corrupt): unreadable numeric fields") from None
        unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:])
        if stored != unsigned:
            signed = sum(b - 256 if b > 127 else b for b in header[:148] + header[156:]) + 8 * 32
            if stored != signed:
                raise TarFormatError("bad header checksum (not a tar, or corrupt)")
        kind = header[156:157]
        data = _read_exact(stream, size)
        if len(data) < size:
            raise TarFormatError(f"member truncated ({len(data)} of {size} bytes)")
        if size % BLOCK:
            _read_exact(stream, BLOCK - size % BLOCK)  # the member's zero padding to a whole block
        if kind == b"L":  # GNU long name: the data is the next member's name
            long_name = data.split(b"\0", 1)[0]
            continue
        if kind == b"x":  # PAX extended header for the next member
            long_name = _pax_path(data) or long_name
            continue
        if kind == b"g" or kind not in FILE_TYPES:
            long_name = None
            continue
        name = header[:100].split(b"\0", 1)[0]
        if header[257:262] == b"ustar":
            prefix = header[345:500].split(b"\0", 1)[0]
            if prefix:
                name = prefix + b"/" + name
        if long_name is not None:
            name, long_name = long_name, None
        yield name.decode("utf-8"), data


def iter_tar_samples(url: str) -> Iterator[dict[str, Any]]:
    """Yield `{"__key__", "__url__", ext: bytes, ...}` per sample, in tar order (plain or gzip-compressed tars).

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
        if not hasattr(stream, "peek"):
            stream = io.BufferedReader(stream, buffer_size=1 << 20)
        if stream.peek(2)[:2] == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=stream)
        for name, data in iter_tar_members(stream):
            key, ext = split_member_name(name)
            if ext.startswith("_") or key.startswith("__"):
                continue
            if sample is not None and sample["__key__"] != key:
                yield sample
                count += 1
                sample = None
            if sample is None:
                sample = {"__key__": key, "__url__": url}
            sample[ext] = data
    except storage.StorageError:
        raise
    except (TarFormatError, EOFError, OSError, ValueError) as e:
        # The pending sample may be incomplete (its last member was cut): it is dropped with the error.
        raise ShardReadError(f"shard {url}: tar stream broke after {count} complete samples: {e}") from e
    finally:
        stream.close()
    if sample is not None:
        yield sample


def sample_bytes(key: str, members: dict[str, bytes]) -> bytes:
    """One sample's tar members (`KEY.suffix`, sorted by suffix) with fixed metadata, without end-of-archive blocks.

    The project's one tar writer: `webdataset.TarWriter` writes the members in POSIX pax format (a name longer
    than 100 bytes, or not ASCII, gets a pax `path` record) with mtime 0, uid/gid 0, no user or group name and
    mode 0644, so the same sample always gives the same bytes. A tar member is a self-contained run of 512-byte
    blocks, so shards and spools are concatenations of these byte strings plus `END_OF_ARCHIVE`.
    """
    import webdataset

    if "." in key.rpartition("/")[2]:
        raise ValueError(f"sample key {key!r} must not contain a dot (the extension starts at the first dot)")
    buf = io.BytesIO()
    writer = webdataset.TarWriter(buf, user="", group="", mode=0o644, mtime=0, encoder=False)
    writer.write({"__key__": key, **members})
    # The archive offset after the members; closing adds the end-of-archive blocks and record padding, cut off here.
    end = writer.tarstream.offset
    writer.close()
    return buf.getvalue()[:end]


END_OF_ARCHIVE = ZERO_BLOCK * 2


def write_tar_shard(path: str, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    """Write samples `(key, {extension: bytes})` as a tar (local or s3://), members grouped by key.

    Member metadata is fixed (see `sample_bytes`) so the same samples give byte-identical shards.
    """
    storage.write_bytes(path, b"".join(sample_bytes(key, members) for key, members in samples) + END_OF_ARCHIVE)
