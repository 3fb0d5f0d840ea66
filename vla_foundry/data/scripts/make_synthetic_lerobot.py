"""Write a tiny synthetic LeRobot dataset (v3.0 or v2.1) to try the robotics preprocessing without downloads.

    python -m vla_foundry.data.scripts.make_synthetic_lerobot --output_dir /tmp/toy_lerobot \\
        [--version v3.0|v2.1] [--episodes 5] [--length 12] [--size 32] [--codec h264|libsvtav1]

Two cameras (`observation.images.cam_high`, `observation.images.cam_wrist`) recorded at 10 fps, low-dim features
`observation.state` (3) and `action` (2), two tasks ("pick the red cube", "stack the blue cup") alternating by
episode. In v3.0 the data parquets roll over every 3 episodes, cam_high's MP4s every 2, cam_wrist's every 4 and
the episode metadata every 2, so data and video file boundaries do not line up (what real v3.0 datasets do).

Every value encodes where it came from, so a preprocessed sample can be checked by eye or by code. A frame is one
flat colour that survives video and JPEG compression: R = 20 + 40 * (episode mod 6), G = 4 + 8 * (t mod 32),
B = 50 + 100 * camera (`decode_colour` reads it back). `observation.state[t] = [episode, t, 0.5 t]` and
`action[t] = [100 episode + t, -t]`. The same arguments give the same files.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import sys
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vla_foundry.params.base_params import ConfigError

FPS = 10
SIZE = 32
TASKS = ["pick the red cube", "stack the blue cup"]
CAMERAS = ("observation.images.cam_high", "observation.images.cam_wrist")
# Episode lengths the generator cycles through when no fixed length is given (uneven on purpose).
DEFAULT_LENGTHS = (12, 9, 15, 10, 11)
# Command-line codec names -> PyAV encoder names.
CODECS = {"h264": "libx264", "libx264": "libx264", "av1": "libsvtav1", "libsvtav1": "libsvtav1"}


# ---------------------------------------------------------------------------------------------------------------
# Values that encode (episode, t, camera)


def frame_colour(episode: int, t: int, camera: int) -> tuple[int, int, int]:
    # Ids wrap (episode mod 6, t mod 32) so larger datasets stay within uint8; tests stay below both.
    return 20 + 40 * (episode % 6), 4 + 8 * (t % 32), 50 + 100 * camera


def decode_colour(image: np.ndarray) -> tuple[int, int, int]:
    """(episode, t, camera) back from a decoded frame (mean over the flat image, rounded)."""
    r, g, b = image.reshape(-1, 3).mean(axis=0)
    return round((r - 20) / 40), round((g - 4) / 8), round((b - 50) / 100)


def make_frame(episode: int, t: int, camera: int, size: int = SIZE) -> np.ndarray:
    """A (size, size, 3) uint8 frame of one flat colour."""
    return np.broadcast_to(np.array(frame_colour(episode, t, camera), np.uint8), (size, size, 3)).copy()


def state_rows(episode: int, length: int) -> np.ndarray:
    """(length, 3) float32: [episode, t, 0.5 t]."""
    t = np.arange(length, dtype=np.float32)
    return np.stack([np.full(length, episode, np.float32), t, 0.5 * t], axis=1)


def action_rows(episode: int, length: int) -> np.ndarray:
    """(length, 2) float32: [100 episode + t, -t]."""
    t = np.arange(length, dtype=np.float32)
    return np.stack([100 * episode + t, -t], axis=1)


# ---------------------------------------------------------------------------------------------------------------
# Files


def write_video(path: Path, frames: list[np.ndarray], codec: str = "libx264", fps: int = FPS) -> None:
    """Encode RGB frames into an MP4 at `fps` with PyAV (`libx264` or `libsvtav1`)."""
    import av

    av.logging.set_level(av.logging.ERROR)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = add_video_stream(container, codec, fps, frames[0].shape[1], frames[0].shape[0])
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def add_video_stream(container: Any, codec: str, fps: int, width: int, height: int) -> Any:
    """A yuv420p video stream of `container` with the codec settings used for every MP4 written here."""
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    if codec == "libsvtav1":
        # SVT-AV1 prints its configuration banner to stderr for every file unless its log level says errors only.
        os.environ.setdefault("SVT_LOG", "1")
        stream.options = {"g": "2", "preset": "12"}  # LeRobot's AV1 settings: a keyframe every 2 frames
    elif codec == "libx264":
        stream.options = {"g": "4", "crf": "10"}
    return stream


def write_parquet(path: Path, columns: dict[str, Any]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), str(path))


def fixed_list(rows: np.ndarray) -> Any:
    """(N, D) array -> a pyarrow fixed-size list column (how LeRobot stores vector features)."""
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1).astype(np.float32)), rows.shape[1])


def write_tasks_parquet(path: Path, tasks: Sequence[str], index_name: str | None = "task") -> None:
    """meta/tasks.parquet as the lerobot library writes it: a pandas frame with one `task_index` column, indexed
    by the task strings in task_index order (lerobot looks a task up with `tasks.iloc[task_index].name`).
    `index_name=None` writes the unnamed index pandas stores as `__index_level_0__` (seen in some datasets)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pd.DataFrame({"task_index": np.arange(len(tasks), dtype=np.int64)}, index=pd.Index(tasks, name=index_name))
    path.parent.mkdir(parents=True, exist_ok=True)
    # from_pandas records the index in the file's pandas metadata, which is what restores it as the index on read.
    pq.write_table(pa.Table.from_pandas(frame), str(path))


