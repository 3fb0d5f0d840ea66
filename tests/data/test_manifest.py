"""Manifest reading: directory or manifest path, local or S3, and clear errors for bad lines."""

from __future__ import annotations

import pytest

from vla_foundry import storage
from vla_foundry.data.manifest import ManifestError, read_manifest


def test_directory_and_manifest_path_give_the_same_shards(tiny_data):
    by_dir = read_manifest(tiny_data["text"])
    by_file = read_manifest(tiny_data["text"] + "/manifest.jsonl")
    assert by_dir.shards == by_file.shards
    assert [s.name for s in by_dir.shards] == ["shard_000000", "shard_000001"]
    assert by_dir.num_samples == 32
    assert by_dir.shard_url("shard_000001") == tiny_data["text"] + "/shard_000001.tar"


def test_malformed_line_names_file_and_line(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"shard": "a", "num_sequences": 3}\n{"shard": "b", "num_seq\n')
    with pytest.raises(ManifestError, match=r"manifest\.jsonl:2: not valid JSON"):
        read_manifest(str(tmp_path))


def test_line_without_num_sequences_names_the_line(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"shard": "a", "num_sequences": 3}\n\n{"shard": "b"}\n')
    with pytest.raises(ManifestError, match=r"manifest\.jsonl:3: 'num_sequences' must be an integer"):
        read_manifest(str(tmp_path))


def test_missing_manifest_names_the_path(tmp_path):
    with pytest.raises(ManifestError, match=f"{tmp_path}/manifest.jsonl does not exist"):
        read_manifest(str(tmp_path))


def test_extra_keys_and_tar_suffix_are_accepted(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"shard": "00000037.tar", "num_sequences": 5, "bytes": 10}\n')
    manifest = read_manifest(str(tmp_path))
    assert manifest.shards[0].name == "00000037" and manifest.shards[0].num_sequences == 5


def test_manifest_reads_from_s3(s3_bucket):
    storage.write_text(f"{s3_bucket}/ds/manifest.jsonl", '{"shard": "shard-0000", "num_sequences": 7}\n')
    manifest = read_manifest(f"{s3_bucket}/ds")
    assert manifest.dataset_dir == f"{s3_bucket}/ds"
    assert manifest.shard_url("shard-0000") == f"{s3_bucket}/ds/shard-0000.tar"
    assert manifest.num_samples == 7
