"""The storage layer gives local paths and s3:// URLs (a moto server on loopback) the same behaviour."""

from __future__ import annotations

import pytest

from vla_foundry import storage


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path)
    return request.getfixturevalue("s3_bucket") + "/prefix"


def test_write_then_read_round_trips_bytes(root):
    path = storage.join(root, "a", "b.bin")
    storage.write_bytes(path, b"\x00\x01payload")
    assert storage.read_bytes(path) == b"\x00\x01payload"
    assert storage.size(path) == 9


def test_exists_for_files_directories_and_missing_paths(root):
    storage.write_text(storage.join(root, "dir", "f.txt"), "x")
    assert storage.exists(storage.join(root, "dir", "f.txt"))
    assert storage.exists(storage.join(root, "dir"))
    assert not storage.exists(storage.join(root, "missing.txt"))


def test_list_files_is_sorted_and_recursive(root):
    for name in ("b.txt", "a.txt", "sub/c.txt"):
        storage.write_text(storage.join(root, name), name)
    listed = [p[len(root) + 1 :] for p in storage.list_files(root)]
    assert listed == ["a.txt", "b.txt", "sub/c.txt"]


def test_open_read_streams_the_content(root):
    path = storage.join(root, "stream.bin")
    storage.write_bytes(path, bytes(range(256)) * 100)
    with storage.open_read(path) as f:
        assert f.read(10) == bytes(range(10))
        assert len(f.read()) == 256 * 100 - 10


def test_reading_a_missing_file_raises_file_not_found_with_the_path(root):
    path = storage.join(root, "nope.txt")
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        storage.read_bytes(path)


def test_remove_deletes_a_directory_tree(root):
    storage.write_text(storage.join(root, "tree", "x.txt"), "x")
    storage.write_text(storage.join(root, "tree", "y", "z.txt"), "z")
    storage.remove(storage.join(root, "tree"))
    assert storage.list_files(storage.join(root, "tree")) == []


def test_upload_and_download_verify_content(s3_bucket, tmp_path):
    local = tmp_path / "weights.bin"
    local.write_bytes(b"w" * 10_000)
    storage.upload_file(local, f"{s3_bucket}/ckpt/weights.bin")
    storage.download_file(f"{s3_bucket}/ckpt/weights.bin", tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == b"w" * 10_000


def test_unreachable_endpoint_is_retried_then_raised_with_the_url(monkeypatch):
    # A loopback port with nothing listening: every attempt fails fast.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setattr(storage, "S3_BACKOFF_S", 0.0)
    calls = []
    original = storage.s3_client

    def counting_client(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(storage, "s3_client", counting_client)
    with pytest.raises(storage.StorageError, match=r"s3://bucket/key\.bin failed after 4 attempts"):
        storage.read_bytes("s3://bucket/key.bin")
    assert len(calls) == storage.S3_ATTEMPTS


def test_join_handles_s3_and_local():
    assert storage.join("s3://b/p/", "x", "/y") == "s3://b/p/x/y"
    assert storage.join("/a", "b") == "/a/b"
    assert storage.split_s3("s3://bucket/a/b") == ("bucket", "a/b")
