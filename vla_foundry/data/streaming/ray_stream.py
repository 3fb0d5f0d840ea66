"""Ray Data streams of a checkpoint interval's LeRobot samples: read tasks -> decode + cut + resize on Ray CPU workers -> a rank.

A checkpoint interval's set of a `lerobot` dataset is the first `num_samples` anchors of its planned episodes (plan order, every
anchor of an episode in turn). Rank r of W takes the r-th contiguous W-th of that list (equal shares up to one
sample), so ranks are disjoint and their union is the set, and each rank decodes mostly its own episodes. Its
samples are grouped into items of equal size within a read task (`items.read_items`); a Ray Data `flat_map`
(`data.ray_num_workers` concurrent tasks of 1 CPU, optional memory reservation) cuts an item with the offline job's
converter (`items.item_samples`) into rows of several samples. The rank pulls rows as Ray produces them (streaming,
with backpressure) into a seeded shuffle buffer: the *set* of an interval is deterministic, the order within it
follows Ray's scheduling (`loader_stream` decodes in the loader's workers instead, in a fixed order).

An episode that cannot be read (missing parquet, corrupt MP4) becomes a row counting its lost samples with the
episode named; the rank's loader counts them as bad samples, exactly as undecodable shard samples.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np

from vla_foundry.data.sample_streams import EndlessStream, LoaderStats
from vla_foundry.data.streaming.items import item_samples, raw_samples, read_items
from vla_foundry.data.streaming.source import LeRobotSource

logger = logging.getLogger(__name__)

# Rows of the flat_map are made into blocks of at most this size, so a rank gets its first samples while a read
# task is still decoding (Ray's default block size would hold a task's whole output).
TARGET_BLOCK_BYTES = 8 * 1024 * 1024
# Blocks each rank's iterator fetches ahead of the trainer.
PREFETCH_BLOCKS = 4
# A rank's samples are split into about this many Ray items per decode task.
ITEMS_PER_WORKER = 2
# Samples per Ray row (about 2.4 MB at two 224 px cameras).
SAMPLES_PER_ROW = 8


def _samples_row(samples: list[tuple[str, dict]]) -> dict:
    return {"payload": pickle.dumps(samples, protocol=5), "bad": "", "count": len(samples)}


def row_samples(row: dict) -> list[tuple[str, dict]]:
    """The (key, members) pairs of one good row of `cut_item`."""
    return pickle.loads(row["payload"])


def cut_item(row: dict, params: Any) -> Iterator[dict]:
    """One Ray Data item (runs on a Ray worker) -> rows of up to SAMPLES_PER_ROW samples (pickled (key, members)
    pairs: Ray's per-row costs, in the worker and in the rank, are paid once per row) and one row per lost episode
    (`bad` names it, `count` the samples lost)."""
    chunk: list[tuple[str, dict]] = []
    for out in item_samples(row, params):
        if isinstance(out, dict):
            yield {"payload": b"", **out}
            continue
        chunk.append(out)
        if len(chunk) == SAMPLES_PER_ROW:
            yield _samples_row(chunk)
            chunk = []
    if chunk:
        yield _samples_row(chunk)


def ensure_ray(data_params: Any, address: str | None = None) -> bool:
    """Connect to `address` / data.ray_address, reuse an initialised Ray (e.g. inside Ray Train workers), or start a
    small local one; returns whether this call started one."""
    address = address or data_params.ray_address
    if not address:
        from vla_foundry.local_ray import prepare_local_ray_environment

        prepare_local_ray_environment()
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=True)
        return False
    ray.init(
        num_cpus=data_params.ray_num_workers,
        object_store_memory=data_params.ray_object_store_mb * 1024 * 1024,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
    )
    return True


def build_rank_dataset(data_params: Any, source: LeRobotSource, samples: list[tuple[str, int]]) -> Any:
    """The lazy Ray Dataset of one rank's samples of a checkpoint interval (nothing runs until it is iterated)."""
    import ray

    ensure_ray(data_params)
    context = ray.data.DataContext.get_current()
    context.target_max_block_size = TARGET_BLOCK_BYTES
    context.enable_progress_bars = False
    from vla_foundry.data.preprocessing.job import forwarded_env

    # About ITEMS_PER_WORKER items per decode task, so every task has work and the last item is short.
    per_item = -(-len(samples) // (data_params.ray_num_workers * ITEMS_PER_WORKER))
    items = read_items(source, samples, per_item)
    options: dict[str, Any] = {}
    if data_params.ray_worker_memory_mb:
        options["memory"] = data_params.ray_worker_memory_mb * 1024 * 1024
    env = forwarded_env()
    if env:
        # A custom S3 endpoint (and its credentials) of this process reach the decoding workers too.
        options["runtime_env"] = {"env_vars": env}
    return ray.data.from_items(items, override_num_blocks=max(1, len(items))).flat_map(
        cut_item,
        fn_kwargs={"params": source.params},
        num_cpus=1,
        compute=ray.data.TaskPoolStrategy(size=data_params.ray_num_workers),
        **options,
    )


class LeRobotWindowStream(EndlessStream):
    """One rank's endless sample stream of a `lerobot` dataset in a checkpoint interval (the shard path's `DatasetStream`):
    raw samples as `RoboticsProcessor.process_sample` takes them, through a seeded shuffle buffer; a further pass
    (a new Ray execution) when the mixer needs more than the share holds, counted in `stats.repeated_passes`."""

    def __init__(
        self, source: LeRobotSource, samples: list[tuple[str, int]], dataset_index: int, seed: list[int],
        buffer_size: int, stats: LoaderStats,
    ) -> None:  # fmt: skip
        self.source = source
        self.data_params = source.data_params
        self.samples = samples  # the rank's (episode id, anchor) pairs of the interval
        self.dataset_index = dataset_index
        super().__init__(seed, buffer_size, stats)

    def rows(self) -> Iterator[dict]:
        """Rows of one pass over the rank's share, as Ray delivers them."""
        if not self.samples:
            return
        dataset = build_rank_dataset(self.data_params, self.source, self.samples)
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=PREFETCH_BLOCKS):
            yield from batch.to_pylist()

    def read_pass(self, pass_index: int, rng: np.random.Generator) -> Iterator[dict]:
        """Raw samples of one pass (members + `__key__` / `__url__`); lost episodes are counted as bad samples."""
        yield from raw_samples(self._outs(), self.source.root, self.stats)

    def _outs(self) -> Iterator[tuple[str, dict] | dict]:
        """The pass's rows unpacked into `item_samples` outputs: (key, members) per sample, a lost-episode dict."""
        for row in self.rows():
            if row["bad"]:
                yield {"bad": row["bad"], "count": row["count"]}
            else:
                yield from row_samples(row)

    def empty_share(self) -> str:
        return (
            f"dataset {self.dataset_index} ({self.source.root}) gave this rank no readable sample from "
            f"{len(self.samples)} planned; see the bad-sample list"
        )
