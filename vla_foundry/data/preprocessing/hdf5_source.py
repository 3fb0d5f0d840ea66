"""HDF5 episodes as a robotics source: ALOHA/ACT files and robomimic files, the layout detected per file.

- ALOHA/ACT (`episode_*.hdf5`, one episode per file, detected by `/observations/qpos`): `/action` [L, A],
  `/observations/qpos|qvel|effort` [L, D] stored as `action`, `observation.state|velocity|effort` (LeRobot's
  names for them), cameras `/observations/images/<cam>`.
- robomimic (one file of many demos, detected by `data/demo_*`): per demo `actions` [L, A] stored as `action`,
  every numeric `obs/<key>` [L, D] stored as `<key>`, and every `obs/<key>` of images [L, H, W, 3] a camera.

Images are decoded as stored: raw uint8 arrays [L, H, W, 3], or encoded bytes per step (JPEG/PNG; rows of a
padded uint8 array [L, N] as ACT's compressed files keep them, or variable-length bytes). The mapping YAML
(`--mapping_path`) replaces the detected cameras / fields with dataset paths relative to the episode's group,
and may give the language (`language: text` or `{attribute: name}`) and per-step `timestamps` (seconds).
Planning reads only file metadata (ranged reads on S3); a read task downloads an S3 file, reads it and removes it.
"""

from __future__ import annotations

import io
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
from vla_foundry.data.preprocessing.source_mapping import (
    episode_name,
    find_episode_files,
    instruction_words,
    load_mapping,
)
from vla_foundry.params.base_params import ConfigError

SUFFIXES = (".hdf5", ".h5")
MAPPING_KEYS = ("cameras", "lowdim", "language", "timestamps")
ALOHA_FIELDS = {
    "observation.state": "observations/qpos",
    "observation.velocity": "observations/qvel",
    "observation.effort": "observations/effort",
    "action": "action",
}
LANGUAGE_ATTRIBUTES = ("language_instruction", "instruction", "task")


def detect_layout(handle: Any) -> str:
    """ "aloha" (has /observations/qpos) or "robomimic" (has data/demo_*); a `ValueError` otherwise."""
    if "observations/qpos" in handle:
        return "aloha"
    if "data" in handle and any(k.startswith("demo_") for k in handle["data"]):
        return "robomimic"
    raise ValueError(
        f"neither ALOHA (/observations/qpos) nor robomimic (data/demo_*) layout; top-level keys: {sorted(handle)}"
    )


def demo_names(handle: Any) -> list[str]:
    """robomimic demos in numeric order (demo_2 before demo_10)."""
    names = [k for k in handle["data"] if k.startswith("demo_")]
    return sorted(names, key=lambda n: (len(n), n))


def decode_image(row: Any) -> np.ndarray:
    """One stored image -> (H, W, 3) uint8: a raw array as is, encoded bytes (zero-padded or not) decoded."""
    array = np.asarray(row)
    if array.ndim == 3:
        return array.astype(np.uint8, copy=False)
    from PIL import Image

    data = bytes(array.tobytes() if array.dtype == np.uint8 else row)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@register_converter("hdf5")
