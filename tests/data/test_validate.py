"""The dataset validator: clean datasets pass; every problem is reported with its shard and key."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from vla_foundry.data.tar_stream import iter_tar_samples, write_tar_shard
from vla_foundry.data.validate import validate_dataset


@pytest.mark.parametrize("name", ["text", "text_untokenized", "image_caption", "robotics_lerobot", "robotics_spartan"])
def test_generated_datasets_are_valid(tiny_data, name):
    assert validate_dataset(tiny_data[name]) == []


def test_every_problem_is_reported_with_shard_and_key(tiny_data, tmp_path):
    data = shutil.copytree(tiny_data["robotics_lerobot"], tmp_path / "r")
    shard = str(data / "shard_000000.tar")
    samples = list(iter_tar_samples(shard))
    k0, k1 = samples[0]["__key__"], samples[1]["__key__"]
    out = []
    for s in samples:
        members = {k: v for k, v in s.items() if not k.startswith("__")}
        if s["__key__"] == k0:
            del members["wrist_t0.jpg"]
        if s["__key__"] == k1:
            members["front_t-1.jpg"] = b"broken"
            members["metadata.json"] = json.dumps({"episode_id": "x"}).encode()
        out.append((s["__key__"], members))
    write_tar_shard(shard, out)
    manifest = (data / "manifest.jsonl").read_text().splitlines()
    manifest[1] = manifest[1].replace('"num_sequences": 12', '"num_sequences": 13')
    manifest.append('{"shard": "shard_000009", "num_sequences": 4}')
    manifest.append("{not json")
    (data / "manifest.jsonl").write_text("\n".join(manifest) + "\n")
    shutil.copy(data / "shard_000001.tar", data / "stray.tar")

    problems = [str(p) for p in validate_dataset(str(data))]
    assert f"shard_000000.tar key {k0}: missing camera image wrist_t0.jpg" in problems
    assert f"shard_000000.tar key {k1}: front_t-1.jpg: undecodable image (UnidentifiedImageError)" in problems
    assert any(p.startswith(f"shard_000000.tar key {k1}: metadata.json lacks sample_id") for p in problems)
    assert "shard_000001.tar: holds 12 samples, manifest.jsonl says num_sequences 13" in problems
    assert "shard_000009.tar: listed in manifest.jsonl but does not exist" in problems
    assert any(p.startswith("manifest.jsonl:4: not valid JSON") for p in problems)
    assert "stray.tar: tar shard in the directory is not listed in manifest.jsonl" in problems
    assert len(problems) == 7


def test_missing_stats_and_config_are_reported_for_robotics(tiny_data, tmp_path):
    data = shutil.copytree(tiny_data["robotics_spartan"], tmp_path / "r")
    os.remove(data / "stats.json")
    os.remove(data / "preprocessing_config.yaml")
    problems = [str(p) for p in validate_dataset(str(data), modality="robotics", max_samples_per_shard=1)]
    assert "stats.json: missing (robotics datasets need it)" in problems
    assert "preprocessing_config.yaml: missing (robotics datasets need it)" in problems


def test_command_exits_nonzero_and_prints_problems(tiny_data, tmp_path):
    data = shutil.copytree(tiny_data["text"], tmp_path / "t")
    os.remove(data / "shard_000001.tar")
    ok = subprocess.run(
        [sys.executable, "-m", "vla_foundry.data.validate", tiny_data["text"]], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "valid" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "vla_foundry.data.validate", str(data)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "shard_000001.tar: listed in manifest.jsonl but does not exist" in bad.stdout
