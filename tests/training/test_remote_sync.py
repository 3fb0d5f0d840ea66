"""Background upload of a run dir to s3 (moto server on loopback)."""

from __future__ import annotations

import os

import pytest

from vla_foundry import storage
from vla_foundry.remote_sync import RemoteSync, RemoteSyncError


def _remote_files(url: str) -> dict[str, bytes]:
    return {u[len(url) + 1 :]: storage.read_bytes(u) for u in storage.list_files(url)}


def _local_files(root) -> dict[str, bytes]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def _write(path, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def test_remote_copy_equals_local_run_dir(tmp_path, s3_bucket):
    _write(tmp_path / "config.yaml", b"a: 1\n")
    _write(tmp_path / "checkpoints" / "checkpoint_1.pt", os.urandom(3000))
    sync = RemoteSync(str(tmp_path), f"{s3_bucket}/runs/r1")
    sync.start()
    sync.finish()
    assert _remote_files(f"{s3_bucket}/runs/r1") == _local_files(tmp_path)


def test_changed_and_new_files_are_uploaded_unchanged_ones_skipped(tmp_path, s3_bucket):
    url = f"{s3_bucket}/run"
    _write(tmp_path / "metrics.jsonl", b'{"step": 1}\n')
    _write(tmp_path / "config.yaml", b"a: 1\n")
    sync = RemoteSync(str(tmp_path), url)
    sync.sync_now()
    storage.write_bytes(f"{url}/config.yaml", b"remote edit\n")  # an unchanged local file is not uploaded again
    _write(tmp_path / "metrics.jsonl", b'{"step": 1}\n{"step": 2}\n')
    _write(tmp_path / "checkpoints" / "checkpoint_2.pt", b"weights")
    sync.sync_now()
    remote = _remote_files(url)
    assert remote["metrics.jsonl"] == b'{"step": 1}\n{"step": 2}\n'
    assert remote["checkpoints/checkpoint_2.pt"] == b"weights"
    assert remote["config.yaml"] == b"remote edit\n"


def test_pruned_files_are_deleted_remotely(tmp_path, s3_bucket):
    url = f"{s3_bucket}/run"
    _write(tmp_path / "checkpoints" / "checkpoint_1.pt", b"1")
    sync = RemoteSync(str(tmp_path), url)
    sync.sync_now()
    os.unlink(tmp_path / "checkpoints" / "checkpoint_1.pt")
    _write(tmp_path / "checkpoints" / "checkpoint_2.pt", b"2")
    sync.sync_now(delete=["checkpoints/checkpoint_1.pt"])
    assert sorted(_remote_files(url)) == ["checkpoints/checkpoint_2.pt"]


def test_temporary_files_are_not_uploaded(tmp_path, s3_bucket):
    _write(tmp_path / "checkpoints" / ".tmp-checkpoint_1.pt-abc", b"partial")
    _write(tmp_path / "metrics.jsonl.tmp", b"partial")
    _write(tmp_path / "config.yaml", b"a: 1\n")
    sync = RemoteSync(str(tmp_path), f"{s3_bucket}/run")
    sync.finish()
    assert sorted(_remote_files(f"{s3_bucket}/run")) == ["config.yaml"]


def test_failed_uploads_are_reported_and_fail_the_run_at_the_end(tmp_path, s3_env, capsys, monkeypatch):
    monkeypatch.setattr(storage, "S3_ATTEMPTS", 1)
    _write(tmp_path / "config.yaml", b"a: 1\n")
    sync = RemoteSync(str(tmp_path), "s3://no-such-bucket-for-sync/run", attempts=2, backoff_s=0.01)
    sync.start()
    sync.wait()
    assert "remote sync FAILED for s3://no-such-bucket-for-sync/run/config.yaml" in capsys.readouterr().err
    with pytest.raises(RemoteSyncError, match="config.yaml"):
        sync.finish()
