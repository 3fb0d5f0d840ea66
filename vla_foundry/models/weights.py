"""Reading model weights from checkpoints and run directories, and loading them into modules with clear errors.

Formats (agreed with the training side): `<run>/checkpoints/checkpoint_<n>.pt` holds the consolidated model
state dict written by `torch.save` — a plain dict of tensors keyed like the model's own `state_dict()` — and is
read with `torch.load(weights_only=True)` (never arbitrary pickle). `.safetensors` files are read too. Paths
are local or `s3://`.
"""

from __future__ import annotations

import io
import os
import re

import torch
from torch import nn

from vla_foundry import storage

CHECKPOINT_PATTERN = re.compile(r"checkpoint_(\d+)\.(pt|safetensors)$")
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
# Wrappers that prefix state-dict keys without changing the weights (torch.compile, DDP).
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def find_latest_checkpoint(run_dir: str) -> str:
    """The highest-numbered `checkpoints/checkpoint_<n>.pt` (or `.safetensors`) of a run directory.

    `run_dir` may also be the `checkpoints` directory itself.
    """
    candidates: list[tuple[int, str]] = []
    for directory in (storage.join(run_dir, "checkpoints"), run_dir):
        for path in storage.list_files(directory, recursive=False):
            match = CHECKPOINT_PATTERN.search(storage.basename(path))
            if match:
                candidates.append((int(match.group(1)), path))
        if candidates:
            break
    if not candidates:
        raise FileNotFoundError(
            f"no checkpoint found in run directory {run_dir}: expected {storage.join(run_dir, 'checkpoints')}"
            "/checkpoint_<n>.pt (or .safetensors), or give a checkpoint file"
        )
    return max(candidates)[1]


def read_model_weights(path: str) -> dict[str, torch.Tensor]:
    """Model state dict from a checkpoint file (.pt / .safetensors) or a run directory (its latest checkpoint).

    Local or s3://. A `.pt` file holding `{"model": state_dict, ...}` is accepted too; `_orig_mod.` /
    `module.` key prefixes (torch.compile, DDP) are removed.
    """
    path = str(path)
    if not path.endswith(WEIGHT_SUFFIXES):
        if storage.is_s3(path) or os.path.isdir(path):
            path = find_latest_checkpoint(path)
        else:
            raise FileNotFoundError(
                f"checkpoint not found: {path} (give a run directory, or a .pt / .safetensors checkpoint file)"
            )
    if not storage.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = storage.read_bytes(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load as load_safetensors

        state = load_safetensors(data)
    else:
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(
                f"{path} is not a weights-only torch checkpoint ({e.__class__.__name__}: {str(e)[:200]})"
            ) from None
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a model state dict (a dict of parameter name -> tensor)")
    return {_strip_wrapper_prefixes(k): v for k, v in state.items()}


def _strip_wrapper_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key.replace("._orig_mod.", ".")


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


def freeze(module: nn.Module) -> None:
    """Stop gradients for every parameter of `module` (the optimizer skips parameters without gradients)."""
    for param in module.parameters():
        param.requires_grad_(False)
