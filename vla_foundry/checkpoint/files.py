"""Single torch / safetensors files: weights-only loading (never arbitrary pickle) and atomic saving."""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from typing import Any

import torch

from vla_foundry import storage
from vla_foundry.checkpoint.layout import CheckpointError


def load_file(path: str) -> Any:
    """Load a .pt (weights_only: tensors and plain containers, never arbitrary pickle) or .safetensors file.

    Missing, truncated, corrupt or refused (non-weights-only) files raise one `CheckpointError` naming the file.
    """
    if storage.is_s3(path):
        with tempfile.TemporaryDirectory(prefix="vla_foundry_ckpt_") as tmp:
            local = os.path.join(tmp, storage.basename(path))
            try:
                storage.download_file(path, local)
            except FileNotFoundError:
                raise CheckpointError(f"checkpoint file not found: {path}") from None
            return load_file(local)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file as load_safetensors

            return load_safetensors(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0][:200]
        raise CheckpointError(
            f"{path} is refused or corrupt: it is not a weights-only file ({first}); only tensors and plain "
            "containers are loaded, never arbitrary pickled objects: re-save it with tensors only, or delete it"
        ) from None
    except Exception as e:
        raise CheckpointError(
            f"{path} is truncated or corrupt ({type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e) else ''}); "
            "delete it and use an earlier checkpoint"
        ) from None


def save_file(obj: Any, path: str) -> None:
    """torch.save to a temporary name in the same directory, then rename (a crash never leaves half a file)."""
    with storage.atomic_local_path(path) as tmp:
        torch.save(obj, tmp)


def read_weights_file(path: str) -> dict[str, torch.Tensor]:
    """A model state dict from one weights file (.pt / .pth / .bin / .safetensors; local or s3). A `.pt` holding
    `{"model": state_dict, ...}` is accepted too."""
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
