"""LeRobot datasets (v3.0 and v2.1) as a robotics source (docs/formats.md §5).

v3.0 packs many episodes into each data parquet and each camera's MP4, and the files of data and of every camera
roll over independently. Read tasks come from file-group partitioning: episodes whose data file and video file
of every camera are all the same form one task, so each task opens each MP4 once, seeks to its first episode's
`from_timestamp` and decodes forward. v2.1 has one data file and one video per camera per episode (starting at
t = 0): each episode is its own task, read by the same code.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from vla_foundry import storage
from vla_foundry.data.preprocessing.encoding import decode_image
from vla_foundry.data.preprocessing.episodes import (
    Converter,
    Episode,
    EpisodeError,
    ReadTask,
    TaskFailure,
    register_converter,
)
from vla_foundry.data.preprocessing.sample_cutting import anchor_image_steps
from vla_foundry.data.preprocessing.video import ForwardVideoReader, VideoDecodeError, open_video
from vla_foundry.params.base_params import ConfigError

# Per-frame bookkeeping columns of LeRobot data files; never stored as low-dim fields.
BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")
CAMERA_PREFIX = "observation.images."


def read_parquet(path: str) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(storage.read_bytes(path)))


def read_task_rows(path: str, columns: list[str], episodes: list[int]) -> Any:
    """The rows of `episodes` in a data parquet, with only those of `columns` it has: a task holds neither other
    episodes' rows nor unused columns (e.g. embedded images of cameras it does not store)."""
    import pyarrow.parquet as pq

    if storage.is_hf(path):
        path = storage.hf_file(path)  # read in place from the Hub cache
    if storage.is_s3(path):
        data = storage.read_bytes(path)
        source: Any = io.BytesIO(data)
    elif os.path.exists(path):
        source = path
    else:
        raise FileNotFoundError(f"{path} does not exist")
    names = pq.read_schema(source).names
    if not isinstance(source, str):
        source.seek(0)
    present = [c for c in columns if c in names]
    filters = [("episode_index", "in", list(episodes))] if "episode_index" in names else None
    return pq.read_table(source, columns=present, filters=filters)


def read_jsonl(path: str) -> list[dict]:
    return [json.loads(line) for line in storage.read_text(path).splitlines() if line.strip()]


def stored_camera_name(key: str, rename: dict[str, str]) -> str:
    """LeRobot feature key -> stored camera name (`observation.images.cam_high` -> `cam_high`)."""
    if key in rename:
        return rename[key]
    return key[len(CAMERA_PREFIX) :] if key.startswith(CAMERA_PREFIX) else key.replace(".", "_")


def load_info(root: str) -> dict:
    path = storage.join(root, "meta", "info.json")
    try:
        info = json.loads(storage.read_text(path))
    except FileNotFoundError:
        raise ConfigError(f"{root} is not a LeRobot dataset: {path} not found") from None
    version = str(info.get("codebase_version", ""))
    if not version.startswith(("v3", "v2")):
        raise ConfigError(f"{path}: codebase_version {version!r} is not supported; valid: v3.0, v2.1")
    return info


def lowdim_features(info: dict, requested: list[str] | None, root: str) -> list[str]:
    features = info.get("features", {})
    available = [
        k
        for k, f in features.items()
        if k not in BOOKKEEPING and str(f.get("dtype", "")).startswith(("float", "int")) and f.get("shape")
    ]
    if requested is None:
        return available
    unknown = [k for k in requested if k not in features]
    if unknown:
        raise ConfigError(f"lowdim_fields {unknown} are not features of {root}; valid: {available}")
    return list(requested)


def load_tasks_v3(root: str) -> dict[int, str]:
    table = read_parquet(storage.join(root, "meta", "tasks.parquet"))
    columns = table.column_names
    name_col = next((c for c in ("task", "__index_level_0__") if c in columns), None)
    if name_col is None or "task_index" not in columns:
        raise ConfigError(f"{root}/meta/tasks.parquet needs task_index and task columns; has {columns}")
    return dict(zip(table.column("task_index").to_pylist(), table.column(name_col).to_pylist()))


def load_episodes_v3(root: str) -> list[dict]:
    files = [f for f in storage.list_files(storage.join(root, "meta", "episodes")) if f.endswith(".parquet")]
    if not files:
        raise ConfigError(f"{root}: no episode metadata under meta/episodes/")
    rows: list[dict] = []
    for path in files:
        rows.extend(read_parquet(path).to_pylist())
    return sorted(rows, key=lambda r: r["episode_index"])


def column_array(column: Any, rows: int) -> np.ndarray:
    """A parquet column of scalars or (fixed-size) lists -> float32 (rows, D) without going through Python lists."""
    import pyarrow as pa

    values = column.combine_chunks()
    if pa.types.is_list(values.type) or pa.types.is_fixed_size_list(values.type) or pa.types.is_large_list(values.type):
        values = values.flatten()
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(rows, -1)


