"""Fixtures of the streaming tests: one small local Ray per test module, stream params matching the offline job's
test window (1 past + 3 future rows, images at -1 and 0, 16x16 frames)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from vla_foundry.params.data_params import RoboticsDataParams, StreamingParams


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A local Ray of 2 CPUs and a small object store for the module (reused when one is already running)."""
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    import ray

    if ray.is_initialized():
        yield
        return
    ray.init(
        num_cpus=2,
        object_store_memory=200 * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    yield
    ray.shutdown()


def window_params(cache: str | Path, **overrides) -> StreamingParams:
    """The streaming block: the window of `tests/data/preprocessing/conftest.py::robotics_argv` at 16x16."""
    kwargs = dict(
        output_dir=str(cache),
        past_lowdim_steps=1,
        future_lowdim_steps=3,
        max_past_padding=1,
        max_future_padding=3,
        image_indices=[-1, 0],
        image_size=[16, 16],
    )
    kwargs.update(overrides)
    return StreamingParams(**kwargs)


def stream_data_params(
    roots: list[str], modalities: list[str], weights: list[float], cache: str | Path, **overrides
) -> RoboticsDataParams:
    kwargs = dict(
        dataset_manifest=[str(r) for r in roots],
        dataset_weighting=weights,
        dataset_modality=modalities,
        action_fields=["action"],
        proprioception_fields=["observation.state"],
        num_workers=0,
        shuffle_buffer_size=4,
        seed=0,
        streaming=window_params(cache),
        ray_num_workers=2,
    )
    kwargs.update(overrides)
    return RoboticsDataParams(**kwargs)
