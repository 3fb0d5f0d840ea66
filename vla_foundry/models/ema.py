"""Exponential moving average of the weights.

The update `ema = decay * ema + (1 - decay) * param` is elementwise, so under FSDP2 it runs on each rank's
local shard: no parameter is gathered per step. Only saving gathers the full tensors (once per checkpoint).
"""

from __future__ import annotations

import torch
from torch import nn

from vla_foundry.params.ema_params import EMAParams


def _local(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard, or the tensor itself."""
    return t.to_local() if hasattr(t, "to_local") else t


class EMA:
    """EMA copies (fp32) of the trainable parameters of `model`, keyed by their names in the unwrapped model."""

    def __init__(self, model: nn.Module, params: EMAParams) -> None:
        self.params = params
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        # Same placement as the parameter (a DTensor shard under FSDP2), always fp32.
        self.shadow = [p.detach().to(torch.float32).clone() for _, p in self.named]
        self.num_updates = 0

    def decay_at(self, step: int) -> float:
        """Before `start_step` the EMA copies the weights (decay 0)."""
        return 0.0 if step < self.params.start_step else self.params.decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Called after optimizer step `step` (1-based count of steps taken)."""
        if step % self.params.update_every != 0 and step >= self.params.start_step:
            return
        decay = self.decay_at(step)
        shadows = [_local(s) for s in self.shadow]
        current = [_local(p.detach()).to(torch.float32) for _, p in self.named]
        torch._foreach_lerp_(shadows, current, 1.0 - decay)
        self.num_updates += 1

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Full (gathered) EMA tensors on CPU. Under FSDP2 this is a collective: every rank must call it."""
        out = {}
        for (name, _), shadow in zip(self.named, self.shadow):
            full = shadow.full_tensor() if hasattr(shadow, "full_tensor") else shadow
            out[name] = full.detach().cpu()
        return out

    def state_dict(self) -> dict:
        return {"shadow": self.full_state_dict(), "num_updates": self.num_updates}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Load full tensors, re-sharding them like the parameters under FSDP2."""
        shadow = state["shadow"]
        missing = [n for n, _ in self.named if n not in shadow]
        if missing:
            raise KeyError(
                f"EMA state lacks {len(missing)} of the model's {len(self.named)} trainable parameters: "
                f"{', '.join(missing[:10])}; it was saved for another architecture or another set of trainable "
                "(unfrozen) parameters"
            )
        for i, (name, param) in enumerate(self.named):
            full = shadow[name].to(torch.float32)
            if hasattr(param, "device_mesh"):
                from torch.distributed.tensor import distribute_tensor

                self.shadow[i] = distribute_tensor(full.to(param.device), param.device_mesh, param.placements)
            else:
                self.shadow[i] = full.to(param.device).clone()
        self.num_updates = int(state.get("num_updates", 0))

    @torch.no_grad()
    def copy_to(self, model_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A full model state dict with the EMA values in place of the trainable weights."""
        ema = self.full_state_dict()
        return {k: ema[k].to(v.dtype) if k in ema else v for k, v in model_state.items()}
