"""Closed-loop evaluation in simulation during training (`--eval.sim_env pusht --eval.episodes 10`)."""

from __future__ import annotations

from dataclasses import dataclass

from vla_foundry.params.base_params import ConfigError


@dataclass(frozen=True)
class EvalParams:
    # Registered sim environment or suite (e.g. metaworld_mt10: each of its tasks) to evaluate the policy in after
    # checkpoints (None: no evaluation); see `python -m vla_foundry.eval.sim --help` for the names.
    sim_env: str | None = None
    # Episodes per evaluation (per task of a suite).
    episodes: int = 10
    # Evaluate after every n-th checkpoint (and never between checkpoints).
    every_n_checkpoints: int = 1
    # Environments run in parallel worker processes.
    num_envs: int = 1
    # Seed of the first episode (episode i uses seed + i).
    seed: int = 0
    # Steps per episode (None: the env's) and rows of each predicted chunk executed (None: the whole chunk).
    max_steps: int | None = None
    # Rows of each predicted action chunk executed before predicting again (None: the whole chunk).
    n_action_steps: int | None = None
    # MP4s of the first k episodes, written under <run dir>/sim_eval/checkpoint_<n>/videos.
    videos: int = 0

    def validate(self) -> None:
        if self.sim_env is None:
            return
        from vla_foundry.eval.envs import check_sim_env_name

        check_sim_env_name(self.sim_env, "eval.sim_env")
        for name in ("episodes", "every_n_checkpoints", "num_envs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"eval.{name}={getattr(self, name)} must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"eval.max_steps={self.max_steps} must be >= 1")
        if self.videos < 0:
            raise ConfigError(f"eval.videos={self.videos} must be >= 0")
