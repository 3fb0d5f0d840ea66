"""The older consolidated layout (`checkpoint_<n>.pt` + `trainer_state_<n>.pt`, optionally `ema_<n>.pt`): its
weights still load (`load_model_checkpoint`, `--model.resume_weights_only`), but it cannot be resumed."""

from __future__ import annotations

import torch

from vla_foundry import storage
from vla_foundry.checkpoint.files import load_file
from vla_foundry.checkpoint.layout import CheckpointError, CheckpointRef, checkpoint_file

LEGACY_KINDS = ("checkpoint", "optimizer", "ema", "trainer_state")


def read_legacy_weights(ref: CheckpointRef, local_path: str, use_ema: bool) -> dict[str, torch.Tensor]:
    """The weights of a consolidated file (`local_path`: its local copy); with `use_ema` the EMA file beside it
    replaces the trainable weights."""
    state = load_file(local_path)
    if use_ema:
        ema_file = ref.sibling("ema")
        if ref.number < 0 or not storage.exists(ema_file):
            raise CheckpointError(f"no EMA weights next to {ref.path} ({ema_file} does not exist)")
        state = {**state, **{k: v.to(state[k].dtype) for k, v in load_file(ema_file)["shadow"].items()}}
    return state


def has_legacy_ema(ref: CheckpointRef) -> bool:
    return ref.number >= 0 and storage.exists(ref.sibling("ema"))


def remove_legacy_checkpoint(run_dir: str, n: int) -> None:
    for kind in LEGACY_KINDS:
        storage.remove(checkpoint_file(run_dir, n, kind))
