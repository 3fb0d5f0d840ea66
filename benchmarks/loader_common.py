"""What benchmarks/bench_loaders.py and benchmarks/bench_streaming.py share: the data params of a shard dataset
and of a streamed LeRobot root cut with the same window, the offline job, a timed window of the loader, a local
Ray that survives a slow start, and the load-average line printed before each timed run."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def cut_window(past: int, future: int, image_indices: list[int], size: int) -> dict[str, Any]:
    """The window and image size both paths cut (rows t - past .. t + future, padded at episode edges)."""
    return {
        "past_lowdim_steps": past,
        "future_lowdim_steps": future,
        "max_past_padding": past,
        "max_future_padding": future,
        "image_indices": list(image_indices),
        "image_size": [size, size],
    }


def data_params(
    dataset: str, modality: str, cache: str, window: dict[str, Any], loader_workers: int, ray_workers: int
) -> Any:
    """Robotics data params of one dataset (`robotics` shards or a `lerobot` root) cut with `window`."""
    from vla_foundry.params.data_params import RoboticsDataParams, StreamingParams

    return RoboticsDataParams(
        dataset_manifest=[dataset],
        dataset_weighting=[1.0],
        dataset_modality=[modality],
        action_fields=["action"],
        proprioception_fields=["observation.state"],
        num_workers=loader_workers,
        shuffle_buffer_size=32,
        seed=0,
        streaming=StreamingParams(output_dir=cache, **window),
        ray_num_workers=ray_workers,
    )


def offline_job(root: Path, out: Path, window: dict[str, Any], num_cpus: int) -> str:
    """The offline job's shards of the LeRobot root `root` (64 samples per shard); returns the dataset dir."""
    from vla_foundry.data.preprocessing.robotics import run_robotics_preprocessing
    from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams

    params = RoboticsPreprocessingParams(
        source_episodes=[str(root)],
        output_dir=str(out),
        **window,
        samples_per_shard=64,
        num_cpus=num_cpus,
        show_progress=False,
    )
    return run_robotics_preprocessing(params).dataset_dir


def loader(params: Any, window: int, samples: int, batch: int) -> Any:
    from vla_foundry.data.dataloader import build_dataloader
    from vla_foundry.data.planner import plan_checkpoint

    return build_dataloader(params, plan_checkpoint(params, window, samples), batch_size=batch)


def timed_window(params: Any, window: int, samples: int, batch: int, step_s: float = 0.0) -> tuple[float, float]:
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


def start_ray(params: Any) -> None:
    """A local Ray for the stream; on a loaded machine its node can time out starting, so try up to 3 times."""
    from vla_foundry.local_ray import prepare_local_ray_environment

    prepare_local_ray_environment()  # before the first `import ray` of the process: Ray reads some of it then
    import ray

    from vla_foundry.data.streaming.ray_stream import ensure_ray

    for attempt in range(3):
        try:
            ensure_ray(params)
            return
        except Exception as e:  # ray raises a bare Exception when its node times out during startup
            ray.shutdown()
            if attempt == 2:
                raise
            print(f"    Ray did not start ({e}); retrying", flush=True)


def load_line() -> float:
    """Print the 1-minute load average (with a warning above 0.5 per core) and return it."""
    load = os.getloadavg()[0]
    cores = os.cpu_count() or 1
    # The 1-minute average decays slowly: just after a run it still counts that run's own processes.
    warning = (
        f"  WARNING: above 0.5 per core ({cores} cores): other jobs, or the previous run still in the average"
        if load > 0.5 * cores
        else ""
    )
    print(f"    load average {load:.2f}{warning}", flush=True)
    return load
