"""`diffusion_policy`: a flow-matching / diffusion action head over a vision(-language) backbone.

One batch, top to bottom:
  backbone(images, instruction)           -> conditioning tokens (B, k, N, C) + mask (B, N)    (vla_backbones.py)
  noise scheduler(actions)               -> noisy chunk x_t (B, T, A), time (B,), target (B, T, A)
  head([cond | time | proprio | x_t])    -> per-action-token prediction (B, T, A)
  masked MSE over the rows from the anchor on (future_mask), past rows given clean when known.

The window has T = past + 1 + future rows (row `past` is the anchor). Proprioception covers the first past + 1
rows. At inference `generate_actions` integrates (flow matching) or denoises (DDIM / DDPM) a chunk from noise,
writing the known rows back after every step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vla_foundry.data.processors.images import images_to_unit_float
from vla_foundry.models.diffusion_policy.noise_schedulers import build_noise_scheduler
from vla_foundry.models.diffusion_policy.params import ActionHeadParams, DiffusionPolicyParams
from vla_foundry.models.registry import (
    ActingPolicy,
    BatchHandler,
    FSDPBlock,
    LossOutput,
    register_batch_handler,
    register_model,
)
from vla_foundry.models.vit import SelfAttention
from vla_foundry.params.base_params import ConfigError


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of a time in [0, 1]: (B,) -> (B, dim). Scaled by 1000 so that the fine frequencies
    separate nearby times."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None]  # (B, dim/2)
    emb = torch.cat([angles.cos(), angles.sin()], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class HeadBlock(FSDPBlock):
    """Pre-norm bidirectional transformer block of the action head."""

    def __init__(self, p: ActionHeadParams) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(p.hidden_dim, eps=p.norm_eps)
        self.attn = SelfAttention(p.hidden_dim, p.n_heads, p.dropout)
        self.norm2 = nn.LayerNorm(p.hidden_dim, eps=p.norm_eps)
        hidden = int(p.hidden_dim * p.mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(p.hidden_dim, hidden), nn.GELU(), nn.Dropout(p.dropout), nn.Linear(hidden, p.hidden_dim)
        )

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), key_mask)
        return x + self.mlp(self.norm2(x))


class ActionHead(nn.Module):
    """Transformer over [conditioning tokens | time | proprioception rows | action rows] -> (B, T, action_dim)."""

    def __init__(
        self,
        p: ActionHeadParams,
        cond_dim: int,
        num_cond_layers: int,
        action_dim: int,
        proprio_dim: int,
        num_action_steps: int,
        num_proprio_steps: int,
    ) -> None:
        super().__init__()
        D = p.hidden_dim
        self.params = p
        self.action_dim = action_dim
        self.num_action_steps = num_action_steps
        self.cond_proj = nn.Sequential(nn.LayerNorm(cond_dim), nn.Linear(cond_dim, D))
        # Which backbone layer a conditioning token came from (the last k layers are stacked).
        self.cond_layer_embed = nn.Parameter(torch.zeros(num_cond_layers, D))
        self.time_mlp = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.proprio_proj = nn.Linear(proprio_dim, D) if proprio_dim > 0 else None
        self.proprio_pos = nn.Parameter(torch.zeros(num_proprio_steps, D))
        self.proprio_missing = nn.Parameter(torch.zeros(D))  # replaces padded rows (episode start)
        self.action_in = nn.Linear(action_dim, D)
        self.action_pos = nn.Parameter(torch.zeros(num_action_steps, D))
        # Row is noisy (0) or a known clean action (1).
        self.known_embed = nn.Embedding(2, D)
        self.blocks = nn.ModuleList(HeadBlock(p) for _ in range(p.n_layers))
        self.norm = nn.LayerNorm(D, eps=p.norm_eps)
        self.action_out = nn.Linear(D, action_dim)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        std = self.params.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for emb in (self.cond_layer_embed, self.proprio_pos, self.action_pos, self.proprio_missing):
            nn.init.normal_(emb, std=std)
        nn.init.normal_(self.known_embed.weight, std=std)
        # Residual projections scaled down with depth; the output starts at zero (predicts "no velocity").
        for block in self.blocks:
            for lin in (block.attn.proj, block.mlp[-1]):
                nn.init.normal_(lin.weight, std=std / math.sqrt(2 * len(self.blocks)))
        nn.init.zeros_(self.action_out.weight)

    def forward(
        self,
        cond: torch.Tensor,
        cond_mask: torch.Tensor,
        time: torch.Tensor,
        proprio: torch.Tensor,
        proprio_mask: torch.Tensor,
        x: torch.Tensor,
        known: torch.Tensor,
        action_mask: torch.Tensor,
    ) -> torch.Tensor:
        """cond (B, k, N, C), cond_mask (B, N), time (B,) in [0, 1], proprio (B, Tp, P), proprio_mask (B, Tp),
        x (B, T, A) noisy actions with known rows clean, known (B, T), action_mask (B, T) (False: a padded row,
        hidden from every token) -> prediction (B, T, A)."""
        B, k, N, _ = cond.shape
        # Inputs arrive in fp32 (noise, targets) or the backbone's dtype; the head computes in its own dtype.
        dtype = self.action_in.weight.dtype
        cond, proprio, x = cond.to(dtype), proprio.to(dtype), x.to(dtype)
        c = self.cond_proj(cond) + self.cond_layer_embed[None, :, None, :].to(cond.dtype)  # (B, k, N, D)
        c = c.reshape(B, k * N, -1)  # (B, kN, D)
        c_mask = cond_mask.bool().repeat(1, k)  # (B, kN)
        D = c.shape[-1]
        t = self.time_mlp(timestep_embedding(time, D).to(c.dtype))[:, None]  # (B, 1, D)
        Tp = self.proprio_pos.shape[0]
        if self.proprio_proj is not None:
            pr = self.proprio_proj(proprio)  # (B, Tp, D)
        else:
            pr = torch.zeros(B, Tp, D, dtype=c.dtype, device=c.device)
        pr = torch.where(proprio_mask.bool()[..., None], pr, self.proprio_missing.to(pr.dtype)) + self.proprio_pos
        a = self.action_in(x) + self.action_pos + self.known_embed(known.long())  # (B, T, D)
        h = torch.cat([c, t, pr, a], dim=1)  # (B, kN + 1 + Tp + T, D)
        ones = torch.ones(B, 1 + Tp, dtype=torch.bool, device=h.device)
        # Padding (conditioning tokens, action rows past an episode's end) is hidden from every token.
        key_mask = torch.cat([c_mask, ones, action_mask.bool()], dim=1)
        for block in self.blocks:
            h = block(h, key_mask)
        return self.action_out(self.norm(h[:, -a.shape[1] :]))  # (B, T, A)


class DiffusionPolicy(ActingPolicy):
    """Backbone -> conditioning; action head trained by flow matching or DDPM; `generate_actions` samples."""

    def __init__(self, params: DiffusionPolicyParams, backbone: nn.Module) -> None:
        super().__init__()
        params.action_spec()  # a ConfigError naming the first dimension the data has not filled
        self.params = params
        self.backbone = backbone
        self.past_steps = params.past_lowdim_steps or 0
        self.num_action_steps = params.num_action_steps
        self.num_proprio_steps = self.past_steps + 1
        self.action_dim = params.action_dim
        self.proprio_dim = params.proprioception_dim
        self.head = ActionHead(
            params.head,
            cond_dim=backbone.hidden_dim,
            num_cond_layers=backbone.num_layers_used,
            action_dim=params.action_dim,
            proprio_dim=params.proprioception_dim,
            num_action_steps=self.num_action_steps,
            num_proprio_steps=self.num_proprio_steps,
        )
        self.scheduler = build_noise_scheduler(params)

    # -- inputs -----------------------------------------------------------------------------------------------

    def _check(self, name: str, tensor: torch.Tensor | None, shape: tuple[int | None, ...]) -> None:
        if tensor is None:
            raise KeyError(f"diffusion_policy batch is missing {name!r} (expected shape {_shape_text(shape)})")
        if tensor.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, tensor.shape)):
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}; expected {_shape_text(shape)}")

    def _proprio(self, proprioception: torch.Tensor | None, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B = valid.shape[0]
        Tp = self.num_proprio_steps
        if self.proprio_dim == 0 and proprioception is None:
            proprioception = torch.zeros(B, Tp, 0, device=valid.device)
        self._check("proprioception", proprioception, (B, Tp, self.proprio_dim))
        return proprioception, valid[:, :Tp]

    def encode(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """One backbone pass: conditioning (B, k, N, C) and its mask (B, N). Images may be uint8 (as the robotics
        loader ships them) or float in [0, 1]."""
        images = batch.get("images")
        if isinstance(images, torch.Tensor) and images.dtype == torch.uint8:
            batch = {**batch, "images": images_to_unit_float(images)}
        return self.backbone(batch)

    # -- training ---------------------------------------------------------------------------------------------

    def forward(
        self,
        batch: dict[str, Any],
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Masked denoising loss on a robotics batch. Returns {"loss", "num_elements"} (supervised action elements
        per noise draw): a dict of tensors, so that FSDP's hooks see them."""
        actions = batch.get("actions")
        future_mask = batch.get("future_mask")
        B = actions.shape[0] if actions is not None else None
        T, A = self.num_action_steps, self.action_dim
        self._check("actions", actions, (B, T, A))
        self._check("future_mask", future_mask, (B, T))
        past_mask = batch.get("past_mask")
        if past_mask is None:
            past_mask = torch.zeros_like(future_mask, dtype=torch.bool)
        self._check("past_mask", past_mask, (B, T))
        past_mask, future_mask = past_mask.bool(), future_mask.bool()
        proprio, proprio_mask = self._proprio(batch.get("proprioception"), past_mask | future_mask)

        cond, cond_mask = self.encode(batch)  # (B, k, N, C), (B, N)
        R = self.params.num_action_head_repeats
        if R > 1:
            # One backbone pass, R noise draws: repeat everything the head reads along the batch.
            cond, cond_mask, proprio, proprio_mask, actions, past_mask, future_mask = (
                x.repeat_interleave(R, dim=0)
                for x in (cond, cond_mask, proprio, proprio_mask, actions, past_mask, future_mask)
            )
        actions = actions.float()  # noise, noisy chunk and target in fp32
        x_t, time, target = self.scheduler.training_example(actions, generator)
        known = past_mask & self.params.condition_on_past_actions  # (B*R, T)
        x_in = torch.where(known[..., None], actions, x_t)
        pred = self.head(
            cond,
            cond_mask,
            self.scheduler.model_time(time),
            proprio,
            proprio_mask,
            x_in,
            known,
            past_mask | future_mask,
        )

        loss_mask = (future_mask & ~known)[..., None].to(pred.dtype)  # (B*R, T, 1)
        num_elements = loss_mask.sum() * A
        err = (pred.float() - target.float()).square() * loss_mask
        loss = err.sum() / num_elements.clamp(min=1)
        return {"loss": loss, "num_elements": num_elements.detach() / R}

    # -- inference --------------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate_actions(
        self,
        batch: dict[str, Any],
        known_actions: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample a normalised action window (B, T, A) for a batch of observations.

        The batch holds the backbone inputs, `proprioception` (B, past+1, P) and optionally `past_mask` (B, T)
        (valid past rows; default: all past rows valid). `known_actions` (B, T, A) with `known_mask` (B, T) are
        rows kept fixed (e.g. past actions already executed); they are ignored unless the model was trained with
        `condition_on_past_actions`. With the same `generator` seed the result is identical.
        """
        cond, cond_mask = self.encode(batch)
        B, T, A = cond.shape[0], self.num_action_steps, self.action_dim
        past_mask = batch.get("past_mask")
        if past_mask is None:
            past_mask = torch.zeros(B, T, dtype=torch.bool, device=cond.device)
            past_mask[:, : self.past_steps] = True
        self._check("past_mask", past_mask, (B, T))
        anchor_on = torch.zeros_like(past_mask, dtype=torch.bool)
        anchor_on[:, self.past_steps :] = True
        proprio, proprio_mask = self._proprio(batch.get("proprioception"), past_mask.bool() | anchor_on)

        if known_actions is None or not self.params.condition_on_past_actions:
            known = torch.zeros(B, T, dtype=torch.bool, device=cond.device)
            clean = torch.zeros(B, T, A, device=cond.device)
        else:
            self._check("known_actions", known_actions, (B, T, A))
            known = known_mask.bool() if known_mask is not None else past_mask.bool()
            self._check("known_mask", known, (B, T))
            known = known & ~anchor_on  # only rows before the anchor can be given
            clean = known_actions.float()

        # Past rows take part only when their actions are known (as in training, where unknown past rows are
        # episode-start padding); every row from the anchor on is predicted.
        action_mask = (known if self.params.condition_on_past_actions else past_mask.bool()) | anchor_on

        def clamp(x: torch.Tensor) -> torch.Tensor:
            return torch.where(known[..., None], clean, x)

        def denoise(x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
            return self.head(cond, cond_mask, time, proprio, proprio_mask, x, known, action_mask).float()

        # The chunk is integrated in fp32 whatever the network's precision.
        return self.scheduler.sample(denoise, (B, T, A), generator, clamp, device=cond.device, dtype=torch.float32)

    # -- training-side hooks ----------------------------------------------------------------------------------

    def lr_multipliers(self) -> dict[str, float]:
        """Parameter-name prefix -> factor on hparams.lr; training passes it to `optim.build_optimizer` (and custom
        loops to `optim.build_param_groups`)."""
        return {"backbone.": self.params.backbone_lr_multiplier}

    def fsdp_block_types(self) -> tuple[type, ...]:
        return (HeadBlock, *self.backbone.fsdp_block_types())


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"


def apply_freezing(policy: DiffusionPolicy) -> None:
    """Freeze the backbone wholly, its vision tower, or all but its last `backbone_trainable_layers` layers."""
    from vla_foundry.models.weights import freeze

    p = policy.params
    backbone = policy.backbone
    if p.freeze_backbone or p.backbone_lr_multiplier == 0:
        freeze(backbone)
        return
    if p.freeze_backbone_vision:
        for module in backbone.vision_modules():
            freeze(module)
    n = p.backbone_trainable_layers
    if n is not None:
        layers = backbone.layer_stack()
        if n > len(layers):
            raise ConfigError(
                f"model.backbone_trainable_layers={n} exceeds the backbone's {len(layers)} layers; valid: 0..{len(layers)}"
            )
        trained = layers[len(layers) - n :]
        if n > 0:
            trained += backbone.trailing_modules()  # the final norm reads the last layer's output
        keep = {id(param) for module in trained for param in module.parameters()}
        for param in backbone.parameters():
            if id(param) not in keep:
                param.requires_grad_(False)


@register_model("diffusion_policy")
def build_diffusion_policy(params: DiffusionPolicyParams, load_pretrained: bool = True) -> DiffusionPolicy:
    """Backbone (loaded from `backbone_run` when given and `load_pretrained`), head, freezing."""
    from vla_foundry.models.diffusion_policy.backbones import build_backbone

    params.validate()
    backbone = build_backbone(params, load_pretrained)
    policy = DiffusionPolicy(params, backbone)
    apply_freezing(policy)
    return policy


@register_batch_handler("diffusion_policy")
class DiffusionPolicyBatchHandler(BatchHandler):
    """Robotics batches -> `model(batch)` -> masked denoising loss; counts supervised action elements."""

    def to_device(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """Move the batch, then turn its uint8 images into float32 in [0, 1] on the device: a quarter of the bytes
        cross to the GPU, and the precision settings (FSDP mixed precision, pure_bf16) see float images as before."""
        batch = super().to_device(batch, device)
        if isinstance(batch.get("images"), torch.Tensor):
            batch["images"] = images_to_unit_float(batch["images"])
        return batch

    def compute_loss(self, model: nn.Module, batch: dict[str, Any]) -> LossOutput:
        out = model(batch)
        return LossOutput(loss=out["loss"], num_tokens=int(out["num_elements"]), metrics={})
