"""A second checkpoint backend as a user plugin: consolidated `torch.save` files instead of DCP shards.

    uv run python vla_foundry/main.py --config_path job.yaml \
        --plugins torch_save_checkpoint --checkpoint_backend torch_save      # with this folder on PYTHONPATH

checkpoint_<n>/ then holds model.pt, optimizer.pt (and ema.pt) beside the trainer state and index that every
backend writes. Rank 0 writes full (gathered) state dicts; loading sets them on every rank. For single-process and
DDP runs (an FSDP2 run would scatter the full tensors back into shards; the DCP backend does that natively).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from vla_foundry.checkpoint import Checkpointer, register_checkpoint_backend
from vla_foundry.distributed import barrier

FILES = {"model": "model.pt", "optimizer": "optimizer.pt", "ema": "ema.pt"}


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


@register_checkpoint_backend("torch_save")
class TorchSaveCheckpointer(Checkpointer):
    """One weights-only `.pt` file per group, written by rank 0."""

    metadata_files = (FILES["model"], FILES["ema"])

    def write_state(self, ckpt_dir: str, n: int) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        model_state, optim_state = get_state_dict(self.model, self.optimizer, options=options)
        groups: dict[str, Any] = {"model": model_state, "optimizer": optim_state}
        if self.ema is not None:
            groups["ema"] = {name: _full(t).cpu() for name, t in self.ema.shards().items()}
        if self.ctx.is_main:
            for group, state in groups.items():
                torch.save(state, os.path.join(ckpt_dir, FILES[group]))
        barrier()  # every rank returns once rank 0's files are written: the index may follow
        return None

    def read_state(self, ckpt_dir: str, with_ema: bool) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        def load(group: str) -> Any:
            return torch.load(os.path.join(ckpt_dir, FILES[group]), map_location="cpu", weights_only=True)

        set_state_dict(
            self.model,
            self.optimizer,
            model_state_dict=load("model"),
            optim_state_dict=load("optimizer"),
            options=StateDictOptions(full_state_dict=True, strict=False),
        )
        if with_ema:
            saved = load("ema")
            with torch.no_grad():
                for name, shadow in self.ema.shards().items():
                    shadow.copy_(saved[name])

    @classmethod
    def saved_tensors(cls, ckpt_dir: str, group: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        path = os.path.join(ckpt_dir, FILES[group])
        if not os.path.exists(path):
            return {}
        state = torch.load(path, map_location="meta", weights_only=True)  # shapes and dtypes, no data read
        return {name: (tuple(t.shape), t.dtype) for name, t in state.items()}

    @classmethod
    def read_tensors(cls, ckpt_dir: str, group: str, into: dict[str, torch.Tensor]) -> None:
        saved = torch.load(os.path.join(ckpt_dir, FILES[group]), map_location="cpu", weights_only=True, mmap=True)
        with torch.no_grad():
            for name, tensor in into.items():
                tensor.copy_(saved[name])
