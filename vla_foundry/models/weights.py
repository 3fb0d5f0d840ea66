"""Loading weights into modules with clear errors, and freezing them.

Reading weights out of runs, checkpoints and weights files is `vla_foundry.checkpoint` (`read_model_weights`,
`weights_source`); this module copies a state dict into a module, requiring an exact fit.
"""

from __future__ import annotations

import os
import sys

import torch
from torch import nn


def load_weights_into(module: nn.Module, state_dict: dict[str, torch.Tensor], what: str) -> None:
    """Copy `state_dict` into `module`, requiring an exact match of keys and shapes.

    On any missing, unexpected or shape-mismatched key nothing is loaded and one `ValueError` lists them all,
    naming `what` (e.g. "LLM checkpoint run/checkpoints/checkpoint_3.pt -> model.transformer").
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state_dict))
        if state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", mismatched)):
            if keys:
                shown = ", ".join(keys[:10]) + (f", ... ({len(keys) - 10} more)" if len(keys) > 10 else "")
                parts.append(f"{len(keys)} {label} keys: {shown}")
        raise ValueError(f"cannot load weights for {what}: " + "; ".join(parts))
    module.load_state_dict(state_dict, strict=True)
    if int(os.environ.get("RANK", "0")) == 0:
        # Every rank loads the same weights: one line for the job, so a user sees which weights the run starts from.
        values = sum(t.numel() for t in state_dict.values())
        print(f"loaded {len(state_dict)} tensors ({values / 1e6:.2f}M values): {what}", file=sys.stderr, flush=True)


def freeze(module: nn.Module) -> None:
    """Stop gradients for every parameter of `module` (the optimizer skips parameters without gradients)."""
    for param in module.parameters():
        param.requires_grad_(False)
