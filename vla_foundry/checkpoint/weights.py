"""Model weights out of a checkpoint in one process, without a process group (inference, fine-tuning, export).

Any path `resolve_checkpoint` accepts (run dir, checkpoint dir, older consolidated file, weights file; local, s3://
or hf://); a checkpoint directory is read by the backend its index names.
"""

from __future__ import annotations

import torch
from torch import nn

from vla_foundry import storage
from vla_foundry.checkpoint.checkpointer import backend_of
from vla_foundry.checkpoint.files import read_weights_file
from vla_foundry.checkpoint.layout import CheckpointError, CheckpointRef, checkpoint_number
from vla_foundry.checkpoint.legacy import has_legacy_ema, read_legacy_weights
from vla_foundry.checkpoint.remote import local_checkpoint, local_files
from vla_foundry.checkpoint.scan import resolve_checkpoint
from vla_foundry.checkpoint.state import check_state_dict_matches

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors")
# Wrappers that prefix state-dict keys without changing the weights (torch.compile, DDP).
_WRAPPER_PREFIXES = ("_orig_mod.", "module.")


def read_checkpoint_weights(path: str, use_ema: bool = False, verify: bool = True) -> dict[str, torch.Tensor]:
    """The consolidated model state dict of a checkpoint. With `use_ema` the EMA values replace the trainable
    weights. `verify` checks the checksums first (a run dir then skips a corrupt latest checkpoint with a warning)."""
    ref = resolve_checkpoint(path, verify=verify)
    with local_checkpoint(ref) as local:
        if not local.sharded:
            return read_legacy_weights(ref, local.path, use_ema)
        backend = backend_of(local.path)
        saved = backend.saved_tensors(local.path, "model")
        state = {k: torch.empty(shape, dtype=dtype) for k, (shape, dtype) in saved.items()}
        backend.read_tensors(local.path, "model", state)
        if use_ema:
            _read_ema_into(state, local.path, ref.path)
        return state


def _read_ema_into(state: dict[str, torch.Tensor], local_dir: str, source: str) -> None:
    backend = backend_of(local_dir)
    ema_saved = backend.saved_tensors(local_dir, "ema")
    if not ema_saved:
        raise CheckpointError(f"checkpoint {source} holds no EMA weights (the run had ema.enabled=False)")
    # Read in the saved dtype (the EMA is kept in fp32), then cast to the weight's dtype.
    ema = {k: torch.empty(shape, dtype=dtype) for k, (shape, dtype) in ema_saved.items() if k in state}
    backend.read_tensors(local_dir, "ema", ema)
    for k, v in ema.items():
        state[k] = v.to(state[k].dtype)


def has_ema(ref: CheckpointRef) -> bool:
    """Whether a checkpoint holds EMA weights (an s3 checkpoint: only its metadata files are downloaded)."""
    if not ref.sharded:
        return has_legacy_ema(ref)
    backend = backend_of(ref.path)
    with local_files(ref, backend.metadata_files) as local_dir:
        return bool(backend.saved_tensors(local_dir, "ema"))


def load_model_checkpoint(model: nn.Module, path: str, use_ema: bool = False, verify: bool = True) -> nn.Module:
    """Load a checkpoint into a plain (unwrapped) model in one process. With `use_ema` the EMA weights are loaded
    (an error when the checkpoint has none); `verify` checks the checksums first."""
    ref = resolve_checkpoint(path, verify=verify)
    if not ref.sharded:
        state = read_checkpoint_weights(ref.path if ref.number < 0 else path, use_ema=use_ema, verify=False)
        check_state_dict_matches(model, state, ref.path)
        model.load_state_dict(state, strict=True)
        return model
    with local_checkpoint(ref) as local:
        backend = backend_of(local.path)
        saved = backend.saved_tensors(local.path, "model")
        check_state_dict_matches(model, {k: shape for k, (shape, _) in saved.items()}, ref.path)
        # Read straight into the model's own tensors: no second copy of the weights.
        own = model.state_dict()
        backend.read_tensors(local.path, "model", own)
        if use_ema:
            _read_ema_into(own, local.path, ref.path)
            model.load_state_dict(own, strict=True)
    return model


def _is_weights_file(path: str) -> bool:
    """A single weights file under its own name (not a run, checkpoint dir or `checkpoint_<n>.pt`)."""
    return path.endswith(WEIGHT_SUFFIXES) and checkpoint_number(storage.basename(path)) is None


def read_model_weights(path: str) -> dict[str, torch.Tensor]:
    """Model state dict from a run directory (its latest complete checkpoint), a checkpoint directory, or a weights
    file (.pt / .pth / .bin / .safetensors). Local or s3://. `_orig_mod.` / `module.` key prefixes (torch.compile,
    DDP) are removed."""
    path = str(path).rstrip("/")
    state = read_weights_file(path) if _is_weights_file(path) else read_checkpoint_weights(path)
    return {_strip_wrapper_prefixes(k): v for k, v in state.items()}


def weights_source(path: str) -> str:
    """The file or checkpoint directory `read_model_weights(path)` reads: a run dir names its newest complete
    checkpoint (for messages saying where weights came from)."""
    path = str(path).rstrip("/")
    return path if _is_weights_file(path) else resolve_checkpoint(path).path


def _strip_wrapper_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key.replace("._orig_mod.", ".")
