"""Background upload of a run directory to s3 (boto3 through `vla_foundry.storage`).

After each checkpoint `RemoteSync.start()` uploads the files that are new or changed since their last verified
upload, in a background thread, while training continues. Each upload is verified by size and retried with
backoff; failures are printed at once and `finish()` raises at the end of the run if the remote copy is
incomplete. Pruned checkpoints are deleted remotely too.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from vla_foundry import storage


class RemoteSyncError(RuntimeError):
    """The remote copy of the run dir is incomplete; the message lists the files."""


def local_files(local_dir: str) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file under local_dir, skipping temporary files."""
    out = {}
    for root, _, names in os.walk(local_dir):
        for name in names:
            if name.startswith(".tmp-") or name.endswith(".tmp") or ".tmp-" in name:
                continue
            path = os.path.join(root, name)
            st = os.stat(path)
            out[os.path.relpath(path, local_dir).replace(os.sep, "/")] = (st.st_size, st.st_mtime_ns)
    return out


class RemoteSync:
    def __init__(self, local_dir: str, remote_url: str, attempts: int = 3, backoff_s: float = 1.0) -> None:
        if not storage.is_s3(remote_url):
            raise ValueError(f"remote_sync must be an s3:// URL, got {remote_url!r}")
        self.local_dir = local_dir
        self.remote_url = remote_url.rstrip("/")
        self.attempts = attempts
        self.backoff_s = backoff_s
        # Files whose (size, mtime) were verified on the remote.
        self.uploaded: dict[str, tuple[int, int]] = {}
        self.failed: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def remote_path(self, rel: str) -> str:
        return f"{self.remote_url}/{rel}"

    def start(self, delete: list[str] | None = None) -> None:
        """Begin a sync pass in the background (waits for the previous pass first). `delete`: relative paths
        to remove remotely (pruned checkpoints)."""
        self.wait()
        self._thread = threading.Thread(target=self._sync, args=(list(delete or []),), name="remote-sync", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def sync_now(self, delete: list[str] | None = None) -> None:
        self.wait()
        self._sync(list(delete or []))

    def _sync(self, delete: list[str]) -> None:
        for rel in delete:
            try:
                storage.remove(self.remote_path(rel))
            except Exception as e:
                print(f"remote sync: could not delete {self.remote_path(rel)}: {e}", file=sys.stderr, flush=True)
            with self._lock:
                self.uploaded.pop(rel, None)
                self.failed.pop(rel, None)
        for rel, stamp in sorted(local_files(self.local_dir).items()):
            if self.uploaded.get(rel) == stamp:
                continue
            error = self._upload(rel)
            with self._lock:
                if error is None:
                    self.uploaded[rel] = stamp
                    self.failed.pop(rel, None)
                else:
                    self.failed[rel] = error
                    print(f"remote sync FAILED for {self.remote_path(rel)}: {error}", file=sys.stderr, flush=True)

    def _upload(self, rel: str) -> str | None:
        local = os.path.join(self.local_dir, rel)
        last = ""
        for attempt in range(self.attempts):
            try:
                # upload_file verifies the remote size and has its own per-call retries.
                storage.upload_file(local, self.remote_path(rel))
                return None
            except Exception as e:
                if not os.path.exists(local):
                    # Deleted locally in the meantime (pruned): nothing to upload.
                    return None
                last = f"{type(e).__name__}: {e}"
                time.sleep(self.backoff_s * 2**attempt)
        return last

    def missing_remote(self) -> list[str]:
        """Local files whose remote copy is absent or of a different size."""
        remote = {}
        try:
            for url, size in storage.list_s3_objects(self.remote_url):
                remote[url[len(self.remote_url) + 1 :]] = size
        except Exception as e:
            # An unreadable remote counts as empty: every local file is then reported missing.
            print(f"remote sync: cannot list {self.remote_url}: {e}", file=sys.stderr, flush=True)
        return sorted(rel for rel, (size, _) in local_files(self.local_dir).items() if remote.get(rel) != size)

    def finish(self) -> None:
        """Final pass, then verify the whole remote copy; raise `RemoteSyncError` listing what is missing."""
        self.sync_now()
        missing = self.missing_remote()
        if missing:
            shown = ", ".join(missing[:20])
            raise RemoteSyncError(
                f"remote copy {self.remote_url} of {self.local_dir} is incomplete: {len(missing)} files missing or "
                f"of the wrong size ({shown}); last errors: {dict(list(self.failed.items())[:5])}"
            )
