"""The converter interface shared by every robotics source, and the data it hands to sample cutting.

A converter turns source roots into read tasks (`plan_read_tasks`) and a read task into episodes
(`read_task`). An episode carries its whole low-dim data (small) and a lazy, time-ordered stream of camera
frames, so memory stays bounded by the frames sample cutting holds at once, never by the video length.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from vla_foundry.data.registry import Registry
from vla_foundry.names import closest_names
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams

# Built-in converters, imported on first use so that choosing one never imports the others' readers.
BUILTIN_CONVERTERS: dict[str, str] = {
    "lerobot": "vla_foundry.data.preprocessing.lerobot_source",
    "spartan": "vla_foundry.data.preprocessing.spartan_source",
    "hdf5": "vla_foundry.data.preprocessing.hdf5_source",
    "mcap": "vla_foundry.data.preprocessing.mcap_source",
    "robodm": "vla_foundry.data.preprocessing.robodm_source",
}

_CONVERTERS: Registry[type[Converter]] = Registry(
    "converter", BUILTIN_CONVERTERS, "type={name} is not a known robotics source{hint}; valid: {valid}"
)


class EpisodeError(Exception):
    """An episode cannot be converted; the message names the episode, the file and what is wrong."""

    def __init__(self, episode_id: str, reason: str, kind: str = "read_error", length: int | None = None) -> None:
        super().__init__(f"episode {episode_id}: {reason}")
        self.episode_id = episode_id
        self.reason = reason
        # Counted in processing_metadata.json under dropped[kind].
        self.kind = kind
        # Episode length when known, so the samples it would have given are counted as dropped.
        self.length = length


@dataclass
class ReadTask:
    """A unit of reading scheduled as one Ray task: episodes sharing their source files, read in one pass."""

    task_id: str
    episode_ids: list[str]
    # Converter-specific description (paths, per-episode metadata); JSON-serialisable.
    spec: dict[str, Any] = field(default_factory=dict)


@dataclass
class Episode:
    """One episode: low-dim arrays [L, D], per-episode constants, language, and a lazy frame stream."""

    episode_id: str
    length: int
    lowdim: dict[str, np.ndarray]
    language: dict[str, list[str]]
    cameras: list[str]
    # Yields (t, {camera: (H, W, 3) uint8}) for t = 0 .. length-1 in order (or for t in `frame_steps`).
    frames: Iterator[tuple[int, dict[str, np.ndarray]]]
    # Arrays stored as they are in every sample (e.g. intrinsics [3, 3]) or sliced per window when [L, ...].
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    # Source time of each step in seconds (L,), when the source records one; the quality report checks its gaps.
    timestamps: np.ndarray | None = None
    # What the converter itself found about the episode (e.g. MCAP streams older than the tolerance), reported
    # under the episode's quality entry; JSON-serialisable.
    quality: dict[str, Any] = field(default_factory=dict)
    # The increasing steps `frames` yields when the converter was asked to cut some anchors only (their frames and
    # nothing else are decoded); None: every step.
    frame_steps: list[int] | None = None


@dataclass
class TaskFailure:
    """An episode (or a whole task) that could not be converted."""

    episode_id: str
    reason: str
    kind: str = "read_error"
    length: int | None = None


class Converter(ABC):
    """Base of robotics source converters: discover episodes, plan read tasks, read them."""

    # The --type value selecting this converter.
    name: ClassVar[str] = ""
    # Source-specific params this converter reads (e.g. mapping_path); set for another type they are refused.
    source_params: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: RoboticsPreprocessingParams) -> None:
        self.params = params

    @abstractmethod
    def plan_read_tasks(self) -> list[ReadTask]:
        """Discover the episodes under `params.source_episodes` and group them into read tasks."""

    @abstractmethod
    def read_task(self, task: ReadTask) -> Iterator[Episode | TaskFailure]:
        """Episodes of a task in order; an episode that cannot be read is yielded as a TaskFailure."""

    def stats(self) -> dict[str, int]:
        """Counters worth reporting (e.g. video container opens)."""
        return {}

    def check_camera_rename(self, source_cameras: list[str], where: str) -> None:
        """Every `camera_rename` key must name a camera of the source (as the source calls it); one that matches
        none is a ConfigError naming the source's cameras, instead of a rename that silently does nothing."""
        unknown = [key for key in self.params.camera_rename if key not in source_cameras]
        if not unknown:
            return
        key = unknown[0]
        close = closest_names(key, source_cameras, n=1)
        # Users often give the short stored name (`top`) where the source's own name is expected.
        close = close or [c for c in source_cameras if c.endswith("." + key) or c.endswith("/" + key)][:1]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{where}: camera_rename key {key!r}{hint} matches no camera; its cameras: {', '.join(source_cameras)}"
        )

    def select_cameras(self, episode_id: str, available: list[str], length: int | None = None) -> list[str]:
        """The cameras to store, in order; raises EpisodeError(kind="missing_camera") when a requested one is
        absent (`length`, when known, counts the episode's samples as dropped)."""
        if self.params.camera_names is None:
            return list(available)
        missing = [c for c in self.params.camera_names if c not in available]
        if missing:
            raise EpisodeError(
                episode_id,
                f"missing camera(s) {missing}; the episode has {available}",
                kind="missing_camera",
                length=length,
            )
        return list(self.params.camera_names)


def register_converter(name: str) -> Callable[[type[Converter]], type[Converter]]:
    """Class decorator: make a `Converter` subclass the source selected by `--type NAME`."""

    def decorate(cls: type[Converter]) -> type[Converter]:
        if not (isinstance(cls, type) and issubclass(cls, Converter)):
            raise TypeError(f"@register_converter({name!r}) needs a Converter subclass, got {cls!r}")
        _CONVERTERS.register(name, cls)
        cls.name = name
        return cls

    return decorate


def converter_names() -> list[str]:
    """Every `--type` value that selects a converter: built-in and registered by plugins, sorted."""
    return _CONVERTERS.names()


def get_converter(name: str) -> type[Converter]:
    """The converter class registered as `name`; unknown names are a `ConfigError` with the closest valid ones."""
    return _CONVERTERS.get(name)
