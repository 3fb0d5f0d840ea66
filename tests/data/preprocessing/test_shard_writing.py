"""Shards: valid tars with fixed member metadata, assembled byte-for-byte from spools, never left partial."""

from __future__ import annotations

import os
import tarfile

import pytest

from vla_foundry.data.preprocessing.shard_writing import SpoolWriter, sample_bytes, write_shard


def test_sample_bytes_form_a_tar_with_fixed_metadata(tmp_path):
    path = tmp_path / "x.tar"
    path.write_bytes(sample_bytes("k1", {"txt": b"hello", "json": b"{}"}) + b"\0" * 1024)
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["k1.json", "k1.txt"]
        assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
        assert tar.extractfile("k1.txt").read() == b"hello"


def test_a_shard_is_the_concatenation_of_spooled_samples(tmp_path):
    spool = SpoolWriter(str(tmp_path / "spool.tar"))
    for i in range(3):
        spool.add(f"s{i}", {"txt": f"sample {i}".encode()})
    entries = spool.close()
    shard = tmp_path / "shard_000000.tar"
    write_shard(str(shard), [(spool.path, e.offset, e.length) for e in (entries[2], entries[0])])
    with tarfile.open(shard) as tar:
        assert [m.name for m in tar.getmembers()] == ["s2.txt", "s0.txt"]
        assert tar.extractfile("s2.txt").read() == b"sample 2"


def test_rolled_back_samples_leave_the_spool(tmp_path):
    spool = SpoolWriter(str(tmp_path / "spool.tar"))
    spool.add("keep", {"txt": b"a"})
    mark = spool.mark()
    spool.add("drop", {"txt": b"b"})
    spool.rollback(mark)
    spool.add("after", {"txt": b"c"})
    spool.close()
    with tarfile.open(spool.path) as tar:
        assert tar.getnames() == ["keep.txt", "after.txt"]


def test_a_failed_shard_write_leaves_no_file_under_the_shard_name(tmp_path):
    shard = tmp_path / "shard_000000.tar"
    with pytest.raises(FileNotFoundError):
        write_shard(str(shard), [(str(tmp_path / "missing_spool.tar"), 0, 512)])
    assert os.listdir(tmp_path) == []
