"""The lerobot library's side of benchmarks/bench_loaders.py and tests/data/streaming/test_three_loaders.py.

Run by the lerobot environment's Python (vla_foundry/data/scripts/lerobot_venv.py), never imported by this
project:

    python lerobot_loader.py write ROOT --episodes N --length T --size S --cameras C --fps F
    python lerobot_loader.py read ROOT OUT.npz --past P --future F
    python lerobot_loader.py serve ROOT --past P --future F --workers W --batch B

`write` records a dataset with `LeRobotDataset.create` / `add_frame` / `save_episode` / `finalize` (lerobot's own
defaults: AV1 video). Every value encodes where it came from, as in make_synthetic_lerobot.py: a frame of episode
e, step t, camera c is one flat colour (20 + 40 (e mod 6), 4 + 8 (t mod 32), 50 + 100 c), state[t] = [e, t, t/2],
action[t] = [100 e + t, -t], task "task <e mod 3>".
`read` saves every item with the window rows t - P .. t + F of state and action (`delta_timestamps`) and the frames
at t, as uint8 (N, H, W, 3), to OUT.npz.
`serve` loads the dataset the same way, then reads commands from stdin, one JSON object a line
({"samples": n, "step_s": s, "seed": k}), and answers each with one JSON line {"samples", "seconds", "wait"}: a
torch DataLoader with W workers (shuffled, seeded) over n samples, a step of s seconds after each batch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def frame_colour(episode: int, t: int, camera: int) -> tuple[int, int, int]:
    return 20 + 40 * (episode % 6), 4 + 8 * (t % 32), 50 + 100 * camera


def write(args: argparse.Namespace) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    cameras = [f"observation.images.cam{c}" for c in range(args.cameras)]
    features = {
        "observation.state": {"dtype": "float32", "shape": (3,), "names": ["episode", "t", "half_t"]},
        "action": {"dtype": "float32", "shape": (2,), "names": ["id", "minus_t"]},
    }
    for cam in cameras:
        features[cam] = {"dtype": "video", "shape": (args.size, args.size, 3), "names": ["height", "width", "channels"]}
    dataset = LeRobotDataset.create("local/bench", fps=args.fps, features=features, root=args.root, use_videos=True)
    for e in range(args.episodes):
        for t in range(args.length):
            frame = {
                "observation.state": np.array([e, t, 0.5 * t], np.float32),
                "action": np.array([100 * e + t, -t], np.float32),
                "task": f"task {e % 3}",
            }
            for c, cam in enumerate(cameras):
                frame[cam] = np.full((args.size, args.size, 3), frame_colour(e, t, c), np.uint8)
            dataset.add_frame(frame)
        dataset.save_episode()
    dataset.finalize()


def open_dataset(args: argparse.Namespace):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata

    fps = LeRobotDatasetMetadata("local/bench", root=args.root).fps
    window = [k / fps for k in range(-args.past, args.future + 1)]
    return LeRobotDataset(
        "local/bench", root=args.root, delta_timestamps={"observation.state": window, "action": window}
    )


def read(args: argparse.Namespace) -> None:
    dataset = open_dataset(args)
    cameras = set(dataset.meta.camera_keys)
    columns: dict[str, list] = {}
    for i in range(len(dataset)):
        for key, value in dataset[i].items():
            if key in cameras:
                value = (value.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # (3, H, W) -> (H, W, 3)
            elif hasattr(value, "numpy"):
                value = value.numpy()
            columns.setdefault(key, []).append(value)
    arrays = {k: np.stack(v) for k, v in columns.items() if k != "task"}
    np.savez(args.out, task=np.array(columns["task"]), **arrays)


def serve(args: argparse.Namespace) -> None:
    import torch

    dataset = open_dataset(args)
    print(json.dumps({"ready": len(dataset)}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        generator = torch.Generator().manual_seed(command["seed"])
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers, generator=generator
        )
        start = time.perf_counter()
        wait, n = 0.0, 0
        it = iter(loader)
        while n < command["samples"]:
            t = time.perf_counter()
            batch = next(it, None)
            wait += time.perf_counter() - t
            if batch is None:
                break
            n += len(batch["index"])
            if command["step_s"]:
                time.sleep(command["step_s"])
        seconds = time.perf_counter() - start
        del it
        print(json.dumps({"samples": n, "seconds": seconds, "wait": wait / seconds}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="lerobot_loader.py")
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write")
    w.add_argument("root")
    w.add_argument("--episodes", type=int, default=12)
    w.add_argument("--length", type=int, default=200)
    w.add_argument("--size", type=int, default=224)
    w.add_argument("--cameras", type=int, default=2)
    w.add_argument("--fps", type=int, default=10)
    for name in ("read", "serve"):
        p = sub.add_parser(name)
        p.add_argument("root")
        if name == "read":
            p.add_argument("out")
        p.add_argument("--past", type=int, default=1)
        p.add_argument("--future", type=int, default=14)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    {"write": write, "read": read, "serve": serve}[args.command](args)


if __name__ == "__main__":
    main()
