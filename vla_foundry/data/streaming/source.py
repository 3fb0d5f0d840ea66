"""A LeRobot root (v3.0 / v2.1, local or s3://) as a training dataset of modality `lerobot`, without shards.

The converter of the offline job (`get_converter("lerobot")`) plans the read tasks (file-group partitioning) and
lists the episodes; each episode is a pseudo-shard of the planner whose size is its number of anchors, so checkpoint intervals,
cursors, epochs and resume work exactly as for shard datasets. The stream's *dataset dir* is a small cache folder
(`<data.streaming.output_dir>/<root name>-<digest>/`) holding what a preprocessed dataset holds besides shards:
`preprocessing_config.yaml` (the window, cameras and image size the stream cuts with) and `stats.json` (from the
root's `meta/stats.json` when it has what the normalisation needs, else from a one-off pass over the low-dim data).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_foundry import storage
from vla_foundry.data.manifest import Manifest, ShardInfo
from vla_foundry.data.streaming.registry import StreamSource, register_stream_source
from vla_foundry.params.base_params import ConfigError

logger = logging.getLogger(__name__)

# Fields of the preprocessing params that say how the offline job runs, not what a sample holds.
JOB_ONLY_FIELDS = (
    "output_dir",
    "samples_per_shard",
    "ray_address",
    "num_cpus",
    "max_failure_fraction",
    "overwrite",
    "keep_work_dir",
    "show_progress",
    "jpeg_quality",
)


# The data params saying who decodes a stream and with what resources (a source's stream reads them).
DECODING_FIELDS = ("stream_decoding", "ray_address", "ray_num_workers", "ray_worker_memory_mb", "ray_object_store_mb")


def stream_params(data_params: Any, root: str) -> Any:
    """The preprocessing params the stream of `root` cuts with: data.streaming with source_episodes = [root]."""
    return dataclasses.replace(data_params.streaming, type="lerobot", source_episodes=[root.rstrip("/")])


def stream_dir(data_params: Any, root: str) -> str:
    """The cache folder of `root`'s stream: named by the root and a digest of everything that shapes a sample."""
    from vla_foundry.params.parsing import params_to_dict

    cache = data_params.streaming.output_dir
    if not cache:
        raise ConfigError(
            "data.streaming.output_dir is empty: name a folder for the stream's cached layout and statistics "
            "(training fills it with <save_path>/stream_cache)"
        )
    config = {k: v for k, v in params_to_dict(stream_params(data_params, root)).items() if k not in JOB_ONLY_FIELDS}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
    name = storage.basename(root.rstrip("/")) or "lerobot"
    return storage.join(cache, f"{name}-{digest}")


@dataclass
class EpisodeRef:
    """Where an episode lives: its read task (index into `LeRobotSource.tasks`) and its anchors."""

    task_index: int
    length: int
    anchors: list[int]


