"""Reading model weights from checkpoints and run directories, and loading them into modules with clear errors.

Formats (owned by `vla_foundry.checkpoint`): a run's `<run>/checkpoints/checkpoint_<n>/` directories are sharded
torch.distributed.checkpoint checkpoints, read here in one process without a process group; a run dir means its
newest COMPLETE checkpoint (`vla_foundry.checkpoint.latest_checkpoint`, the one definition of "latest"). Single
weights files are read too: `.safetensors`, and `.pt` / `.pth` / `.bin` with `torch.load(weights_only=True)` (never
arbitrary pickle). Paths are local or `s3://`; every unreadable input is one `CheckpointError` naming the file.
"""

from __future__ import annotations

import io
import os
import re
import sys

import torch
from torch import nn

from vla_foundry import storage
from vla_foundry.checkpoint import CheckpointError, read_checkpoint_weights, resolve_checkpoint

CHECKPOINT_PATTERN = re.compile(r"checkpoint_(\d+)(\.(pt|safetensors))?$")
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
# Wrappers that prefix state-dict keys without changing the weights (torch.compile, DDP).
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def find_latest_checkpoint(run_dir: str) -> str:
    """The newest complete checkpoint of a run directory (or of its `checkpoints` directory); raises
    `CheckpointError` naming the directory when there is none."""
    return resolve_checkpoint(run_dir).path


def read_model_weights(path: str) -> dict[str, torch.Tensor]:
    """Model state dict from a run directory (its latest complete checkpoint), a checkpoint directory, or a weights
    file (.pt / .pth / .bin / .safetensors). Local or s3://. A `.pt` file holding `{"model": state_dict, ...}` is
    accepted too; `_orig_mod.` / `module.` key prefixes (torch.compile, DDP) are removed."""
    path = str(path).rstrip("/")
    if not path.endswith(WEIGHT_SUFFIXES) or CHECKPOINT_PATTERN.search(storage.basename(path)):
        state = read_checkpoint_weights(path)
    else:
        state = _read_weights_file(path)
    return {_strip_wrapper_prefixes(k): v for k, v in state.items()}


def _read_weights_file(path: str) -> dict[str, torch.Tensor]:
    if not storage.exists(path):
        raise CheckpointError(f"weights file not found: {path}")
    data = storage.read_bytes(path)
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load as load_safetensors

            state = load_safetensors(data)
        else:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"{path} is not a weights-only torch checkpoint, or it is truncated ({e.__class__.__name__}: "
            f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}); only tensors and plain containers "
            "are loaded, never arbitrary pickled objects"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a model state dict (a dict of parameter name -> tensor)")
    return state


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
    if int(os.environ.get("RANK", "0")) == 0:
        # Every rank loads the same weights: one line for the job, so a user sees which weights the run starts from.
        values = sum(t.numel() for t in state_dict.values())
        print(f"loaded {len(state_dict)} tensors ({values / 1e6:.2f}M values): {what}", file=sys.stderr, flush=True)


def weights_source(path: str) -> str:
    """The file or checkpoint directory `read_model_weights(path)` reads: a run dir names its newest complete
    checkpoint (for messages saying where weights came from)."""
    path = str(path).rstrip("/")
    if path.endswith(WEIGHT_SUFFIXES) and not CHECKPOINT_PATTERN.search(storage.basename(path)):
        return path
    return resolve_checkpoint(path).path


def freeze(module: nn.Module) -> None:
    """Stop gradients for every parameter of `module` (the optimizer skips parameters without gradients)."""
    for param in module.parameters():
        param.requires_grad_(False)
