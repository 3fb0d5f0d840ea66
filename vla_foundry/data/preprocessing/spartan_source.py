"""Spartan (LBM) episode folders as a robotics source (docs/formats.md §5).

An episode is a folder `.../tasks/<TaskName>/.../<episode>/processed/` with metadata.yaml (camera id -> semantic
name), observations.npz (per camera id images [T, H, W, 3]; robot__* arrays [T, D]), actions.npz (`actions`
[T, A], sliced into named fields by the action-fields config), and optional intrinsics.npz / extrinsics.npz.
Each episode is one read task (its files belong to it alone).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np
import yaml

from vla_foundry import storage
from vla_foundry.data.preprocessing.episodes import (
    Converter,
    Episode,
    EpisodeError,
    ReadTask,
    TaskFailure,
    register_converter,
)
from vla_foundry.params.base_params import ConfigError

METADATA_FILE = "metadata.yaml"
LANGUAGE_TYPES = ("original", "randomized", "verbose", "alternative")


def task_name_of(path: str) -> str | None:
    """The path segment after `tasks/` (None when the path has no `tasks` segment)."""
    parts = [p for p in path.replace("s3://", "").split("/") if p]
    if "tasks" in parts[:-1]:
        return parts[parts.index("tasks") + 1]
    return None


def load_action_fields(path: str | None) -> list[tuple[str, int, int]]:
    """[(name, start, end)] from a YAML {name: cumulative end} (or {action_fields: {...}}), in file order."""
    if path is None:
        return []
    data = yaml.safe_load(storage.read_text(path)) or {}
    if isinstance(data, dict) and list(data) == ["action_fields"]:
        data = data["action_fields"]
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a mapping {{field_name: cumulative end index}}")
    out, start = [], 0
    for name, end in data.items():
        if not isinstance(end, int) or end <= start:
            raise ConfigError(f"{path}: end index of {name!r} is {end!r}; ends must be increasing integers > {start}")
        out.append((str(name), start, end))
        start = end
    return out


def load_language_annotations(path: str | None) -> dict[str, dict[str, list[str]]]:
    if path is None:
        return {}
    data = yaml.safe_load(storage.read_text(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping {{task_name: {{original: [...], ...}}}}")
    out = {}
    for task, entry in data.items():
        if isinstance(entry, list):
            entry = {"original": entry}
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: annotations of task {task!r} must be a mapping of lists")
        unknown = [k for k in entry if k not in LANGUAGE_TYPES]
        if unknown:
            raise ConfigError(f"{path}: task {task!r} has unknown instruction types {unknown}; valid: {LANGUAGE_TYPES}")
        out[str(task)] = {k: [str(x) for x in v] for k, v in entry.items()}
    return out


def iter_npz_rows(path: str, key: str) -> tuple[tuple[int, ...], Iterator[np.ndarray]]:
    """Shape of array `key` of a local .npz and an iterator over its rows, read one at a time from the zip.

    The member is opened before returning, so the iterator keeps working if the file is unlinked meanwhile.
    """
    import zipfile

    archive = zipfile.ZipFile(path)
    member = archive.open(f"{key}.npy")
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
    else:
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
    if fortran_order or dtype.hasobject:
        member.close()
        archive.close()
        with np.load(path, allow_pickle=False) as npz:
            whole = npz[key]
        return tuple(whole.shape), iter(whole)
    row_shape = tuple(shape[1:])
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * dtype.itemsize

    def rows() -> Iterator[np.ndarray]:
        with archive, member:
            for _ in range(shape[0]):
                yield np.frombuffer(member.read(row_bytes), dtype).reshape(row_shape)

    return tuple(shape), rows()


def _words(task: str) -> str:
    """`BimanualPutRedBellPepperInBin` -> `bimanual put red bell pepper in bin` (fallback instruction)."""
    return " ".join(re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", task)).lower()


@register_converter("spartan")
class SpartanConverter(Converter):
    """Spartan episode folders: one read task per episode."""

    def plan_read_tasks(self) -> list[ReadTask]:
        # Check the config files now, before any episode is read (they raise ConfigError naming the file).
        load_action_fields(self.params.action_fields_config_path)
        load_language_annotations(self.params.language_annotations_path)
        tasks = self._discover()
        self._check_rename_of_first_episode(tasks)
        return tasks

    def _discover(self) -> list[ReadTask]:
        tasks: list[ReadTask] = []
        seen: dict[str, str] = {}
        for root in self.params.source_episodes:
            root = root.rstrip("/")
            metadata_files = [f for f in storage.list_files(root) if storage.basename(f) == METADATA_FILE]
            episode_dirs = [storage.dirname(f) for f in metadata_files]
            if not episode_dirs:
                raise ConfigError(f"no Spartan episodes under {root}: no */{METADATA_FILE} found")
            for episode_dir in episode_dirs:
                task = task_name_of(episode_dir) or storage.basename(root)
                eid = self.episode_id(root, episode_dir, task)
                if eid in seen:
                    raise ConfigError(f"episode id {eid} occurs twice: {seen[eid]} and {episode_dir}")
                seen[eid] = episode_dir
                tasks.append(ReadTask(task_id=eid, episode_ids=[eid], spec={"dir": episode_dir, "task": task}))
                if self.params.max_episodes_to_process and len(tasks) >= self.params.max_episodes_to_process:
                    return tasks
        return tasks

    def _check_rename_of_first_episode(self, tasks: list[ReadTask]) -> None:
        if self.params.camera_rename:
            # The first episode's semantic camera names (its metadata file only) are what rename keys must name.
            meta_path = storage.join(tasks[0].spec["dir"], METADATA_FILE)
            meta = yaml.safe_load(storage.read_text(meta_path)) or {}
            names = [str(v) for v in (meta.get("camera_id_to_semantic_name") or {}).values()]
            self.check_camera_rename(names, meta_path)

    @staticmethod
    def episode_id(root: str, episode_dir: str, task: str) -> str:
        rel = episode_dir[len(root) :].strip("/")
        parts = [p for p in rel.split("/") if p and p != "processed"]
        return "_".join([task, *parts]) if parts else task

    def read_task(self, task: ReadTask) -> Iterator[Episode | TaskFailure]:
        eid = task.episode_ids[0]
        try:
            yield self._episode(eid, task.spec["dir"], task.spec["task"])
        except EpisodeError as e:
            yield TaskFailure(eid, e.reason, e.kind, e.length)
        except ConfigError:
            raise
        except Exception as e:  # malformed files of this episode (bad YAML, odd arrays): reported, not fatal
            yield TaskFailure(eid, f"{type(e).__name__}: {e}", "read_error")

    def _load_npz(self, eid: str, directory: str, name: str, required: bool, cache: str, opened: list) -> Any:
        path = storage.join(directory, name)
        if not storage.exists(path):
            if required:
                raise EpisodeError(eid, f"{path} not found", "missing_file")
            return None
        local = path
        if storage.is_s3(path):
            local = os.path.join(cache, name)
            storage.download_file(path, local)
        try:
            npz = np.load(local, allow_pickle=False)
        except Exception as e:
            raise EpisodeError(eid, f"{path} is unreadable: {e}", "read_error") from e
        opened.append(npz)
        return npz

    def _episode(self, eid: str, directory: str, task: str) -> Episode:
        cache = tempfile.mkdtemp(prefix="vla_foundry_spartan_")
        opened: list = []
        try:
            # Every array the episode needs is loaded by the time it returns, so the npz files can close.
            return self._read_episode(eid, directory, task, cache, opened)
        finally:
            for npz in opened:
                npz.close()
            storage.remove(cache)

    def _read_episode(self, eid: str, directory: str, task: str, cache: str, opened: list) -> Episode:
        params = self.params
        meta_path = storage.join(directory, METADATA_FILE)
        meta = yaml.safe_load(storage.read_text(meta_path)) or {}
        id_to_name = {str(k): str(v) for k, v in (meta.get("camera_id_to_semantic_name") or {}).items()}
        obs = self._load_npz(eid, directory, "observations.npz", True, cache, opened)
        actions = self._load_npz(eid, directory, "actions.npz", True, cache, opened)
        intrinsics = self._load_npz(eid, directory, "intrinsics.npz", False, cache, opened)
        extrinsics = self._load_npz(eid, directory, "extrinsics.npz", False, cache, opened)

        if "actions" not in actions:
            raise EpisodeError(eid, f"{directory}/actions.npz has no 'actions' array; has {list(actions.keys())}")
        action = np.asarray(actions["actions"], dtype=np.float32)
        length = len(action)
        names = {params.camera_rename.get(name, name): cam_id for cam_id, name in id_to_name.items() if cam_id in obs}
        cameras = self.select_cameras(eid, list(names), length)
        lowdim: dict[str, np.ndarray] = {}
        discard = set(params.data_discard_keys)
        for key in obs.files:
            if key in id_to_name or key in discard:
                continue
            value = np.asarray(obs[key])
            if not np.issubdtype(value.dtype, np.number) or value.ndim not in (1, 2):
                continue
            if len(value) != length:
                raise EpisodeError(eid, f"observations.npz[{key!r}] has {len(value)} steps, actions has {length}")
            lowdim[key] = value.reshape(length, -1).astype(np.float32)  # (L, D)
        fields = load_action_fields(params.action_fields_config_path)
        if fields:
            if fields[-1][2] != action.shape[1]:
                raise EpisodeError(
                    eid,
                    f"action fields config {params.action_fields_config_path} covers {fields[-1][2]} dims, "
                    f"actions.npz['actions'] has {action.shape[1]}",
                    "action_shape",
                )
            for name, start, end in fields:
                lowdim[name] = action[:, start:end]
        else:
            lowdim["actions"] = action
        constants: dict[str, np.ndarray] = {}
        for prefix, arrays in (("intrinsics", intrinsics), ("extrinsics", extrinsics)):
            if arrays is None:
                continue
            for cam in cameras:
                if names[cam] in arrays:
                    constants[f"{prefix}__{cam}"] = np.asarray(arrays[names[cam]], dtype=np.float32)
        streams = {}
        for cam in cameras:
            # Frames stream from the zip one at a time (stored or deflated members alike): memory holds the
            # frames sample cutting keeps, not the whole (L, H, W, 3) array.
            shape, rows = iter_npz_rows(obs.zip.filename, names[cam])
            if len(shape) != 4 or shape[0] != length:
                raise EpisodeError(
                    eid, f"camera {cam}: images have shape {shape}, expected ({length}, H, W, 3)", "read_error"
                )
            streams[cam] = rows
        annotations = load_language_annotations(params.language_annotations_path)
        language = annotations.get(task) or {"original": [_words(task)]}
        return Episode(
            episode_id=eid,
            length=length,
            lowdim=lowdim,
            language=language,
            cameras=cameras,
            frames=((t, {cam: next(streams[cam]) for cam in cameras}) for t in range(length)),
            constants=constants,
            metadata={"source": directory, "task_name": task},
        )
