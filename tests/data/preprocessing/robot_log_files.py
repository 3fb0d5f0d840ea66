"""Writers of small robot logs with the real libraries (h5py, mcap + mcap-ros2-support, robodm) for the source tests.

Like the LeRobot fixtures, every frame encodes (episode, timestep, camera) as a flat colour (`make_frame`) and the
low-dim values carry the same ids: state rows [episode, t, 0.5 t], action rows [100 episode + t, -t].
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from vla_foundry.data.scripts.make_synthetic_lerobot import action_rows, make_frame, state_rows


def jpeg_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def make_aloha(
    folder: Path,
    lengths: list[int] = (6, 8),
    drop: dict[int, str] | None = None,
    timestamps: dict[int, np.ndarray] | None = None,
    edit: dict[int, object] | None = None,
) -> Path:
    """ALOHA/ACT episode_<e>.hdf5 files: camera `top` raw [L, H, W, 3], camera `wrist` JPEG bytes zero-padded
    into [L, N] uint8 (ACT's compressed form); `drop[e]` names a dataset left out of episode e, `timestamps[e]`
    adds /timestamps, `edit[e](qpos, action, top)` changes arrays in place before writing."""
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    for e, n in enumerate(lengths):
        qpos, action = state_rows(e, n), action_rows(e, n)
        top = np.stack([make_frame(e, t, 0) for t in range(n)])
        encoded = [jpeg_bytes(make_frame(e, t, 1)) for t in range(n)]
        if edit and e in edit:
            edit[e](qpos, action, top)
        wrist = np.zeros((n, max(map(len, encoded)) + 7), np.uint8)
        for t, data in enumerate(encoded):
            wrist[t, : len(data)] = np.frombuffer(data, np.uint8)
        datasets = {
            "observations/qpos": qpos,
            "observations/qvel": qpos * 0,
            "action": action,
            "observations/images/top": top,
            "observations/images/wrist": wrist,
        }
        if timestamps and e in timestamps:
            datasets["timestamps"] = timestamps[e]
        with h5py.File(folder / f"episode_{e}.hdf5", "w") as f:
            f.attrs["sim"] = False
            for key, value in datasets.items():
                if drop and drop.get(e) == key:
                    continue
                f.create_dataset(key, data=value)
    return folder


def make_robomimic(path: Path, lengths: list[int] = (5, 7)) -> Path:
    """One robomimic file: data/demo_<e>/actions, obs/robot0_eef_pos (state rows), obs/agentview_image."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for e, n in enumerate(lengths):
            demo = data.create_group(f"demo_{e}")
            demo.attrs["num_samples"] = n
            demo.create_dataset("actions", data=action_rows(e, n))
            demo.create_dataset("obs/robot0_eef_pos", data=state_rows(e, n))
            demo.create_dataset("obs/agentview_image", data=np.stack([make_frame(e, t, 0) for t in range(n)]))
        data.attrs["language_instruction"] = "lift the cube"
    return path
