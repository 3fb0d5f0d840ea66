"""One file API over local paths and `s3://` URLs.

S3 goes through boto3 only (no AWS CLI). The endpoint follows the standard `AWS_ENDPOINT_URL` /
`AWS_ENDPOINT_URL_S3` environment variables, so any S3-compatible server works (tests use a moto server on
loopback). Every S3 call is retried with exponential backoff; the last failure is raised as `StorageError`
naming the URL.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")

S3_PREFIX = "s3://"
# Attempts per S3 call (botocore's own retries come on top for throttling / connection errors).
S3_ATTEMPTS = int(os.environ.get("VLA_FOUNDRY_S3_ATTEMPTS", "4"))
S3_BACKOFF_S = float(os.environ.get("VLA_FOUNDRY_S3_BACKOFF_S", "0.5"))


class StorageError(OSError):
    """A storage operation failed after its retries; the message names the path or URL."""


def is_s3(path: str | os.PathLike) -> bool:
    return str(path).startswith(S3_PREFIX)


def split_s3(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> (`bucket`, `a/b`)."""
    if not is_s3(url):
        raise ValueError(f"not an s3:// URL: {url}")
    bucket, _, key = url[len(S3_PREFIX) :].partition("/")
    if not bucket:
        raise ValueError(f"s3 URL without a bucket: {url}")
    return bucket, key


def join(base: str | os.PathLike, *parts: str) -> str:
    """Join path parts for local paths and s3 URLs alike."""
    base = str(base)
    if is_s3(base):
        out = base.rstrip("/")
        for part in parts:
            out = f"{out}/{part.strip('/')}"
        return out
    return os.path.join(base, *parts)


def dirname(path: str) -> str:
    if is_s3(path):
        return path.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(path)


def basename(path: str) -> str:
    return str(path).rstrip("/").rsplit("/", 1)[-1]


_client_lock = threading.Lock()
_clients: dict[tuple[int, bool, str | None], Any] = {}


def s3_client(unsigned: bool = False) -> Any:
    """A boto3 S3 client per (process, signing mode, endpoint); boto3 clients are thread-safe."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    key = (os.getpid(), unsigned, endpoint)
    with _client_lock:
        if key not in _clients:
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config

            config = Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
                signature_version=UNSIGNED if unsigned else None,
            )
            _clients[key] = boto3.client("s3", endpoint_url=endpoint, config=config)
        return _clients[key]


def _is_missing(error: Exception) -> bool:
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return False
    code = str(response.get("Error", {}).get("Code", ""))
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


def with_retries(url: str, action: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Retry an S3 call with exponential backoff; raise FileNotFoundError at once for a missing object."""

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> T:
            last: Exception | None = None
            for attempt in range(S3_ATTEMPTS):
                try:
                    return fn(*args, **kwargs)
                except FileNotFoundError:
                    raise
                except Exception as e:  # botocore raises many unrelated types; all are retried
                    if _is_missing(e):
                        raise FileNotFoundError(f"{url} does not exist") from e
                    last = e
                    if attempt + 1 < S3_ATTEMPTS:
                        time.sleep(S3_BACKOFF_S * 2**attempt)
            raise StorageError(f"{action} {url} failed after {S3_ATTEMPTS} attempts: {last}") from last

        return run

    return decorate


def exists(path: str | os.PathLike) -> bool:
    path = str(path)
    if not is_s3(path):
        return os.path.exists(path)
    bucket, key = split_s3(path)

    @with_retries(path, "checking")
    def head() -> bool:
        client = s3_client()
        try:
            client.head_object(Bucket=bucket, Key=key)
            return True
        except Exception as e:
            if not _is_missing(e):
                raise
        # Not an object: it may be a "directory" prefix.
        listing = client.list_objects_v2(Bucket=bucket, Prefix=key.rstrip("/") + "/", MaxKeys=1)
        return listing.get("KeyCount", 0) > 0

    return head()


