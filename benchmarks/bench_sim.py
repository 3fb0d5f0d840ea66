"""Simulation throughput: env steps/s with 1 vs N worker processes, and policy + env steps/s.

    uv run python benchmarks/bench_sim.py [--env aloha_transfer_cube] [--workers 1 2] [--episodes_per_worker 2]
        [--max_steps 100] [--image_size 240 320] [--run_dir RUN --policy_env pusht]

Env throughput: the env's scripted expert acts (its cost is negligible next to the simulator) and one camera is
rendered at --image_size, as a policy with one camera needs; each worker count runs `episodes_per_worker x N`
episodes in N spawned worker processes (gymnasium AsyncVectorEnv; N = 1 runs in process). Steps/s is N x the mean
per-episode rate (the envs step in lockstep), so process start-up is not counted. Figure of merit (measured in
the same run): speed-up(N) = steps/s(N) / steps/s(1), target >= 0.7 N up to the core count.

Rendering: frames/s per core of the renderer demos and evaluation use (one camera at --image_size, llvmpipe on one
thread), measured as N expert steps with the camera minus N steps without it; for Meta-World also gymnasium's own
MuJoCo renderer on the same env and camera (the default a Meta-World env renders with), in the same process, and
the ratio of the two (target >= 50 frames/s per core at <= 128 px on the 2-core CPU machine).

With --run_dir, also policy + env steps/s: the run's policy acting in --policy_env through eval.sim (one env,
rendering what the policy uses), with receding horizon over the whole chunk.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("LP_NUM_THREADS", "1")  # llvmpipe (software EGL) on one thread: a per-core figure


def env_steps_per_s(env: str, workers: int, episodes: int, max_steps: int, image_size: tuple[int, int]) -> float:
    from vla_foundry.eval.envs import get_sim_env
    from vla_foundry.eval.sim import ExpertController, run_episodes
    from vla_foundry.params.eval_params import SimEpisodesParams

    spec = get_sim_env(env)
    results, _ = run_episodes(
        spec,
        ExpertController(),
        SimEpisodesParams(episodes=episodes, num_envs=workers, max_steps=max_steps),
        cameras=[spec.video_camera],
        image_size=image_size,
        show_progress=False,
    )
    return workers * sum(r.steps / r.wall_time_s for r in results) / len(results)


def _timed_steps(env: str, cameras: tuple[str, ...], image_size: tuple[int, int], steps: int) -> float:
    """Seconds for `steps` expert steps of `env` rendering `cameras` (reset to the next seed when an episode ends)."""
    import time

    from vla_foundry.eval.sim import make_env

    e = make_env(env, cameras, image_size, 10_000, expert=True)
    _, info = e.reset(seed=0)
    start, seed = time.perf_counter(), 0
    for _ in range(steps):
        _, _, terminated, truncated, info = e.step(info["expert_action"])
        if terminated or truncated:
            seed += 1
            _, info = e.reset(seed=seed)
    elapsed = time.perf_counter() - start
    e.close()
    return elapsed


def render_fps(env: str, image_size: tuple[int, int], frames: int) -> float:
    """Frames/s of the env's own renderer: (time with one camera - time without) for `frames` steps."""
    from vla_foundry.eval.envs import get_sim_env

    camera = get_sim_env(env).video_camera
    with_camera = _timed_steps(env, (camera,), image_size, frames)
    without = _timed_steps(env, (), image_size, frames)
    return frames / max(with_camera - without, 1e-9)


def gymnasium_render_fps(task: str, image_size: tuple[int, int], frames: int) -> float:
    """Frames/s of gymnasium's MuJoCo renderer, as a Meta-World env renders by default (same camera and size)."""
    import time

    import metaworld
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    h, w = image_size
    env = ALL_V3_ENVIRONMENTS[task](render_mode="rgb_array", camera_name="corner2", width=w, height=h)
    env.set_task(metaworld.MT1(task, seed=0).train_tasks[0])
    env.reset()
    env.render()  # the context is made on the first frame
    start = time.perf_counter()
    for _ in range(frames):
        env.render()
    rate = frames / (time.perf_counter() - start)
    env.close()
    return rate


def main() -> None:
    from flags import add_list_flag, list_value

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="aloha_transfer_cube", help="an env with a scripted expert")
    add_list_flag(parser, "--workers", int, 'worker counts to compare, e.g. "[1, 2]"', default=[1, 2])
    parser.add_argument("--episodes_per_worker", type=int, default=2)
    parser.add_argument("--max_steps", type=int, default=100)
    add_list_flag(parser, "--image_size", int, 'render size "[height, width]"', default=[240, 320])
    parser.add_argument("--run_dir", default=None, help="a trained run for the policy + env figure")
    parser.add_argument("--policy_env", default="aloha_transfer_cube")
    parser.add_argument("--policy_steps", type=int, default=60)
    parser.add_argument("--render_frames", type=int, default=200, help="frames for the rendering figure (0: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="alternated repeats of the rendering figures")
    args = parser.parse_args()
    args.workers = list_value(parser, args, "--workers")
    args.image_size = list_value(parser, args, "--image_size")

    import statistics

    from vla_foundry.eval.sim import headless_rendering

    headless_rendering()
    size = tuple(args.image_size)
    if args.render_frames:
        ours, gym_default = [], []
        for _ in range(args.repeats):
            ours.append(render_fps(args.env, size, args.render_frames))
            if args.env.startswith("metaworld/"):
                gym_default.append(gymnasium_render_fps(args.env.split("/", 1)[1], size, args.render_frames))
        line = f"{args.env}: render {statistics.median(ours):.1f} frames/s per core at {list(size)}"
        if gym_default:
            base = statistics.median(gym_default)
            line += f"; gymnasium's renderer {base:.1f} frames/s; ratio {statistics.median(ours) / base:.2f}"
        print(line + f" (medians of {args.repeats}, load {os.getloadavg()[0]:.1f})", flush=True)
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
        from vla_foundry.params.eval_params import SimEvalParams

        out = evaluate(
            SimEvalParams(
                env=args.policy_env, episodes=1, run_dir=args.run_dir, max_steps=args.policy_steps, no_progress=True
            )
        )
        episode = out["episodes"][0]
        print(f"policy + env ({args.policy_env}): {episode['steps'] / episode['wall_time_s']:.1f} steps/s")


if __name__ == "__main__":
    main()
