"""Synthetic robotics sources (LeRobot v3.0 / v2.1, Spartan) and a session-wide local Ray for the preprocessing tests.

Every frame encodes its episode and timestep as flat colours that survive video and JPEG compression:
R = 20 + 40 * episode, G = 4 + 8 * t, B = 50 + 100 * camera. Low-dim fields carry the same ids:
`observation.state[t] = [episode, t, 0.5 * t]`, `action[t] = [100 * episode + t, -t]`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

FPS = 10
SIZE = 32


def frame_colour(episode: int, t: int, camera: int) -> tuple[int, int, int]:
    # Ids wrap (episode mod 6, t mod 32) so larger benchmark datasets stay within uint8; tests stay below both.
    return 20 + 40 * (episode % 6), 4 + 8 * (t % 32), 50 + 100 * camera


def decode_colour(image: np.ndarray) -> tuple[int, int, int]:
    """(episode, t, camera) back from a decoded frame (mean over the flat image, rounded)."""
    r, g, b = image.reshape(-1, 3).mean(axis=0)
    return round((r - 20) / 40), round((g - 4) / 8), round((b - 50) / 100)


def make_frame(episode: int, t: int, camera: int, size: int = SIZE) -> np.ndarray:
    return np.broadcast_to(np.array(frame_colour(episode, t, camera), np.uint8), (size, size, 3)).copy()


def state_rows(episode: int, length: int) -> np.ndarray:
    t = np.arange(length, dtype=np.float32)
    return np.stack([np.full(length, episode, np.float32), t, 0.5 * t], axis=1)


def action_rows(episode: int, length: int) -> np.ndarray:
    t = np.arange(length, dtype=np.float32)
    return np.stack([100 * episode + t, -t], axis=1)


def write_video(path: Path, frames: list[np.ndarray], codec: str = "libx264") -> None:
    import av

    av.logging.set_level(av.logging.ERROR)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        if codec == "libsvtav1":
            stream.options = {"g": "2", "preset": "12"}  # LeRobot's AV1 settings: a keyframe every 2 frames
        elif codec == "libx264":
            stream.options = {"g": "4", "crf": "10"}
        for image in frames:
            for packet in stream.encode(av_frame(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def av_frame(image: np.ndarray):
    import av

    return av.VideoFrame.from_ndarray(image, format="rgb24")


def _write_parquet(path: Path, columns: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), str(path))


def _fixed_list(rows: np.ndarray):
    import pyarrow as pa

    return pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1).astype(np.float32)), rows.shape[1])


def _info(version: str, cameras: list[str], fps: int, image_keys: list[str], total: int, frames: int) -> dict:
    features = {
        "observation.state": {"dtype": "float32", "shape": [3], "names": ["episode", "t", "half_t"]},
        "action": {"dtype": "float32", "shape": [2], "names": ["id", "minus_t"]},
        "timestamp": {"dtype": "float32", "shape": [1]},
        "frame_index": {"dtype": "int64", "shape": [1]},
        "episode_index": {"dtype": "int64", "shape": [1]},
        "index": {"dtype": "int64", "shape": [1]},
        "task_index": {"dtype": "int64", "shape": [1]},
    }
    for cam in cameras:
        features[cam] = {"dtype": "video", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"]}
    for key in image_keys:
        features[key] = {"dtype": "image", "shape": [SIZE, SIZE, 3], "names": ["height", "width", "channels"]}
    info = {"codebase_version": version, "fps": fps, "features": features, "total_episodes": total}
    info["total_frames"] = frames
    if version == "v3.0":
        info.update(
            data_path="data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            video_path="videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            chunks_size=1000,
            data_files_size_in_mb=100,
            video_files_size_in_mb=200,
        )
    else:
        info.update(
            data_path="data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            video_path="videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            chunks_size=1000,
            total_chunks=1,
            total_videos=total * len(cameras),
        )
    return info


def _png(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _data_columns(episodes: list[int], lengths: dict[int, int], start_index: int, image_keys: list[str]) -> dict:
    state = np.concatenate([state_rows(e, lengths[e]) for e in episodes])
    action = np.concatenate([action_rows(e, lengths[e]) for e in episodes])
    frame_index = np.concatenate([np.arange(lengths[e]) for e in episodes])
    columns = {
        "observation.state": _fixed_list(state),
        "action": _fixed_list(action),
        "timestamp": (frame_index / FPS).astype(np.float32),
        "frame_index": frame_index,
        "episode_index": np.concatenate([np.full(lengths[e], e) for e in episodes]),
        "index": start_index + np.arange(len(frame_index)),
        "task_index": np.concatenate([np.full(lengths[e], e % 2) for e in episodes]),
    }
    # Image features use camera ids 2, 3, ... (B = 250 for the first: at most one fits the colour code).
    for k, key in enumerate(image_keys):
        cells = [{"bytes": _png(make_frame(e, t, 2 + k)), "path": None} for e in episodes for t in range(lengths[e])]
        columns[key] = cells
    return columns


TASKS = ["pick the red cube", "stack the blue cup"]


def make_lerobot_v3(
    root: Path,
    lengths: list[int] = (12, 9, 15, 10, 11),
    data_files: list[list[int]] = ([0, 1, 2], [3, 4]),
    video_files: dict[str, list[list[int]]] | None = None,
    codec: str = "libx264",
    image_keys: list[str] = (),
    episode_meta_files: list[list[int]] = ([0, 1], [2, 3, 4]),
    size: int = SIZE,
) -> Path:
    """A LeRobot v3.0 dataset whose data files, each camera's video files and metadata files split differently."""
    if video_files is None:
        video_files = {
            "observation.images.cam_high": [[0, 1], [2, 3, 4]],
            "observation.images.cam_wrist": [[0, 1, 2, 3], [4]],
        }
    lengths = dict(enumerate(lengths))
    cameras = list(video_files)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    info = _info("v3.0", cameras, FPS, list(image_keys), len(lengths), sum(lengths.values()))
    (root / "meta" / "info.json").write_text(json.dumps(info))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"task_index": [0, 1], "__index_level_0__": TASKS}), str(root / "meta" / "tasks.parquet"))
    rows = {e: {"episode_index": e, "tasks": [TASKS[e % 2]], "length": n} for e, n in lengths.items()}
    index = 0
    for file_index, eps in enumerate(data_files):
        path = root / info["data_path"].format(chunk_index=0, file_index=file_index)
        _write_parquet(path, _data_columns(eps, lengths, index, list(image_keys)))
        for e in eps:
            rows[e].update({"data/chunk_index": 0, "data/file_index": file_index})
            rows[e].update({"dataset_from_index": index, "dataset_to_index": index + lengths[e]})
            index += lengths[e]
    for c, (cam, files) in enumerate(video_files.items()):
        for file_index, eps in enumerate(files):
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
            write_video(
                root / info["video_path"].format(video_key=cam, chunk_index=0, file_index=file_index), frames, codec
            )
    for file_index, eps in enumerate(episode_meta_files):
        path = root / "meta" / "episodes" / "chunk-000" / f"file-{file_index:03d}.parquet"
        table = [rows[e] for e in eps]
        _write_parquet(path, {k: [r[k] for r in table] for k in table[0]})
    return root