def size(path: str | os.PathLike) -> int:
    path = str(path)
    if not is_s3(path):
        return os.path.getsize(path)
    bucket, key = split_s3(path)
    head = with_retries(path, "reading the size of")(lambda: s3_client().head_object(Bucket=bucket, Key=key))
    return int(head()["ContentLength"])


def read_bytes(path: str | os.PathLike) -> bytes:
    path = str(path)
    if not is_s3(path):
        with open(path, "rb") as f:
            return f.read()
    bucket, key = split_s3(path)
    get = with_retries(path, "reading")(lambda: s3_client().get_object(Bucket=bucket, Key=key)["Body"].read())
    return get()


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    return read_bytes(path).decode(encoding)


def open_read(path: str | os.PathLike) -> IO[bytes]:
    """A binary stream: a local file, or a streaming S3 GET (the object is not downloaded first).

    An S3 stream that breaks part-way is reopened at the current offset (a ranged GET), with the same retries.
    """
    path = str(path)
    if not is_s3(path):
        return open(path, "rb")
    return S3StreamReader(path)


class S3StreamReader(io.RawIOBase):
    """Sequential reader over a streaming S3 GET that resumes with a ranged GET after a broken connection."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.bucket, self.key = split_s3(url)
        self.offset = 0
        self.body = self._open()

    def _open(self) -> Any:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self.key}
        if self.offset:
            kwargs["Range"] = f"bytes={self.offset}-"
        return with_retries(self.url, "opening")(lambda: s3_client().get_object(**kwargs)["Body"])()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        for attempt in range(S3_ATTEMPTS):
            try:
                data = self.body.read(None if size is None or size < 0 else size)
                self.offset += len(data)
                return data
            except Exception as e:  # connection reset / read timeout part-way: reopen where we were
                if attempt + 1 == S3_ATTEMPTS:
                    raise StorageError(
                        f"reading {self.url} at byte {self.offset} failed after {S3_ATTEMPTS} attempts: {e}"
                    ) from e
                time.sleep(S3_BACKOFF_S * 2**attempt)
                self.body = self._open()
        raise AssertionError("unreachable")

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        body = getattr(self, "body", None)
        if body is not None:
            body.close()
        super().close()


class S3RangeReader(io.RawIOBase):
    """A seekable reader over an S3 object: each read is one ranged GET (for formats that read a few blocks of a
    large file, e.g. HDF5 metadata, without downloading it)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.bucket, self.key = split_s3(url)
        self.offset = 0
        self.length = size(url)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.offset

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.offset, io.SEEK_END: self.length}[whence]
        self.offset = max(0, base + offset)
        return self.offset

    def readinto(self, buffer: Any) -> int:
        end = min(self.offset + len(buffer), self.length)
        if end <= self.offset:
            return 0
        span = f"bytes={self.offset}-{end - 1}"
        get = with_retries(self.url, "reading")(
            lambda: s3_client().get_object(Bucket=self.bucket, Key=self.key, Range=span)["Body"].read()
        )
        data = get()
        buffer[: len(data)] = data
        self.offset += len(data)
        return len(data)


def open_seekable(path: str | os.PathLike) -> IO[bytes]:
    """A seekable binary stream: a local file, or ranged GETs of an S3 object (nothing downloaded up front)."""
    path = str(path)
    if not is_s3(path):
        return open(path, "rb")
    return io.BufferedReader(S3RangeReader(path), buffer_size=64 * 1024)


