"""download_dataset.py against a moto S3 server with unsigned requests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vla_foundry.data.scripts.download_dataset import DownloadError, DownloadParams, download_task, main

PREFIX = "vla_foundry/lbm"


@pytest.fixture
def registry(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A public-read registry bucket holding two raw tasks and one preprocessed task."""
    import boto3

    bucket = s3_bucket.removeprefix("s3://")
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    files = {
        "raw/tasks/PutCupInBin/episode_0/processed/metadata.yaml": b"camera_id_to_semantic_name: {}\n",
        "raw/tasks/PutCupInBin/episode_0/processed/actions.npz": b"x" * 2000,
        "raw/tasks/StackPlates/episode_3/processed/metadata.yaml": b"{}\n",
        "preprocessed/PutCupInBin/manifest.jsonl": b'{"shard": "shard_000000", "num_sequences": 1}\n',
    }
    for key, body in files.items():
        client.put_object(Bucket=bucket, Key=f"{PREFIX}/{key}", Body=body, ACL="public-read")
    # Unsigned requests need no credentials at all.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    return bucket


def test_list_prints_the_raw_tasks(registry: str, capsys: pytest.CaptureFixture):
    assert main(["--list", "--raw", "--bucket", registry]) == 0
    assert capsys.readouterr().out.split() == ["PutCupInBin", "StackPlates"]


def test_raw_task_lands_under_tasks_in_the_spartan_layout(registry: str, tmp_path: Path):
    assert main(["--task", "PutCupInBin", "--local_path", str(tmp_path), "--raw", "--bucket", registry]) == 0
    episode = tmp_path / "tasks" / "PutCupInBin" / "episode_0" / "processed"
    assert (episode / "actions.npz").read_bytes() == b"x" * 2000
    assert (episode / "metadata.yaml").exists()
    assert not (tmp_path / "tasks" / "StackPlates").exists()


def test_preprocessed_task_lands_under_its_name(registry: str, tmp_path: Path):
    download_task("PutCupInBin", DownloadParams(local_path=str(tmp_path), raw=False, bucket=registry, prefix=PREFIX))
    assert (tmp_path / "PutCupInBin" / "manifest.jsonl").exists()


def test_files_already_downloaded_are_kept(registry: str, tmp_path: Path):
    download_task("PutCupInBin", DownloadParams(local_path=str(tmp_path), raw=True, bucket=registry, prefix=PREFIX))
    target = tmp_path / "tasks" / "PutCupInBin" / "episode_0" / "processed" / "actions.npz"
    os.utime(target, (1, 1))
    download_task("PutCupInBin", DownloadParams(local_path=str(tmp_path), raw=True, bucket=registry, prefix=PREFIX))
    assert target.stat().st_mtime == 1


def test_an_unknown_task_names_the_available_ones(registry: str, tmp_path: Path):
    with pytest.raises(DownloadError, match="no raw task 'Nope'.*available: PutCupInBin, StackPlates"):
        download_task("Nope", DownloadParams(local_path=str(tmp_path), raw=True, bucket=registry, prefix=PREFIX))


def test_an_unreachable_registry_is_one_line_naming_the_bucket(monkeypatch, capsys: pytest.CaptureFixture):
    # A loopback port with nothing listening stands in for a machine without network access.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert main(["--list", "--bucket", "some-bucket"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: cannot list s3://some-bucket/vla_foundry/lbm/preprocessed/ at http://127.0.0.1:9")
