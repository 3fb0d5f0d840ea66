"""Record scripted demonstrations in simulation as a LeRobot v3.0 dataset.

    python -m vla_foundry.eval.make_sim_demos --env aloha_transfer_cube --episodes 50 --output_dir /tmp/demos \\
        [--seed 1000000] [--num_workers 2] [--image_size "[240, 320]"] [--cameras "[top]"]
    python -m vla_foundry.eval.make_sim_demos --env metaworld_mt10 --episodes_per_task 50 --num_workers 2 \\
        --output_dir /tmp/mt10_demos [--cameras "[corner2]" | --cameras none] [--image_size "[96, 96]"]

`--env` is one environment or a suite (each of its tasks in turn, `--episodes` per task). The env's scripted expert
runs from env seeds `seed`, `seed + 1`, ... (by default from 1,000,000, so that evaluation's seeds 0, 1, ... are
never seen in training); successful episodes are kept until `--episodes` are recorded per task (failures are
counted and reported; at most `--max_attempts` seeds are tried per task). Each kept episode stores, per step t,
the observation before the action (`observation.state`, the env's other proprioception fields such as Meta-World's
`observation.environment_state`, one MP4 frame per camera as `observation.images.<camera>`; `--cameras none`
records no video) and the action sent (`action`), up to and including the step that succeeded, with its task's
instruction as the episode's task. The dataset is written next to `output_dir` and moved there when complete, so an
interrupted run leaves nothing that looks like a dataset. It then takes the normal path:

    python vla_foundry/data/preprocessing/preprocess_robotics_to_tar.py \\
        --config_path config_presets/preprocessing/lerobot_1past_14future.yaml \\
        --source_episodes "[/tmp/demos]" --output_dir /tmp/demos_shards
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla_foundry.eval.envs import expand_sim_envs, get_sim_env
from vla_foundry.params.base_params import ConfigError

# Demonstrations start at this seed by default; evaluation starts at 0.
DEFAULT_DEMO_SEED = 1_000_000
CAMERA_PREFIX = "observation.images."

_worker_env: dict[str, Any] = {}


def record_episode(
    env_name: str,
    seed: int,
    cameras: tuple[str, ...],
    image_size: tuple[int, int],
    max_steps: int,
    steps_after_success: int = 0,
) -> dict[str, Any]:
    """One expert episode from env seed `seed`: {"env", "seed", "success", "steps", and when it succeeded "state"
    {observation key: (T, D)}, "action" (T, A), "frames" {camera: T frames}}. The expert goes on for
    `steps_after_success` steps after the first success (within `max_steps`), recorded too. The env is built once per
    process and reused."""
    from vla_foundry.eval.sim import make_env

    key = (env_name, cameras, image_size, max_steps)
    if _worker_env.get("key") != key:
        if "env" in _worker_env:
            _worker_env["env"].close()
        _worker_env.update(key=key, env=make_env(env_name, cameras, image_size, max_steps, expert=True))
    env = _worker_env["env"]
    obs, info = env.reset(seed=seed)
    state_keys = [k for k in obs if k != "pixels" and k != "env_state"]
    states: dict[str, list] = {k: [] for k in state_keys}
    actions, frames = [], {c: [] for c in cameras}
    success, after = False, 0
    for _ in range(max_steps):
        # The env executes the action as the dataset stores it (float32), so a replay of the dataset from the same
        # seed passes through the recorded states exactly.
        action = np.asarray(info["expert_action"], dtype=np.float32).astype(np.float64)
        for k in state_keys:
            states[k].append(np.asarray(obs[k], dtype=np.float64))
        actions.append(action)
        for c in cameras:
            frames[c].append(obs["pixels"][c])
        obs, _, terminated, truncated, info = env.step(action)
        success = success or bool(info.get("is_success", False))
        if success:
            # Steps past the first success show the policy what lies inside the goal region (an episode cut at
            # the boundary teaches it to stop just before it).
            if after >= steps_after_success:
                break
            after += 1
        elif terminated or truncated:
            break
    out: dict[str, Any] = {"env": env_name, "seed": seed, "success": success, "steps": len(actions)}
    if success:
        out.update(state={k: np.stack(v) for k, v in states.items()}, action=np.stack(actions), frames=frames)
    return out


def _check_cameras(env: str, names: list[str], cameras: tuple[str, ...] | None) -> tuple[str, ...]:
    spec = get_sim_env(names[0])
    if cameras is None:
        return (spec.video_camera,)
    if tuple(cameras) in {("none",), ()}:
        return ()
    for name in names:
        valid = get_sim_env(name).cameras
        unknown = [c for c in cameras if c not in valid]
        if unknown:
            raise ConfigError(f"cameras {unknown} are not cameras of {name} (valid: {list(valid)} or none)")
    return tuple(cameras)


@dataclass(frozen=True)
class SimDemosParams:
    """`python -m vla_foundry.eval.make_sim_demos`: what to record and where."""

    # Registered env with a scripted expert (aloha_transfer_cube, metaworld/<task>, ...) or a suite (each task).
    env: str = ""
    # Successful episodes to record (per task of a suite).
    episodes: int = 50
    # New or empty local directory the LeRobot dataset is written to.
    output_dir: str = ""
    # First env seed (evaluation starts at 0, so demonstrations start far from it).
    seed: int = DEFAULT_DEMO_SEED
    # Processes running the expert.
    num_workers: int = 1
    # Frame size [H, W].
    image_size: tuple[int, int] = (240, 320)
    # Cameras to record, e.g. [corner2] (None: the env's main one; [none]: no video).
    cameras: tuple[str, ...] | None = None
    # Steps per episode (None: the env's).
    max_steps: int | None = None
    # Seeds tried at most per task (None: 2 x episodes).
    max_attempts: int | None = None
    # Expert steps recorded after an episode's first success (0: it ends at the success).
    steps_after_success: int = 0
    # No progress bar.
    no_progress: bool = False

    def validate(self) -> None:
        if not self.env:
            raise ConfigError("--env is required: a registered env with a scripted expert, or a suite (see --help)")
        if not self.output_dir:
            raise ConfigError("--output_dir is required: a new or empty local directory")
        if self.episodes < 1 or self.num_workers < 1:
            raise ConfigError(f"episodes ({self.episodes}) and num_workers ({self.num_workers}) must be >= 1")
        if min(self.image_size) < 1:
            raise ConfigError(f"image_size={list(self.image_size)} must be [H, W] with positive values")
        if self.steps_after_success < 0:
            raise ConfigError(f"steps_after_success={self.steps_after_success} must be >= 0")


def make_sim_demos(params: SimDemosParams) -> dict[str, Any]:
    """Record `episodes` successful expert episodes of `env` (of each task of a suite) into a LeRobot v3.0 dataset
    at `output_dir`. Returns {"episodes", "attempts", "failed_seeds" (env -> seeds), "frames", "tasks" (env ->
    episodes kept), "output_dir"}."""
    from tqdm import tqdm

    from vla_foundry.data.scripts.make_synthetic_lerobot import LeRobotV3Writer
    from vla_foundry.eval.sim import headless_rendering

    headless_rendering()
    params.validate()
    env, episodes, output_dir, seed, num_workers = (
        params.env,
        params.episodes,
        params.output_dir,
        params.seed,
        params.num_workers,
    )
    image_size, max_steps, show_progress = params.image_size, params.max_steps, not params.no_progress
    names = expand_sim_envs(env)
    specs = {n: get_sim_env(n) for n in names}
    no_expert = [n for n, spec in specs.items() if spec.expert is None]
    if no_expert:
        raise ConfigError(f"env {no_expert[0]} has no scripted expert to record")
    cameras = _check_cameras(env, names, params.cameras)
    shapes = {(s.state_dim, s.action_dim, tuple(sorted(s.extra_state_fields.items())), s.fps) for s in specs.values()}
    if len(shapes) != 1:
        raise ConfigError(f"the envs of {env} differ in state, action or fps; record them as separate datasets")
    first = specs[names[0]]
    max_attempts = params.max_attempts or 2 * episodes
    # Low-dim fields: observation key -> (LeRobot feature, value names).
    fields = {
        key: (name, [f"{name.rsplit('.', 1)[-1]}_{i}" for i in range(dim)])
        for name, (key, dim) in first.state_fields.items()
    }
    writer = LeRobotV3Writer(
        output_dir,
        first.fps,
        [CAMERA_PREFIX + c for c in cameras],
        fields["agent_pos"][1],
        [f"action_{i}" for i in range(first.action_dim)],
        codec="h264",
        extra_fields={name: names_ for key, (name, names_) in fields.items() if key != "agent_pos"},
    )
    kept: dict[str, int] = dict.fromkeys(names, 0)
    failed: dict[str, list[int]] = {n: [] for n in names}
    attempts = 0
    bar = tqdm(
        total=episodes * len(names), desc=f"{env} demos", unit="episode", disable=not show_progress, file=sys.stderr
    )
    pool = None
    if num_workers > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(num_workers)
    try:
        for name in names:
            spec = specs[name]
            steps = max_steps or spec.max_steps
            next_seed = seed
            # Each round asks for exactly the episodes still missing (no expert run is wasted), in seed order, so
            # the dataset does not depend on timing.
            while kept[name] < episodes and next_seed - seed < max_attempts:
                count = min(episodes - kept[name], seed + max_attempts - next_seed)
                args = [
                    (name, next_seed + k, cameras, tuple(image_size), steps, params.steps_after_success)
                    for k in range(count)
                ]
                next_seed += count
                results = pool.imap(_record, args) if pool is not None else map(_record, args)
                for result in results:
                    attempts += 1
                    if not result["success"]:
                        failed[name].append(result["seed"])
                        continue
                    frames = {CAMERA_PREFIX + c: result["frames"][c] for c in cameras}
                    extra = {fields[k][0]: v for k, v in result["state"].items() if k != "agent_pos"}
                    writer.add_episode(spec.instruction, result["state"]["agent_pos"], result["action"], frames, extra)
                    kept[name] += 1
                    bar.update(1)
    except BaseException:
        writer.abort()
        raise
    finally:
        if pool is not None:
            pool.terminate()
        bar.close()
    empty = [n for n in names if kept[n] == 0]
    if empty:
        writer.abort()
        raise RuntimeError(
            f"the expert of {empty[0]} failed all {len(failed[empty[0]])} seeds {failed[empty[0]][:10]}; nothing "
            "recorded"
        )
    root = writer.close()
    info = json.loads((Path(root) / "meta" / "info.json").read_text())
    return {
        "episodes": sum(kept.values()),
        "attempts": attempts,
        "failed_seeds": {n: f for n, f in failed.items() if f},
        "frames": info["total_frames"],
        "tasks": kept,
        "output_dir": str(root),
    }


def _record(args: tuple) -> dict[str, Any]:
    return record_episode(*args)


def main(argv: list[str] | None = None) -> int:
    from vla_foundry.cli import Spelling, run_command

    return run_command(
        SimDemosParams,
        _run,
        argv,
        prog="python -m vla_foundry.eval.make_sim_demos",
        doc=__doc__,
        spelling=Spelling(aliases={"episodes_per_task": "episodes"}),
        errors=(ValueError, RuntimeError),
    )


def _run(params: SimDemosParams) -> int:
    start = time.perf_counter()
    out = make_sim_demos(params)
    print(
        f"{out['episodes']} episodes ({out['frames']} frames) recorded from {out['attempts']} attempts "
        f"(failed seeds: {out['failed_seeds'] or 'none'}) in {time.perf_counter() - start:.0f} s -> {out['output_dir']}"
    )
    short = {n: k for n, k in out["tasks"].items() if k < params.episodes}
    if short:
        print(f"fewer episodes than asked for: {short}", file=sys.stderr)
    return 1 if short else 0


if __name__ == "__main__":
    raise SystemExit(main())
