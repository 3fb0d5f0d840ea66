"""Synthetic robotics sources (LeRobot v3.0 / v2.1 from the package's generator, Spartan here), reading shards back,
and a session-wide local Ray for the preprocessing tests.

Every frame encodes its episode and timestep as flat colours that survive video and JPEG compression, and low-dim
fields carry the same ids (see vla_foundry/data/scripts/make_synthetic_lerobot.py for the code).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from vla_foundry.data.scripts.make_synthetic_lerobot import decode_colour, make_frame, make_lerobot_v3, state_rows

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