def make_lerobot_v21(
    root: Path, lengths: list[int] = (8, 11, 6), cameras: list[str] = ("observation.images.top",)
) -> Path:
    """A LeRobot v2.1 dataset: one data parquet and one MP4 per camera per episode."""
    lengths = dict(enumerate(lengths))
    info = _info("v2.1", list(cameras), FPS, [], len(lengths), sum(lengths.values()))
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    episodes = [{"episode_index": e, "tasks": [TASKS[e % 2]], "length": n} for e, n in lengths.items()]
    (root / "meta" / "episodes.jsonl").write_text("\n".join(json.dumps(e) for e in episodes) + "\n")
    tasks = [{"task_index": i, "task": t} for i, t in enumerate(TASKS)]
    (root / "meta" / "tasks.jsonl").write_text("\n".join(json.dumps(t) for t in tasks) + "\n")
    index = 0
    for e, n in lengths.items():
        _write_parquet(
            root / info["data_path"].format(episode_chunk=0, episode_index=e), _data_columns([e], lengths, index, [])
        )
        index += n
        for c, cam in enumerate(cameras):
            path = root / info["video_path"].format(episode_chunk=0, video_key=cam, episode_index=e)
            write_video(path, [make_frame(e, t, c) for t in range(n)])
    return root


SPARTAN_CAMERAS = {"cam0": "scene_left_0", "cam1": "scene_right_0", "cam2": "wrist_left"}
SPARTAN_ACTION_FIELDS = {"right::xyz": 3, "right::rot_6d": 9, "gripper": 10}


