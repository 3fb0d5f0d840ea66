"""`toy_act`'s network, factory and batch handler: an MLP from [state history | mean image colour] to the action
window (B, T, A), trained with a masked MSE on the rows from the anchor on."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from toy_policies.act.params import ToyACTParams
from vla_foundry.models.registry import (
    ActingPolicy,
    BatchHandler,
    FSDPBlock,
    LossOutput,
    register_batch_handler,
    register_model,
)


class Block(FSDPBlock):
    """One residual MLP block (an FSDP unit)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(x))


class ToyACT(ActingPolicy):
    def __init__(self, params: ToyACTParams) -> None:
        super().__init__()
        self.params = params
        spec = params.action_spec()
        self.window, self.action_dim = spec.window_length, spec.action_dim
        state_in = (spec.past_steps + 1) * spec.proprioception_dim
        self.inp = nn.Linear(state_in + 3, params.hidden_dim)
        self.block = Block(params.hidden_dim)
        self.out = nn.Linear(params.hidden_dim, self.window * self.action_dim)

    def _predict(self, batch: dict[str, Any]) -> torch.Tensor:
        state = batch["proprioception"].flatten(1).float()  # (B, (past + 1) * P)
        images = batch.get("images")
        colour = images.float().mean(dim=(1, 3, 4)) if images is not None and images.numel() else state[:, :0]
        colour = colour if colour.shape[1] == 3 else torch.zeros(state.shape[0], 3)  # (B, 3)
        h = self.block(torch.relu(self.inp(torch.cat([state, colour], dim=1))))
        return self.out(h).view(-1, self.window, self.action_dim)  # (B, T, A)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        pred = self._predict(batch)
        mask = batch["future_mask"].bool()[..., None].float()  # (B, T, 1)
        count = mask.sum() * self.action_dim
        loss = ((pred - batch["actions"].float()).square() * mask).sum() / count.clamp(min=1)
        return {"loss": loss, "num_elements": count.detach()}

    @torch.no_grad()
    def generate_actions(self, batch, known_actions=None, known_mask=None, generator=None) -> torch.Tensor:
        return self._predict(batch)  # deterministic: the generator is not used


@register_model("toy_act")
def build_toy_act(params: ToyACTParams, load_pretrained: bool = True) -> ToyACT:
    return ToyACT(params)


@register_batch_handler("toy_act")
class ToyACTBatchHandler(BatchHandler):
    def to_device(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        batch = super().to_device(batch, device)
        if isinstance(batch.get("images"), torch.Tensor):
            batch["images"] = batch["images"].float() / 255.0  # uint8 -> [0, 1]
        return batch

    def compute_loss(self, model: nn.Module, batch: dict[str, Any]) -> LossOutput:
        out = model(batch)
        return LossOutput(loss=out["loss"], num_tokens=int(out["num_elements"]))
