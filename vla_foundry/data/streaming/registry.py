"""Stream sources: dataset modalities read straight from a source root while training, without shards.

A stream source is a `StreamSource` subclass registered under its modality (`@register_stream_source("lerobot")`),
as converters are registered under their `--type`. A dataset of that modality in `data.dataset_manifest` is then
planned from the source's episodes (`manifest`), processed with the layout and statistics of its `layout_dir`
(written once by `prepare`) and read by the loader through `open_stream`. Every place that treats a streamed
dataset differently from a shard dataset asks this module, never a modality by name.

The built-in `lerobot` source is imported on first use; a plugin module (`--plugins my_pkg.source`) registers its
own, and the data params then accept its modality.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from vla_foundry.data.registry import Registry
from vla_foundry.params.data_params import STREAMED_MODALITIES

if TYPE_CHECKING:
    from vla_foundry.data.manifest import Manifest
    from vla_foundry.data.planner import DatasetPlan
    from vla_foundry.data.sample_streams import EndlessStream, LoaderStats

# Built-in stream sources, imported on first use (the LeRobot one pulls in the offline job's reader).
BUILTIN_STREAM_SOURCES: dict[str, str] = {"lerobot": "vla_foundry.data.streaming.source"}

_REGISTRY: Registry[type[StreamSource]] = Registry(
    "stream source", BUILTIN_STREAM_SOURCES, "modality {name} is not a stream source{hint}; valid: {valid}"
)
_INSTANCES: dict[str, StreamSource] = {}


class StreamSource(ABC):
    """One source root of a streamed modality, as the planner and the loader see it.

    A rank's stream is its share of the checkpoint interval (`interval_share`). The loader pulls it in the training
    process (no loader worker processes), where the source may decode in workers of its own (Ray for LeRobot), or,
    when the source reads `in_loader_workers`, each loader worker reads its part of the share."""

    # The modality selecting this source (set by `register_stream_source`).
    name: ClassVar[str] = ""
    # The data.type whose pipeline processes this source's raw samples.
    data_type: ClassVar[str] = "robotics"

    def __init__(self, data_params: Any, root: str) -> None:
        self.data_params = data_params
        self.root = root.rstrip("/")

    @classmethod
    def uses_ray(cls, data_params: Any) -> bool:
        """Whether reading needs Ray (training then starts or joins one before the loader runs)."""
        return False

    @classmethod
    def in_loader_workers(cls, data_params: Any) -> bool:
        """Whether the loader's worker processes read this source, each its `part` of the rank's share (the loader
        keeps its data.num_workers workers); False: the training process pulls the whole share (the source's own
        workers, e.g. Ray's, may decode) and the interval's loader runs without worker processes."""
        return False

    @classmethod
    def cache_key(cls, data_params: Any) -> Any:
        """What a built source depends on besides its root (JSON-serialisable): sources are built once per key."""
        from vla_foundry.params.parsing import params_to_dict

        return params_to_dict(data_params)

    @classmethod
    @abstractmethod
    def layout_dir(cls, data_params: Any, root: str) -> str:
        """The folder holding what a preprocessed dataset holds besides shards (`preprocessing_config.yaml`,
        `stats.json`) for `root`; cheap: no reading of the source."""

    @classmethod
    @abstractmethod
    def prepare(cls, data_params: Any, root: str) -> str:
        """Write `layout_dir` unless it is complete; returns its path. Runs once, before the params are resolved."""

    @abstractmethod
    def manifest(self) -> Manifest:
        """The source's episodes as the planner's shards (`<root>/<episode id>.tar` pseudo-shards, each as large as
        its number of samples), in a fixed order."""

    @abstractmethod
    def open_stream(
        self,
        dataset: DatasetPlan,
        dataset_index: int,
        rank: int,
        world_size: int,
        seed: list[int],
        buffer_size: int,
        stats: LoaderStats,
        part: tuple[int, int, int] = (0, 1, 1),
    ) -> EndlessStream:
        """The rank's endless stream of the interval's samples of this dataset (raw samples as the `data_type`
        pipeline takes them, `__key__` / `__url__` set); unusable ones counted in `stats`. With `part` (a, b, t) the
        stream holds the samples [n * a // t, n * b // t) of the rank's n (a loader worker's part; always
        (0, 1, 1) unless `in_loader_workers`)."""


def interval_share(
    anchors: dict[str, list[int]],
    dataset: DatasetPlan,
    rank: int,
    world_size: int,
    part: tuple[int, int, int] = (0, 1, 1),
) -> list[tuple[str, int]]:
    """Rank `rank`'s (episode id, anchor) pairs of a streamed dataset in a checkpoint interval.

    The interval's set is the first `dataset.num_samples` anchors of the planned episodes (plan order, every anchor of
    an episode in turn; `anchors` holds each episode's); a rank takes the r-th contiguous W-th of it (sizes differ
    by at most one), so ranks are disjoint and their union is the set; `part` (a, b, t) keeps [n * a // t,
    n * b // t) of the rank's n pairs (parts of a partition of [0, t) partition the rank's share)."""
    from vla_foundry import storage

    pairs: list[tuple[str, int]] = []
    for url in dataset.shards:
        eid = storage.basename(url).removesuffix(".tar")
        if eid not in anchors:
            raise ValueError(f"{dataset.dataset_dir}: planned episode {eid} is not in the dataset (was it changed?)")
        pairs.extend((eid, a) for a in anchors[eid])
        if len(pairs) >= dataset.num_samples:
            break
    pairs = pairs[: dataset.num_samples]
    n = len(pairs)
    share = pairs[n * rank // world_size : n * (rank + 1) // world_size]
    a, b, t = part
    return share[len(share) * a // t : len(share) * b // t]


def register_stream_source(name: str) -> Callable[[type[StreamSource]], type[StreamSource]]:
    """Class decorator: make a `StreamSource` subclass the reader of datasets of modality `name`."""

    def decorate(cls: type[StreamSource]) -> type[StreamSource]:
        if not (isinstance(cls, type) and issubclass(cls, StreamSource)):
            raise TypeError(f"@register_stream_source({name!r}) needs a StreamSource subclass, got {cls!r}")
        _REGISTRY.register(name, cls)
        cls.name = name
        # The data params accept the modality and know which pipeline it feeds.
        STREAMED_MODALITIES[name] = cls.data_type
        return cls

    return decorate


def stream_source_names() -> list[str]:
    """Every streamed modality: built-in and registered by plugins, sorted."""
    return _REGISTRY.names()


def is_stream(modality: str) -> bool:
    """Whether datasets of `modality` are streamed from their source root (no shards)."""
    return modality in _REGISTRY


def get_stream_source(name: str) -> type[StreamSource]:
    """The stream source class of modality `name`; unknown names are a `ConfigError` with the closest valid ones."""
    return _REGISTRY.get(name)


def open_source(data_params: Any, root: str, modality: str) -> StreamSource:
    """The stream source of `root`, built once per process and data params (building one reads the source's
    metadata)."""
    cls = get_stream_source(modality)
    key = json.dumps([modality, root.rstrip("/"), cls.cache_key(data_params)], sort_keys=True, default=str)
    if key not in _INSTANCES:
        _INSTANCES[key] = cls(data_params, root)
    return _INSTANCES[key]


def layout_dir(data_params: Any, path: str, modality: str) -> str:
    """The folder of a dataset's layout and statistics: its dataset dir, or a streamed source's layout dir."""
    if is_stream(modality):
        return get_stream_source(modality).layout_dir(data_params, path)
    from vla_foundry.data.manifest import dataset_paths

    return dataset_paths(path)[0]


def layout_dirs(data_params: Any) -> list[str]:
    """The layout folder of every train dataset, in `data.dataset_manifest` order."""
    modalities = list(data_params.dataset_modality) or [data_params.type] * len(data_params.dataset_manifest)
    return [layout_dir(data_params, p, m) for p, m in zip(data_params.dataset_manifest, modalities)]


def streamed(data_params: Any) -> list[tuple[str, str]]:
    """(root, modality) of every streamed train dataset."""
    return [(p, m) for p, m in zip(data_params.dataset_manifest, data_params.dataset_modality) if is_stream(m)]


def needs_ray(data_params: Any) -> bool:
    """Whether a train dataset's stream source reads through Ray."""
    return any(get_stream_source(m).uses_ray(data_params) for _, m in streamed(data_params))


def prepare_streams(data_params: Any, save_path: str) -> Any:
    """Data params whose streamed datasets have their layout dirs ready: the cache goes beside the runs
    (`<save_path>/stream_cache` unless data.streaming.output_dir says otherwise) and holds each root's layout and
    statistics, computed once. Returns new params (the cache dir filled in); others are returned unchanged."""
    import dataclasses

    from vla_foundry import storage

    roots = streamed(data_params)
    if not roots:
        return data_params
    if not data_params.streaming.output_dir:
        streaming = dataclasses.replace(data_params.streaming, output_dir=storage.join(save_path, "stream_cache"))
        data_params = dataclasses.replace(data_params, streaming=streaming)
    for root, modality in roots:
        get_stream_source(modality).prepare(data_params, root)
    return data_params
