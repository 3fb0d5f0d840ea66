"""Simulation throughput: env steps/s with 1 vs N worker processes, and policy + env steps/s.

    uv run python benchmarks/bench_sim.py [--env aloha_transfer_cube] [--workers 1 2] [--episodes_per_worker 2]
        [--max_steps 100] [--image_size 240 320] [--run_dir RUN --policy_env pusht]

Env throughput: the env's scripted expert acts (its cost is negligible next to the simulator) and one camera is
rendered at --image_size, as a policy with one camera needs; each worker count runs `episodes_per_worker x N`
episodes in N spawned worker processes (gymnasium AsyncVectorEnv; N = 1 runs in process). Steps/s is N x the mean
per-episode rate (the envs step in lockstep), so process start-up is not counted. Figure of merit (measured in
the same run): speed-up(N) = steps/s(N) / steps/s(1), target >= 0.7 N up to the core count.

With --run_dir, also policy + env steps/s: the run's policy acting in --policy_env through eval.sim (one env,
rendering what the policy uses), with receding horizon over the whole chunk.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")


def env_steps_per_s(env: str, workers: int, episodes: int, max_steps: int, image_size: tuple[int, int]) -> float:
    from vla_foundry.eval.envs import get_sim_env
    from vla_foundry.eval.sim import ExpertController, run_episodes

    spec = get_sim_env(env)
    results, _ = run_episodes(
        spec,
        ExpertController(),
        episodes,
        num_envs=workers,
        max_steps=max_steps,
        cameras=[spec.video_camera],
        image_size=image_size,
        show_progress=False,
    )
    return workers * sum(r.steps / r.wall_time_s for r in results) / len(results)


def main() -> None:
    from vla_foundry.cli import add_list_flag, list_value

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="aloha_transfer_cube", help="an env with a scripted expert")
    add_list_flag(parser, "--workers", int, 'worker counts to compare, e.g. "[1, 2]"', default=[1, 2])
    parser.add_argument("--episodes_per_worker", type=int, default=2)
    parser.add_argument("--max_steps", type=int, default=100)
    add_list_flag(parser, "--image_size", int, 'render size "[height, width]"', default=[240, 320])
    parser.add_argument("--run_dir", default=None, help="a trained run for the policy + env figure")
    parser.add_argument("--policy_env", default="aloha_transfer_cube")
    parser.add_argument("--policy_steps", type=int, default=60)
    args = parser.parse_args()
    args.workers = list_value(parser, args, "--workers")
    args.image_size = list_value(parser, args, "--image_size")

    from vla_foundry.eval.sim import headless_rendering

    headless_rendering()
    cores = os.cpu_count() or 1
    rates = {}
    for n in args.workers:
        rates[n] = env_steps_per_s(args.env, n, n * args.episodes_per_worker, args.max_steps, tuple(args.image_size))
        print(f"{args.env}: {n} worker(s): {rates[n]:.1f} env steps/s (1 camera at {args.image_size})", flush=True)
    base = rates.get(1)
    if base:
        for n, rate in rates.items():
            if n > 1:
                target = 0.7 * min(n, cores)
                print(f"speed-up with {n} workers: {rate / base:.2f}x (target >= {target:.1f}x on {cores} cores)")
    if args.run_dir:
        from vla_foundry.eval.sim import evaluate

        out = evaluate(
            args.policy_env, 1, run_dir=args.run_dir, max_steps=args.policy_steps, videos=0, show_progress=False
        )
        episode = out["episodes"][0]
        print(f"policy + env ({args.policy_env}): {episode['steps'] / episode['wall_time_s']:.1f} steps/s")


if __name__ == "__main__":
    main()
