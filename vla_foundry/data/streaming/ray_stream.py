"""Ray Data streams of a checkpoint interval's LeRobot samples: read tasks -> decode + cut + resize on Ray CPU workers -> a rank.

A checkpoint interval's set of a `lerobot` dataset is the first `num_samples` anchors of its planned episodes (plan order, every
anchor of an episode in turn). Rank r of W takes the r-th contiguous W-th of that list (equal shares up to one
sample), so ranks are disjoint and their union is the set, and each rank decodes mostly its own episodes. Its
samples are grouped into items of one read task each (the episodes sharing their data and video files, so each MP4
is opened once per item); a Ray Data `flat_map` (`data.ray_num_workers` concurrent tasks of 1 CPU, optional memory
reservation) reads an item with the offline job's converter and cuts it with `cut_samples`, keeping frames as
resized (h, w, 3) uint8 arrays instead of JPEG bytes. The rank pulls rows as Ray produces them (streaming, with
backpressure) into a seeded shuffle buffer: the *set* of an interval is deterministic, the order within it follows
Ray's scheduling.

An episode that cannot be read (missing parquet, corrupt MP4) becomes a row counting its lost samples with the
episode named; the rank's loader counts them as bad samples, exactly as undecodable shard samples.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np

from vla_foundry.data.sample_streams import EndlessStream, LoaderStats
from vla_foundry.data.streaming.source import LeRobotSource

logger = logging.getLogger(__name__)

# Rows of the flat_map are made into blocks of at most this size, so a rank gets its first samples while a read
# task is still decoding (Ray's default block size would hold a task's whole output).
TARGET_BLOCK_BYTES = 8 * 1024 * 1024
# Blocks each rank's iterator fetches ahead of the trainer.
PREFETCH_BLOCKS = 4
# A rank's samples are split into about this many Ray items per decode task (at episode boundaries).
ITEMS_PER_WORKER = 2


def read_items(
    source: LeRobotSource, samples: list[tuple[str, int]], max_item_samples: int | None = None
) -> list[dict]:
    """Samples -> Ray Data items: consecutive samples of one read task (each episode once) form an item, closed at
    an episode boundary once it holds `max_item_samples` (None: no limit).

    The limit lets several decode tasks share one read task: a dataset recorded by lerobot keeps every episode in
    one data file and one MP4 per camera (a single read task), which would otherwise be one Ray task on one CPU.
    Each item's reader seeks to its first episode, so splitting costs a seek per item, not a re-decode."""
    items: list[dict] = []
    current: dict | None = None
    for eid, anchor in samples:
        task_index = source.episodes[eid].task_index
        if (
            current is None
            or current["task_index"] != task_index
            or (eid in current["anchors"] and current["last"] != eid)
            or (eid != current["last"] and max_item_samples and current["count"] >= max_item_samples)
        ):
            current = {"task_index": task_index, "anchors": {}, "last": eid, "count": 0}
            items.append(current)
        anchors = current["anchors"].setdefault(eid, [])
        if anchors and anchor <= anchors[-1]:
            # The same episode again (an interval that wrapped into a new epoch): a new item keeps anchors increasing.
            current = {"task_index": task_index, "anchors": {eid: []}, "last": eid, "count": 0}
            items.append(current)
            anchors = current["anchors"][eid]
        anchors.append(anchor)
        current["last"] = eid
        current["count"] += 1
    out = []
    for item in items:
        task = source.tasks[item["task_index"]]
        keep = [i for i, e in enumerate(task.episode_ids) if e in item["anchors"]]
        spec = {**task.spec, "episodes": [task.spec["episodes"][i] for i in keep]}
        task_json = {"task_id": task.task_id, "episode_ids": [task.episode_ids[i] for i in keep], "spec": spec}
        out.append({"item": json.dumps({"task": task_json, "anchors": item["anchors"]})})
    return out


def _bad_row(episode_id: str, reason: str, count: int) -> dict:
    return {"key": episode_id, "payload": b"", "bad": f"episode {episode_id}: {reason}", "count": count}


def cut_item(row: dict, params: Any) -> Iterator[dict]:
    """One Ray Data item (runs on a Ray worker): its episodes -> one row per sample (pickled members) or per lost
    episode (`bad` names it, `count` the samples lost)."""
    from vla_foundry.data.preprocessing.episodes import EpisodeError, ReadTask, TaskFailure, get_converter
    from vla_foundry.data.preprocessing.sample_cutting import cut_samples
    from vla_foundry.data.preprocessing.video import VideoDecodeError

    item = json.loads(row["item"])
    task = ReadTask(**item["task"])
    wanted: dict[str, list[int]] = item["anchors"]
    converter = get_converter("lerobot")(params)
    for episode in converter.read_task(task):
        anchors = wanted[episode.episode_id]
        if isinstance(episode, TaskFailure):
            yield _bad_row(episode.episode_id, f"{episode.reason} ({episode.kind})", len(anchors))
            continue
        done = 0
        try:
            for sample in cut_samples(episode, params, anchors, np.ascontiguousarray, dict):
                yield {"key": sample.key, "payload": pickle.dumps(sample.members, protocol=5), "bad": "", "count": 1}
                done += 1
        except (EpisodeError, VideoDecodeError) as e:
            reason = e.reason if isinstance(e, EpisodeError) else str(e)
            yield _bad_row(episode.episode_id, reason, len(anchors) - done)
        except Exception as e:  # malformed data of one episode: counted, the stream goes on
            yield _bad_row(episode.episode_id, f"{type(e).__name__}: {e}", len(anchors) - done)


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
        for row in self.rows():
            if row["bad"]:
                self.stats.record_bad(f"{self.source.root}: {row['bad']}", int(row["count"]))
                continue
            sample = pickle.loads(row["payload"])
            sample["__key__"] = row["key"]
            sample["__url__"] = self.source.root
            yield sample

    def empty_share(self) -> str:
        return (
            f"dataset {self.dataset_index} ({self.source.root}) gave this rank no readable sample from "
            f"{len(self.samples)} planned; see the bad-sample list"
        )
