"""Background upload of a run directory to s3 that never holds up a run.

The remote copy of a run lives under `<remote_sync>/<run name>/` (`run_remote_url`). After each complete
checkpoint `RemoteSync.start()` queues a pass; one background thread uploads the files that are new or changed
since their last verified upload (size checked after each upload). Checkpoint directories are uploaded only once
their `index.json` exists, and the index goes last, so a remote checkpoint is complete exactly when its index is
there.

Every pass has a deadline (`timeout_s`) and bounded retries; after a file fails all its attempts the pass stops
(the remote is taken as unreachable), so a dead endpoint costs one bounded pass per checkpoint however many files
are waiting. Requests time out within half the deadline, so a hung endpoint (connects, never answers) cannot hold
a pass, the final listing or the process exit past it. Failures are summarised in one line per pass. `finish()` runs a last pass, checks the remote listing
and raises `RemoteSyncError` naming what is missing; `abandon()` (an exception or SIGTERM ended the run) flushes
what it can within the deadline and prints what is missing.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from vla_foundry import storage


class RemoteSyncError(RuntimeError):
    """The remote copy of the run dir is incomplete; the message lists the files."""


def run_remote_url(remote_sync: str, run_dir: str) -> str:
    """`<remote_sync>/<run name>`: each run has its own prefix, so two runs never overwrite each other."""
    return storage.join(remote_sync, os.path.basename(os.path.normpath(run_dir)))


def _is_temporary(name: str) -> bool:
    base = os.path.basename(name)
    return base.startswith(".tmp-") or ".tmp-" in base or base.endswith(".tmp")


def local_files(local_dir: str) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of the files to mirror: no temporary files, and no checkpoint directory
    whose save has not finished (no index.json yet)."""
    out = {}
    for root, dirs, names in os.walk(local_dir):
        rel_root = os.path.relpath(root, local_dir).replace(os.sep, "/")
        parts = rel_root.split("/")
        if len(parts) == 2 and parts[0] == "checkpoints" and "index.json" not in names:
            dirs[:] = []
            continue
        for name in names:
            if _is_temporary(name):
                continue
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            out[os.path.relpath(path, local_dir).replace(os.sep, "/")] = (st.st_size, st.st_mtime_ns)
    return out


def _upload_order(rel: str) -> tuple[int, str]:
    # A checkpoint's index goes after its other files: its presence on the remote means the checkpoint is whole.
    return (1 if rel.endswith("/index.json") else 0, rel)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200] if text else ''}"


