"""Exponential moving average of the weights (elementwise, so it works on local FSDP shards)."""

from __future__ import annotations

from dataclasses import dataclass

from vla_foundry.params.base_params import ConfigError


@dataclass(frozen=True)
class EMAParams:
    # Keep an exponential moving average of the weights (saved as ema_<n>.pt with each checkpoint).
    enabled: bool = False
    # Weight of the old average at each update, in (0, 1).
    decay: float = 0.999
    # Optimizer steps before the EMA starts tracking (it copies the weights at that step).
    start_step: int = 0
    # Update the average every n optimizer steps.
    update_every: int = 1

    def validate(self) -> None:
        if not 0.0 < self.decay < 1.0:
            raise ConfigError(f"ema.decay={self.decay} must be in (0, 1)")
        if self.update_every < 1:
            raise ConfigError(f"ema.update_every={self.update_every} must be >= 1")