def _read_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# Read once: os.umask can only be read by setting it, which is not safe while other threads create files.
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_local_path(path: str | os.PathLike) -> Iterator[str]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block succeeds, removed when it
    fails, so a crash never leaves half a file under the final name. The file gets the umask's usual permissions
    (not mkstemp's owner-only ones)."""
    path = str(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.path.basename(path)}-", dir=parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a whole file; local writes go to a temporary name first and are renamed (atomic)."""
    path = str(path)
    if not is_s3(path):
        with atomic_local_path(path) as tmp, open(tmp, "wb") as f:
            f.write(data)
        return
    bucket, key = split_s3(path)
    put = with_retries(path, "writing")(lambda: s3_client().put_object(Bucket=bucket, Key=key, Body=data))
    put()


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    write_bytes(path, text.encode(encoding))


def upload_file(local_path: str | os.PathLike, url: str) -> None:
    """Upload a local file to s3 (multipart for large files) and verify the remote size."""
    bucket, key = split_s3(url)
    local_size = os.path.getsize(local_path)

    @with_retries(url, "uploading to")
    def upload() -> None:
        s3_client().upload_file(str(local_path), bucket, key)
        remote_size = int(s3_client().head_object(Bucket=bucket, Key=key)["ContentLength"])
        if remote_size != local_size:
            raise StorageError(f"size mismatch after upload: local {local_size} bytes, remote {remote_size} bytes")

    upload()


def download_file(url: str, local_path: str | os.PathLike) -> None:
    """Download an s3 object (or copy a local file) to `local_path` via a temporary name."""
    local_path = str(local_path)
    os.makedirs(os.path.dirname(os.path.abspath(local_path)), exist_ok=True)
    tmp = f"{local_path}.tmp-{os.getpid()}"
    if not is_s3(url):
        shutil.copyfile(url, tmp)
        os.replace(tmp, local_path)
        return
    bucket, key = split_s3(url)

    @with_retries(url, "downloading")
    def download() -> None:
        s3_client().download_file(bucket, key, tmp)
        os.replace(tmp, local_path)

    download()


@contextlib.contextmanager
def local_copy(path: str | os.PathLike) -> Iterator[str]:
    """A local path holding `path`'s bytes: the file itself when local, else a temporary download removed after."""
    path = str(path)
    if not is_s3(path):
        yield path
        return
    directory = tempfile.mkdtemp(prefix="vla_foundry_copy_")
    try:
        local = os.path.join(directory, basename(path))
        download_file(path, local)
        yield local
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def list_files(prefix: str | os.PathLike, recursive: bool = True) -> list[str]:
    """Files under a directory / prefix, as full paths or URLs, sorted."""
    prefix = str(prefix)
    if not is_s3(prefix):
        root = Path(prefix)
        if not root.exists():
            return []
        pattern = "**/*" if recursive else "*"
        return sorted(str(p) for p in root.glob(pattern) if p.is_file())
    return sorted(url for url, _ in list_s3_objects(prefix, recursive))


def list_s3_objects(prefix: str, recursive: bool = True) -> Iterator[tuple[str, int]]:
    """(URL, size) of every object under an s3 prefix (treated as a directory)."""
    bucket, key = split_s3(prefix)
    key = key.rstrip("/") + "/" if key else ""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key}
    if not recursive:
        kwargs["Delimiter"] = "/"
    token: str | None = None
    while True:
        if token:
            kwargs["ContinuationToken"] = token
        page = with_retries(prefix, "listing")(lambda: s3_client().list_objects_v2(**kwargs))()
        for obj in page.get("Contents", []):
            yield f"s3://{bucket}/{obj['Key']}", int(obj["Size"])
        if not page.get("IsTruncated"):
            return
        token = page.get("NextContinuationToken")


def remove(path: str | os.PathLike) -> None:
    """Delete a file or a whole directory / prefix; a missing path is not an error."""
    path = str(path)
    if not is_s3(path):
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.unlink(path)
        return
    bucket, key = split_s3(path)
    urls = [u for u, _ in list_s3_objects(path)] if not key or exists(path) else []
    keys = [split_s3(u)[1] for u in urls]
    if key and key not in keys:
        keys.append(key)
    for i in range(0, len(keys), 1000):
        batch = {"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True}
        with_retries(path, "deleting")(lambda b=batch: s3_client().delete_objects(Bucket=bucket, Delete=b))()


def makedirs(path: str | os.PathLike) -> None:
    """Create a local directory (s3 has no directories: a no-op there)."""
    if not is_s3(path):
        os.makedirs(path, exist_ok=True)
