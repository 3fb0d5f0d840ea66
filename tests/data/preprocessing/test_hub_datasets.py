"""Dataset repos of the Hugging Face Hub read through `hf://datasets/...` with the real client against a Hub cache
laid out as the library documents it (HF_HUB_OFFLINE=1, no network): shard datasets stream the same batches as
the local copy; a LeRobot root preprocesses; a dataset push is planned with its card."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from tests.data.conftest import robotics_params
from tests.data.preprocessing.conftest import (
    check_frames_and_rows,
    preprocess_robotics,
    read_dataset,
    robotics_argv,
)
from tests.hub_cache import cache_repo
from vla_foundry import storage
from vla_foundry.data.dataloader import build_dataloader
from vla_foundry.data.planner import plan_checkpoint
from vla_foundry.data.preprocessing.sample_cutting import plan_anchors
from vla_foundry.hub import PushDatasetParams, plan_dataset_push
from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams, parse_preprocessing_params

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def hf_home(tmp_path, monkeypatch) -> str:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return str(tmp_path / "hf_home" / "hub")


def _files_under(root: str) -> dict[str, str]:
    return {os.path.relpath(p, root): p for p in storage.list_files(root)}


def test_a_shard_dataset_repo_streams_the_same_batches_as_the_local_dataset(tiny_data, hf_home):
    local = tiny_data["robotics_lerobot"]
    cache_repo(hf_home, "org/tiny_robotics", _files_under(local), repo_type="dataset")
    batches = {}
    for where, path in (("local", local), ("hub", "hf://datasets/org/tiny_robotics/manifest.jsonl")):
        params = robotics_params([path])
        batches[where] = list(build_dataloader(params, plan_checkpoint(params, 0, 16), batch_size=4))
    assert len(batches["local"]) == len(batches["hub"]) == 4
    for a, b in zip(batches["local"], batches["hub"]):
        for k, v in a.items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, b[k]), k
        assert [m["key"] for m in a["metadata"]] == [m["key"] for m in b["metadata"]]


@pytest.mark.slow
def test_a_lerobot_dataset_repo_preprocesses_into_shards(tmp_path, hf_home, lerobot_v3, ray_cluster):
    # The Ray tasks read the hf:// files: they get the driver's Hub settings (HF_HOME here) with the task.
    cache_repo(hf_home, "lerobot/toy_v3", _files_under(str(lerobot_v3)), repo_type="dataset")
    outcome = preprocess_robotics(robotics_argv(["hf://datasets/lerobot/toy_v3"], tmp_path / "out"))
    samples = read_dataset(tmp_path / "out" / "shards")
    assert samples and check_frames_and_rows(samples, {"cam_high": 0, "cam_wrist": 1}) == len(samples) * 4
    params = parse_preprocessing_params(RoboticsPreprocessingParams, robotics_argv([lerobot_v3], "/tmp/unused"))
    expected = sum(len(plan_anchors(n, params)) for n in (12, 9, 15, 10, 11))  # the generator's episode lengths
    assert outcome.metadata["samples"]["written"] == len(samples) == expected


def test_push_dataset_plans_every_shard_and_a_card_with_the_manifest_digest(tmp_path, tiny_data):
    import hashlib

    local = tiny_data["robotics_lerobot"]
    plan = plan_dataset_push(PushDatasetParams(dataset_dir=local, repo="org/tiny_robotics"), str(tmp_path / "staging"))
    assert plan.repo_type == "dataset"
    assert set(plan.files) == {os.path.basename(p) for p in storage.list_files(local)} | {"README.md"}
    for name, staged in plan.files.items():
        if name != "README.md":
            with open(staged, "rb") as a, open(os.path.join(local, name), "rb") as b:
                assert a.read() == b.read(), name
    meta = yaml.safe_load(plan.card.split("---\n")[1])
    with open(os.path.join(local, "manifest.jsonl"), "rb") as f:
        assert meta["vla_foundry"]["manifest_sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert "robotics" in meta["task_categories"]
