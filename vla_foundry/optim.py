"""Optimizer (AdamW with parameter groups) and learning-rate schedules (cosine, constant, warmup-stable-decay)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from vla_foundry.params.hyper_params import HyperParams


def _no_decay_names(model: nn.Module) -> set[str]:
    """Parameters that get no weight decay: biases and other vectors (norm scales), and embedding tables."""
    names: set[str] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if param.ndim < 2 or isinstance(module, nn.Embedding):
                names.add(full)
    return names


def build_param_groups(
    model: nn.Module, hparams: HyperParams, lr_multipliers: dict[str, float] | None = None
) -> list[dict]:
    """AdamW parameter groups: decay / no decay, each split further by learning-rate multiplier.

    `lr_multipliers` maps a parameter-name prefix (e.g. "backbone.") to a factor on `hparams.lr`; a factor of 0
    leaves those parameters out of the optimizer. Frozen parameters (requires_grad False) are left out.
    """
    lr_multipliers = lr_multipliers or {}
    no_decay = _no_decay_names(model) if hparams.no_decay_norm_bias else set()
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        factor = next((f for prefix, f in lr_multipliers.items() if name.startswith(prefix)), 1.0)
        if factor == 0:
            continue
        groups.setdefault((name in no_decay, factor), []).append(param)
    out = []
    for (is_no_decay, factor), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "weight_decay": 0.0 if is_no_decay else hparams.weight_decay,
                "lr": hparams.lr * factor,
            }
        )
    return out


def build_optimizer(
    model: nn.Module, hparams: HyperParams, lr_multipliers: dict[str, float] | None = None
) -> torch.optim.Optimizer:
    groups = build_param_groups(model, hparams, lr_multipliers)
    if not groups:
        raise ValueError("the model has no trainable parameters (all frozen or lr multiplier 0); nothing to optimise")
    # foreach kernels work on plain tensors and on FSDP2's DTensor shards alike.
    return torch.optim.AdamW(groups, lr=hparams.lr, betas=(hparams.beta1, hparams.beta2), eps=hparams.eps, foreach=True)


def warmup_steps(hparams: HyperParams, total_steps: int) -> int:
    """Warmup given as steps (int) or as a fraction of all steps (float)."""
    if isinstance(hparams.warmup, float):
        return round(hparams.warmup * total_steps)
    return int(hparams.warmup)


def lr_factor_fn(hparams: HyperParams, total_steps: int) -> Callable[[int], float]:
    """Multiplier of each group's base lr after `step` optimizer steps (LambdaLR convention)."""
    warmup = min(warmup_steps(hparams, total_steps), total_steps)
    min_ratio = hparams.lr_min_ratio
    decay_steps = max(1, round(hparams.lr_decay_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            # Linear warmup that never uses lr 0: the first update is lr / warmup.
            return (step + 1) / warmup
        if hparams.lr_scheduler == "constant":
            return 1.0
        if hparams.lr_scheduler == "cosine":
            span = max(1, total_steps - warmup)
            progress = min(1.0, (step - warmup) / span)
            return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        # wsd: stable at 1, then a linear decay to min_ratio over the last decay_steps.
        decay_start = max(warmup, total_steps - decay_steps)
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, total_steps - decay_start))
        return 1.0 - (1.0 - min_ratio) * progress

    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer, hparams: HyperParams, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(hparams, total_steps))
