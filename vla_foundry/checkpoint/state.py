"""State that every backend saves the same way: the fit between a checkpoint and a model, RNG states, sizes."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn

from vla_foundry.checkpoint.layout import CheckpointError
from vla_foundry.distributed import unwrap_model


def check_state_dict_matches(model: nn.Module, state: dict[str, Any], source: str) -> None:
    """Raise `CheckpointError` listing missing, unexpected and shape-mismatched keys. `state` maps names to tensors
    or to shapes."""
    expected = {k: tuple(v.shape) for k, v in unwrap_model(model).state_dict().items()}
    given = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in state.items()}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(given) if expected[k] != given[k])
    if not (missing or unexpected or mismatched):
        return
    lines = [f"checkpoint {source} does not fit the model:"]
    if mismatched:
        shown = ", ".join(f"{k} (checkpoint {list(given[k])} vs model {list(expected[k])})" for k in mismatched[:10])
        lines.append(f"  shape mismatch in {len(mismatched)} keys: {shown}")
    if missing:
        lines.append(f"  missing from the checkpoint ({len(missing)}): {', '.join(missing[:10])}")
    if unexpected:
        lines.append(f"  not in the model ({len(unexpected)}): {', '.join(unexpected[:10])}")
    raise CheckpointError("\n".join(lines))


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain values (weights_only-loadable)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def tensor_bytes(state: Any) -> int:
    """Bytes of every tensor in a nested state dict (a DTensor counts its global size: each chunk is written once)."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(tensor_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(tensor_bytes(v) for v in state)
    return 0