@register_stream_source("lerobot")
class LeRobotSource(StreamSource):
    """The episodes and read tasks of one LeRobot root, cut with the streaming params; Ray Data tasks or the
    loader's workers decode them (data.stream_decoding)."""

    def __init__(self, data_params: Any, root: str) -> None:
        from vla_foundry.data.preprocessing.episodes import get_converter
        from vla_foundry.data.preprocessing.sample_cutting import plan_anchors

        super().__init__(data_params, root)
        self.params = stream_params(data_params, self.root)
        self.converter = get_converter("lerobot")(self.params)
        self.tasks = self.converter.plan_read_tasks()
        self.episodes: dict[str, EpisodeRef] = {}
        for i, task in enumerate(self.tasks):
            for eid, ep in zip(task.episode_ids, task.spec["episodes"]):
                length = int(ep["length"])
                self.episodes[eid] = EpisodeRef(i, length, plan_anchors(length, self.params))
        if not self.episodes:
            raise ConfigError(f"{self.root}: the LeRobot dataset lists no episodes")
        if self.in_loader_workers(data_params):
            # The decoder's modules, imported by the loader process that plans with this source before it forks each
            # checkpoint interval's workers: they inherit them instead of importing them again (~50 ms each).
            import av  # noqa: F401
            import pyarrow.parquet  # noqa: F401

            import vla_foundry.data.streaming.items  # noqa: F401

    @classmethod
    def uses_ray(cls, data_params: Any) -> bool:
        return data_params.stream_decoding == "ray"

    @classmethod
    def in_loader_workers(cls, data_params: Any) -> bool:
        return data_params.stream_decoding == "loader"

    @classmethod
    def cache_key(cls, data_params: Any) -> Any:
        from vla_foundry.params.parsing import params_to_dict

        # What the source reads is shaped by data.streaming, and who decodes it by the decoding fields (the rest of
        # the data params is the pipeline's).
        decoding = {name: getattr(data_params, name) for name in DECODING_FIELDS}
        return {"streaming": params_to_dict(data_params.streaming), **decoding}

    @classmethod
    def layout_dir(cls, data_params: Any, root: str) -> str:
        return stream_dir(data_params, root)

    @classmethod
    def prepare(cls, data_params: Any, root: str) -> str:
        return prepare_stream_dir(data_params, root)

    def open_stream(
        self, dataset: Any, dataset_index: int, rank: int, world_size: int, seed: list[int], buffer_size: int,
        stats: Any, part: tuple[int, int, int] = (0, 1, 1),
    ) -> Any:  # fmt: skip
        from vla_foundry.data.streaming.registry import interval_share

        anchors = {eid: ref.anchors for eid, ref in self.episodes.items()}
        share = interval_share(anchors, dataset, rank, world_size, part)
        if self.in_loader_workers(self.data_params):
            from vla_foundry.data.streaming.loader_stream import LeRobotLoaderStream

            # This loader worker's part of the rank's share, decoded and cut in this process.
            return LeRobotLoaderStream(self, share, dataset_index, seed, buffer_size, stats)
        from vla_foundry.data.streaming.ray_stream import LeRobotWindowStream

        # The rank's share of the checkpoint interval, decoded and cut by Ray Data workers.
        return LeRobotWindowStream(self, share, dataset_index, seed, buffer_size, stats)

    def manifest(self) -> Manifest:
        """Episodes as the planner's shards (in dataset order), each as large as its number of anchors."""
        shards = tuple(ShardInfo(eid, len(ref.anchors)) for eid, ref in self.episodes.items())
        return Manifest(self.root, storage.join(self.root, "meta"), shards)

    def cameras(self) -> list[str]:
        """The cameras a streamed sample holds (after renaming and camera_names), in order."""
        from vla_foundry.data.preprocessing.lerobot_source import stored_camera_name

        spec = self.tasks[0].spec
        available = [stored_camera_name(k, self.params.camera_rename) for k in spec["video_keys"] + spec["image_keys"]]
        if self.params.camera_names is None:
            return available
        missing = [c for c in self.params.camera_names if c not in available]
        if missing:
            raise ConfigError(
                f"{self.root}: data.streaming.camera_names {missing} are not cameras of the dataset; its cameras: "
                f"{available}"
            )
        return list(self.params.camera_names)

    def lowdim_stats(self) -> dict:
        """stats.json content from a pass over every episode's low-dim data (the offline job's window statistics;
        videos are opened but no frame is decoded)."""
        from vla_foundry.data.preprocessing.episodes import TaskFailure
        from vla_foundry.data.preprocessing.sample_cutting import cut_window_lowdim
        from vla_foundry.data.preprocessing.window_statistics import WindowStats

        stats = WindowStats(seed=self.params.seed)
        for task in self.tasks:
            for item in self.converter.read_task(task):
                if isinstance(item, TaskFailure):
                    logger.warning("stream statistics skip episode %s: %s", item.episode_id, item.reason)
                    continue
                for anchor in self.episodes[item.episode_id].anchors:
                    lowdim, past_mask, future_mask = cut_window_lowdim(item, anchor, self.params)
                    stats.add_sample(lowdim, past_mask | future_mask)
        return stats.to_json()


def stats_from_meta(root: str, fields: list[str], window: int) -> dict | None:
    """stats.json entries of `fields` from the root's meta/stats.json (per-frame mean/std/min/max), or None when
    the file is absent or lacks one of them. Per-frame statistics stand in for window statistics: only global
    scope normalisation may use them (the caller checks)."""
    path = storage.join(root, "meta", "stats.json")
    if not storage.exists(path):
        return None
    meta = json.loads(storage.read_text(path))
    out = {}
    for name in fields:
        entry = meta.get(name)
        if not isinstance(entry, dict) or not all(k in entry for k in ("mean", "std", "min", "max")):
            return None
        flat = {k: np.asarray(entry[k], dtype=np.float64).reshape(-1).tolist() for k in ("mean", "std", "min", "max")}
        count = int(np.asarray(entry.get("count", [1])).reshape(-1)[0])
        out[name] = {**flat, "count": [count] * window}
    return out


def prepare_stream_dir(data_params: Any, root: str) -> str:
    """Write the stream dir of `root` unless it is complete (stats.json written last); returns its path."""
    from vla_foundry.data.preprocessing.robotics import preprocessing_config

    folder = stream_dir(data_params, root)
    stats_path = storage.join(folder, "stats.json")
    if storage.exists(stats_path):
        return folder
    from vla_foundry.data.streaming.registry import open_source

    source = open_source(data_params, root, "lerobot")
    params = source.params
    cameras = source.cameras()
    # Streamed frames are resized to params.image_size when it is set; otherwise they keep each video's size.
    sizes = {cam: list(params.image_size) for cam in cameras} if params.image_size else None
    storage.write_text(storage.join(folder, "preprocessing_config.yaml"), preprocessing_config(params, cameras, sizes))
    norm = data_params.normalization
    wanted = list(dict.fromkeys([*data_params.action_fields, *data_params.proprioception_fields]))
    stats = None
    if (
        norm.scope == "global"
        and {norm.method, *norm.field_overrides.values()} <= {"std", "min_max", "none"}
        and not params.relative_pose_fields
    ):
        stats = stats_from_meta(source.root, wanted, params.window_length)
    if stats is None:
        logger.info("computing low-dim statistics of %s (cached in %s)", source.root, folder)
        stats = source.lowdim_stats()
    else:
        logger.info("low-dim statistics of %s from its meta/stats.json", source.root)
    storage.write_text(stats_path, json.dumps(stats, indent=1))
    return folder
