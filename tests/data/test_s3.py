"""S3 streaming (a moto server on loopback): identical batches to local files, retried and named errors."""

from __future__ import annotations

import os
import socket

import pytest
import torch

from vla_foundry import storage
from vla_foundry.data.dataloader import build_dataloader
from vla_foundry.data.planner import plan_checkpoint
from vla_foundry.data.tar_stream import iter_tar_samples

from .conftest import robotics_params


def upload_dir(local: str, url: str) -> None:
    for name in sorted(os.listdir(local)):
        storage.upload_file(os.path.join(local, name), f"{url}/{name}")


def test_s3_and_local_give_identical_batches(tiny_data, s3_bucket):
    local = tiny_data["robotics_lerobot"]
    remote = f"{s3_bucket}/robotics_lerobot"
    upload_dir(local, remote)
    batches = {}
    for where, path in (("local", local), ("s3", remote + "/manifest.jsonl")):
        params = robotics_params([path])
        plan = plan_checkpoint(params, 0, 16)
        batches[where] = list(build_dataloader(params, plan, batch_size=4))
    assert len(batches["local"]) == len(batches["s3"]) == 4
    for a, b in zip(batches["local"], batches["s3"]):
        for k, v in a.items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, b[k]), k
        assert [m["key"] for m in a["metadata"]] == [m["key"] for m in b["metadata"]]
        assert b["metadata"][0]["dataset"] == remote


def test_s3_shard_streams_the_same_samples_as_the_local_file(tiny_data, s3_bucket):
    local = os.path.join(tiny_data["text"], "shard_000000.tar")
    storage.upload_file(local, f"{s3_bucket}/t/shard_000000.tar")
    remote_samples = list(iter_tar_samples(f"{s3_bucket}/t/shard_000000.tar"))
    local_samples = list(iter_tar_samples(local))
    assert [s["json.gz"] for s in remote_samples] == [s["json.gz"] for s in local_samples]


def test_missing_s3_shard_is_reported_with_its_url(tiny_data, s3_bucket):
    upload_dir(tiny_data["text"], f"{s3_bucket}/t")
    storage.remove(f"{s3_bucket}/t/shard_000001.tar")
    from vla_foundry.params.data_params import TextDataParams

    params = TextDataParams(dataset_manifest=[f"{s3_bucket}/t"], dataset_weighting=[1.0], dataset_modality=["text"])
    plan = plan_checkpoint(params, 0, 32)
    with pytest.raises(FileNotFoundError, match=f"{s3_bucket}/t/shard_000001.tar"):
        build_dataloader(params, plan, batch_size=4, num_workers=0)


def test_unreachable_s3_is_retried_then_raised_with_the_url(monkeypatch, s3_env):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{dead_port}")
    monkeypatch.setattr(storage, "S3_BACKOFF_S", 0.001)
    with pytest.raises(storage.StorageError, match=r"opening s3://bucket/ds/shard_000000\.tar failed after 4 attempts"):
        list(iter_tar_samples("s3://bucket/ds/shard_000000.tar"))


class BrokenBody:
    """A response body whose connection drops on the next read."""

    def read(self, size=None):
        raise ConnectionResetError("connection reset by peer")

    def close(self):
        pass


def test_broken_s3_stream_resumes_at_its_offset(tiny_data, s3_bucket, monkeypatch):
    monkeypatch.setattr(storage, "S3_BACKOFF_S", 0.001)
    local = os.path.join(tiny_data["text"], "shard_000000.tar")
    url = f"{s3_bucket}/t/shard_000000.tar"
    storage.upload_file(local, url)
    reader = storage.open_read(url)
    head = reader.read(1000)
    reader.body = BrokenBody()
    rest = reader.read()
    reader.close()
    with open(local, "rb") as f:
        assert head + rest == f.read()
