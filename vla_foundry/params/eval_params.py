"""Closed-loop evaluation in simulation: during training (`--eval.sim_env pusht --eval.episodes 10`) and as its own
command (`python -m vla_foundry.eval.sim --env pusht --run_dir RUN`); both run episodes the same way
(`SimEpisodesParams`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vla_foundry.params.base_params import ConfigError


@dataclass(frozen=True)
class SimEpisodesParams:
    """How evaluation episodes run: how many, in how many processes, from which seed, for how long."""

    # Episodes per evaluation (per task of a suite).
    episodes: int = 10
    # Environments run in parallel worker processes.
    num_envs: int = 1
    # Seed of the first episode (episode i uses seed + i).
    seed: int = 0
    # Steps per episode (None: the env's).
    max_steps: int | None = None
    # Rows of each predicted action chunk executed before predicting again (None: the whole chunk).
    n_action_steps: int | None = None
    # MP4s of the first k episodes (written beside the results).
    videos: int = 0

    def validate_episodes(self, prefix: str = "") -> None:
        for name in ("episodes", "num_envs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{prefix}{name}={getattr(self, name)} must be >= 1")
        for name in ("max_steps", "n_action_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{prefix}{name}={value} must be >= 1")
        if self.videos < 0:
            raise ConfigError(f"{prefix}videos={self.videos} must be >= 0")


@dataclass(frozen=True)
class EvalParams(SimEpisodesParams):
    # Registered sim environment or suite (e.g. metaworld_mt10: each of its tasks) to evaluate the policy in after
    # checkpoints (None: no evaluation); see `python -m vla_foundry.eval.sim --help` for the names.
    sim_env: str | None = None
    # Evaluate after every n-th checkpoint (and never between checkpoints).
    every_n_checkpoints: int = 1
    # MP4s of the first k episodes, written under <run dir>/sim_eval/checkpoint_<n>/videos.
    videos: int = 0

    def validate(self) -> None:
        if self.sim_env is None:
            return
        from vla_foundry.eval.envs import check_sim_env_name

        check_sim_env_name(self.sim_env, "eval.sim_env")
        self.validate_episodes("eval.")
        if self.every_n_checkpoints < 1:
            raise ConfigError(f"eval.every_n_checkpoints={self.every_n_checkpoints} must be >= 1")


@dataclass(frozen=True)
class SimEvalParams(SimEpisodesParams):
    """`python -m vla_foundry.eval.sim`: one policy (a run, a policy server or the env's scripted expert) in a
    registered env or suite."""

    # Registered env (pusht, aloha_transfer_cube, metaworld/<task>, ...) or suite (metaworld_mt10: each task).
    env: str = ""
    # Training run directory (local, s3:// or hf://) or checkpoint file of the policy (one of run_dir, policy_url,
    # policy).
    run_dir: str | None = None
    # URL of a running policy server, e.g. http://127.0.0.1:8765.
    policy_url: str | None = None
    # `scripted`: the env's scripted expert instead of a trained policy.
    policy: Literal["scripted"] | None = None
    # Checkpoint number of run_dir (None: the latest).
    checkpoint: int | None = None
    # Use the raw weights even when EMA weights were saved.
    no_ema: bool = False
    # Episodes (per task of a suite).
    episodes: int = 50
    # Tell the policy another env's instruction (e.g. metaworld/drawer-close-v3); "" tells it nothing; None: its own.
    instruction_from: str | None = None
    # Ask the policy at every step and average each step's rows of all chunks with weights exp(-K i), i = 0 for
    # the oldest (None: receding horizon, n_action_steps rows per chunk).
    temporal_ensemble: float | None = None
    # Render size [H, W] of the cameras (None: the size the policy's training images were stored at, which runs
    # record; the env's default for a policy without that record or without cameras).
    image_size: tuple[int, int] | None = None
    # MP4s of the first k episodes, under <output_dir>/videos (none without output_dir).
    videos: int = 5
    # Torch device of a run's policy.
    device: str = "cpu"
    # Where results.json, rewards.png and videos/ go (None: print the summary only).
    output_dir: str | None = None
    # No progress bar.
    no_progress: bool = False

    @property
    def scripted(self) -> bool:
        return self.policy == "scripted"

    def validate(self) -> None:
        if not self.env:
            raise ConfigError("--env is required: a registered env or suite (see --help)")
        from vla_foundry.eval.envs import check_sim_env_name

        check_sim_env_name(self.env, "env")
        self.validate_episodes()
        if self.image_size is not None and min(self.image_size) < 1:
            raise ConfigError(f"image_size={list(self.image_size)} must be [H, W] with positive values")