class Hdf5Converter(Converter):
    """ALOHA/ACT and robomimic HDF5 files: one read task per file (a robomimic file holds many episodes)."""

    source_params = ("mapping_path",)

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.mapping = load_mapping(params.mapping_path, MAPPING_KEYS, "hdf5")

    def plan_read_tasks(self) -> list[ReadTask]:
        import h5py

        tasks: list[ReadTask] = []
        total = 0
        # Cameras of each file's first episode (as the file names them), for the camera_rename check.
        cameras: dict[str, None] = {}
        for root, path in find_episode_files(self.params.source_episodes, SUFFIXES, "HDF5"):
            name = episode_name(root, path, SUFFIXES)
            # The layout (and robomimic's demo list) is read from the file's metadata, not its arrays (on S3 by
            # ranged reads of the blocks h5py asks for).
            with storage.open_seekable(path) as stream:
                try:
                    with h5py.File(stream, "r") as handle:
                        layout = detect_layout(handle)
                        groups = demo_names(handle) if layout == "robomimic" else [""]
                        if self.params.camera_rename and groups:
                            first = handle[f"data/{groups[0]}"] if groups[0] else handle
                            cameras.update(dict.fromkeys(self._sources(first, layout)[0]))
                except (OSError, ValueError) as e:
                    raise ConfigError(f"{path}: not a readable ALOHA or robomimic HDF5 file: {e}") from e
            limit = self.params.max_episodes_to_process
            if limit:
                groups = groups[: limit - total]
            ids = [f"{name}_{g}" if g else name for g in groups]
            tasks.append(
                ReadTask(
                    task_id=name, episode_ids=ids, spec={"path": path, "layout": layout, "groups": groups, "root": root}
                )
            )
            total += len(ids)
            if limit and total >= limit:
                break
        if self.params.camera_rename:
            self.check_camera_rename(list(cameras), f"HDF5 files under {', '.join(self.params.source_episodes)}")
        return tasks

    def read_task(self, task: ReadTask) -> Iterator[Episode | TaskFailure]:
        import h5py

        spec = task.spec
        try:
            with storage.local_copy(spec["path"]) as local, h5py.File(local, "r") as handle:
                for eid, group in zip(task.episode_ids, spec["groups"]):
                    try:
                        node = handle[f"data/{group}"] if group else handle
                        yield self._episode(eid, node, spec)
                    except EpisodeError as e:
                        yield TaskFailure(eid, e.reason, e.kind, e.length)
                    except (KeyError, ValueError, OSError, TypeError) as e:
                        yield TaskFailure(eid, f"{spec['path']}: {type(e).__name__}: {e}", "read_error")
        except OSError as e:  # the whole file is unreadable: every episode it holds fails
            failed = f"{spec['path']} is unreadable: {e}"
            for eid in task.episode_ids:
                yield TaskFailure(eid, failed, "read_error")

    def _sources(self, node: Any, layout: str) -> tuple[dict[str, str], dict[str, str]]:
        """(cameras, lowdim fields) of an episode group: {stored name: dataset path within the group}."""
        cameras = self.mapping.get("cameras")
        lowdim = self.mapping.get("lowdim")
        if layout == "aloha":
            if cameras is None:
                images = node.get("observations/images")
                cameras = {k: f"observations/images/{k}" for k in (images or {})}
            if lowdim is None:
                lowdim = {name: path for name, path in ALOHA_FIELDS.items() if path in node}
        else:
            obs = node.get("obs") or {}
            if cameras is None:
                cameras = {k: f"obs/{k}" for k in obs if obs[k].ndim == 4 and obs[k].shape[-1] == 3}
            if lowdim is None:
                lowdim = {"action": "actions"}
                for k in obs:
                    if k not in cameras and obs[k].ndim in (1, 2) and np.issubdtype(obs[k].dtype, np.number):
                        lowdim[k] = f"obs/{k}"
        return {str(k): str(v) for k, v in cameras.items()}, {str(k): str(v) for k, v in lowdim.items()}

    def _episode(self, eid: str, node: Any, spec: dict) -> Episode:
        path = spec["path"]
        cameras, fields = self._sources(node, spec["layout"])
        group = node.name
        lowdim: dict[str, np.ndarray] = {}
        for name, key in fields.items():
            if key not in node:
                raise EpisodeError(
                    eid, f"{path}: dataset {group.rstrip('/')}/{key} (field {name!r}) not found", "missing_field"
                )
            lowdim[name] = np.asarray(node[key][()], dtype=np.float32)
        if not lowdim:
            raise EpisodeError(eid, f"{path}: no low-dim fields found in {group}", "missing_field")
        length = len(next(iter(lowdim.values())))
        for name, value in lowdim.items():
            if len(value) != length:
                lengths = {n: len(v) for n, v in lowdim.items()}
                raise EpisodeError(eid, f"{path}: fields differ in length {lengths}", "read_error")
            lowdim[name] = value.reshape(length, -1)  # (L, D)
        renamed = {self.params.camera_rename.get(c, c): key for c, key in cameras.items()}
        for cam, key in renamed.items():
            if key not in node:
                raise EpisodeError(
                    eid, f"{path}: camera {cam!r} dataset {group.rstrip('/')}/{key} not found", "missing_camera", length
                )
        selected = self.select_cameras(eid, list(renamed), length)
        datasets = {cam: node[renamed[cam]] for cam in selected}
        for cam, dataset in datasets.items():
            if len(dataset) != length:
                raise EpisodeError(eid, f"{path}: camera {cam!r} has {len(dataset)} frames, fields have {length}")
        timestamps = None
        if "timestamps" in self.mapping:
            key = str(self.mapping["timestamps"])
            if key not in node:
                raise EpisodeError(
                    eid, f"{path}: timestamps dataset {group.rstrip('/')}/{key} not found", "missing_field"
                )
            timestamps = np.asarray(node[key][()], dtype=np.float64).reshape(-1)
        return Episode(
            episode_id=eid,
            length=length,
            lowdim=lowdim,
            language=self._language(eid, node, spec["root"]),
            cameras=selected,
            # One row per camera per step, read and decoded as sample cutting pulls it (memory: a frame per camera).
            frames=((t, {cam: decode_image(d[t]) for cam, d in datasets.items()}) for t in range(length)),
            metadata={"source": path, "layout": spec["layout"]},
            timestamps=timestamps,
        )

    def _language(self, eid: str, node: Any, root: str) -> dict[str, list[str]]:
        """The mapping's fixed text or attribute; else a known attribute; else the source folder's name as words."""
        language = self.mapping.get("language")
        if isinstance(language, str):
            return {"original": [language]}
        attributes = [str(language["attribute"])] if isinstance(language, dict) else list(LANGUAGE_ATTRIBUTES)
        for holder in (node, node.parent, node.file):
            for attribute in attributes:
                if attribute in holder.attrs:
                    value = holder.attrs[attribute]
                    return {"original": [value.decode() if isinstance(value, bytes) else str(value)]}
        if isinstance(language, dict):
            raise EpisodeError(eid, f"language attribute {attributes[0]!r} not found on {node.name}", "missing_field")
        return {"original": [instruction_words(storage.basename(root))]}
