"""Normalisation of action and proprioception fields with dataset statistics, and its exact inverse.

Every method is an affine map per field, `y = (x - center) / scale`, so `denormalize` is exact:
- `std`: center = mean, scale = std + epsilon
- `min_max`: maps [min, max] to [-1, 1]; `percentile_1_99` / `percentile_5_95`: maps [p_lo, p_hi] to [-1, 1]
  (values outside the range are not clipped, which keeps the inverse exact)
- `none`: identity.
Scope `global` uses the (D,) statistics; `per_timestep` the (T, D) statistics of the training window (row 0 is the
first past row; proprioception uses rows 0..past).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from vla_foundry.data.robotics.stats import Stats, StatsError

METHODS = ("std", "min_max", "percentile_1_99", "percentile_5_95", "none")
NORMALIZER_CONFIG = "config_normalizer.yaml"


@dataclass(frozen=True)
class FieldSpec:
    name: str
    dim: int


@dataclass(frozen=True)
class NormalizerConfig:
    """Everything (besides stats.json) needed to rebuild a `Normalizer`; saved as config_normalizer.yaml."""

    action_fields: list[FieldSpec]
    proprioception_fields: list[FieldSpec]
    past_lowdim_steps: int
    future_lowdim_steps: int
    method: str = "std"
    scope: str = "global"
    epsilon: float = 1e-6
    field_overrides: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NormalizerConfig:
        d = dict(d)
        d["action_fields"] = [FieldSpec(**f) for f in d["action_fields"]]
        d["proprioception_fields"] = [FieldSpec(**f) for f in d["proprioception_fields"]]
        return cls(**d)

    @property
    def action_dim(self) -> int:
        return sum(f.dim for f in self.action_fields)

    @property
    def proprioception_dim(self) -> int:
        return sum(f.dim for f in self.proprioception_fields)


def _affine(entry: dict[str, Any], method: str, scope: str, eps: float, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(center, scale) of one field: (D,) for global scope, (T, D) for per_timestep."""
    suffix = "_per_timestep" if scope == "per_timestep" else ""

    def get(key: str) -> np.ndarray:
        if key + suffix not in entry:
            raise StatsError(f"statistics of field {name!r} lack {key + suffix!r}, needed by normalisation {method!r}")
        return np.asarray(entry[key + suffix], dtype=np.float64)

    if method == "none":
        d = len(entry["mean"])
        return np.zeros(d), np.ones(d)
    if method == "std":
        return get("mean"), get("std") + eps
    lo_key, hi_key = {
        "min_max": ("min", "max"),
        "percentile_1_99": ("percentile_1", "percentile_99"),
        "percentile_5_95": ("percentile_5", "percentile_95"),
    }[method]
    lo, hi = get(lo_key), get(hi_key)
    half = (hi - lo + eps) / 2.0
    return lo + half, half


class Normalizer:
    """Normalises the action (…, T, A) and proprioception (…, past+1, P) tensors field by field."""

    def __init__(self, config: NormalizerConfig, stats: Stats) -> None:
        self.config = config
        self.stats = stats
        self._affines: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for spec in [*config.action_fields, *config.proprioception_fields]:
            if spec.name in self._affines:
                continue
            if spec.name not in stats:
                raise StatsError(
                    f"no statistics for field {spec.name!r}; available: {', '.join(sorted(stats)) or 'none'}"
                )
            method = config.field_overrides.get(spec.name, config.method)
            if method not in METHODS:
                raise ValueError(f"normalisation method {method!r} for field {spec.name!r}; valid: {METHODS}")
            center, scale = _affine(stats[spec.name], method, config.scope, config.epsilon, spec.name)
            if center.shape[-1] != spec.dim:
                raise StatsError(
                    f"statistics of field {spec.name!r} have width {center.shape[-1]}, expected {spec.dim}"
                )
            self._affines[spec.name] = (center, scale)

    def _apply(self, x: Any, fields: list[FieldSpec], inverse: bool) -> Any:
        is_torch = isinstance(x, torch.Tensor)
        arr = x.detach().cpu().double().numpy() if is_torch else np.asarray(x, dtype=np.float64)
        t = arr.shape[-2]
        out = np.empty_like(arr)
        start = 0
        for spec in fields:
            center, scale = self._affines[spec.name]
            if center.ndim == 2:  # per-timestep (T_window, D): the first t rows
                center, scale = center[:t], scale[:t]
            sl = arr[..., start : start + spec.dim]
            out[..., start : start + spec.dim] = sl * scale + center if inverse else (sl - center) / scale
            start += spec.dim
        if start != arr.shape[-1]:
            raise ValueError(f"last dimension is {arr.shape[-1]}, the fields {[f.name for f in fields]} sum to {start}")
        if is_torch:
            return torch.from_numpy(out).to(dtype=x.dtype, device=x.device)
        return out if np.asarray(x).dtype == np.float64 else out.astype(np.float32)

    def normalize_actions(self, actions: Any) -> Any:
        return self._apply(actions, self.config.action_fields, inverse=False)

    def denormalize_actions(self, actions: Any) -> Any:
        return self._apply(actions, self.config.action_fields, inverse=True)

    def normalize_proprioception(self, proprio: Any) -> Any:
        return self._apply(proprio, self.config.proprioception_fields, inverse=False)

    def denormalize_proprioception(self, proprio: Any) -> Any:
        return self._apply(proprio, self.config.proprioception_fields, inverse=True)