@contextmanager
def staged_dir(root: Path) -> Iterator[Path]:
    """A hidden sibling directory to write a dataset into, renamed to `root` when the block ends without an
    error (removed when it raises), so `root` never holds a dataset that was interrupted half-way.
    `root` must be absent or an empty directory."""
    staging = new_staging_dir(root)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    publish_staged(staging, root)


def new_staging_dir(root: Path) -> Path:
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".{root.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return staging


def publish_staged(staging: Path, root: Path) -> None:
    """Rename the finished `staging` directory to `root` (one rename: readers see all of it or nothing). The
    rename replaces an empty directory at `root` and fails on a non-empty one."""
    try:
        os.rename(staging, root)
    except OSError as e:
        raise ValueError(
            f"could not move the finished dataset {staging} to {root} ({e.strerror}); {root} must be absent or an "
            f"empty directory. The complete dataset is kept at {staging}"
        ) from None


def video_feature(height: int, width: int, fps: int, codec: str) -> dict:
    """The info.json entry of a camera stored as video, with the encoding details lerobot records."""
    return {
        "dtype": "video",
        "shape": [height, width, 3],
        "names": ["height", "width", "channels"],
        "info": {
            "video.height": height,
            "video.width": width,
            "video.codec": {"libx264": "h264", "libsvtav1": "av1"}[codec],
            "video.pix_fmt": "yuv420p",
            "video.fps": fps,
            "video.channels": 3,
            "has_audio": False,
            "is_depth_map": False,
        },
    }


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def info_json(
    version: str,
    cameras: list[str],
    image_keys: list[str],
    episodes: int,
    frames: int,
    size: int = SIZE,
    features: dict | None = None,
    tasks: int = len(TASKS),
    fps: int = FPS,
    codec: str = "libx264",
) -> dict:
    """meta/info.json: the features, totals and path templates of a v3.0 or v2.1 dataset (`features`: the low-dim
    and camera features of a recorded dataset; default: the synthetic ones). `tasks` is the number of distinct
    task strings (lerobot reads meta/tasks.parquet only when `total_tasks` > 0)."""
    bookkeeping = {
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    if features is not None:
        features = {**features, **bookkeeping}
    else:
        features = _synthetic_features(cameras, image_keys, size, bookkeeping, codec)
    info = {"codebase_version": version, "fps": fps, "features": features, "total_episodes": episodes}
    info.update(total_frames=frames, total_tasks=tasks)
    if version == "v3.0":
        info.update(
            chunks_size=1000,
            data_files_size_in_mb=100,
            video_files_size_in_mb=200,
            data_path="data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            video_path="videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        )
    else:
        info.update(
            data_path="data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            video_path="videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            chunks_size=1000,
            total_chunks=1,
            total_videos=episodes * len(cameras),
        )
    info.update(robot_type=None, splits={"train": f"0:{episodes}"})
    return info


def _synthetic_features(cameras: list[str], image_keys: list[str], size: int, bookkeeping: dict, codec: str) -> dict:
    features = {
        "observation.state": {"dtype": "float32", "shape": [3], "names": ["episode", "t", "half_t"]},
        "action": {"dtype": "float32", "shape": [2], "names": ["id", "minus_t"]},
        **bookkeeping,
    }
    for cam in cameras:
        features[cam] = video_feature(size, size, FPS, codec)
    for key in image_keys:
        features[key] = {"dtype": "image", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"]}
    return features


def data_columns(episodes: list[int], lengths: dict[int, int], start_index: int, image_keys: list[str]) -> dict:
    """The rows of `episodes` in one data parquet; global frame `index` starts at `start_index`."""
    state = np.concatenate([state_rows(e, lengths[e]) for e in episodes])
    action = np.concatenate([action_rows(e, lengths[e]) for e in episodes])
    frame_index = np.concatenate([np.arange(lengths[e]) for e in episodes])
    columns = {
        "observation.state": fixed_list(state),
        "action": fixed_list(action),
        "timestamp": (frame_index / FPS).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.concatenate([np.full(lengths[e], e) for e in episodes]),
        "index": start_index + np.arange(len(frame_index)),
        "task_index": np.concatenate([np.full(lengths[e], e % 2) for e in episodes]),
    }
    # Image features use camera ids 2, 3, ... (B = 250 for the first: at most one fits the colour code).
    for k, key in enumerate(image_keys):
        cells = [
            {"bytes": encode_png(make_frame(e, t, 2 + k)), "path": None} for e in episodes for t in range(lengths[e])
        ]
        columns[key] = cells
    return columns


# ---------------------------------------------------------------------------------------------------------------
# Datasets


def file_groups(num_episodes: int, episodes_per_file: int) -> list[list[int]]:
    """Episode ids 0..num_episodes-1 in consecutive files of `episodes_per_file` (the last may hold fewer)."""
    ids = list(range(num_episodes))
    return [ids[i : i + episodes_per_file] for i in range(0, num_episodes, episodes_per_file)]


def make_lerobot_v3(
    root: Path,
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    data_files: Sequence[Sequence[int]] = ([0, 1, 2], [3, 4]),
    video_files: dict[str, Sequence[Sequence[int]]] | None = None,
    codec: str = "libx264",
    image_keys: Sequence[str] = (),
    episode_meta_files: Sequence[Sequence[int]] = ([0, 1], [2, 3, 4]),
    size: int = SIZE,
) -> Path:
    """A LeRobot v3.0 dataset whose data files, each camera's video files and metadata files split differently.

    `data_files`, each camera's entry of `video_files` and `episode_meta_files` list the episode ids of each file,
    in order. meta/tasks.parquet keeps the task strings in pandas' unnamed index (`__index_level_0__`), the variant
    some published datasets have. Written into a staging directory renamed to `root` at the end. Returns `root`.
    """
    root = Path(root)
    with staged_dir(root) as staging:
        _write_lerobot_v3(staging, lengths, data_files, video_files, codec, image_keys, episode_meta_files, size)
    return root


def _write_lerobot_v3(
    root: Path,
    lengths: Sequence[int],
    data_files: Sequence[Sequence[int]],
    video_files: dict[str, Sequence[Sequence[int]]] | None,
    codec: str,
    image_keys: Sequence[str],
    episode_meta_files: Sequence[Sequence[int]],
    size: int,
) -> None:
    if video_files is None:
        video_files = {CAMERAS[0]: [[0, 1], [2, 3, 4]], CAMERAS[1]: [[0, 1, 2, 3], [4]]}
    lengths = dict(enumerate(lengths))
    cameras = list(video_files)
    tasks = sorted({e % 2 for e in lengths})
    info = info_json(
        "v3.0", cameras, list(image_keys), len(lengths), sum(lengths.values()), size, tasks=len(tasks), codec=codec
    )
    write_tasks_parquet(root / "meta" / "tasks.parquet", [TASKS[t] for t in tasks], index_name=None)
    rows = {e: {"episode_index": e, "tasks": [TASKS[e % 2]], "length": n} for e, n in lengths.items()}
    index = 0
    for file_index, eps in enumerate(data_files):
        path = root / info["data_path"].format(chunk_index=0, file_index=file_index)
        write_parquet(path, data_columns(list(eps), lengths, index, list(image_keys)))
        for e in eps:
            rows[e].update({"data/chunk_index": 0, "data/file_index": file_index})
            rows[e].update({"dataset_from_index": index, "dataset_to_index": index + lengths[e]})
            index += lengths[e]
    for c, (cam, files) in enumerate(video_files.items()):
        for file_index, eps in enumerate(files):
            # Episodes follow each other in the file; each records where its frames start and end.
            frames, start = [], 0.0
            for e in eps:
                rows[e].update(
                    {
                        f"videos/{cam}/chunk_index": 0,
                        f"videos/{cam}/file_index": file_index,
                        f"videos/{cam}/from_timestamp": start,
                        f"videos/{cam}/to_timestamp": start + lengths[e] / FPS,
                    }
                )
                frames.extend(make_frame(e, t, c, size) for t in range(lengths[e]))
                start += lengths[e] / FPS
            path = root / info["video_path"].format(video_key=cam, chunk_index=0, file_index=file_index)
            write_video(path, frames, codec)
    for file_index, eps in enumerate(episode_meta_files):
        path = root / "meta" / "episodes" / "chunk-000" / f"file-{file_index:03d}.parquet"
        table = [{**rows[e], "meta/episodes/chunk_index": 0, "meta/episodes/file_index": file_index} for e in eps]
        write_parquet(path, {k: [r[k] for r in table] for k in table[0]})
    # Last: a dataset without info.json is never taken for a complete one.
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=1))


