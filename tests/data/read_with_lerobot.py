"""Run by the lerobot environment's Python (vla_foundry/data/scripts/lerobot_venv.py), not by pytest: reads every
item of each dataset with the real `lerobot.datasets.lerobot_dataset.LeRobotDataset` and saves what it returned.

    python read_with_lerobot.py ROOT OUT.npz [ROOT OUT.npz ...]

Each OUT.npz holds, for items 0..N-1 in order: the non-camera tensors as arrays (N, ...), `task` (N,) strings,
each camera as uint8 (N, H, W, 3) (lerobot returns float (3, H, W) in [0, 1]), and `meta` a JSON string with
len(dataset), num_episodes and meta.total_tasks.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def read(root: str, out: str) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset("local/roundtrip", root=root)
    cameras = set(dataset.meta.camera_keys)
    columns: dict[str, list] = {}
    for i in range(len(dataset)):
        for key, value in dataset[i].items():
            if key in cameras:
                # (3, H, W) float in [0, 1] -> (H, W, 3) uint8
                value = (value.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            elif hasattr(value, "numpy"):
                value = value.numpy()
            columns.setdefault(key, []).append(value)
    meta = {
        "len": len(dataset),
        "num_episodes": dataset.num_episodes,
        "total_tasks": dataset.meta.total_tasks,
    }
    arrays = {key.replace("/", "|"): np.stack(values) for key, values in columns.items() if key != "task"}
    np.savez(out, task=np.array(columns["task"]), meta=np.array(json.dumps(meta)), **arrays)


if __name__ == "__main__":
    args = sys.argv[1:]
    for root, out in zip(args[::2], args[1::2], strict=True):
        read(root, out)