@register_converter("lerobot")
class LeRobotConverter(Converter):
    """LeRobot v3.0 (file-group read tasks) and v2.1 (one task per episode) datasets."""

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        self.video_opens = 0

    def plan_read_tasks(self) -> list[ReadTask]:
        tasks: list[ReadTask] = []
        budget = self.params.max_episodes_to_process
        for src, root in enumerate(self.params.source_episodes):
            root = root.rstrip("/")
            new = self._plan_source(src, root, budget)
            tasks.extend(new)
            if budget is not None:
                budget -= sum(len(t.episode_ids) for t in new)
                if budget <= 0:
                    break
        return tasks

    def _plan_source(self, src: int, root: str, budget: int | None) -> list[ReadTask]:
        info = load_info(root)
        version = str(info["codebase_version"])
        features = info.get("features", {})
        video_keys = sorted(k for k, f in features.items() if f.get("dtype") == "video")
        image_keys = sorted(k for k, f in features.items() if f.get("dtype") == "image")
        self.check_camera_rename(video_keys + image_keys, root)
        cameras = {stored_camera_name(k, self.params.camera_rename): k for k in video_keys + image_keys}
        if self.params.camera_names is not None and self.params.missing_camera == "error":
            missing = [c for c in self.params.camera_names if c not in cameras]
            if missing:
                raise ConfigError(
                    f"{root}: camera(s) {missing} requested by camera_names are not in the dataset; "
                    f"its cameras: {sorted(cameras)}"
                )
        common = {
            "root": root,
            "version": version,
            "fps": float(info["fps"]),
            "video_keys": video_keys,
            "image_keys": image_keys,
            "lowdim_fields": lowdim_features(info, self.params.lowdim_fields, root),
            "dataset_name": os.path.basename(root) or f"source{src}",
        }
        if version.startswith("v3"):
            episodes = self._episodes_v3(root, info, video_keys)
        else:
            episodes = self._episodes_v21(root, info, video_keys)
        if budget is not None:
            episodes = episodes[:budget]
        # File-group partitioning: the set of files an episode reads is its task key.
        groups: dict[tuple, list[dict]] = {}
        for ep in episodes:
            key = (ep["data_file"], *(ep["videos"][k] for k in video_keys))
            groups.setdefault(key, []).append(ep)
        tasks = []
        for eps in sorted(groups.values(), key=lambda g: g[0]["episode_index"]):
            first, last = eps[0]["episode_index"], eps[-1]["episode_index"]
            ids = [self.episode_id(common["dataset_name"], e["episode_index"]) for e in eps]
            tasks.append(
                ReadTask(
                    task_id=f"s{src:02d}_ep{first:06d}_{last:06d}",
                    episode_ids=ids,
                    spec={**common, "data_file": eps[0]["data_file"], "videos": eps[0]["videos"], "episodes": eps},
                )
            )
        return tasks

    @staticmethod
    def episode_id(dataset_name: str, index: int) -> str:
        return f"{dataset_name}_episode_{index:06d}"

    def _episodes_v3(self, root: str, info: dict, video_keys: list[str]) -> list[dict]:
        tasks = load_tasks_v3(root)
        out = []
        for row in load_episodes_v3(root):
            task_names = row.get("tasks") or []
            if not task_names and "task_index" in row:
                task_names = [tasks.get(row["task_index"], "")]
            ep = {
                "episode_index": int(row["episode_index"]),
                "length": int(row["length"]),
                "tasks": list(task_names),
                "data_file": storage.join(
                    root,
                    info["data_path"].format(
                        chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"])
                    ),
                ),
                "videos": {},
                "from_timestamp": {},
            }
            for k in video_keys:
                ep["videos"][k] = storage.join(
                    root,
                    info["video_path"].format(
                        video_key=k,
                        chunk_index=int(row[f"videos/{k}/chunk_index"]),
                        file_index=int(row[f"videos/{k}/file_index"]),
                    ),
                )
                ep["from_timestamp"][k] = float(row[f"videos/{k}/from_timestamp"])
            out.append(ep)
        return out

    def _episodes_v21(self, root: str, info: dict, video_keys: list[str]) -> list[dict]:
        chunks_size = int(info.get("chunks_size", 1000))
        data_path = info.get("data_path", "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet")
        video_path = info.get(
            "video_path", "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
        )
        episodes_path = storage.join(root, "meta", "episodes.jsonl")
        try:
            rows = read_jsonl(episodes_path)
        except FileNotFoundError:
            raise ConfigError(f"{root}: LeRobot v2.1 metadata {episodes_path} not found") from None
        out = []
        for row in sorted(rows, key=lambda r: r["episode_index"]):
            idx = int(row["episode_index"])
            chunk = idx // chunks_size
            out.append(
                {
                    "episode_index": idx,
                    "length": int(row["length"]),
                    "tasks": list(row.get("tasks", [])),
                    "data_file": storage.join(root, data_path.format(episode_chunk=chunk, episode_index=idx)),
                    "videos": {
                        k: storage.join(root, video_path.format(episode_chunk=chunk, video_key=k, episode_index=idx))
                        for k in video_keys
                    },
                    "from_timestamp": dict.fromkeys(video_keys, 0.0),
                }
            )
        return out

    def read_task(self, task: ReadTask) -> Iterator[Episode | TaskFailure]:
        spec = task.spec
        episodes = spec["episodes"]
        ids = task.episode_ids
        needed = ["episode_index", "timestamp", "frame_index", *spec["lowdim_fields"], *spec["image_keys"]]
        try:
            table = read_task_rows(spec["data_file"], needed, [e["episode_index"] for e in episodes])
        except FileNotFoundError:
            for eid in ids:
                yield TaskFailure(eid, f"data file {spec['data_file']} not found", "missing_file")
            return
        except Exception as e:
            for eid in ids:
                yield TaskFailure(eid, f"data file {spec['data_file']} is unreadable: {e}", "read_error")
            return
        columns = set(table.column_names)
        absent = [c for c in needed if c not in columns and c != "frame_index"]
        if absent:
            for eid in ids:
                yield TaskFailure(eid, f"data file {spec['data_file']} lacks columns {absent}", "read_error")
            return
        readers: dict[str, ForwardVideoReader] = {}
        cache = tempfile.mkdtemp(prefix="vla_foundry_videos_")
        try:
            episode_col = np.asarray(table.column("episode_index").to_numpy())
            for ep, eid in zip(episodes, ids):
                try:
                    yield self._episode(spec, table, episode_col, ep, eid, readers, cache)
                except EpisodeError as e:
                    yield TaskFailure(eid, e.reason, e.kind, e.length or ep["length"])
                except Exception as e:  # malformed rows of one episode: reported, the task goes on
                    yield TaskFailure(eid, f"{type(e).__name__}: {e}", "read_error", ep["length"])
        finally:
            for reader in readers.values():
                reader.close()
            storage.remove(cache)

    def _episode(
        self,
        spec: dict,
        table: Any,
        episode_col: np.ndarray,
        ep: dict,
        eid: str,
        readers: dict[str, ForwardVideoReader],
        cache: str,
    ) -> Episode:
        rows = np.flatnonzero(episode_col == ep["episode_index"])
        if len(rows) != ep["length"]:
            raise EpisodeError(
                eid, f"{spec['data_file']} holds {len(rows)} frames, the episode metadata says {ep['length']}"
            )
        part = table.take(rows)
        if "frame_index" in part.column_names:
            order = np.argsort(np.asarray(part.column("frame_index").to_numpy()), kind="stable")
            part = part.take(order)
        timestamps = np.asarray(part.column("timestamp").to_numpy(), dtype=np.float64)
        lowdim = {}
        for name in spec["lowdim_fields"]:
            lowdim[name] = column_array(part.column(name), len(rows))  # (L, D)
        rename = self.params.camera_rename
        sources = {stored_camera_name(k, rename): k for k in spec["video_keys"] + spec["image_keys"]}
        cameras = self.select_cameras(eid, list(sources))
        # A stream asking for some anchors names them in the spec: only their frames are decoded into arrays, and
        # a video is entered at the keyframe before the first of them.
        frame_steps = None
        if "anchors" in ep:
            offsets = list(self.params.image_indices)
            frame_steps = sorted({t for a in ep["anchors"] for t in anchor_image_steps(a, len(rows), offsets)})
        steps = list(range(len(rows))) if frame_steps is None else frame_steps
        streams: dict[str, Iterator[np.ndarray]] = {}
        for cam in cameras:
            key = sources[cam]
            if key in spec["image_keys"]:
                cells = part.column(key).take(steps).to_pylist()
                streams[cam] = (decode_image(cell["bytes"]) for cell in cells)
                continue
            if key not in readers:
                try:
                    readers[key] = open_video(spec["videos"][key], spec["fps"], cache)
                except (VideoDecodeError, FileNotFoundError) as e:
                    raise EpisodeError(eid, str(e), "video_error") from e
                self.video_opens += 1
            times = ep["from_timestamp"][key] + timestamps[steps]
            streams[cam] = readers[key].frames_at(list(times))
        language = {"original": [t for t in ep["tasks"] if t]}
        return Episode(
            episode_id=eid,
            length=len(rows),
            lowdim=lowdim,
            language=language,
            cameras=cameras,
            frames=_zip_frames(eid, steps, cameras, streams),
            metadata={"source": spec["root"], "episode_index": ep["episode_index"]},
            timestamps=timestamps,
            frame_steps=frame_steps,
        )

    def stats(self) -> dict[str, int]:
        return {"video_opens": self.video_opens}


def _zip_frames(eid: str, steps: list[int], cameras: list[str], streams: dict[str, Iterator[np.ndarray]]) -> Iterator:
    """(t, {camera: frame}) for t in `steps` from one iterator per camera; decode errors become EpisodeErrors naming
    the episode."""
    for t in steps:
        frames = {}
        try:
            for cam in cameras:
                frame = next(streams[cam], None)
                if frame is None:
                    return
                frames[cam] = frame
        except VideoDecodeError as e:
            raise EpisodeError(eid, f"camera {cam}: {e}", "video_error") from e
        yield t, frames