def make_lerobot_v21(
    root: Path,
    lengths: Sequence[int] = (8, 11, 6),
    cameras: Sequence[str] = ("observation.images.top",),
    codec: str = "libx264",
    size: int = SIZE,
) -> Path:
    """A LeRobot v2.1 dataset: one data parquet and one MP4 per camera per episode, written into a staging
    directory renamed to `root` at the end. Returns `root`."""
    root = Path(root)
    lengths = dict(enumerate(lengths))
    tasks = sorted({e % 2 for e in lengths})
    info = info_json(
        "v2.1", list(cameras), [], len(lengths), sum(lengths.values()), size, tasks=len(tasks), codec=codec
    )
    with staged_dir(root) as staging:
        episodes = [{"episode_index": e, "tasks": [TASKS[e % 2]], "length": n} for e, n in lengths.items()]
        (staging / "meta").mkdir(parents=True, exist_ok=True)
        (staging / "meta" / "episodes.jsonl").write_text("\n".join(json.dumps(e) for e in episodes) + "\n")
        rows = [{"task_index": i, "task": TASKS[t]} for i, t in enumerate(tasks)]
        (staging / "meta" / "tasks.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        index = 0
        for e, n in lengths.items():
            path = staging / info["data_path"].format(episode_chunk=0, episode_index=e)
            write_parquet(path, data_columns([e], lengths, index, []))
            index += n
            for c, cam in enumerate(cameras):
                path = staging / info["video_path"].format(episode_chunk=0, video_key=cam, episode_index=e)
                write_video(path, [make_frame(e, t, c, size) for t in range(n)], codec)
        (staging / "meta" / "info.json").write_text(json.dumps(info, indent=1))
    return root


class LeRobotV3Writer:
    """Writes recorded episodes as one LeRobot v3.0 dataset that the lerobot library reads, episode by episode
    (frames are encoded as they come, so a long recording never sits in memory): one data parquet, one MP4 per
    camera, meta/info.json, meta/tasks.parquet, meta/episodes/ and meta/stats.json.

        writer = LeRobotV3Writer(root, fps=50, cameras=["observation.images.top"], state_names=[...],
                                 action_names=[...])
        writer.add_episode("transfer the cube", state, action, {"observation.images.top": frames})
        writer.close()

    Each episode has its own task string; distinct strings get task indices in order of first appearance. Files go
    to a hidden staging directory beside `root` that `close()` renames to `root`, so an interrupted recording
    never leaves a dataset at `root` (`abort()`, or leaving a `with` block by an exception, removes the staging
    directory).
    """

    def __init__(
        self,
        root: str | Path,
        fps: int,
        cameras: Sequence[str],
        state_names: Sequence[str],
        action_names: Sequence[str],
        codec: str = "h264",
        extra_fields: dict[str, Sequence[str]] | None = None,
    ) -> None:
        root = Path(root)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise ValueError(f"output_dir {root} is not empty; choose a new directory or remove it")
        if codec not in CODECS:
            raise ValueError(f"codec {codec!r} is not valid; valid: {', '.join(CODECS)}")
        self.root, self.fps, self.cameras = root, fps, list(cameras)
        self.state_names, self.action_names = list(state_names), list(action_names)
        # Low-dim features beyond observation.state and action (e.g. observation.environment_state): name -> value
        # names.
        self.extra_fields = {k: list(v) for k, v in (extra_fields or {}).items()}
        self.extra: dict[str, list[np.ndarray]] = {k: [] for k in self.extra_fields}
        self.codec = CODECS[codec]
        self.staging = new_staging_dir(root)
        # A writer dropped without close() (an exception, Ctrl-C) takes its staging directory with it.
        self._discard = weakref.finalize(self, shutil.rmtree, self.staging, ignore_errors=True)
        self.containers: dict[str, Any] = {}
        self.streams: dict[str, Any] = {}
        self.sizes: dict[str, tuple[int, int]] = {}
        self.video_time: dict[str, int] = dict.fromkeys(self.cameras, 0)  # frames written per camera
        self.rows: list[dict] = []
        self.columns: dict[str, list[np.ndarray]] = {"state": [], "action": [], "frame": [], "episode": [], "task": []}
        self.task_index: dict[str, int] = {}  # task string -> task_index, in order of first appearance

    @property
    def tasks(self) -> list[str]:
        """The distinct task strings so far, in task_index order."""
        return list(self.task_index)

    def __enter__(self) -> LeRobotV3Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _encode(self, camera: str, frames: Sequence[np.ndarray]) -> None:
        import av

        if camera not in self.containers:
            av.logging.set_level(av.logging.ERROR)
            h, w = frames[0].shape[:2]
            path = self.staging / "videos" / camera / "chunk-000" / "file-000.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            self.containers[camera] = av.open(str(path), "w", format="mp4")
            self.streams[camera] = add_video_stream(self.containers[camera], self.codec, self.fps, w, h)
            self.sizes[camera] = (h, w)
        for image in frames:
            if image.shape[:2] != self.sizes[camera]:
                raise ValueError(f"camera {camera}: frame of {image.shape[:2]}, expected {self.sizes[camera]}")
            for packet in self.streams[camera].encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                self.containers[camera].mux(packet)

    def add_episode(
        self,
        task: str,
        state: np.ndarray,
        action: np.ndarray,
        frames: dict[str, Sequence[np.ndarray]],
        extra: dict[str, np.ndarray] | None = None,
    ) -> None:
        """One episode: its task string, state (T, D), action (T, A) and T frames per camera, row t observed
        before action t."""
        length = len(state)
        if len(action) != length or any(len(f) != length for f in frames.values()) or set(frames) != set(self.cameras):
            raise ValueError(
                f"episode needs {length} action rows and {length} frames for each of {self.cameras}; got "
                f"{len(action)} actions and { ({k: len(v) for k, v in frames.items()}) }"
            )
        if not isinstance(task, str) or not task:
            raise ValueError(f"an episode's task must be a non-empty string; got {task!r}")
        extra = extra or {}
        if set(extra) != set(self.extra_fields) or any(len(v) != length for v in extra.values()):
            raise ValueError(
                f"episode needs {length} rows of each extra field {sorted(self.extra_fields)}; got "
                f"{ ({k: len(v) for k, v in extra.items()}) }"
            )
        episode = len(self.rows)
        task_index = self.task_index.setdefault(task, len(self.task_index))
        start = sum(r["length"] for r in self.rows)
        row = {
            "episode_index": episode,
            "tasks": [task],
            "length": length,
            "data/chunk_index": 0,
            "data/file_index": 0,
            "dataset_from_index": start,
            "dataset_to_index": start + length,
        }
        for camera in self.cameras:
            self._encode(camera, frames[camera])
            first = self.video_time[camera]
            self.video_time[camera] += length
            row.update(
                {
                    f"videos/{camera}/chunk_index": 0,
                    f"videos/{camera}/file_index": 0,
                    f"videos/{camera}/from_timestamp": first / self.fps,
                    f"videos/{camera}/to_timestamp": (first + length) / self.fps,
                }
            )
        row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
        self.rows.append(row)
        for name, values in extra.items():
            self.extra[name].append(np.asarray(values, np.float32))
        self.columns["state"].append(np.asarray(state, np.float32))
        self.columns["action"].append(np.asarray(action, np.float32))
        self.columns["frame"].append(np.arange(length))
        self.columns["episode"].append(np.full(length, episode))
        self.columns["task"].append(np.full(length, task_index))

    def _close_videos(self) -> None:
        for camera, container in self.containers.items():
            for packet in self.streams[camera].encode():
                container.mux(packet)
            container.close()
        self.containers.clear()

    def abort(self) -> None:
        """Drop what was written: close the videos and remove the staging directory."""
        try:
            self._close_videos()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)

    def close(self) -> Path:
        """Flush the videos, write the data parquet and meta/ (info.json last), then rename the staging directory
        to the dataset root. Returns the dataset root."""
        if not self.rows:
            self.abort()
            raise ValueError(f"no episode was added to {self.root}")
        self._close_videos()
        state = np.concatenate(self.columns["state"])
        action = np.concatenate(self.columns["action"])
        frame_index = np.concatenate(self.columns["frame"])
        extra = {name: np.concatenate(rows) for name, rows in self.extra.items()}
        write_parquet(
            self.staging / "data" / "chunk-000" / "file-000.parquet",
            {
                "observation.state": fixed_list(state),
                **{name: fixed_list(values) for name, values in extra.items()},
                "action": fixed_list(action),
                "timestamp": (frame_index / self.fps).astype(np.float32),
                "frame_index": frame_index,
                "episode_index": np.concatenate(self.columns["episode"]),
                "index": np.arange(len(frame_index)),
                "task_index": np.concatenate(self.columns["task"]),
            },
        )
        features = {
            "observation.state": {"dtype": "float32", "shape": [state.shape[1]], "names": self.state_names},
            **{
                name: {"dtype": "float32", "shape": [values.shape[1]], "names": self.extra_fields[name]}
                for name, values in extra.items()
            },
            "action": {"dtype": "float32", "shape": [action.shape[1]], "names": self.action_names},
        }
        for camera, (h, w) in self.sizes.items():
            features[camera] = video_feature(h, w, self.fps, self.codec)
        info = info_json(
            "v3.0",
            self.cameras,
            [],
            len(self.rows),
            len(frame_index),
            features=features,
            tasks=len(self.tasks),
            fps=self.fps,
        )
        write_tasks_parquet(self.staging / "meta" / "tasks.parquet", self.tasks)
        write_parquet(
            self.staging / "meta" / "episodes" / "chunk-000" / "file-000.parquet",
            {k: [r[k] for r in self.rows] for k in self.rows[0]},
        )
        stats = {
            name: {
                "mean": values.mean(0).tolist(),
                "std": values.std(0).tolist(),
                "min": values.min(0).tolist(),
                "max": values.max(0).tolist(),
                "count": [len(values)],
            }
            for name, values in (("observation.state", state), *extra.items(), ("action", action))
        }
        (self.staging / "meta" / "stats.json").write_text(json.dumps(stats, indent=1))
        # Last: a dataset without info.json is never taken for a complete one.
        (self.staging / "meta" / "info.json").write_text(json.dumps(info, indent=1))
        publish_staged(self.staging, self.root)
        self._discard.detach()
        return self.root


