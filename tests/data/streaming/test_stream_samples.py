"""Streamed LeRobot samples against the offline job's, rank shares, mixing with shards, window sets on resume, and
bad episodes: on a real local Ray, with synthetic LeRobot datasets whose frames and rows encode (episode, t)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.data.preprocessing.conftest import decode_jpeg, load_npz, preprocess_robotics, read_dataset, robotics_argv
from tests.data.streaming.conftest import stream_data_params
from vla_foundry.data.dataloader import build_dataloader
from vla_foundry.data.planner import DataPlanState, plan_checkpoint
from vla_foundry.data.sample_streams import LoaderStats
from vla_foundry.data.scripts.make_synthetic_lerobot import decode_colour, make_lerobot_v3, make_lerobot_v21
from vla_foundry.data.streaming.registry import open_source
from vla_foundry.data.streaming.source import prepare_stream_dir

pytestmark = pytest.mark.usefixtures("ray_local")

V3_LENGTHS = (6, 5, 7, 4, 6)
V21_LENGTHS = (5, 7, 4)
# With 1 past + 3 future rows and padding allowed up to that, every timestep is an anchor.
TOTAL_V3 = sum(V3_LENGTHS)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """v3.0 with H.264 and with AV1 (data files, each camera's MP4s and the metadata roll over at different
    episodes) and v2.1."""
    base = tmp_path_factory.mktemp("lerobot_streams")
    return {
        "v3_h264": make_lerobot_v3(base / "v3_h264", lengths=V3_LENGTHS, size=24),
        "v3_av1": make_lerobot_v3(base / "v3_av1", lengths=V3_LENGTHS, codec="libsvtav1", size=24),
        "v21": make_lerobot_v21(base / "v21", lengths=V21_LENGTHS, size=24),
    }


def stream_rank(params, plan, rank: int = 0, world_size: int = 1, index: int = 0) -> tuple[list[dict], LoaderStats]:
    """Every raw sample of one rank's share of dataset `index` in `plan` (one pass, as Ray delivers them)."""
    stats = LoaderStats(samples_per_dataset=[0] * len(plan.datasets))
    dataset = plan.datasets[index]
    source = open_source(params, dataset.dataset_dir, dataset.modality)
    stream = source.open_stream(dataset, index, rank, world_size, [0, rank], 4, stats)
    return list(stream.read_pass(0, np.random.default_rng(0))), stats


def expected_keys(lengths: tuple[int, ...], plan, name: str, count: int) -> list[str]:
    """The window's set computed from the generator's episode lengths: every t of each planned episode in plan order,
    the first `count` of them."""
    keys = []
    for url in plan.datasets[0].shards:
        eid = Path(url).name.removesuffix(".tar")
        episode = int(eid.rsplit("_", 1)[-1])
        keys += [f"{name}_episode_{episode:06d}__t{t:06d}" for t in range(lengths[episode])]
    return keys[:count]


@pytest.mark.parametrize("name", ["v3_h264", "v3_av1", "v21"])
def test_streamed_sample_equals_the_offline_sample(datasets, name, tmp_path):
    root = datasets[name]
    outcome = preprocess_robotics(robotics_argv([root], tmp_path / "offline", "--image_size", "[16, 16]"))
    offline = read_dataset(outcome.dataset_dir)
    params = stream_data_params([root], ["lerobot"], [1.0], tmp_path / "cache")
    prepare_stream_dir(params, str(root))
    plan = plan_checkpoint(params, 0, len(offline))
    streamed, stats = stream_rank(params, plan)

    assert stats.bad_samples == 0
    assert sorted(s["__key__"] for s in streamed) == sorted(offline)
    for sample in streamed:
        stored = offline[sample["__key__"]]
        assert json.loads(sample["metadata.json"]) == json.loads(stored["metadata.json"])
        assert json.loads(sample["language_instructions.json"]) == json.loads(stored["language_instructions.json"])
        ours, theirs = sample["lowdim.npz"], load_npz(stored["lowdim.npz"])  # the stream: arrays, not npz bytes
        assert sorted(ours) == sorted(theirs)
        for field in theirs:
            np.testing.assert_array_equal(ours[field], theirs[field])  # lowdim and masks exact
        meta = json.loads(stored["metadata.json"])
        episode = int(meta["episode_id"].rsplit("_", 1)[-1])
        for c, cam in enumerate(meta["camera_names"]):
            for offset, t in zip(meta["image_indices"], meta["image_timesteps"]):
                frame = sample[f"{cam}_t{offset}.jpg"]  # (16, 16, 3) uint8, not re-encoded
                jpeg = decode_jpeg(stored[f"{cam}_t{offset}.jpg"])
                assert frame.shape == jpeg.shape == (16, 16, 3)
                assert np.abs(frame.astype(int) - jpeg.astype(int)).max() <= 4  # JPEG loss only
                assert decode_colour(frame) == (episode, t, c)


