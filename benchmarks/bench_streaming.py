"""Streaming LeRobot samples through Ray Data vs reading the offline job's shards, on the same samples.

    uv run python benchmarks/bench_streaming.py [--episodes 12] [--length 40] [--size 96] [--samples 256]
        [--ray_workers 2] [--step_ms 20]

Writes a synthetic LeRobot v3.0 dataset with 2 cameras (H.264, --size pixels, data and video files rolling over at
different episodes) in a temporary directory and measures, with the window 1 past + 4 future rows, images at -1
and 0 stored at --size:
  (b) time to the first batch: "stream" = stream dir (layout + a statistics pass) + Ray start + first batch;
      "preprocess then train" = the offline Ray job writing shards + the shard loader's first batch. Each starts
      its own local Ray, as the two commands would.
  (a) samples/s of the loaders over one window of --samples samples (the same anchors: the stream's window set is
      the first --samples anchors of its planned episodes, the shard loader reads --samples samples of the shards
      of the same dataset), after a warm-up window (Ray workers started and their imports done); the stream runs
      --ray_workers decode tasks, the shard loader as many loader worker processes.
  (c) the data-wait fraction of a training loop whose step costs a fixed --step_ms (a sleep): time waiting for the
      next batch / total time.
The last line is `stream/shard samples ratio X` ((a) stream samples/s / shard samples/s; target >= 1.0).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from loader_common import cut_window, data_params, loader, offline_job, timed_window


def sample_window(args: argparse.Namespace) -> dict:
    """The window and image size both paths cut: the stream and the offline job must produce the same samples."""
    return cut_window(1, 4, [-1, 0], args.size)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--ray_workers", type=int, default=2)
    parser.add_argument("--step_ms", type=float, default=20.0)
    args = parser.parse_args()

    from vla_foundry.local_ray import prepare_local_ray_environment

    prepare_local_ray_environment()  # before `import ray`: Ray reads some of it at import
    import ray

    from vla_foundry.data.scripts.make_synthetic_lerobot import make_synthetic_lerobot
    from vla_foundry.data.streaming.ray_stream import ensure_ray
    from vla_foundry.data.streaming.source import prepare_stream_dir

    tmp = Path(tempfile.mkdtemp(prefix="bench_streaming_"))
    root = make_synthetic_lerobot(tmp / "lerobot_v3", episodes=args.episodes, length=args.length, size=args.size)
    print(f"dataset: {args.episodes} episodes x {args.length} frames, 2 cameras, {args.size} px, H.264 ({root})")

    # (b) command start -> first batch.
    t0 = time.perf_counter()
    window_cut = sample_window(args)
    shards = offline_job(root, tmp / "offline", window_cut, args.ray_workers)
    shard_params = data_params(shards, "robotics", str(tmp / "cache"), window_cut, args.ray_workers, args.ray_workers)
    next(iter(loader(shard_params, 0, args.batch, args.batch)))
    preprocess_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    stream_params = data_params(str(root), "lerobot", str(tmp / "cache"), window_cut, 0, args.ray_workers)
    prepare_stream_dir(stream_params, str(root))
    ensure_ray(stream_params)
    next(iter(loader(stream_params, 0, args.batch, args.batch)))
    stream_first = time.perf_counter() - t0
    print(f"(b) time to the first batch: stream {stream_first:.1f} s, preprocess then train {preprocess_first:.1f} s")

    # Loader worker processes are forked: measure the shard loader while no Ray runs in this process.
    ray.shutdown()

    # (a) throughput on the same number of samples, warm; (c) data wait with a fixed-cost step.
    step_s = args.step_ms / 1000
    timed_window(shard_params, 1, args.batch * 2, args.batch)
    shard_rate, _ = timed_window(shard_params, 2, args.samples, args.batch)
    _, shard_wait = timed_window(shard_params, 3, args.samples, args.batch, step_s)
    ensure_ray(stream_params)
    timed_window(stream_params, 1, args.batch * 2, args.batch)
    stream_rate, _ = timed_window(stream_params, 2, args.samples, args.batch)
    _, stream_wait = timed_window(stream_params, 3, args.samples, args.batch, step_s)
    ray.shutdown()
    print(f"(a) samples/s over {args.samples} samples: stream {stream_rate:.1f}, shards {shard_rate:.1f}")
    print(
        f"(c) data-wait fraction with a {args.step_ms:.0f} ms step: stream {stream_wait:.3f}, shards {shard_wait:.3f}"
    )
    print(f"stream/shard samples ratio {stream_rate / shard_rate:.2f}")


if __name__ == "__main__":
    main()
