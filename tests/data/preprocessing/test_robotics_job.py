"""The robotics job end to end: statistics, determinism, resume/refuse, failures and their outcomes, S3."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.data.preprocessing.conftest import load_npz, preprocess_robotics, read_dataset, robotics_argv
from vla_foundry.data.preprocessing.job import JobError

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture(scope="module")
def v3_run(lerobot_v3: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("job_v3")
    preprocess_robotics(robotics_argv([lerobot_v3], out, "--seed", "5"))
    return out / "shards"


def shard_bytes(dataset: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(dataset.glob("shard_*.tar"))}


def tar_members(data: bytes) -> list[tuple[str, bytes]]:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def test_stats_equal_numpy_over_the_valid_rows_of_the_written_samples(v3_run: Path):
    stats = json.loads((v3_run / "stats.json").read_text())
    samples = [load_npz(s["lowdim.npz"]) for s in read_dataset(v3_run).values()]
    for name in ("observation.state", "action"):
        values = np.stack([s[name] for s in samples]).astype(np.float64)  # (N, T, D)
        valid = np.stack([s["past_mask"] | s["future_mask"] for s in samples])  # (N, T)
        rows = values[valid]
        entry = stats[name]
        np.testing.assert_allclose(entry["mean"], rows.mean(0), atol=1e-9)
        np.testing.assert_allclose(entry["std"], rows.std(0), atol=1e-9)
        np.testing.assert_allclose(entry["min"], rows.min(0))
        np.testing.assert_allclose(entry["max"], rows.max(0))
        np.testing.assert_allclose(entry["percentile_99"], np.percentile(rows, 99, axis=0), atol=1e-9)
        assert entry["count"] == valid.sum(0).tolist()
        for t in range(values.shape[1]):
            np.testing.assert_allclose(entry["mean_per_timestep"][t], values[valid[:, t], t].mean(0), atol=1e-9)
            np.testing.assert_allclose(entry["max_per_timestep"][t], values[valid[:, t], t].max(0))


def test_dataset_files_record_the_window_cameras_and_run(v3_run: Path):
    config = yaml.safe_load((v3_run / "preprocessing_config.yaml").read_text())
    assert (config["past_lowdim_steps"], config["future_lowdim_steps"], config["image_indices"]) == (1, 3, [-1, 0])
    assert config["camera_names"] == ["cam_high", "cam_wrist"]
    meta = json.loads((v3_run / "processing_metadata.json").read_text())
    assert meta["episodes"] == {"total": 5, "converted": 5}
    assert {"python", "numpy", "ray", "av"} <= set(meta["versions"])
    assert meta["samples"]["written"] == sum(
        json.loads(x)["num_sequences"] for x in (v3_run / "manifest.jsonl").read_text().splitlines()
    )
    assert not (v3_run.parent / "_work").exists()


def test_the_config_records_the_size_each_camera_is_stored_at(v3_run: Path):
    import io

    from PIL import Image

    config = yaml.safe_load((v3_run / "preprocessing_config.yaml").read_text())
    samples = read_dataset(v3_run).values()
    for cam in ("cam_high", "cam_wrist"):
        sizes = {Image.open(io.BytesIO(s[f"{cam}_t0.jpg"])).size for s in samples}  # (W, H) of every sample
        assert len(sizes) == 1
        ((width, height),) = sizes
        assert config["camera_image_sizes"][cam] == [height, width]


def test_same_inputs_and_seed_give_byte_identical_shards_and_another_seed_another_order(
    v3_run: Path, lerobot_v3: Path, tmp_path: Path
):
    preprocess_robotics(robotics_argv([lerobot_v3], tmp_path / "same", "--seed", "5"))
    assert shard_bytes(tmp_path / "same" / "shards") == shard_bytes(v3_run)
    assert (tmp_path / "same" / "shards" / "manifest.jsonl").read_bytes() == (v3_run / "manifest.jsonl").read_bytes()
    preprocess_robotics(robotics_argv([lerobot_v3], tmp_path / "other", "--seed", "6"))
    assert shard_bytes(tmp_path / "other" / "shards") != shard_bytes(v3_run)
    assert set(read_dataset(tmp_path / "other" / "shards")) == set(read_dataset(v3_run))


def test_rerun_of_an_interrupted_job_resumes_finished_tasks_and_shards(v3_run: Path, lerobot_v3: Path, tmp_path: Path):
    argv = robotics_argv([lerobot_v3], tmp_path, "--seed", "5", "--keep_work_dir", "True")
    preprocess_robotics(argv)
    dataset = tmp_path / "shards"
    # Simulate a crash: one read task unfinished, one shard missing, a stray temp shard, no final files.
    for suffix in (".done.json", ".tar", ".index.json", ".stats.npz"):
        (tmp_path / "_work" / "tasks" / f"s00_ep000002_000002{suffix}").unlink()
    for name in ("processing_metadata.json", "manifest.jsonl", "stats.json", "shard_000003.tar"):
        (dataset / name).unlink()
    (dataset / ".shard_000003.tar.tmp-999").write_bytes(b"partial")
    outcome = preprocess_robotics(argv)
    assert outcome.resumed_tasks == 3
    assert outcome.metadata["num_read_tasks"] == 4
    assert shard_bytes(dataset) == shard_bytes(v3_run)
    assert json.loads((dataset / "stats.json").read_text()) == json.loads((v3_run / "stats.json").read_text())


def test_a_finished_dataset_is_not_redone(v3_run: Path, lerobot_v3: Path):
    outcome = preprocess_robotics(robotics_argv([lerobot_v3], v3_run.parent, "--seed", "5"))
    assert outcome.already_complete


def test_output_of_a_different_run_is_refused(v3_run: Path, lerobot_v3: Path):
    with pytest.raises(JobError, match="different settings"):
        preprocess_robotics(robotics_argv([lerobot_v3], v3_run.parent, "--seed", "9"))


def test_an_unfinished_run_with_other_settings_is_refused_naming_the_changes(lerobot_v3: Path, tmp_path: Path):
    preprocess_robotics(robotics_argv([lerobot_v3], tmp_path, "--keep_work_dir", "True"))
    (tmp_path / "shards" / "processing_metadata.json").unlink()
    with pytest.raises(JobError, match=r"changed: \['stride'\]"):
        preprocess_robotics(robotics_argv([lerobot_v3], tmp_path, "--stride", "2"))


def test_overwrite_replaces_a_different_run(lerobot_v3: Path, tmp_path: Path):
    preprocess_robotics(robotics_argv([lerobot_v3], tmp_path, "--max_episodes_to_process", "1"))
    outcome = preprocess_robotics(robotics_argv([lerobot_v3], tmp_path, "--stride", "3", "--overwrite", "True"))
    assert outcome.metadata["episodes"]["total"] == 5


@pytest.fixture
def v3_copy(lerobot_v3: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(lerobot_v3, tmp_path / "toy_v3"))


def test_a_corrupt_mp4_fails_its_episodes_with_their_ids_and_the_job_goes_on(v3_copy: Path, tmp_path: Path):
    (v3_copy / "videos/observation.images.cam_wrist/chunk-000/file-001.mp4").write_bytes(b"\x00garbage" * 64)
    outcome = preprocess_robotics(robotics_argv([v3_copy], tmp_path / "out", "--max_failure_fraction", "0.5"))
    failures = outcome.metadata["failures"]
    assert [(f["id"], f["kind"]) for f in failures] == [("toy_v3_episode_000004", "video_error")]
    assert "file-001.mp4" in failures[0]["reason"]
    # Episode 4 (11 steps) would have given 11 samples.
    assert outcome.metadata["samples"]["dropped"] == {"video_error": 11}
    episodes = {
        json.loads(s["metadata.json"])["episode_id"] for s in read_dataset(tmp_path / "out" / "shards").values()
    }
    assert "toy_v3_episode_000004" not in episodes and len(episodes) == 4


def test_failures_above_the_threshold_fail_the_job_listing_the_episodes(v3_copy: Path, tmp_path: Path):
    (v3_copy / "videos/observation.images.cam_wrist/chunk-000/file-001.mp4").write_bytes(b"\x00garbage" * 64)
    with pytest.raises(JobError, match=r"1 of 5 inputs failed.*toy_v3_episode_000004"):
        preprocess_robotics(robotics_argv([v3_copy], tmp_path / "out"))
    assert not (tmp_path / "out" / "shards" / "manifest.jsonl").exists()


def test_a_missing_data_parquet_fails_the_episodes_it_holds(v3_copy: Path, tmp_path: Path):
    (v3_copy / "data/chunk-000/file-001.parquet").unlink()
    outcome = preprocess_robotics(robotics_argv([v3_copy], tmp_path / "out", "--max_failure_fraction", "0.5"))
    assert [(f["id"], f["kind"]) for f in outcome.metadata["failures"]] == [
        ("toy_v3_episode_000003", "missing_file"),
        ("toy_v3_episode_000004", "missing_file"),
    ]
    assert "file-001.parquet not found" in outcome.metadata["failures"][0]["reason"]


def test_a_camera_the_dataset_lacks_is_refused_before_reading_with_the_error_policy(lerobot_v3: Path, tmp_path: Path):
    from vla_foundry.params.base_params import ConfigError

    argv = robotics_argv([lerobot_v3], tmp_path, "--camera_names", "[cam_high, cam_left]", "--missing_camera", "error")
    with pytest.raises(ConfigError, match=r"\['cam_left'\].*its cameras: \['cam_high', 'cam_wrist'\]"):
        preprocess_robotics(argv)


def test_s3_source_and_output_give_the_same_shards_as_local(v3_run: Path, lerobot_v3: Path, s3_bucket: str):
    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    bucket = s3_bucket.removeprefix("s3://")
    for path in lerobot_v3.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"toy_v3/{path.relative_to(lerobot_v3)}")
    preprocess_robotics(robotics_argv([f"{s3_bucket}/toy_v3"], f"{s3_bucket}/out", "--seed", "5"))
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]}
    assert not any(k.startswith("out/_work") for k in keys)
    for name in shard_bytes(v3_run):
        remote = tar_members(client.get_object(Bucket=bucket, Key=f"out/shards/{name}")["Body"].read())
        local = tar_members((v3_run / name).read_bytes())
        # Identical samples in identical order; only metadata.json's `source` names the other root.
        assert [n for n, _ in remote] == [n for n, _ in local]
        for (n, a), (_, b) in zip(remote, local):
            if n.endswith("metadata.json"):
                a, b = json.loads(a), json.loads(b)
                assert a.pop("source") == f"{s3_bucket}/toy_v3"
                b.pop("source")
            assert a == b
    manifest = client.get_object(Bucket=bucket, Key="out/shards/manifest.jsonl")["Body"].read()
    assert manifest == (v3_run / "manifest.jsonl").read_bytes()


def test_two_sources_with_the_same_folder_name_are_refused_before_reading(lerobot_v3: Path, tmp_path: Path):
    from vla_foundry.params.base_params import ConfigError

    other = shutil.copytree(lerobot_v3, tmp_path / "elsewhere" / lerobot_v3.name)
    with pytest.raises(ConfigError, match="toy_v3_episode_000000 comes from two read tasks"):
        preprocess_robotics(robotics_argv([lerobot_v3, other], tmp_path / "out"))
    assert not (tmp_path / "out").exists()
