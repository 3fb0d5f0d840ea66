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
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


def sample_window(args: argparse.Namespace) -> dict:
    """The window and image size both paths cut: the stream and the offline job must produce the same samples."""
    return {
        "past_lowdim_steps": 1,
        "future_lowdim_steps": 4,
        "max_past_padding": 1,
        "max_future_padding": 4,
        "image_indices": [-1, 0],
        "image_size": [args.size, args.size],
    }


def data_params(dataset: str, modality: str, cache: str, args: argparse.Namespace, workers: int):
    from vla_foundry.params.data_params import RoboticsDataParams, StreamingParams

    streaming = StreamingParams(output_dir=cache, **sample_window(args))
    return RoboticsDataParams(
        dataset_manifest=[dataset],
        dataset_weighting=[1.0],
        dataset_modality=[modality],
        action_fields=["action"],
        proprioception_fields=["observation.state"],
        num_workers=workers,
        shuffle_buffer_size=32,
        seed=0,
        streaming=streaming,
        ray_num_workers=args.ray_workers,
    )


def offline_job(root: Path, out: Path, args: argparse.Namespace) -> str:
    from vla_foundry.data.preprocessing.robotics import run_robotics_preprocessing
    from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams

    params = RoboticsPreprocessingParams(
        source_episodes=[str(root)],
        output_dir=str(out),
        **sample_window(args),
        samples_per_shard=64,
        num_cpus=args.ray_workers,
        show_progress=False,
    )
    return run_robotics_preprocessing(params).dataset_dir


def loader(params, window: int, samples: int, batch: int):
    from vla_foundry.data.dataloader import build_dataloader
    from vla_foundry.data.planner import plan_checkpoint

    return build_dataloader(params, plan_checkpoint(params, window, samples), batch_size=batch)


def timed_window(params, window: int, samples: int, batch: int, step_s: float = 0.0) -> tuple[float, float]:
    """(samples/s, data-wait fraction) over one window; each batch is followed by a step of `step_s` seconds."""
    start = time.perf_counter()
    wait, n = 0.0, 0
    it = iter(loader(params, window, samples, batch))
    while True:
        t = time.perf_counter()
        batch_data = next(it, None)
        wait += time.perf_counter() - t
        if batch_data is None:
            break
        n += len(batch_data["metadata"])
        if step_s:
            time.sleep(step_s)
    total = time.perf_counter() - start
    return n / total, wait / total


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

    import ray

    from vla_foundry.data.scripts.make_synthetic_lerobot import make_synthetic_lerobot
    from vla_foundry.data.streaming.ray_stream import ensure_ray
    from vla_foundry.data.streaming.source import prepare_stream_dir

    tmp = Path(tempfile.mkdtemp(prefix="bench_streaming_"))
    root = make_synthetic_lerobot(tmp / "lerobot_v3", episodes=args.episodes, length=args.length, size=args.size)
    print(f"dataset: {args.episodes} episodes x {args.length} frames, 2 cameras, {args.size} px, H.264 ({root})")

    # (b) command start -> first batch.
    t0 = time.perf_counter()
    shards = offline_job(root, tmp / "offline", args)
    shard_params = data_params(shards, "robotics", str(tmp / "cache"), args, args.ray_workers)
    next(iter(loader(shard_params, 0, args.batch, args.batch)))
    preprocess_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    stream_params = data_params(str(root), "lerobot", str(tmp / "cache"), args, 0)
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