def test_two_ranks_get_disjoint_shares_whose_union_is_the_window(datasets, tmp_path):
    root = datasets["v3_h264"]
    params = stream_data_params([root], ["lerobot"], [1.0], tmp_path / "cache")
    prepare_stream_dir(params, str(root))
    plan = plan_checkpoint(params, 0, 16)
    shares = [{s["__key__"] for s in stream_rank(params, plan, rank, 2)[0]} for rank in (0, 1)]

    assert len(shares[0]) == len(shares[1]) == 8
    assert not shares[0] & shares[1]
    assert sorted(shares[0] | shares[1]) == sorted(expected_keys(V3_LENGTHS, plan, "v3_h264", 16))


def test_resumed_plan_continues_with_the_next_windows_set(datasets, tmp_path):
    root = datasets["v3_h264"]
    params = stream_data_params([root], ["lerobot"], [1.0], tmp_path / "cache")
    prepare_stream_dir(params, str(root))
    first = plan_checkpoint(params, 0, 10)
    # What a checkpoint stores, read back as a resumed run does.
    resumed = plan_checkpoint(params, 1, 10, DataPlanState.from_dict(json.loads(json.dumps(first.state.to_dict()))))
    uninterrupted = plan_checkpoint(params, 1, 10)
    window0 = {s["__key__"] for s in stream_rank(params, first)[0]}
    window1 = {s["__key__"] for s in stream_rank(params, resumed)[0]}

    assert resumed.to_dict() == uninterrupted.to_dict()
    assert window1 == set(expected_keys(V3_LENGTHS, uninterrupted, "v3_h264", 10))
    # Whole episodes are planned per checkpoint interval: the next interval starts at the next episode, nothing is repeated.
    episodes = [{k.split("__")[0] for k in w} for w in (window0, window1)]
    assert not episodes[0] & episodes[1]


def test_corrupt_video_and_missing_parquet_are_counted_with_the_episode_named(datasets, tmp_path):
    root = Path(shutil.copytree(datasets["v3_h264"], tmp_path / "broken_v3"))
    # cam_wrist's second MP4 holds only episode 4; the second data parquet holds episodes 3 and 4.
    video = root / "videos" / "observation.images.cam_wrist" / "chunk-000" / "file-001.mp4"
    video.write_bytes(video.read_bytes()[:200])
    (root / "data" / "chunk-000" / "file-001.parquet").unlink()
    params = stream_data_params([root], ["lerobot"], [1.0], tmp_path / "cache")
    prepare_stream_dir(params, str(root))
    plan = plan_checkpoint(params, 0, TOTAL_V3)
    samples, stats = stream_rank(params, plan)

    lost = V3_LENGTHS[3] + V3_LENGTHS[4]
    assert stats.bad_samples == lost
    assert len(samples) == TOTAL_V3 - lost
    assert {int(s["__key__"].split("__")[0].rsplit("_", 1)[-1]) for s in samples} == {0, 1, 2}
    listed = "\n".join(stats.bad)
    assert "broken_v3_episode_000003" in listed and "broken_v3_episode_000004" in listed
    assert "file-001.parquet" in listed


def test_a_stream_mixed_with_shards_follows_the_weights(datasets, tmp_path):
    root = datasets["v3_h264"]
    outcome = preprocess_robotics(robotics_argv([root], tmp_path / "offline", "--image_size", "[16, 16]"))
    params = stream_data_params(
        [root, outcome.dataset_dir], ["lerobot", "robotics"], [0.25, 0.75], tmp_path / "cache", shuffle_buffer_size=2
    )
    prepare_stream_dir(params, str(root))
    plan = plan_checkpoint(params, 0, 96)
    loader = build_dataloader(params, plan, batch_size=8)
    sources = []
    for batch in loader:
        sources += [m["dataset"] for m in batch["metadata"]]
        assert batch["images"].shape == (8, 4, 3, 16, 16)

    streamed = sum("cache" in d for d in sources)
    assert len(sources) == 96
    assert loader.stats.samples_per_dataset == [streamed, 96 - streamed]
    # 96 draws of weight 0.25: mean 24, standard deviation 4.2.
    assert 12 <= streamed <= 36


def test_a_root_on_s3_streams_through_workers_given_the_endpoint(datasets, s3_bucket, tmp_path):
    from vla_foundry import storage

    # The module's Ray workers started before this test pointed boto3 at the moto server: the endpoint reaches them
    # only through the stream's runtime environment.
    local = datasets["v21"]
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        storage.upload_file(path, f"{s3_bucket}/v21/{path.relative_to(local).as_posix()}")
    params = stream_data_params([f"{s3_bucket}/v21"], ["lerobot"], [1.0], tmp_path / "cache")
    prepare_stream_dir(params, f"{s3_bucket}/v21")
    plan = plan_checkpoint(params, 0, sum(V21_LENGTHS))
    samples, stats = stream_rank(params, plan)

    assert stats.bad_samples == 0
    assert sorted(s["__key__"] for s in samples) == sorted(
        f"v21_episode_{e:06d}__t{t:06d}" for e, n in enumerate(V21_LENGTHS) for t in range(n)
    )
    for sample in samples:
        meta = json.loads(sample["metadata.json"])
        episode, t = meta["episode_id"], meta["image_timesteps"][1]
        assert decode_colour(sample["top_t0.jpg"]) == (int(episode.rsplit("_", 1)[-1]), t, 0)
