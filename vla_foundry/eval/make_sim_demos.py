"""Record scripted demonstrations in simulation as a LeRobot v3.0 dataset.

    python -m vla_foundry.eval.make_sim_demos --env aloha_transfer_cube --episodes 50 --output_dir /tmp/demos \\
        [--seed 0] [--num_workers 2] [--image_size 240 320] [--cameras top]

The env's scripted expert runs from env seeds `seed`, `seed + 1`, ...; successful episodes are kept until
`--episodes` are recorded (failures are counted and reported; at most `--max_attempts` seeds are tried). Each kept
episode stores, per step t, the observation before the action (`observation.state`, one MP4 frame per camera as
`observation.images.<camera>`) and the action sent (`action`), up to and including the step that succeeded. The
dataset then takes the normal path:

    python vla_foundry/data/preprocessing/preprocess_robotics_to_tar.py \\
        --config_path config_presets/preprocessing/lerobot_1past_14future.yaml \\
        --source_episodes "[/tmp/demos]" --output_dir /tmp/demos_shards
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vla_foundry.eval.envs import get_sim_env
from vla_foundry.params.base_params import ConfigError

CAMERA_PREFIX = "observation.images."

_worker_env: dict[str, Any] = {}


def record_episode(
    env_name: str, seed: int, cameras: tuple[str, ...], image_size: tuple[int, int], max_steps: int
) -> dict[str, Any]:
    """One expert episode from env seed `seed`: {"seed", "success", "steps", and when it succeeded "state" (T, D),
    "action" (T, A), "frames" {camera: T frames}}. The env is built once per process and reused."""
    from vla_foundry.eval.sim import make_env

    key = (env_name, cameras, image_size, max_steps)
    if _worker_env.get("key") != key:
        _worker_env.update(key=key, env=make_env(env_name, cameras, image_size, max_steps, expert=True))
    env = _worker_env["env"]
    obs, info = env.reset(seed=seed)
    states, actions, frames = [], [], {c: [] for c in cameras}
    success = False
    for _ in range(max_steps):
        action = np.asarray(info["expert_action"], dtype=np.float64)
        states.append(np.asarray(obs["agent_pos"], dtype=np.float64))
        actions.append(action)
        for c in cameras:
            frames[c].append(obs["pixels"][c])
        obs, _, terminated, truncated, info = env.step(action)
        success = bool(info.get("is_success", False))
        if terminated or truncated or success:
            break
    out: dict[str, Any] = {"seed": seed, "success": success, "steps": len(actions)}
    if success:
        out.update(state=np.stack(states), action=np.stack(actions), frames=frames)
    return out


def make_sim_demos(
    env: str,
    episodes: int,
    output_dir: str,
    seed: int = 0,
    num_workers: int = 1,
    image_size: tuple[int, int] = (240, 320),
    cameras: tuple[str, ...] | None = None,
    max_steps: int | None = None,
    max_attempts: int | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Record `episodes` successful expert episodes of `env` into a LeRobot v3.0 dataset at `output_dir`.
    Returns {"episodes", "attempts", "failed_seeds", "frames", "output_dir"}."""
    from tqdm import tqdm

    from vla_foundry.data.scripts.make_synthetic_lerobot import LeRobotV3Writer
    from vla_foundry.eval.sim import headless_rendering

    headless_rendering()
    spec = get_sim_env(env)
    if spec.expert is None:
        raise ConfigError(f"env {env} has no scripted expert to record")
    cameras = tuple(cameras or (spec.video_camera,))
    unknown = [c for c in cameras if c not in spec.cameras]
    if unknown:
        raise ConfigError(f"cameras {unknown} are not cameras of {env} (valid: {list(spec.cameras)})")
    if episodes < 1 or num_workers < 1:
        raise ConfigError(f"episodes ({episodes}) and num_workers ({num_workers}) must be >= 1")
    max_steps = max_steps or spec.max_steps
    max_attempts = max_attempts or 2 * episodes
    state_names = [f"state_{i}" for i in range(spec.state_dim)]
    action_names = [f"action_{i}" for i in range(spec.action_dim)]
    writer = LeRobotV3Writer(
        output_dir, spec.fps, [CAMERA_PREFIX + c for c in cameras], state_names, action_names, codec="h264"
    )
    args = [(env, seed + k, cameras, tuple(image_size), max_steps) for k in range(max_attempts)]
    kept, failed, attempts = 0, [], 0
    bar = tqdm(total=episodes, desc=f"{env} demos", unit="episode", disable=not show_progress, file=sys.stderr)
    pool = None
    if num_workers > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(num_workers)
        results = pool.imap(_record, args)  # in seed order: the dataset does not depend on timing
    else:
        results = map(_record, args)
    try:
        for result in results:
            attempts += 1
            if not result["success"]:
                failed.append(result["seed"])
                continue
            frames = {CAMERA_PREFIX + c: result["frames"][c] for c in cameras}
            writer.add_episode(spec.instruction, result["state"], result["action"], frames)
            kept += 1
            bar.update(1)
            if kept == episodes:
                break
    finally:
        if pool is not None:
            pool.terminate()
        bar.close()
    if kept == 0:
        raise RuntimeError(f"the expert of {env} failed all {attempts} seeds {failed[:10]}...; nothing recorded")
    root = writer.close()
    info = json.loads((Path(root) / "meta" / "info.json").read_text())
    return {
        "episodes": kept,
        "attempts": attempts,
        "failed_seeds": failed,
        "frames": info["total_frames"],
        "output_dir": str(root),
    }


def _record(args: tuple) -> dict[str, Any]:
    return record_episode(*args)


def main(argv: list[str] | None = None) -> int:
    from vla_foundry.eval.envs import sim_env_names

    parser = argparse.ArgumentParser(
        prog="python -m vla_foundry.eval.make_sim_demos", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--env", required=True, help=f"registered env with an expert: {', '.join(sim_env_names())}")
    parser.add_argument("--episodes", type=int, default=50, help="successful episodes to record")
    parser.add_argument("--output_dir", required=True, help="new or empty local directory")
    parser.add_argument("--seed", type=int, default=0, help="first env seed")
    parser.add_argument("--num_workers", type=int, default=1, help="processes running the expert")
    parser.add_argument("--image_size", type=int, nargs=2, default=[240, 320], metavar=("H", "W"))
    parser.add_argument("--cameras", nargs="+", default=None, help="cameras to record (default: the env's main one)")
    parser.add_argument("--max_steps", type=int, default=None, help="steps per episode (default: the env's)")
    parser.add_argument("--max_attempts", type=int, default=None, help="seeds tried at most (default: 2 x episodes)")
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        out = make_sim_demos(
            args.env,
            args.episodes,
            args.output_dir,
            args.seed,
            args.num_workers,
            tuple(args.image_size),
            tuple(args.cameras) if args.cameras else None,
            args.max_steps,
            args.max_attempts,
            show_progress=not args.no_progress,
        )
    except (ConfigError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(
        f"{out['episodes']} episodes ({out['frames']} frames) recorded from {out['attempts']} attempts "
        f"(failed seeds: {out['failed_seeds']}) in {time.perf_counter() - start:.0f} s -> {out['output_dir']}"
    )
    return 0 if out["episodes"] == args.episodes else 1


if __name__ == "__main__":
    raise SystemExit(main())
