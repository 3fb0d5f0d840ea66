"""Robotics loader throughput against the JPEG decode limit, measured in the same run.

    uv run python benchmarks/bench_dataloader.py [--samples 256] [--image_size 224] [--workers 2] [--repeats 5]

Builds a robotics dataset (2 cameras x 2 image offsets per sample, lowdim window 1 past + 14 future, photo-like
JPEGs of --image_size pixels, stored at that size so both sides decode to the same resolution) in a temporary
directory, then measures:
  decode   plain PIL decode (`Image.open` + `np.asarray`, RGB) of exactly the JPEGs the loader reads, bytes already
           in memory;
  loader   the full robotics loader in this process (num_workers=0): tar streaming, shuffle buffer, npz, decode,
           normalisation, tokenization, batching (uint8 images, as the loader ships them);
  workers  the loader with --workers worker processes (wall time; total and per worker).
The two single-process measurements are interleaved batch by batch: after each loader batch (CPU time of producing
it) the baseline decodes the JPEGs of the same number of samples (CPU time). Both therefore run under the same load
from other processes, which on a shared machine moves either of them by tens of percent from one second to the
next. Each repeat gives one ratio (loader samples/s per worker / decode samples/s; target >= 0.8); the median and
the range over the repeats are reported.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

CAMERAS = ["front", "wrist"]
OFFSETS = [-1, 0]


def read_jpegs(dataset_dir: str) -> list[list[bytes]]:
    """Per sample, the bytes of the JPEGs the loader decodes (every camera at every image offset)."""
    from vla_foundry.data.tar_stream import iter_tar_samples

    jpegs = []
    for name in sorted(os.listdir(dataset_dir)):
        if name.endswith(".tar"):
            for sample in iter_tar_samples(os.path.join(dataset_dir, name)):
                jpegs.append([sample[f"{c}_t{o}.jpg"] for c in CAMERAS for o in OFFSETS])
    return jpegs


def decode_samples(samples: list[list[bytes]]) -> float:
    """CPU seconds to PIL-decode the JPEGs of `samples` to RGB arrays."""
    import numpy as np
    from PIL import Image

    start = time.process_time()
    for views in samples:
        for data in views:
            with Image.open(io.BytesIO(data)) as img:
                np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    return time.process_time() - start


def paired_run(params, jpegs: list[list[bytes]], batch_size: int) -> tuple[float, float]:
    """(loader samples/s, decode samples/s) of one pass over the window, the two measured batch by batch in turn.
    The first batch (pipeline set-up, shuffle buffer fill) is not timed."""
    from vla_foundry.data.dataloader import build_dataloader
    from vla_foundry.data.planner import plan_checkpoint

    plan = plan_checkpoint(params, 0, len(jpegs))
    loader = iter(build_dataloader(params, plan, batch_size=batch_size, num_workers=0))
    next(loader)
    loader_s = decode_s = 0.0
    timed = cursor = 0
    while True:
        start = time.process_time()
        batch = next(loader, None)
        if batch is None:
            break
        loader_s += time.process_time() - start
        n = len(batch["metadata"])
        chunk = [jpegs[(cursor + i) % len(jpegs)] for i in range(n)]
        cursor += n
        decode_s += decode_samples(chunk)
        timed += n
    return timed / loader_s, timed / decode_s


def workers_run(params, samples: int, batch_size: int, workers: int) -> float:
    """Samples/s (wall time) of the loader with `workers` processes, from every worker's first batch on."""
    from vla_foundry.data.dataloader import build_dataloader
    from vla_foundry.data.planner import plan_checkpoint

    plan = plan_checkpoint(params, 0, samples)
    loader = build_dataloader(params, plan, batch_size=batch_size, num_workers=workers)
    n = timed = 0
    start = 0.0
    for i, batch in enumerate(loader):
        n += len(batch["metadata"])
        if i + 1 == workers:
            start = time.perf_counter()
        elif i + 1 > workers:
            timed += len(batch["metadata"])
    assert n == samples and loader.stats.bad_samples == 0
    return timed / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="paired loader/decode passes (one ratio each)")
    args = parser.parse_args()

    from vla_foundry.data.scripts.make_tiny_datasets import make_robotics
    from vla_foundry.params.data_params import RoboticsDataParams

    with tempfile.TemporaryDirectory() as tmp:
        episodes = max(1, args.samples // 32)
        data = make_robotics(
            os.path.join(tmp, "bench"), "lerobot", num_episodes=episodes, episode_length=32, num_shards=4,
            past=1, future=14, image_indices=tuple(OFFSETS), image_size=args.image_size, jpeg_quality=90,
            textured=True,
        )  # fmt: skip
        samples = episodes * 32
        params = RoboticsDataParams(
            dataset_manifest=[data], dataset_weighting=[1.0], dataset_modality=["robotics"],
            action_fields=["action"], proprioception_fields=["observation.state"], camera_names=CAMERAS,
            image_indices=OFFSETS, shuffle_buffer_size=64, seed=0, num_workers=0,
        )  # fmt: skip
        jpegs = read_jpegs(data)
        assert len(jpegs) == samples
        paired_run(params, jpegs, args.batch_size)  # warm-up (imports, page cache, tokenizer)
        runs = [paired_run(params, jpegs, args.batch_size) for _ in range(args.repeats)]
        workers_sps = [workers_run(params, samples, args.batch_size, args.workers) for _ in range(args.repeats)]

    ratios = [loader / decode for loader, decode in runs]
    print(f"dataset: {samples} samples, 4 photo-like JPEGs of {args.image_size}x{args.image_size} each, window T=16")
    print("run  plain PIL decode  loader (1 worker, in process)  ratio")
    for i, ((loader, decode), ratio) in enumerate(zip(runs, ratios)):
        print(f"{i:3d}  {decode:9.1f} samples/s  {loader:9.1f} samples/s             {ratio:5.2f}")
    best = max(workers_sps)
    print(f"loader, {args.workers} workers (wall time, best of {args.repeats}): {best:.1f} samples/s "
          f"({best / max(1, args.workers):.1f} per worker, {os.cpu_count()} CPUs)")  # fmt: skip
    print(f"ratio loader per worker / decode limit: median {statistics.median(ratios):.2f} "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}, {len(ratios)} runs; target >= 0.80)")  # fmt: skip


if __name__ == "__main__":
    main()
