"""Exponential moving average of the weights, kept sharded like the parameters.

The update `ema = decay * ema + (1 - decay) * param` is elementwise, so under FSDP2 it runs on each rank's local
shard: no parameter is gathered, per step or per checkpoint. The shadow tensors are DTensors with the parameters'
placements; checkpoints save and load them shard by shard with torch.distributed.checkpoint (`shards()`), so no
rank ever holds a full copy during training.
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

    def shards(self) -> dict[str, torch.Tensor]:
        """{parameter name: shadow tensor}: the tensors themselves (DTensor shards under FSDP2), not copies.

        torch.distributed.checkpoint saves each rank's shards from this dict and loads into it in place,
        resharding when the checkpoint was written by another number of ranks.
        """
        return {name: shadow for (name, _), shadow in zip(self.named, self.shadow)}
