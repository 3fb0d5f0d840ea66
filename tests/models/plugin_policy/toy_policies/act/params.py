"""Params of `toy_act`: deriving from PolicyParams gives it the action spec shared from the robotics data."""

from __future__ import annotations

from dataclasses import dataclass

from vla_foundry.params import ConfigError, PolicyParams, register_model_params


@register_model_params("toy_act")
@dataclass(frozen=True)
class ToyACTParams(PolicyParams):
    """Regresses the whole action window from the state history and a pooled image feature in one pass."""

    # Width of the hidden layer.
    hidden_dim: int = 32

    def validate(self) -> None:
        if self.hidden_dim < 1:
            raise ConfigError(f"model.hidden_dim={self.hidden_dim} must be >= 1")