def make_spartan(
    root: Path,
    task: str = "BimanualPutRedBellPepperInBin",
    lengths: list[int] = (10, 13),
    cameras: dict[str, str] | None = None,
    missing_camera_in: int | None = None,
) -> Path:
    """Spartan episode folders under <root>/tasks/<task>/episode_<N>/processed/; returns the task folder."""
    cameras = dict(SPARTAN_CAMERAS if cameras is None else cameras)
    task_dir = root / "tasks" / task
    for e, n in enumerate(lengths):
        d = task_dir / f"episode_{e}" / "processed"
        d.mkdir(parents=True, exist_ok=True)
        cams = {k: v for k, v in cameras.items() if not (missing_camera_in == e and v == "wrist_left")}
        (d / "metadata.yaml").write_text(yaml.safe_dump({"camera_id_to_semantic_name": cams}))
        obs = {cam_id: np.stack([make_frame(e, t, c) for t in range(n)]) for c, cam_id in enumerate(cams)}
        obs["robot__actual__poses__right::panda__xyz"] = state_rows(e, n)
        obs["robot__actual__joint_position__right"] = np.tile(np.arange(7, dtype=np.float32), (n, 1))
        obs["robot__debug__timing"] = np.zeros((n, 1), np.float32)
        np.savez(d / "observations.npz", **obs)
        t = np.arange(n, dtype=np.float32)[:, None]
        rot = np.tile(np.array([1, 0, 0, 0, 1, 0], np.float32), (n, 1))
        actions = np.concatenate([np.full((n, 1), 100 * e) + t, -t, t * 0.5, rot, t % 2], axis=1)
        np.savez(d / "actions.npz", actions=actions)
        np.savez(
            d / "intrinsics.npz", **{cam_id: np.eye(3, dtype=np.float32) * (i + 1) for i, cam_id in enumerate(cams)}
        )
        np.savez(d / "extrinsics.npz", **{cam_id: np.eye(4, dtype=np.float32) for cam_id in cams})
    return task_dir


# ---------------------------------------------------------------------------------------------------------------
# Reading shards back


def read_dataset(dataset_dir: str | os.PathLike) -> dict[str, dict[str, bytes]]:
    """{sample key: {member suffix: bytes}} of every shard in manifest order (local datasets)."""
    import tarfile

    dataset_dir = Path(dataset_dir)
    samples: dict[str, dict[str, bytes]] = {}
    for line in (dataset_dir / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        with tarfile.open(dataset_dir / f"{entry['shard']}.tar") as tar:
            keys = set()
            for member in tar.getmembers():
                key, suffix = member.name.split(".", 1)
                keys.add(key)
                samples.setdefault(key, {})[suffix] = tar.extractfile(member).read()
        assert len(keys) == entry["num_sequences"]
    return samples


def load_npz(data: bytes) -> dict[str, np.ndarray]:
    import io

    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def decode_jpeg(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """One local Ray for the whole session (jobs reuse an initialised Ray instead of starting their own)."""
    # Workers share this interpreter's environment; Ray must not rebuild it under `uv run` (read at import).
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def lerobot_v3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lerobot_v3(tmp_path_factory.mktemp("lerobot_v3") / "toy_v3")


def robotics_argv(sources: list[str], output_dir: str | os.PathLike, *extra: str, type_: str = "lerobot") -> list[str]:
    """CLI flags of a small robotics job: 1 past + 3 future rows, images at -1 and 0, 16x16 JPEGs."""
    return [
        "--type",
        type_,
        "--source_episodes",
        json.dumps([str(s) for s in sources]),
        "--output_dir",
        str(output_dir),
        "--past_lowdim_steps",
        "1",
        "--future_lowdim_steps",
        "3",
        "--max_past_padding",
        "1",
        "--max_future_padding",
        "3",
        "--image_indices",
        "[-1, 0]",
        "--samples_per_shard",
        "7",
        "--show_progress",
        "False",
        *extra,
    ]


def preprocess_robotics(argv: list[str]):
    """Parse flags like the CLI and run the robotics job on the session's Ray; returns the JobOutcome."""
    from vla_foundry.data.preprocessing.robotics import run_robotics_preprocessing
    from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams, parse_preprocessing_params

    return run_robotics_preprocessing(parse_preprocessing_params(RoboticsPreprocessingParams, argv))


def check_frames_and_rows(samples: dict[str, dict[str, bytes]], camera_index: dict[str, int]) -> int:
    """Assert every image shows (episode, image timestep, camera) and every valid state row its (episode, t)."""
    checked = 0
    for members in samples.values():
        meta = json.loads(members["metadata.json"])
        episode = int(meta["episode_id"].rsplit("_", 1)[-1])
        for cam in meta["camera_names"]:
            for offset, t in zip(meta["image_indices"], meta["image_timesteps"]):
                assert decode_colour(decode_jpeg(members[f"{cam}_t{offset}.jpg"])) == (episode, t, camera_index[cam])
                checked += 1
        lowdim = load_npz(members["lowdim.npz"])
        valid = lowdim["past_mask"] | lowdim["future_mask"]
        rows = np.arange(len(valid)) - meta["anchor_relative_idx"] + meta["anchor_timestep"]
        state = lowdim.get("observation.state", None)
        if state is not None:
            assert state[valid, 0].tolist() == [episode] * int(valid.sum())
            assert state[valid, 1].tolist() == rows[valid].tolist()
    return checked
