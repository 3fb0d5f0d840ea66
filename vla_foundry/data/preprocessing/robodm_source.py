"""Robo-DM trajectory files (`.vla`) as a robotics source, read with the `robodm` library (`uv sync --extra robodm`).

A `.vla` file is a Matroska container with one stream per feature (e.g. `observation/images/cam_high`,
`observation/state`, `action`). Images may be video-encoded; every other feature, and images written with the
`rawvideo` codec, is stored as pickled Python objects, one packet per step. Unpickling runs code from the file,
so a file holding such streams is only read with `--trust_pickle True`; otherwise the job ends with one line
naming the file and its pickled features (checked from the container's stream headers, before any unpickling).

Without a mapping, features of images [L, H, W, 3] uint8 are cameras (named by the last part of the feature name)
and numeric features [L] / [L, D] are low-dim fields (`/` becomes `.`: `observation/state` -> `observation.state`).
The mapping YAML (`--mapping_path`) may instead name `cameras` / `lowdim` ({stored name: feature}) and `language`
(a fixed text or {feature: name}). `--fps` resamples every feature to that rate with robodm's own loader. robodm
decodes a trajectory whole, so memory holds one episode's arrays. Each file is one episode and one read task.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from vla_foundry import storage
from vla_foundry.data.preprocessing.episodes import (
    Converter,
    Episode,
    EpisodeError,
    ReadTask,
    TaskFailure,
    register_converter,
)
from vla_foundry.data.preprocessing.source_mapping import episode_name, find_episode_files, load_mapping
from vla_foundry.params.base_params import ConfigError

SUFFIXES = (".vla",)
MAPPING_KEYS = ("cameras", "lowdim", "language")


def stream_features(path: str) -> tuple[dict[str, str], list[float]]:
    """({feature: codec}, packet times in seconds of the first feature stream) from the container headers.

    Packets are demuxed, never decoded or unpickled.
    """
    import av

    with av.open(path) as container:
        codecs = {s.metadata.get("FEATURE_NAME", f"stream_{s.index}"): s.codec_context.name for s in container.streams}
        first = container.streams[0]
        times = [
            float(p.pts * p.time_base)
            for p in container.demux(first)
            if p.pts is not None and p.size  # the flush packet at the end has no data
        ]
    return codecs, times


def pickled_features(codecs: dict[str, str]) -> list[str]:
    """Features robodm stores pickled: its `rawvideo` streams hold `pickle.dumps` of each step's value."""
    return sorted(f for f, codec in codecs.items() if codec == "rawvideo")


def refuse_untrusted(path: str, codecs: dict[str, str], trust_pickle: bool) -> None:
    pickled = pickled_features(codecs)
    if pickled and not trust_pickle:
        raise ConfigError(
            f"{path} stores features {pickled} as pickled Python objects; reading them runs code from the file. "
            f"Pass --trust_pickle True only for files from a source you trust"
        )


