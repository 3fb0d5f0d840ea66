"""A `lerobot` stream decoded by the loader's own worker processes (data.stream_decoding "loader"): no Ray.

The loader splits a rank's share of the checkpoint interval into one contiguous part per worker (`interval_share`
over rank x workers), so workers are disjoint and their union is the rank's share. A worker cuts its part read task
by read task (`items.item_samples`, in plan order) into a seeded shuffle buffer, as a shard worker reads its
shards: the order of samples is a function of the seed, the interval and the worker count, so a resumed run sees
the batches an uninterrupted one would. Lost episodes are counted as bad samples, with the episode named.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from vla_foundry.data.sample_streams import EndlessStream, LoaderStats
from vla_foundry.data.streaming.items import item_samples, raw_samples, read_items
from vla_foundry.data.streaming.source import LeRobotSource


class LeRobotLoaderStream(EndlessStream):
    """One loader worker's endless sample stream of its part of a `lerobot` dataset's interval share."""

    def __init__(
        self, source: LeRobotSource, samples: list[tuple[str, int]], dataset_index: int, seed: list[int],
        buffer_size: int, stats: LoaderStats,
    ) -> None:  # fmt: skip
        self.source = source
        self.samples = samples  # the worker's (episode id, anchor) pairs of the interval
        self.dataset_index = dataset_index
        super().__init__(seed, buffer_size, stats)

    def read_pass(self, pass_index: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
        """Raw samples of one pass (members + `__key__` / `__url__`); lost episodes are counted as bad samples."""
        outs = (out for item in read_items(self.source, self.samples) for out in item_samples(item, self.source.params))
        yield from raw_samples(outs, self.source.root, self.stats)

    def empty_share(self) -> str:
        return (
            f"dataset {self.dataset_index} ({self.source.root}) gave this loader worker no readable sample from "
            f"{len(self.samples)} planned; see the bad-sample list"
        )