class RemoteSync:
    """Mirror `local_dir` to `remote_url` (a run's own s3 prefix) from one background thread."""

    def __init__(
        self,
        local_dir: str,
        remote_url: str,
        timeout_s: float = 300.0,
        attempts: int = 3,
        backoff_s: float = 1.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if not storage.is_s3(remote_url):
            raise ValueError(f"remote_sync must be an s3:// URL, got {remote_url!r}")
        self.local_dir = local_dir
        self.remote_url = remote_url.rstrip("/")
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        # Files whose (size, mtime) were verified on the remote.
        self.uploaded: dict[str, tuple[int, int]] = {}
        self.failed: dict[str, str] = {}
        self.passes = 0
        self._deletes: list[str] = []
        self._queued = False
        self._busy = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        # Set by finish(): no pass runs past this moment (monotonic clock).
        self._not_after: float | None = None
        # What the last finish() found missing on the remote.
        self.last_missing: list[str] = []

    # --- s3 calls with short timeouts and no hidden retry loops: this class bounds the attempts itself.
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
            # An endpoint that accepts the connection and never answers (a hung or stopped server) costs one read
            # timeout per request: it must stay well inside the deadline, never above it.
            connect = max(1.0, min(10.0, self.timeout_s / 4))
            read = max(1.0, min(60.0, self.timeout_s / 2))
            config = Config(retries={"max_attempts": 1}, connect_timeout=connect, read_timeout=read)
            self._client = boto3.client("s3", endpoint_url=endpoint, config=config)
        return self._client

    def _upload_file(self, local: str, bucket: str, key: str) -> None:
        from boto3.s3.transfer import TransferConfig

        # In the calling (daemon) thread: s3transfer's own worker threads are joined at interpreter exit, so a
        # request hung on a dead endpoint would hold the process long after the deadline.
        self.client().upload_file(local, bucket, key, Config=TransferConfig(use_threads=False))

    def remote_path(self, rel: str) -> str:
        return f"{self.remote_url}/{rel}"

    def _remote_listing(self, prefix: str = "") -> dict[str, int]:
        """{relative path: size} of the remote copy (or of `prefix` below it)."""
        bucket, key = storage.split_s3(self.remote_path(prefix) if prefix else self.remote_url)
        key = key.rstrip("/") + "/"
        out, token = {}, None
        while True:
            kwargs = {"Bucket": bucket, "Prefix": key, **({"ContinuationToken": token} if token else {})}
            page = self.client().list_objects_v2(**kwargs)
            base = len(storage.split_s3(self.remote_url)[1].rstrip("/")) + 1
            for obj in page.get("Contents", []):
                out[obj["Key"][base:]] = int(obj["Size"])
            if not page.get("IsTruncated"):
                return out
            token = page["NextContinuationToken"]

    def _delete(self, rel: str) -> None:
        bucket, _ = storage.split_s3(self.remote_url)
        keys = [storage.split_s3(self.remote_path(r))[1] for r in self._remote_listing(rel)]
        keys.append(storage.split_s3(self.remote_path(rel))[1])
        for i in range(0, len(keys), 1000):
            batch = {"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True}
            self.client().delete_objects(Bucket=bucket, Delete=batch)

    def _upload(self, rel: str, deadline: float) -> str | None:
        """Upload one file with bounded attempts (none after the deadline); the error, or None when done."""
        local = os.path.join(self.local_dir, rel)
        bucket, key = storage.split_s3(self.remote_path(rel))
        last = "not attempted: the pass ran out of time"
        for attempt in range(self.attempts):
            if time.monotonic() >= deadline:
                break
            try:
                size = os.path.getsize(local)
                self._upload_file(local, bucket, key)
                remote = int(self.client().head_object(Bucket=bucket, Key=key)["ContentLength"])
                if remote != size:
                    raise OSError(f"size mismatch after upload: local {size} bytes, remote {remote} bytes")
                return None
            except Exception as e:
                if not os.path.exists(local):
                    return None  # deleted locally in the meantime (pruned): nothing to upload
                last = _first_line(e)
                if attempt + 1 < self.attempts:
                    time.sleep(min(self.backoff_s * 2**attempt, max(0.0, deadline - time.monotonic())))
        return last

    # --- passes
    def run_pass(self, delete: list[str] | None = None) -> dict[str, str]:
        """One bounded pass (in the calling thread): deletes, then uploads; returns {file: error} of this pass."""
        deadline = time.monotonic() + self.timeout_s
        if self._not_after is not None:
            deadline = min(deadline, self._not_after)
        errors: dict[str, str] = {}
        for rel in delete or []:
            try:
                self._delete(rel)
            except Exception as e:
                errors[rel] = f"delete failed: {_first_line(e)}"
            self.uploaded = {k: v for k, v in self.uploaded.items() if not (k == rel or k.startswith(rel + "/"))}
        todo = sorted(
            ((rel, stamp) for rel, stamp in local_files(self.local_dir).items() if self.uploaded.get(rel) != stamp),
            key=lambda item: _upload_order(item[0]),
        )
        for i, (rel, stamp) in enumerate(todo):
            error = self._upload(rel, deadline)
            if error is None:
                self.uploaded[rel] = stamp
                self.failed.pop(rel, None)
                continue
            # One file failed every attempt (or time ran out): the remote is taken as unreachable for this pass;
            # the rest waits for the next pass instead of each file retrying against a dead endpoint.
            for other, _ in todo[i:]:
                self.failed[other] = error
                errors[other] = error
            break
        self.passes += 1
        if errors:
            shown = ", ".join(list(errors)[:3]) + (f" and {len(errors) - 3} more" if len(errors) > 3 else "")
            self.log(
                f"remote sync to {self.remote_url}: {len(errors)} files not uploaded ({shown}): "
                f"{next(iter(errors.values()))}; training goes on, they are retried after the next checkpoint"
            )
        return errors

    def start(self, delete: list[str] | None = None) -> None:
        """Queue a pass (returns at once). `delete`: relative paths (files or checkpoint directories) to remove
        remotely, e.g. pruned checkpoints."""
        with self._cond:
            self._deletes.extend(delete or [])
            self._queued = True
            if self._thread is None:
                # A daemon thread: it never keeps a dead process alive; every exit path calls finish() or abandon(),
                # which wait for it within the deadline.
                self._thread = threading.Thread(target=self._worker, name="remote-sync", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _worker(self) -> None:
        while True:
            with self._cond:
                while not self._queued:
                    self._cond.wait()
                deletes, self._deletes, self._queued, self._busy = self._deletes, [], False, True
            try:
                self.run_pass(deletes)
            except Exception as e:  # never let the thread die: the next pass retries
                self.log(f"remote sync to {self.remote_url} failed: {_first_line(e)}")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until queued passes are done, at most `timeout_s` (default: one pass's deadline); True if idle."""
        end = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        with self._cond:
            while self._queued or self._busy:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def missing_remote(self, timeout_s: float | None = None) -> list[str]:
        """Local files whose remote copy is absent or of a different size. The listing gets at most `timeout_s`
        (default: one pass's deadline); when it does not answer in time, or fails, the files not verified by an
        upload of this run are the missing ones."""
        answer: dict[str, Any] = {}

        def listing() -> None:
            try:
                answer["remote"] = self._remote_listing()
            except Exception as e:
                answer["error"] = e

        # A daemon thread: a listing hung on a stopped endpoint is left behind instead of holding the exit.
        thread = threading.Thread(target=listing, name="remote-sync-listing", daemon=True)
        thread.start()
        thread.join(max(0.0, self.timeout_s if timeout_s is None else timeout_s))
        local = local_files(self.local_dir)
        if "remote" in answer:
            remote = answer["remote"]
            return sorted(rel for rel, (size, _) in local.items() if remote.get(rel) != size)
        reason = _first_line(answer["error"]) if "error" in answer else "no answer within the deadline"
        self.log(f"remote sync: cannot list {self.remote_url}: {reason}")
        return sorted(rel for rel, stamp in local.items() if self.uploaded.get(rel) != stamp)

    def _missing_message(self, missing: list[str]) -> str:
        shown = ", ".join(missing[:20]) + (f", ... ({len(missing) - 20} more)" if len(missing) > 20 else "")
        errors = sorted(set(self.failed.values()))[:2]
        return (
            f"remote copy {self.remote_url} of {self.local_dir} is incomplete: {len(missing)} files not uploaded "
            f"({shown}); last errors: {'; '.join(errors) or 'none'}. The local run dir is whole: upload it again "
            f"when the remote is reachable"
        )

    def finish(self) -> None:
        """Last pass, then check the remote; raise `RemoteSyncError` naming what is missing. Everything (a pass
        still running, the final listing) ends within `timeout_s`, however the endpoint fails."""
        end = time.monotonic() + self.timeout_s
        self._not_after = end
        self.start()
        self.flush(max(0.0, end - time.monotonic()))
        # The listing gets what is left of the deadline (nothing left: the uploads verified above decide).
        self.last_missing = self.missing_remote(max(0.0, end - time.monotonic()))
        if self.last_missing:
            raise RemoteSyncError(self._missing_message(self.last_missing))

    def abandon(self) -> list[str]:
        """The run is ending on an error or a signal: upload what is complete within the deadline, print what is
        missing and return it; never raises (the original error is the one to report)."""
        try:
            self.finish()
        except RemoteSyncError as e:
            self.log(str(e))
            return self.last_missing
        except Exception as e:
            self.log(f"remote sync to {self.remote_url}: {_first_line(e)}")
            return sorted(local_files(self.local_dir))
        return []
