"""A `lerobot` stream decoded by the loader's own workers (data.stream_decoding loader): the samples of the Ray
stream, every sample of an interval once across workers, the same batches on every run and on resume, no Ray."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tests.data.streaming.conftest import stream_data_params
from tests.data.streaming.test_stream_samples import V3_LENGTHS, expected_keys, stream_rank
from vla_foundry.data.dataloader import SAMPLE_KEYS, build_dataloader
from vla_foundry.data.planner import plan_checkpoint
from vla_foundry.data.sample_streams import LoaderStats
from vla_foundry.data.scripts.make_synthetic_lerobot import make_lerobot_v3
from vla_foundry.data.streaming.loader_stream import LeRobotLoaderStream
from vla_foundry.data.streaming.registry import needs_ray, open_source
from vla_foundry.data.streaming.source import prepare_stream_dir

TOTAL = sum(V3_LENGTHS)  # every step is an anchor of the test window


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lerobot_v3(tmp_path_factory.mktemp("loader_stream") / "v3", lengths=V3_LENGTHS, size=24)


def loader_params(root: Path, cache: Path, num_workers: int):
    params = stream_data_params([root], ["lerobot"], [1.0], cache, num_workers=num_workers, stream_decoding="loader")
    prepare_stream_dir(params, str(root))
    return params


def batch_keys(params, plan, start_batch: int = 0) -> list[str]:
    loader = build_dataloader(params, plan, batch_size=4, start_batch=start_batch)
    return [key.rsplit(" key ", 1)[1] for batch in loader for key in batch[SAMPLE_KEYS]]


@pytest.mark.usefixtures("ray_local")
def test_the_loader_workers_stream_holds_the_ray_streams_samples(root, tmp_path):
    ray_params = stream_data_params([root], ["lerobot"], [1.0], tmp_path / "cache")
    prepare_stream_dir(ray_params, str(root))
    plan = plan_checkpoint(ray_params, 0, 20)
    by_ray = {s["__key__"]: s for s in stream_rank(ray_params, plan)[0]}
    loader_params = dataclasses.replace(ray_params, stream_decoding="loader")
    # The same root and cut, decoded another way: a source built for the Ray stream is not reused for it.
    assert isinstance(open_source(loader_params, str(root), "lerobot").open_stream(
        plan.datasets[0], 0, 0, 1, [0], 4, LoaderStats()), LeRobotLoaderStream)  # fmt: skip
    by_loader, stats = stream_rank(loader_params, plan)

    assert stats.bad_samples == 0 and len(by_loader) == 20
    assert sorted(s["__key__"] for s in by_loader) == sorted(by_ray)
    for sample in by_loader:
        theirs = by_ray[sample["__key__"]]
        assert sample.keys() == theirs.keys()
        for name, value in sample.items():
            if isinstance(value, dict):  # lowdim.npz: {field: array}
                for field in value:
                    np.testing.assert_array_equal(value[field], theirs[name][field])
            elif isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, theirs[name])
            else:
                assert value == theirs[name]


def test_two_loader_workers_read_every_sample_of_the_interval_once(root, tmp_path):
    params = loader_params(root, tmp_path / "cache", num_workers=2)
    plan = plan_checkpoint(params, 0, 24)  # 6 batches of 4: 3 per worker
    keys = batch_keys(params, plan)

    assert not needs_ray(params)
    assert len(keys) == 24 and sorted(keys) == sorted(expected_keys(V3_LENGTHS, plan, "v3", 24))


def test_an_odd_number_of_batches_splits_the_share_by_the_batches_each_worker_makes(root, tmp_path):
    params = loader_params(root, tmp_path / "cache", num_workers=2)
    plan = plan_checkpoint(params, 0, 20)  # 5 batches of 4: 3 for worker 0, 2 for worker 1
    keys = batch_keys(params, plan)

    assert sorted(keys) == sorted(expected_keys(V3_LENGTHS, plan, "v3", 20))


def test_the_order_is_the_same_on_every_run_and_a_resumed_loader_continues_it(root, tmp_path):
    params = loader_params(root, tmp_path / "cache", num_workers=2)
    plan = plan_checkpoint(params, 0, TOTAL - TOTAL % 4)
    first, second = batch_keys(params, plan), batch_keys(params, plan)
    resumed = batch_keys(params, plan, start_batch=3)

    assert first == second
    assert resumed == first[3 * 4 :]