def make_synthetic_lerobot(
    output_dir: str | Path,
    version: str = "v3.0",
    episodes: int = 5,
    length: int | None = None,
    size: int = SIZE,
    codec: str = "h264",
) -> Path:
    """The dataset the command line writes: two cameras, `episodes` episodes of `length` frames (None: cycling
    through 12, 9, 15, 10, 11), v3.0 files rolling over as the module docstring says. Refuses a non-empty
    `output_dir` (ValueError) so two datasets never mix."""
    if version not in ("v3.0", "v2.1"):
        raise ValueError(f"version {version!r} is not valid; valid: v3.0, v2.1")
    if codec not in CODECS:
        raise ValueError(f"codec {codec!r} is not valid; valid: {', '.join(CODECS)}")
    if episodes < 1 or (length is not None and length < 1) or size < 2:
        raise ValueError(f"episodes ({episodes}) and length ({length}) must be >= 1 and size ({size}) >= 2")
    root = Path(output_dir)
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"output_dir {root} is not empty; choose a new directory or remove it")
    lengths = [length or DEFAULT_LENGTHS[e % len(DEFAULT_LENGTHS)] for e in range(episodes)]
    if version == "v2.1":
        return make_lerobot_v21(root, lengths, CAMERAS, CODECS[codec], size)
    video_files = {CAMERAS[0]: file_groups(episodes, 2), CAMERAS[1]: file_groups(episodes, 4)}
    return make_lerobot_v3(
        root, lengths, file_groups(episodes, 3), video_files, CODECS[codec], (), file_groups(episodes, 2), size
    )