@register_converter("robodm")
class RobodmConverter(Converter):
    """Robo-DM `.vla` trajectories: one episode and one read task per file."""

    source_params = ("mapping_path", "trust_pickle")

    def __init__(self, params: Any) -> None:
        import importlib.util

        super().__init__(params)
        if importlib.util.find_spec("robodm") is None:
            raise ConfigError("type=robodm needs the robodm package: uv sync --extra robodm (or pip install robodm)")
        self.mapping = load_mapping(params.mapping_path, MAPPING_KEYS, "robodm")

    def plan_read_tasks(self) -> list[ReadTask]:
        files = find_episode_files(self.params.source_episodes, SUFFIXES, "Robo-DM")
        if self.params.max_episodes_to_process:
            files = files[: self.params.max_episodes_to_process]
        # The pickle check of the first file ends an untrusted job here, before any Ray task starts.
        with storage.local_copy(files[0][1]) as local:
            refuse_untrusted(files[0][1], stream_features(local)[0], self.params.trust_pickle)
            if self.params.camera_rename:
                self.check_camera_rename(self._cameras_of(local), files[0][1])
        tasks = []
        for root, path in files:
            name = episode_name(root, path, SUFFIXES)
            tasks.append(ReadTask(task_id=name, episode_ids=[name], spec={"path": path}))
        return tasks

    def read_task(self, task: ReadTask) -> Iterator[Episode | TaskFailure]:
        eid, path = task.episode_ids[0], task.spec["path"]
        try:
            with storage.local_copy(path) as local:
                codecs, times = stream_features(local)
                refuse_untrusted(path, codecs, self.params.trust_pickle)
                episode = self._episode(eid, path, local, times)
            yield episode
        except EpisodeError as e:
            yield TaskFailure(eid, e.reason, e.kind, e.length)
        except ConfigError:
            raise
        except Exception as e:  # a damaged container or an unexpected value: reported, not fatal
            yield TaskFailure(eid, f"{path}: {type(e).__name__}: {e}", "read_error")

    def _cameras_of(self, local: str) -> list[str]:
        """The cameras of a trajectory file as this converter names them before renaming: the mapping's, else those
        detected in its decoded features (one episode is decoded, only when camera_rename needs the names)."""
        if self.mapping.get("cameras") is not None:
            return [str(k) for k in self.mapping["cameras"]]
        import robodm

        trajectory = robodm.Trajectory(path=local, mode="r")
        try:
            data = {name: np.asarray(value) for name, value in trajectory.load().items()}
        finally:
            trajectory.close()
        return list(self._features(data)[0])

    def _features(self, data: dict[str, np.ndarray]) -> tuple[dict[str, str], dict[str, str]]:
        """(cameras, low-dim fields) as {stored name: feature}: from the mapping, else detected by shape."""
        cameras = self.mapping.get("cameras")
        lowdim = self.mapping.get("lowdim")
        if cameras is None:
            cameras = {
                f.rsplit("/", 1)[-1]: f
                for f, v in data.items()
                if v.ndim == 4 and v.shape[-1] == 3 and v.dtype == np.uint8
            }
        if lowdim is None:
            taken = set(cameras.values())
            lowdim = {
                f.replace("/", "."): f
                for f, v in data.items()
                if f not in taken and v.ndim in (1, 2) and np.issubdtype(v.dtype, np.number)
            }
        return {str(k): str(v) for k, v in cameras.items()}, {str(k): str(v) for k, v in lowdim.items()}

    def _episode(self, eid: str, path: str, local: str, times: list[float]) -> Episode:
        import robodm

        trajectory = robodm.Trajectory(path=local, mode="r")
        try:
            data = trajectory.load(desired_frequency=self.params.fps)
        finally:
            trajectory.close()
        data = {name: np.asarray(value) for name, value in data.items()}
        cameras, fields = self._features(data)
        for kind, names in (("missing_field", fields), ("missing_camera", cameras)):
            for name, feature in names.items():
                if feature not in data:
                    raise EpisodeError(
                        eid, f"{path}: feature {feature!r} ({name!r}) not found; it has {sorted(data)}", kind
                    )
        lengths = {f: len(data[f]) for f in [*fields.values(), *cameras.values()]}
        if len(set(lengths.values())) != 1:
            raise EpisodeError(eid, f"{path}: features differ in length {lengths}; --fps resamples them to one rate")
        length = next(iter(lengths.values()))
        lowdim = {name: data[f].reshape(length, -1).astype(np.float32) for name, f in fields.items()}  # (L, D)
        renamed = {self.params.camera_rename.get(c, c): f for c, f in cameras.items()}
        selected = self.select_cameras(eid, list(renamed), length)
        images = {cam: data[renamed[cam]] for cam in selected}  # (L, H, W, 3) uint8 each
        language = self.mapping.get("language")
        if isinstance(language, dict):
            feature = str(language.get("feature"))
            if feature not in data:
                raise EpisodeError(eid, f"{path}: language feature {feature!r} not found", "missing_field")
            value = data[feature][0]
            language = value.decode() if isinstance(value, bytes) else str(value)
        # robodm's own resampling changes the steps: the container's packet times only fit the unresampled data.
        timestamps = np.asarray(times) if self.params.fps is None and len(times) == length else None
        return Episode(
            episode_id=eid,
            length=length,
            lowdim=lowdim,
            language={"original": [language] if language else []},
            cameras=selected,
            frames=((t, {cam: images[cam][t] for cam in selected}) for t in range(length)),
            metadata={"source": path},
            timestamps=timestamps,
        )
