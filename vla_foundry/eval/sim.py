"""Closed-loop evaluation of a policy in a simulated environment: success rate with its 95% confidence interval.

    python -m vla_foundry.eval.sim --run_dir experiments/my_vla --env aloha_transfer_cube --episodes 50 \\
        --num_envs 4 --seed 0 --output_dir /tmp/eval_my_vla
    python -m vla_foundry.eval.sim --policy_url http://127.0.0.1:8765 --env pusht --episodes 20 --output_dir DIR
    python -m vla_foundry.eval.sim --policy scripted --env aloha_transfer_cube --episodes 20 --output_dir DIR

Episode k starts from env seed `seed + k`. Environments run in `num_envs` worker processes (a gymnasium
AsyncVectorEnv; one env runs in-process); the policy is batched over the envs that need a new action chunk.
Receding horizon: each predicted chunk's first `--n_action_steps` rows are executed (default: the whole chunk,
the anchor row and the future rows), then the policy is asked again. `--temporal_ensemble K` instead asks at
every step and averages every chunk's row for the step with weights exp(-K i), i = 0 for the oldest.

Writes to `output_dir`: results.json (per episode: seed, success, max reward, steps, wall time, rewards; the
summary; the settings), rewards.png (per-episode reward curves) and videos/episode_<k>.mp4 for the first
`--videos` episodes with the instruction and the step drawn on the frames.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from vla_foundry.eval.envs import SimAdapter, SimEnvSpec, expand_sim_envs, get_sim_env, is_sim_suite, sim_env_names
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.eval_params import SimEpisodesParams, SimEvalParams


def headless_rendering() -> None:
    """MuJoCo renders through EGL unless the user chose a backend (no display is needed)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame (gym-pusht) without a display
    # Mesa's software rasteriser (llvmpipe) and triton each bring their own LLVM: triton loaded after Mesa has
    # rendered crashes the process (a segfault when torch later builds an optimizer or compiles), triton loaded
    # first does not. torch imports triton lazily, so load it before anything renders.
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (well behaved at 0 and n successes, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class EpisodeResult:
    episode: int
    seed: int
    success: bool
    max_reward: float
    steps: int
    wall_time_s: float
    rewards: list[float] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# Environments in worker processes


def _expert_wrapper() -> type:
    import gymnasium as gym

    class ExpertAction(gym.Wrapper):
        """Puts the scripted expert's next action in info["expert_action"] (the expert reads privileged state,
        so it must live next to the env, in the env's process)."""

        def __init__(self, env: Any, make_expert: Callable[[Any], Any]) -> None:
            super().__init__(env)
            self.expert = make_expert(env)

        def reset(self, **kwargs: Any) -> tuple:
            obs, info = self.env.reset(**kwargs)
            self.expert.reset()
            return obs, {**info, "expert_action": self.expert.act()}

        def step(self, action: Any) -> tuple:
            obs, reward, terminated, truncated, info = self.env.step(action)
            return obs, reward, terminated, truncated, {**info, "expert_action": self.expert.act()}

    return ExpertAction


def make_env(name: str, cameras: tuple[str, ...], image_size: tuple[int, int], max_steps: int, expert: bool) -> Any:
    """Build registered env `name` (module-level, so worker processes can pickle it)."""
    headless_rendering()
    spec = get_sim_env(name)
    env = spec.make(cameras, image_size, max_steps)
    if expert:
        if spec.expert is None:
            raise ConfigError(f"env {name} has no scripted expert")
        env = _expert_wrapper()(env, spec.expert)
    return env


def make_vector_env(
    spec: SimEnvSpec, num_envs: int, cameras: Sequence[str], image_size: tuple[int, int], max_steps: int, expert: bool
) -> Any:
    """`num_envs` envs without autoreset (the evaluator resets each with its next episode's seed)."""
    from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

    fn = partial(make_env, spec.name, tuple(cameras), tuple(image_size), max_steps, expert)
    if num_envs == 1:
        return SyncVectorEnv([fn], autoreset_mode=AutoresetMode.DISABLED)
    # spawn: a forked child would inherit the parent's torch threads and any GL context.
    return AsyncVectorEnv([fn] * num_envs, context="spawn", autoreset_mode=AutoresetMode.DISABLED)


# ---------------------------------------------------------------------------------------------------------------
# Controllers: what acts in each env


class PolicyController:
    """A policy (in-process `Policy` or `PolicyClient`) acting with receding horizon or temporal ensembling."""

    needs_expert = False

    def __init__(
        self,
        policy: Any,
        adapter: SimAdapter,
        chunk_length: int,
        n_action_steps: int | None = None,
        temporal_ensemble: float | None = None,
        seed: int = 0,
        past_action_rows: int = 0,
    ) -> None:
        n = n_action_steps or chunk_length
        if not 1 <= n <= chunk_length:
            raise ConfigError(f"n_action_steps={n_action_steps} must be in 1..{chunk_length} (the policy's chunk)")
        if temporal_ensemble is not None and temporal_ensemble < 0:
            raise ConfigError(f"temporal_ensemble={temporal_ensemble} must be >= 0")
        self.policy, self.adapter = policy, adapter
        # The instruction given to the policy (None: the env's own; a language-following test swaps it).
        self.instruction: str | None = None
        self.n_action_steps, self.ensemble = n, temporal_ensemble
        self.seed, self.queries = seed, 0
        # The actions executed last, given back as the window's past rows: a policy trained with its past actions
        # known (condition_on_past_actions) sees in closed loop what it saw in training; at an episode's start
        # they are unknown, as the padded past rows of training are.
        self.past_action_rows = past_action_rows
        self.executed: dict[int, list[np.ndarray]] = {}
        self.queue: dict[int, list[np.ndarray]] = {}
        self.chunks: dict[int, list[tuple[int, np.ndarray]]] = {}
        self.t: dict[int, int] = {}

    def start(self, slot: int) -> None:
        self.queue[slot], self.chunks[slot], self.t[slot], self.executed[slot] = [], [], 0, []

    def record(self, slot: int, action: np.ndarray) -> None:
        """The action env `slot` executed (after clipping to the env's bounds)."""
        if self.past_action_rows:
            self.executed[slot] = [*self.executed[slot], np.asarray(action)][-self.past_action_rows :]

    def _observation(self, slot: int, history: tuple[list, list]) -> dict:
        obs = self.adapter.policy_observation(*history, self.instruction)
        past = self.executed.get(slot, [])
        if self.past_action_rows and len(past) == self.past_action_rows:
            obs["past_actions"] = np.stack(past)  # (past, action_dim), oldest first
        return obs

    def act(self, slots: list[int], history: dict[int, tuple[list, list]], infos: dict[int, dict]) -> dict:
        need = [s for s in slots if self.ensemble is not None or not self.queue[s]]
        if need:
            observations = [self._observation(s, history[s]) for s in need]
            # One seed per query: the same settings give the same noise, whatever the timing.
            chunks = np.asarray(self.policy.predict(observations, seed=self.seed * 1_000_003 + self.queries))
            self.queries += 1
            for s, chunk in zip(need, chunks):  # chunk: (chunk_length, action_dim)
                if self.ensemble is None:
                    self.queue[s] = list(chunk[: self.n_action_steps])
                else:
                    self.chunks[s] = [(t0, c) for t0, c in self.chunks[s] if self.t[s] - t0 < len(c)]
                    self.chunks[s].append((self.t[s], chunk))
        out = {}
        for s in slots:
            if self.ensemble is None:
                out[s] = self.queue[s].pop(0)
            else:
                rows = np.stack([c[self.t[s] - t0] for t0, c in self.chunks[s]])  # (n_chunks, action_dim), oldest first
                weights = np.exp(-self.ensemble * np.arange(len(rows)))
                out[s] = (weights[:, None] * rows).sum(0) / weights.sum()
            self.t[s] += 1
        return out


class ExpertController:
    """The env's scripted expert (its actions come from the env process through info["expert_action"])."""

    needs_expert = True

    def start(self, slot: int) -> None:
        pass

    def record(self, slot: int, action: np.ndarray) -> None:
        pass

    def act(self, slots: list[int], history: dict[int, tuple[list, list]], infos: dict[int, dict]) -> dict:
        return {s: infos[s]["expert_action"] for s in slots}


# ---------------------------------------------------------------------------------------------------------------
# The loop


def _slot_info(info: dict, i: int) -> dict:
    """Env i's entries of a vector env's batched info dict."""
    return {k: v[i] for k, v in info.items() if not k.startswith("_") and (f"_{k}" not in info or info[f"_{k}"][i])}


def _slot_obs(obs: dict, i: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Env i's frames {camera: (H, W, 3)} and state {observation key: values} from a vector env's batch."""
    state = {k: np.asarray(v[i]) for k, v in obs.items() if k != "pixels" and isinstance(v, np.ndarray)}
    return {cam: frames[i] for cam, frames in obs["pixels"].items()}, state


def run_episodes(
    spec: SimEnvSpec,
    controller: Any,
    params: SimEpisodesParams,
    cameras: Sequence[str] = (),
    image_size: tuple[int, int] | None = None,
    history: int = 1,
    show_progress: bool = True,
) -> tuple[list[EpisodeResult], dict[int, list[np.ndarray]]]:
    """Run `params.episodes` episodes (episode k from env seed `params.seed + k`) in `params.num_envs` envs. Returns
    the results in episode order and the video-camera frames of the first `params.videos` episodes."""
    from tqdm import tqdm

    episodes, num_envs, seed, video_episodes = params.episodes, params.num_envs, params.seed, params.videos
    max_steps = params.max_steps or spec.max_steps
    image_size = tuple(image_size or spec.image_size)
    video_camera = spec.video_camera if video_episodes > 0 else ""
    render = list(dict.fromkeys([*cameras, *([video_camera] if video_camera else [])]))
    n = max(1, min(num_envs, episodes))
    envs = make_vector_env(spec, n, render, image_size, max_steps, controller.needs_expert)
    results: list[EpisodeResult] = []
    videos: dict[int, list[np.ndarray]] = {}
    try:
        slot_episode = list(range(n))
        next_episode = n
        # Episodes nobody looks at (the policy uses no camera, no video wanted) skip rendering when the env can.
        skip_render = spec.render_option and not cameras

        def reset(seeds: list[int | None]) -> tuple[dict, dict]:
            obs: dict = {}
            info: dict = {}
            groups: dict[bool, np.ndarray] = {}
            for s, x in enumerate(seeds):
                if x is not None:
                    render = not skip_render or slot_episode[s] < video_episodes
                    groups.setdefault(render, np.zeros(n, bool))[s] = True
            for render, mask in groups.items():
                options = {"reset_mask": mask, **({"render": render} if spec.render_option else {})}
                obs, info = envs.reset(seed=seeds, options=options)
                for s in np.flatnonzero(mask):
                    observed[int(s)] = (*_slot_obs(obs, int(s)), _slot_info(info, int(s)))
            return obs, info

        observed: dict[int, tuple] = {}
        reset([seed + e for e in slot_episode])
        frames: dict[int, list] = {}
        states: dict[int, list] = {}
        rewards: dict[int, list[float]] = {}
        success: dict[int, bool] = {}
        started: dict[int, float] = {}
        infos: dict[int, dict] = {}

        def begin(slot: int) -> None:
            f, s, slot_info = observed[slot]
            frames[slot], states[slot], rewards[slot] = [f], [s], []
            success[slot], started[slot], infos[slot] = False, time.perf_counter(), slot_info
            if slot_episode[slot] < video_episodes:
                videos[slot_episode[slot]] = [f[video_camera]]
            controller.start(slot)

        for slot in range(n):
            begin(slot)
        active = set(range(n))
        last_action = np.zeros((n, *envs.single_action_space.shape), dtype=envs.single_action_space.dtype)
        adapter_space = envs.single_action_space
        bar = tqdm(total=episodes, desc=f"{spec.name}", unit="episode", disable=not show_progress, file=sys.stderr)
        while active:
            slots = sorted(active)
            rows = controller.act(slots, {s: (frames[s], states[s]) for s in slots}, infos)
            for s in slots:
                row = np.asarray(rows[s], dtype=np.float64).reshape(-1)
                if spec.clip_actions:
                    row = np.clip(row, adapter_space.low, adapter_space.high)
                last_action[s] = row
                controller.record(s, last_action[s].copy())
            obs, reward, terminated, truncated, info = envs.step(last_action)
            reset_seeds: list[int | None] = [None] * n
            for s in slots:
                f, st = _slot_obs(obs, s)
                frames[s] = (frames[s] + [f])[-history:]
                states[s] = (states[s] + [st])[-history:]
                rewards[s].append(float(reward[s]))
                infos[s] = _slot_info(info, s)
                success[s] = success[s] or bool(infos[s].get("is_success", False))
                if slot_episode[s] in videos:
                    videos[slot_episode[s]].append(f[video_camera])
                if terminated[s] or truncated[s] or len(rewards[s]) >= max_steps:
                    e = slot_episode[s]
                    results.append(
                        EpisodeResult(
                            episode=e,
                            seed=seed + e,
                            success=success[s],
                            max_reward=max(rewards[s]),
                            steps=len(rewards[s]),
                            wall_time_s=time.perf_counter() - started[s],
                            rewards=rewards[s],
                        )
                    )
                    bar.update(1)
                    bar.set_postfix(success=f"{sum(r.success for r in results)}/{len(results)}")
                    if next_episode < episodes:
                        slot_episode[s] = next_episode
                        reset_seeds[s] = seed + next_episode
                        next_episode += 1
                    else:
                        active.discard(s)
            if any(x is not None for x in reset_seeds):
                reset(reset_seeds)
                for s, x in enumerate(reset_seeds):
                    if x is not None:
                        begin(s)
        bar.close()
    finally:
        envs.close()
    results.sort(key=lambda r: r.episode)
    return results, videos


def summarize(results: Sequence[EpisodeResult], wall_time_s: float) -> dict[str, Any]:
    n = len(results)
    successes = sum(r.success for r in results)
    low, high = wilson_interval(successes, n)
    steps = sum(r.steps for r in results)
    return {
        "episodes": n,
        "successes": successes,
        "success_rate": successes / n if n else 0.0,
        "success_rate_ci95": [low, high],
        "mean_max_reward": float(np.mean([r.max_reward for r in results])) if n else 0.0,
        # How far episodes got: episodes per highest reward reached (gym-aloha's rewards are task stages, so an
        # accidental contact and a transfer are told apart).
        "max_reward_counts": {f"{k:g}": v for k, v in sorted(Counter(r.max_reward for r in results).items())},
        "mean_steps": steps / n if n else 0.0,
        "env_steps": steps,
        "wall_time_s": wall_time_s,
        "env_steps_per_s": steps / wall_time_s if wall_time_s > 0 else 0.0,
    }


def format_summary(env: str, summary: dict[str, Any]) -> str:
    low, high = summary["success_rate_ci95"]
    return (
        f"{env}: success {summary['successes']}/{summary['episodes']} = {summary['success_rate']:.1%} "
        f"(95% CI {low:.1%}-{high:.1%}), mean max reward {summary['mean_max_reward']:.2f}, "
        f"{summary['mean_steps']:.0f} steps/episode, {summary['env_steps_per_s']:.1f} env steps/s"
    )


def overlay(frame: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """The frame with text lines drawn at the top-left on a dark band (PIL's built-in font)."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(image)
    height = 12 * len(lines) + 4
    draw.rectangle([0, 0, image.width, height], fill=(0, 0, 0))
    for k, line in enumerate(lines):
        draw.text((3, 2 + 12 * k), line, fill=(255, 255, 255))
    return np.asarray(image)


def write_outputs(
    output_dir: str,
    spec: SimEnvSpec,
    results: Sequence[EpisodeResult],
    videos: dict[int, list[np.ndarray]],
    summary: dict[str, Any],
    settings: dict[str, Any],
    instruction: str | None = None,
) -> None:
    # A bare Figure draws without pyplot: the caller's backend (a notebook's, say) is left alone.
    from matplotlib.figure import Figure

    from vla_foundry.data.scripts.make_synthetic_lerobot import write_video

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"env": spec.name, "summary": summary, "settings": settings, "episodes": [asdict(r) for r in results]}
    (out / "results.json").write_text(json.dumps(payload, indent=1))
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    for r in results:
        ax.plot(r.rewards, color="tab:green" if r.success else "tab:red", alpha=0.6, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("reward")
    ax.set_title(f"{spec.name}: {summary['successes']}/{summary['episodes']} successes (green)")
    fig.tight_layout()
    fig.savefig(out / "rewards.png", dpi=100)
    for e, frames in sorted(videos.items()):
        # H.264 in yuv420p needs even sides.
        frames = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in frames]
        ok = "success" if results[e].success else "failure"
        drawn = [
            overlay(
                f,
                [
                    (spec.instruction if instruction is None else f"told: {instruction or '(blank)'}")[:60],
                    f"episode {e} (seed {results[e].seed}) step {t} {ok if t + 1 == len(frames) else ''}",
                ],
            )
            for t, f in enumerate(frames)
        ]
        write_video(out / "videos" / f"episode_{e:03d}.mp4", drawn, fps=spec.fps)


# ---------------------------------------------------------------------------------------------------------------
# Entry points


def _instruction_of(instruction_from: str | None) -> str | None:
    """The instruction a language-following test gives: another env's (`metaworld/drawer-close-v3`), blank (""),
    or None (each env's own)."""
    if instruction_from is None or instruction_from == "":
        return instruction_from
    return get_sim_env(instruction_from, where="instruction_from").instruction


def render_size(
    given: tuple[int, int] | None, cameras: Sequence[str], trained: dict[str, list[int]], spec: SimEnvSpec
) -> tuple[tuple[int, int], str]:
    """The (H, W) the env renders at and where it comes from: `given` (--image_size); else the size the policy's
    training images of `cameras` were stored at (the run records it), so that evaluation frames are rendered as
    the demonstrations were rather than rendered at another size and resized; else the env's default."""
    if given:
        return (int(given[0]), int(given[1])), "--image_size"
    sizes = {tuple(trained[c]) for c in cameras if trained.get(c)}
    if len(sizes) > 1:
        raise ConfigError(
            f"the policy's cameras were trained on images of different sizes "
            f"({ {c: trained[c] for c in cameras} }); an env renders every camera at one size: pass --image_size"
        )
    if cameras and sizes and all(trained.get(c) for c in cameras):
        ((h, w),) = sizes
        return (int(h), int(w)), "the policy's training images"
    return tuple(spec.image_size), "the env's default"


def _load_policy(params: SimEvalParams) -> Any:
    if params.run_dir is not None:
        from vla_foundry.inference.policy import Policy

        return Policy.from_run(
            params.run_dir, params.checkpoint, use_ema=not params.no_ema, device=params.device, seed=params.seed
        )
    from vla_foundry.inference.policy_server import PolicyClient

    return PolicyClient(params.policy_url)


def evaluate(params: SimEvalParams, policy: Any = None) -> dict[str, Any]:
    """Evaluate one policy source (the `policy` object, or `params.run_dir`, `params.policy_url` or the scripted
    expert) on `params.episodes` episodes of `params.env` (for a suite such as `metaworld_mt10`: that many per task,
    each task in turn); returns {"summary", "episodes", "settings"} (suites add "tasks": task -> its summary) and
    writes the files when `params.output_dir` is set (a suite: results.json with the table at the top, each task's
    files in `<output_dir>/<task>/`). `params.instruction_from` gives the policy another env's instruction ("" a
    blank one) in every episode."""
    headless_rendering()
    params.validate()
    env, episodes, num_envs, seed = params.env, params.episodes, params.num_envs, params.seed
    max_steps, image_size, output_dir = params.max_steps, params.image_size, params.output_dir
    run_dir, policy_url, scripted = params.run_dir, params.policy_url, params.scripted
    videos = params.videos if output_dir is not None else 0
    show_progress = not params.no_progress
    names = expand_sim_envs(env)
    instruction = _instruction_of(params.instruction_from)
    sources = [x for x in (policy is not None, run_dir is not None, policy_url is not None, scripted) if x]
    if len(sources) != 1:
        raise ConfigError("give exactly one of --run_dir, --policy_url or --policy scripted")
    if scripted:
        missing = [n for n in names if get_sim_env(n).expert is None]
        if missing:
            with_expert = [n for n in sim_env_names() if get_sim_env(n).expert is not None and "/" not in n]
            raise ConfigError(
                f"env {missing[0]} has no scripted expert (envs with one: {with_expert} and every metaworld/<task>)"
            )
        if params.instruction_from is not None:
            raise ConfigError("--instruction_from tests a policy; the scripted expert reads no instruction")
    elif policy is None:
        policy = _load_policy(params)
    settings: dict[str, Any] = {
        "env": env,
        "episodes": episodes,
        "num_envs": num_envs,
        "seed": seed,
        "max_steps": max_steps,
        "image_size": list(image_size) if image_size else None,
        "run_dir": run_dir,
        "checkpoint": params.checkpoint,
        "policy_url": policy_url,
        "scripted": scripted,
        "temporal_ensemble": params.temporal_ensemble,
        "instruction_from": params.instruction_from,
        "instruction": instruction,
    }
    if run_dir is not None:
        settings["checkpoint"] = policy.run.checkpoint
        settings["used_ema"] = policy.run.used_ema
    if policy is not None:
        metadata = policy.metadata()
        # Every env is checked against the policy before any episode runs.
        adapters = {n: SimAdapter(get_sim_env(n), metadata, where=run_dir or policy_url or "policy") for n in names}
    # Camera -> [H, W] of the policy's training images (runs record it; {} for older runs and the scripted expert).
    trained = dict(metadata.get("camera_image_sizes") or {}) if policy is not None else {}
    suite = is_sim_suite(env)
    tasks: dict[str, dict[str, Any]] = {}
    all_results: list[dict[str, Any]] = []
    start = time.perf_counter()
    for name in names:
        spec = get_sim_env(name)
        if scripted:
            controller: Any = ExpertController()
            cameras: list[str] = []
            history = 1
        else:
            adapter = adapters[name]
            controller = PolicyController(
                policy,
                adapter,
                int(metadata["chunk_length"]),
                params.n_action_steps,
                params.temporal_ensemble,
                seed,
                past_action_rows=int(metadata.get("past_lowdim_steps") or 0),
            )
            controller.instruction = instruction
            settings["n_action_steps"] = controller.n_action_steps
            cameras, history = adapter.cameras, adapter.history
        size, size_source = render_size(image_size, cameras, trained, spec)
        if cameras and size_source == "the env's default" and name == names[0]:
            print(
                f"note: the policy does not record the size of its training images; {name} renders {cameras} at "
                f"the env's default {size[0]}x{size[1]} (pass --image_size H W to render at the demonstrations' size)",
                file=sys.stderr,
            )
        task_start = time.perf_counter()
        results, frames = run_episodes(
            spec, controller, dataclasses.replace(params, videos=videos), cameras, size, history, show_progress
        )
        summary = summarize(results, time.perf_counter() - task_start)
        tasks[name] = summary
        episodes_out = [{**asdict(r), **({"env": name} if suite else {})} for r in results]
        all_results += episodes_out
        task_settings = {
            **settings,
            "env": name,
            "max_steps": max_steps or spec.max_steps,
            "image_size": list(size),
            "image_size_from": size_source,
        }
        if output_dir is not None:
            task_dir = os.path.join(output_dir, name.replace("/", "_")) if suite else output_dir
            write_outputs(task_dir, spec, results, frames, summary, task_settings, instruction)
        if suite and show_progress:
            print(format_summary(name, summary), file=sys.stderr, flush=True)
    if not suite:
        out = {"summary": tasks[names[0]], "episodes": all_results, "settings": task_settings}
        return out
    summary = suite_summary(tasks, time.perf_counter() - start)
    out = {"summary": summary, "tasks": tasks, "episodes": all_results, "settings": settings}
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        Path(output_dir, "results.json").write_text(json.dumps(out, indent=1))
        Path(output_dir, "results" + ".md").write_text(format_task_table(env, tasks, summary) + "\n")
    return out


def suite_summary(tasks: dict[str, dict[str, Any]], wall_time_s: float) -> dict[str, Any]:
    """The suite's figures: the mean of the per-task success rates (each task weighs the same, as published
    Meta-World tables do) with the 95% Wilson interval of all episodes pooled, and pooled counts."""
    n = sum(t["episodes"] for t in tasks.values())
    successes = sum(t["successes"] for t in tasks.values())
    low, high = wilson_interval(successes, n)
    steps = sum(t["env_steps"] for t in tasks.values())
    return {
        "tasks": len(tasks),
        "episodes": n,
        "successes": successes,
        "success_rate": float(np.mean([t["success_rate"] for t in tasks.values()])),
        "success_rate_ci95": [low, high],
        "mean_max_reward": float(np.mean([t["mean_max_reward"] for t in tasks.values()])),
        "mean_steps": steps / n if n else 0.0,
        "env_steps": steps,
        "wall_time_s": wall_time_s,
        "env_steps_per_s": steps / wall_time_s if wall_time_s > 0 else 0.0,
    }


def format_task_table(env: str, tasks: dict[str, dict[str, Any]], summary: dict[str, Any]) -> str:
    """A Markdown table: one row per task (successes, rate, 95% CI, mean steps), the suite mean last."""
    lines = [f"| {env} task | successes | success rate | 95% CI | mean steps |", "|---|---|---|---|---|"]
    for name, t in tasks.items():
        low, high = t["success_rate_ci95"]
        lines.append(
            f"| {name} | {t['successes']}/{t['episodes']} | {t['success_rate']:.2f} | {low:.2f}-{high:.2f} "
            f"| {t['mean_steps']:.0f} |"
        )
    low, high = summary["success_rate_ci95"]
    lines.append(
        f"| **mean of {len(tasks)} tasks** | {summary['successes']}/{summary['episodes']} | "
        f"**{summary['success_rate']:.3f}** | {low:.2f}-{high:.2f} | {summary['mean_steps']:.0f} |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from vla_foundry.cli import Spelling, run_command

    return run_command(
        SimEvalParams,
        _run,
        argv,
        prog="python -m vla_foundry.eval.sim",
        doc=__doc__,
        spelling=Spelling(aliases={"episodes_per_task": "episodes"}),
        errors=(FileNotFoundError, ValueError),
    )


def _run(params: SimEvalParams) -> None:
    out = evaluate(params)
    if "tasks" in out:
        print(format_task_table(params.env, out["tasks"], out["summary"]))
    print(format_summary(params.env, out["summary"]))
    if params.output_dir:
        print(f"results -> {params.output_dir}/results.json")


if __name__ == "__main__":
    raise SystemExit(main())