@dataclasses.dataclass(frozen=True)
class SyntheticLeRobotParams:
    """`python -m vla_foundry.data.scripts.make_synthetic_lerobot`: the dataset's place, format and size."""

    # New or empty local directory.
    output_dir: str = ""
    # LeRobot format version.
    version: Literal["v3.0", "v2.1"] = "v3.0"
    # Number of episodes.
    episodes: int = 5
    # Frames per episode (None: 12, 9, 15, 10, 11, ...).
    length: int | None = None
    # Frame height and width in pixels.
    size: int = SIZE
    # Video codec of the MP4s (h264, av1, ...: see CODECS).
    codec: str = "h264"

    def validate(self) -> None:
        from vla_foundry.names import closest_names

        if not self.output_dir:
            raise ConfigError("--output_dir is required: a new or empty local directory")
        if self.codec not in CODECS:
            close = closest_names(self.codec, CODECS)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"codec={self.codec!r} is not a codec here{hint}; valid: {', '.join(sorted(CODECS))}")


def main(argv: list[str] | None = None) -> int:
    from vla_foundry.cli import run_command

    return run_command(
        SyntheticLeRobotParams,
        _run,
        argv,
        prog="python -m vla_foundry.data.scripts.make_synthetic_lerobot",
        doc=__doc__,
        errors=(ValueError,),
    )


def _run(params: SyntheticLeRobotParams) -> None:
    root = make_synthetic_lerobot(
        params.output_dir, params.version, params.episodes, params.length, params.size, params.codec
    )
    info = json.loads((root / "meta" / "info.json").read_text())
    videos = len(list(root.glob("videos/**/*.mp4")))
    print(
        f"LeRobot {info['codebase_version']} dataset: {info['total_episodes']} episodes, {info['total_frames']} "
        f"frames, {len(CAMERAS)} cameras, {videos} video files -> {root}"
    )


if __name__ == "__main__":
    sys.exit(main())
