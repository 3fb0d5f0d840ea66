"""Robotics loader throughput against the JPEG decode limit, measured in the same run.

    uv run python benchmarks/bench_dataloader.py [--samples 256] [--image_size 224] [--workers 2]

Builds a robotics dataset (2 cameras x 2 image offsets per sample, lowdim window 1 past + 14 future) in a temporary
directory, then measures:
  decode   plain PIL decode of exactly the JPEGs the loader reads (bytes already in memory), one process;
  loader   the full robotics loader in one process (num_workers=0): tar streaming, shuffle buffer, npz, decode,
           normalisation, tokenization, collation;
  workers  the loader with --workers worker processes (total and per worker).
The figure of merit is loader samples/s per worker divided by decode samples/s (target >= 0.8). Both single-process
measurements use the CPU time of the process (robust to other load on a shared machine); the multi-worker one is
wall time.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def decode_baseline(dataset_dir: str, cameras: list[str], offsets: list[int]) -> tuple[int, float]:
    """Samples/s of PIL decoding (to an RGB array) the loader's JPEGs, bytes read beforehand."""
    import numpy as np
    from PIL import Image

    from vla_foundry.data.tar_stream import iter_tar_samples

    jpegs = []
    for name in sorted(os.listdir(dataset_dir)):
        if name.endswith(".tar"):
            for sample in iter_tar_samples(os.path.join(dataset_dir, name)):
                jpegs.append([sample[f"{c}_t{o}.jpg"] for c in cameras for o in offsets])
    start = time.process_time()
    for views in jpegs:
        for data in views:
            with Image.open(io.BytesIO(data)) as img:
                np.asarray(img.convert("RGB"))
    return len(jpegs), time.process_time() - start


def time_loader(params, samples: int, batch_size: int, workers: int) -> float:
    """Steady-state samples/s, timed from the first batch of every worker on (worker start-up excluded): CPU time of
    this process when the loader runs in it (workers=0), wall time otherwise."""
    from vla_foundry.data.dataloader import build_dataloader
    from vla_foundry.data.planner import plan_checkpoint

    plan = plan_checkpoint(params, 0, samples)
    loader = build_dataloader(params, plan, batch_size=batch_size, num_workers=workers)
    clock = time.process_time if workers == 0 else time.perf_counter
    warm = max(1, workers)
    n, timed, start = 0, 0, 0.0
    for i, batch in enumerate(loader):
        n += len(batch["metadata"])
        if i + 1 == warm:
            start = clock()
        elif i + 1 > warm:
            timed += len(batch["metadata"])
    elapsed = clock() - start
    assert n == samples and loader.stats.bad_samples == 0
    return timed / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="best of N timings for each measurement")
    args = parser.parse_args()

    from vla_foundry.data.scripts.make_tiny_datasets import make_robotics
    from vla_foundry.params.data_params import RoboticsDataParams

    with tempfile.TemporaryDirectory() as tmp:
        episodes = max(1, args.samples // 32)
        data = make_robotics(
            os.path.join(tmp, "bench"), "lerobot", num_episodes=episodes, episode_length=32, num_shards=4,
            past=1, future=14, image_size=args.image_size, jpeg_quality=90, textured=True,
        )  # fmt: skip
        samples = episodes * 32
        params = RoboticsDataParams(
            dataset_manifest=[data], dataset_weighting=[1.0], dataset_modality=["robotics"],
            action_fields=["action"], proprioception_fields=["observation.state"],
            shuffle_buffer_size=64, seed=0, num_workers=0,
        )  # fmt: skip
        n, _ = decode_baseline(data, ["front", "wrist"], [-1, 0])  # warm-up (page cache, PIL)
        time_loader(params, samples, args.batch_size, 0)  # warm-up (imports, tokenizer)
        # Alternate the two measurements so that load from other processes affects both alike; keep the best.
        decode_sps = loader_sps = 0.0
        for _ in range(args.repeats):
            decode_sps = max(decode_sps, n / decode_baseline(data, ["front", "wrist"], [-1, 0])[1])
            loader_sps = max(loader_sps, time_loader(params, samples, args.batch_size, 0))
        workers_sps = max(time_loader(params, samples, args.batch_size, args.workers) for _ in range(args.repeats))

    print(f"dataset: {samples} samples, 4 photo-like JPEGs of {args.image_size}x{args.image_size} each, window T=16")
    print(f"plain PIL decode (same JPEGs):          {decode_sps:8.1f} samples/s")
    print(f"loader, 1 worker (in process):          {loader_sps:8.1f} samples/s per worker")
    print(f"loader, {args.workers} workers:                       {workers_sps:8.1f} samples/s "
          f"({workers_sps / max(1, args.workers):.1f} per worker, {os.cpu_count()} CPUs)")  # fmt: skip
    print(f"ratio loader per worker / decode limit: {loader_sps / decode_sps:8.2f}  (target >= 0.80)")


if __name__ == "__main__":
    main()
