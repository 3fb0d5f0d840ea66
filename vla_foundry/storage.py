"""One file API over local paths, `s3://` URLs and `hf://` Hugging Face Hub repos.

S3 goes through boto3 only (no AWS CLI). The endpoint follows the standard `AWS_ENDPOINT_URL` /
`AWS_ENDPOINT_URL_S3` environment variables, so any S3-compatible server works (tests use a moto server on
loopback). Every S3 call is retried with exponential backoff; the last failure is raised as `StorageError`
naming the URL.

`hf://org/name[@revision][/path]` names a file or folder of a model repo, `hf://datasets/org/name[@revision][/path]`
one of a dataset repo. Hub paths are read-only here (publish with `python -m vla_foundry.hub push`); every file
comes through the `huggingface_hub` cache, downloaded when first read (an interrupted download resumes there).
`HF_HUB_OFFLINE`, `HF_HOME` / `HF_HUB_CACHE`, `HF_TOKEN` and `HF_ENDPOINT` are read when a path is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import os
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")

S3_PREFIX = "s3://"
HF_PREFIX = "hf://"
# Attempts per S3 call (botocore's own retries come on top for throttling / connection errors).
S3_ATTEMPTS = int(os.environ.get("VLA_FOUNDRY_S3_ATTEMPTS", "4"))
S3_BACKOFF_S = float(os.environ.get("VLA_FOUNDRY_S3_BACKOFF_S", "0.5"))


class StorageError(OSError):
    """A storage operation failed after its retries; the message names the path or URL."""


def is_s3(path: str | os.PathLike) -> bool:
    return str(path).startswith(S3_PREFIX)


def is_hf(path: str | os.PathLike) -> bool:
    return str(path).startswith(HF_PREFIX)


def is_remote(path: str | os.PathLike) -> bool:
    """An `s3://` or `hf://` URL (not a path on this machine's file system)."""
    return is_s3(path) or is_hf(path)


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
    if is_remote(base):
        out = base.rstrip("/")
        for part in parts:
            out = f"{out}/{part.strip('/')}"
        return out
    return os.path.join(base, *parts)


def dirname(path: str) -> str:
    if is_remote(path):
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
    if is_hf(path):
        return _hf_exists(path)
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
    if is_hf(path):
        return _hf_size(path)
    if not is_s3(path):
        return os.path.getsize(path)
    bucket, key = split_s3(path)
    head = with_retries(path, "reading the size of")(lambda: s3_client().head_object(Bucket=bucket, Key=key))
    return int(head()["ContentLength"])


def read_bytes(path: str | os.PathLike) -> bytes:
    path = str(path)
    if not is_s3(path):
        with open(hf_file(path) if is_hf(path) else path, "rb") as f:
            return f.read()
    bucket, key = split_s3(path)
    get = with_retries(path, "reading")(lambda: s3_client().get_object(Bucket=bucket, Key=key)["Body"].read())
    return get()


def read_text(path: str | os.PathLike, encoding: str = "utf-8") -> str:
    return read_bytes(path).decode(encoding)


def open_read(path: str | os.PathLike) -> IO[bytes]:
    """A binary stream: a local file, or a streaming S3 GET (the object is not downloaded first).

    An S3 stream that breaks part-way is reopened at the current offset (a ranged GET), with the same retries. An
    hf:// file is downloaded into the Hub cache (once) and read from there.
    """
    path = str(path)
    if not is_s3(path):
        return open(hf_file(path) if is_hf(path) else path, "rb")
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
    """A seekable binary stream: a local file, ranged GETs of an S3 object (nothing downloaded up front), or an
    hf:// file from the Hub cache."""
    path = str(path)
    if not is_s3(path):
        return open(hf_file(path) if is_hf(path) else path, "rb")
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
    _refuse_hf_write(path)
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
    _refuse_hf_write(url)
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
        shutil.copyfile(hf_file(url) if is_hf(url) else url, tmp)
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
    """A local path holding `path`'s bytes: the file itself when local, the Hub cache's copy of an hf:// file, else
    a temporary download removed after."""
    path = str(path)
    if not is_s3(path):
        yield hf_file(path) if is_hf(path) else path
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
    if is_hf(prefix):
        return _hf_list(prefix, recursive)
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
    _refuse_hf_write(path)
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
    _refuse_hf_write(str(path))
    if not is_s3(path):
        os.makedirs(path, exist_ok=True)


# ------------------------------------------------------------------------------------------- hf://

HF_TRUE = ("1", "ON", "YES", "TRUE")
# Repo types spelled in a URL's first segment (`hf://datasets/org/name`); anything else is a model repo.
_HF_TYPE_PREFIXES = {"datasets": "dataset", "models": "model"}
HF_READ_ONLY = "hf:// paths are read-only here: publish a run with `python -m vla_foundry.hub push`, a dataset with "
HF_READ_ONLY += "`python -m vla_foundry.hub push_dataset`"


@dataclasses.dataclass(frozen=True)
class HfPath:
    """A parsed `hf://` URL: repo, its type, an optional revision (branch, tag or commit) and a path inside it."""

    repo_id: str
    repo_type: str = "model"
    revision: str | None = None
    path: str = ""

    @property
    def repo(self) -> str:
        """The repo as written in a URL, without the path: `org/name`, `datasets/org/name`, `org/name@v1`."""
        prefix = "datasets/" if self.repo_type == "dataset" else ""
        revision = f"@{urllib.parse.quote(self.revision, safe='')}" if self.revision else ""
        return f"{prefix}{self.repo_id}{revision}"

    def url(self, path: str | None = None) -> str:
        path = self.path if path is None else path
        return f"{HF_PREFIX}{self.repo}" + (f"/{path}" if path else "")


def parse_hf(url: str) -> HfPath:
    """`hf://org/name[@revision][/path]` (model repo) or `hf://datasets/org/name[@revision][/path]` (dataset repo).
    A revision holding `/` (e.g. `refs/pr/1`) is written URL-encoded (`refs%2Fpr%2F1`)."""
    if not is_hf(url):
        raise ValueError(f"not an hf:// URL: {url}")
    parts = [p for p in url[len(HF_PREFIX) :].split("/") if p]
    repo_type = "model"
    if parts and parts[0] in _HF_TYPE_PREFIXES:
        repo_type = _HF_TYPE_PREFIXES[parts.pop(0)]
    if len(parts) < 2:
        raise ValueError(
            f"{url} does not name a Hub repo: write hf://org/name[@revision][/path] for a model repo or "
            "hf://datasets/org/name[@revision][/path] for a dataset repo"
        )
    name, _, revision = parts[1].partition("@")
    return HfPath(f"{parts[0]}/{name}", repo_type, urllib.parse.unquote(revision) or None, "/".join(parts[2:]))


@dataclasses.dataclass(frozen=True)
class HfSettings:
    """The Hub environment as it is when a path is used (not when huggingface_hub was imported)."""

    cache_dir: str
    offline: bool
    token: str | None
    endpoint: str | None


def hf_settings() -> HfSettings:
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_CACHE"):
        cache = os.environ["HF_HUB_CACHE"]
    elif os.environ.get("HF_HOME"):
        cache = os.path.join(os.environ["HF_HOME"], "hub")
    else:
        cache = constants.HF_HUB_CACHE
    # The library reads HF_HUB_OFFLINE once, at import; a later setting is honoured here too.
    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in HF_TRUE
    return HfSettings(
        os.path.expanduser(cache), offline, os.environ.get("HF_TOKEN") or None, os.environ.get("HF_ENDPOINT") or None
    )


def _refuse_hf_write(path: str) -> None:
    if is_hf(path):
        raise StorageError(f"cannot write {path}: {HF_READ_ONLY}")


def _hf_unreachable(ref: HfPath, settings: HfSettings, cause: object) -> StorageError:
    why = "HF_HUB_OFFLINE is set" if settings.offline else f"the Hub cannot be reached ({type(cause).__name__})"
    return StorageError(
        f"hf://{ref.repo}: {why} and the repo is not in the Hub cache {settings.cache_dir}; run once with the Hub "
        "reachable (HF_HUB_OFFLINE unset) to cache it, or point HF_HOME / HF_HUB_CACHE at a cache that holds it"
    )


def hf_error(ref: HfPath, settings: HfSettings, error: Exception) -> OSError:
    """One line for a Hub failure, naming the repo, revision or file (a `FileNotFoundError` for a missing file)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    status = getattr(getattr(error, "response", None), "status_code", None)
    kind = "dataset repo" if ref.repo_type == "dataset" else "model repo"
    if isinstance(error, GatedRepoError) or status == 403:
        return StorageError(
            f"hf://{ref.repo}: access refused (gated or private {kind}); accept its terms on the Hub and set HF_TOKEN "
            "to a token that may read it"
        )
    if status == 401 and not isinstance(error, RepositoryNotFoundError) and settings.token:
        return StorageError(f"hf://{ref.repo}: the Hub refused HF_TOKEN (invalid credentials); set a valid token")
    if isinstance(error, RepositoryNotFoundError) or status == 401:
        token = "the HF_TOKEN given is not accepted for it" if settings.token else "no HF_TOKEN is set"
        return StorageError(
            f"hf://{ref.repo}: no such {kind} on the Hub, or it is private and {token} (check the name; "
            "hf://datasets/org/name for a dataset repo)"
        )
    if isinstance(error, RevisionNotFoundError):
        return StorageError(f"hf://{ref.repo}: revision {ref.revision or 'main'!r} does not exist in {ref.repo_id}")
    if isinstance(error, LocalEntryNotFoundError):
        if _hf_cached_snapshot(ref, settings) is None:
            return _hf_unreachable(ref, settings, error)
        return FileNotFoundError(
            f"{ref.url()} is not in the Hub cache {settings.cache_dir} and the Hub cannot be used "
            f"({'HF_HUB_OFFLINE is set' if settings.offline else 'unreachable'}); fetch it with the Hub reachable"
        )
    if isinstance(error, EntryNotFoundError):
        return FileNotFoundError(f"{ref.url()} does not exist: {ref.repo} has no file {ref.path!r}")
    if isinstance(error, HfHubHTTPError):
        return StorageError(f"hf://{ref.repo}: the Hub answered HTTP {status} ({str(error).splitlines()[0][:200]})")
    return _hf_unreachable(ref, settings, error)


def _hf_cached_snapshot(ref: HfPath, settings: HfSettings) -> str | None:
    """The cache's snapshot folder of the repo at its revision (through `refs/<revision>` unless a commit hash)."""
    from huggingface_hub.file_download import REGEX_COMMIT_HASH, repo_folder_name

    folder = os.path.join(settings.cache_dir, repo_folder_name(repo_id=ref.repo_id, repo_type=ref.repo_type))
    revision = ref.revision or "main"
    commit = revision if REGEX_COMMIT_HASH.fullmatch(revision) else None
    if commit is None:
        ref_file = os.path.join(folder, "refs", revision)
        if not os.path.isfile(ref_file):
            return None
        with open(ref_file) as f:
            commit = f.read().strip()
    snapshot = os.path.join(folder, "snapshots", commit)
    return snapshot if os.path.isdir(snapshot) else None


_hf_listings: dict[tuple, dict[str, int]] = {}
_hf_lock = threading.Lock()


def hf_listing(ref: HfPath) -> dict[str, int]:
    """{path in repo: size} of every file of the repo at its revision: from the Hub (once per process), or from
    the cache when the Hub cannot be used (the cached tree listing, else the files of the cached snapshot)."""
    settings = hf_settings()
    key = (ref.repo_type, ref.repo_id, ref.revision, settings)
    with _hf_lock:
        if key in _hf_listings:
            return _hf_listings[key]
    listing = None if settings.offline else _hf_remote_listing(ref, settings)
    if listing is None:
        listing = _hf_cached_listing(ref, settings)
    with _hf_lock:
        _hf_listings[key] = listing
    return listing


def _hf_remote_listing(ref: HfPath, settings: HfSettings) -> dict[str, int] | None:
    """The Hub's listing, or None when the Hub cannot be reached (the cache is used then)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=settings.endpoint, token=settings.token)
    try:
        tree = api.list_repo_tree(ref.repo_id, recursive=True, revision=ref.revision, repo_type=ref.repo_type)
        return {f.path: int(f.size) for f in tree if isinstance(f, RepoFile)}
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        if isinstance(e, RepositoryNotFoundError) or (status is not None and status < 500):
            raise hf_error(ref, settings, e) from None
        return None  # the Hub is down: the cache may still serve
    except Exception:  # offline mode, refused connection, timeout, proxy: the cache may still serve
        return None


def _hf_cached_listing(ref: HfPath, settings: HfSettings) -> dict[str, int]:
    snapshot = _hf_cached_snapshot(ref, settings)
    if snapshot is None:
        raise _hf_unreachable(ref, settings, "offline")
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        tree = get_cached_repo_tree(
            ref.repo_id, repo_type=ref.repo_type, revision=ref.revision, cache_dir=settings.cache_dir
        )
        return {f.path: int(f.size) for f in tree}
    except CachedRepoTreeNotFoundError:
        pass
    out = {}
    for root, _, names in os.walk(snapshot):
        for name in names:
            local = os.path.join(root, name)
            out[os.path.relpath(local, snapshot).replace(os.sep, "/")] = os.path.getsize(local)
    return out


def hf_file(url: str) -> str:
    """The local path of an hf:// file in the Hub cache, downloaded first when not cached (resumed when a previous
    download was interrupted). Missing file, repo, revision, refused access, unreachable Hub: one-line errors."""
    from huggingface_hub import hf_hub_download

    ref = parse_hf(url)
    if not ref.path:
        raise IsADirectoryError(f"{url} is a whole repo, not a file in it")
    settings = hf_settings()
    try:
        return hf_hub_download(
            ref.repo_id,
            ref.path,
            repo_type=ref.repo_type,
            revision=ref.revision,
            cache_dir=settings.cache_dir,
            token=settings.token,
            endpoint=settings.endpoint,
            local_files_only=settings.offline,
        )
    except Exception as e:  # the library raises many types; each maps to one line naming what failed
        raise hf_error(ref, settings, e) from None


def _hf_under(ref: HfPath) -> dict[str, int]:
    """{path relative to ref.path: size} of the files below ref.path."""
    prefix = ref.path.rstrip("/") + "/" if ref.path else ""
    return {p[len(prefix) :]: n for p, n in hf_listing(ref).items() if p.startswith(prefix)}


def _hf_exists(url: str) -> bool:
    ref = parse_hf(url)
    listing = hf_listing(ref)
    return not ref.path or ref.path.rstrip("/") in listing or bool(_hf_under(ref))


def _hf_size(url: str) -> int:
    ref = parse_hf(url)
    listing = hf_listing(ref)
    if ref.path in listing:
        return listing[ref.path]
    raise FileNotFoundError(f"{url} does not exist: {ref.repo} has no file {ref.path!r}")


def _hf_list(prefix: str, recursive: bool) -> list[str]:
    ref = parse_hf(prefix)
    rels = [rel for rel in _hf_under(ref) if recursive or "/" not in rel]
    return sorted(join(ref.url(), rel) for rel in rels)


def hf_local_dir(url: str, select: Callable[[str], bool] | None = None) -> str:
    """A local folder in the Hub cache mirroring the hf:// folder `url`, holding (downloaded when missing) its files
    for which `select(path relative to url)` is true (all files without `select`)."""
    ref = parse_hf(url)
    rels = [rel for rel in _hf_under(ref) if select is None or select(rel)]
    if not rels:
        raise FileNotFoundError(f"{url} holds no files{' that are needed' if select else ''}")
    local = ""
    for rel in sorted(rels):
        local = hf_file(ref.url(join(ref.path, rel) if ref.path else rel))
    # Every file lands in the same snapshot folder: strip the last one's relative path to get the folder.
    return local[: -len(rel)].rstrip("/" + os.sep) if local.endswith(rel) else os.path.dirname(local)


def local_run(path: str) -> str:
    """A run path that the local code reads: local and s3:// paths as they are; an hf:// run (or a checkpoint or
    file inside one) fetched into the Hub cache, only what inference and weight loading need: the run's top-level
    files (configs, normaliser, stats, exported `model.safetensors` / `ema.safetensors`, metadata) and, for a path
    inside the run, the files under it (a run pushed without exported weights: its checkpoints). Returns the same
    place in the cache snapshot."""
    path = str(path).rstrip("/")
    if not is_hf(path):
        return path
    ref = parse_hf(path)
    root = HfPath(ref.repo_id, ref.repo_type, ref.revision)
    files = hf_listing(root)
    if ref.path in files:
        return hf_file(path)
    if ref.path and not any(p.startswith(ref.path + "/") for p in files):
        raise FileNotFoundError(f"{path} does not exist: {ref.repo} has no file or folder {ref.path!r}")
    exported = any(p.endswith(".safetensors") and "/" not in p for p in files)
    inside = ref.path.rstrip("/") + "/" if ref.path else ("" if exported else "checkpoints/")

    def needed(rel: str) -> bool:
        return "/" not in rel or bool(inside and rel.startswith(inside))

    snapshot = hf_local_dir(root.url(), needed)
    return os.path.join(snapshot, *ref.path.split("/")) if ref.path else snapshot
