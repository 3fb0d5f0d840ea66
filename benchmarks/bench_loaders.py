"""Three loaders on the same samples: lerobot's own LeRobotDataset + DataLoader, this project's shard loader on the
offline job's shards, and this project's LeRobot stream, decoded by Ray Data tasks (data.stream_decoding ray) and
by the loader's own workers (data.stream_decoding loader).

    uv run python benchmarks/bench_loaders.py [--episodes 12] [--length 200] [--size 224] [--cameras 2]
        [--workers 2] [--repeats 3] [--samples 4096] [--batch 16] [--step_ms 60]

1. Records one LeRobot v3.0 dataset with the real lerobot library (its own environment,
   vla_foundry/data/scripts/lerobot_venv.py; benchmarks/lerobot_loader.py is its side): --episodes episodes of
   --length frames, --cameras cameras of --size x --size pixels, lerobot's default AV1 encoding.
2. Converts it once with the offline job into shards, and prepares this project's stream directory for it.
3. Reads the same window from each (1 past + 14 future low-dim rows, the frame at the anchor, at --size): (a)
   lerobot's LeRobotDataset with `delta_timestamps` and its default video backend, in a torch DataLoader with
   --workers workers, shuffled; (b) the shard loader with --workers loader workers; (c) the stream with --workers
   Ray decode tasks; (d) the stream decoded in --workers loader workers. Each run is two passes over --samples
   samples: samples/s with no step, then the data-wait fraction (time waiting for the next batch / total) with a
   fixed step of --step_ms (a sleep) after each batch. Runs alternate between the loaders (the order rotates each
   repeat, reversed every other one) --repeats times after one warm-up pass each; the machine's 1-minute load
   average is printed before every run, with a warning above 0.5 per core.
The medians are printed per loader, and last `shards/lerobot ratio X, stream/lerobot ratio Y, stream/shards
ratio Z` (median samples/s over median samples/s), for the Ray stream and then for the loader-decoded one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

PAST, FUTURE = 1, 14
LEROBOT_SIDE = Path(__file__).resolve().parent / "lerobot_loader.py"

from loader_common import cut_window, data_params, load_line, offline_job, start_ray, timed_window  # noqa: E402


def sample_window(args: argparse.Namespace) -> dict:
    """The window every loader cuts: rows t-1 .. t+14 (padded at episode edges), the frame at t, at --size."""
    return cut_window(PAST, FUTURE, [0], args.size)


class LeRobotServer:
    """benchmarks/lerobot_loader.py `serve` in the lerobot environment: one process, one timed pass per request."""

    def __init__(self, python: Path, root: Path, args: argparse.Namespace) -> None:
        from vla_foundry.data.scripts.lerobot_venv import lerobot_env

        command = [str(python), str(LEROBOT_SIDE), "serve", str(root), "--past", str(PAST), "--future", str(FUTURE)]
        command += ["--workers", str(args.workers), "--batch", str(args.batch)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=lerobot_env(), text=True
        )
        self.ready = json.loads(self.process.stdout.readline())

    def run(self, samples: int, step_s: float, seed: int) -> dict:
        self.process.stdin.write(json.dumps({"samples": samples, "step_s": step_s, "seed": seed}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the lerobot loader process ended; see its stderr above")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=4096, help="samples per timed pass (one checkpoint interval)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--step_ms", type=float, default=60.0)
    args = parser.parse_args()

    from vla_foundry.local_ray import prepare_local_ray_environment

    prepare_local_ray_environment()  # before `import ray`: Ray reads some of it at import
    import ray

    from vla_foundry.data.scripts.lerobot_venv import ensure_lerobot_venv, lerobot_env
    from vla_foundry.data.streaming.source import prepare_stream_dir

    print(f"load average before the benchmark {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench_loaders_"))
    root = tmp / "lerobot_v3"
    t0 = time.perf_counter()
    python = ensure_lerobot_venv()
    print(f"lerobot environment: {time.perf_counter() - t0:.1f} s ({python})", flush=True)
    t0 = time.perf_counter()
    write = [str(python), str(LEROBOT_SIDE), "write", str(root), "--episodes", str(args.episodes)]
    write += ["--length", str(args.length), "--size", str(args.size), "--cameras", str(args.cameras)]
    subprocess.run(write, env=lerobot_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(
        f"dataset written by lerobot in {time.perf_counter() - t0:.1f} s: {args.episodes} episodes x {args.length} "
        f"frames, {args.cameras} cameras, {args.size} px ({root})",
        flush=True,
    )
    t0 = time.perf_counter()
    window_cut = sample_window(args)
    shards = offline_job(root, tmp / "offline", window_cut, args.workers)
    ray.shutdown()
    print(f"offline job: {time.perf_counter() - t0:.1f} s", flush=True)
    shard_params = data_params(shards, "robotics", str(tmp / "cache"), window_cut, args.workers, args.workers)
    stream_params = data_params(str(root), "lerobot", str(tmp / "cache"), window_cut, 0, args.workers)
    prepare_stream_dir(stream_params, str(root))
    in_loader = data_params(str(root), "lerobot", str(tmp / "cache"), window_cut, args.workers, args.workers)
    in_loader = dataclasses.replace(in_loader, stream_decoding="loader")
    server = LeRobotServer(python, root, args)

    step_s = args.step_ms / 1000
    window = iter(range(1, 10_000))

    def ours(params, stream: bool) -> tuple[float, float]:
        # The shard loader forks its workers: no Ray may run in this process then; the stream needs one.
        if stream:
            start_ray(params)
            # A training run keeps its Ray: start its decode workers (imports) before timing.
            timed_window(params, next(window), args.batch * 2, args.batch)
        try:
            rate, _ = timed_window(params, next(window), args.samples, args.batch)
            _, wait = timed_window(params, next(window), args.samples, args.batch, step_s)
        finally:
            if stream:
                ray.shutdown()
        return rate, wait

    def theirs(_params, _stream: bool) -> tuple[float, float]:
        seed = next(window)
        fast = server.run(args.samples, 0.0, seed)
        stepped = server.run(args.samples, step_s, seed + 1)
        return fast["samples"] / fast["seconds"], stepped["wait"]

    loaders = {
        "lerobot": (theirs, None, False),
        "shards": (ours, shard_params, False),
        "stream": (ours, stream_params, True),
        "stream_loader": (ours, in_loader, False),
    }
    print("warm-up pass of each loader", flush=True)
    for name, (_run, params, stream) in loaders.items():
        if name == "lerobot":
            server.run(args.batch * 2, 0.0, 0)
        else:
            if stream:
                start_ray(params)
            timed_window(params, next(window), args.batch * 2, args.batch)
            if stream:
                ray.shutdown()
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in loaders}
    names = list(loaders)
    for r in range(args.repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        # Reversed every other repeat, so no loader always runs right after the same one (the Ray stream's
        # shutdown, for one, could weigh on whichever loader follows it).
        for name in order[::-1] if r % 2 else order:
            print(f"repeat {r + 1}/{args.repeats}, {name}:", flush=True)
            load = load_line()
            run, params, stream = loaders[name]
            rate, wait = run(params, stream)
            results[name].append((rate, wait, load))
            print(f"    {rate:.1f} samples/s, data-wait {wait:.3f} with a {args.step_ms:.0f} ms step", flush=True)
    server.close()

    medians = {}
    for name, runs in results.items():
        rate = statistics.median(r[0] for r in runs)
        wait = statistics.median(r[1] for r in runs)
        medians[name] = rate
        loads = ", ".join(f"{r[2]:.2f}" for r in runs)
        print(f"{name}: median {rate:.1f} samples/s, data-wait {wait:.3f} (loads {loads})")
    for stream in ("stream", "stream_loader"):
        print(
            f"shards/lerobot ratio {medians['shards'] / medians['lerobot']:.2f}, "
            f"{stream}/lerobot ratio {medians[stream] / medians['lerobot']:.2f}, "
            f"{stream}/shards ratio {medians[stream] / medians['shards']:.2f}"
        )


if __name__ == "__main__":
    main()
