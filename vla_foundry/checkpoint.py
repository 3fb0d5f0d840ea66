"""Checkpoints: save, load, resume, prune.

Checkpoint n of a run lives in `<run_dir>/checkpoints/`:
  checkpoint_<n>.pt      consolidated full model state dict (plain dict of CPU tensors, keys of the unwrapped
                         model) -- loadable with `torch.load(weights_only=True)` on one CPU, no torch.distributed
  optimizer_<n>.pt       full optimizer state (keyed by parameter name) + scheduler state
  ema_<n>.pt             full EMA weights (when EMA is on)
  trainer_state_<n>.pt   step, samples seen, data plan state, RNG states of every rank, wandb run id
Every file is written to a temporary name and renamed; trainer_state is written last, so a checkpoint without
it is incomplete and ignored by resume.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vla_foundry import storage
from vla_foundry.distributed import DistributedContext, all_gather_objects, barrier, broadcast_object, unwrap_model

CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)\.(pt|safetensors)$")
SIBLING_PREFIXES = ("checkpoint", "optimizer", "ema", "trainer_state")


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete or does not fit the model; the message names the file and keys."""


def checkpoints_dir(run_dir: str) -> str:
    return storage.join(run_dir, "checkpoints")


def checkpoint_file(run_dir: str, n: int, kind: str = "checkpoint") -> str:
    return storage.join(checkpoints_dir(run_dir), f"{kind}_{n}.pt")


def list_checkpoints(run_dir: str, complete_only: bool = True) -> list[int]:
    """Checkpoint numbers present in a run dir (local or s3), ascending; complete ones have trainer state."""
    files = {storage.basename(f) for f in storage.list_files(checkpoints_dir(run_dir), recursive=False)}
    numbers = sorted(int(m.group(1)) for f in files if (m := CHECKPOINT_RE.match(f)))
    if complete_only:
        numbers = [n for n in numbers if f"trainer_state_{n}.pt" in files]
    return numbers


@dataclass(frozen=True)
class CheckpointRef:
    """A resolved checkpoint: its run dir, number and model weights file."""

    run_dir: str
    number: int
    model_file: str

    def sibling(self, kind: str) -> str:
        return checkpoint_file(self.run_dir, self.number, kind)


def resolve_checkpoint(path: str) -> CheckpointRef:
    """Accept a `checkpoint_<n>.pt` file, a run's `checkpoints/` dir, a run dir (latest complete checkpoint), or
    any .pt / .safetensors weights file (exported weights; number -1).

    Raises `CheckpointError` naming the path when nothing is there; cheap (listing only), so it runs before any
    model is built.
    """
    path = str(path).rstrip("/")
    name = storage.basename(path)
    match = CHECKPOINT_RE.match(name)
    if match:
        if not storage.exists(path):
            raise CheckpointError(f"checkpoint not found: {path}")
        ckpt_dir = storage.dirname(path)
        run_dir = storage.dirname(ckpt_dir) if storage.basename(ckpt_dir) == "checkpoints" else ckpt_dir
        return CheckpointRef(run_dir, int(match.group(1)), path)
    if not storage.exists(path):
        raise CheckpointError(
            f"checkpoint path not found: {path} (give a checkpoint_<n>.pt file, a run's checkpoints/ dir or a run dir)"
        )
    if name.endswith((".pt", ".safetensors")):
        # A weights file under another name (e.g. an exported model.safetensors): weights only, no training state.
        return CheckpointRef(storage.dirname(path), -1, path)
    run_dir = storage.dirname(path) if name == "checkpoints" else path
    numbers = list_checkpoints(run_dir)
    if not numbers:
        raise CheckpointError(f"no complete checkpoint (checkpoint_<n>.pt + trainer_state_<n>.pt) under {path}")
    n = numbers[-1]
    return CheckpointRef(run_dir, n, checkpoint_file(run_dir, n))


def load_file(path: str) -> Any:
    """Load a .pt (weights_only: tensors and plain containers, never arbitrary pickle) or .safetensors file."""
    if storage.is_s3(path):
        with tempfile.TemporaryDirectory(prefix="vla_foundry_ckpt_") as tmp:
            local = os.path.join(tmp, storage.basename(path))
            storage.download_file(path, local)
            return load_file(local)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file as load_safetensors

        return load_safetensors(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def save_file(obj: Any, path: str) -> None:
    """torch.save to a temporary name in the same directory, then rename (a crash never leaves half a file)."""
    with storage.atomic_local_path(path) as tmp:
        torch.save(obj, tmp)


def check_state_dict_matches(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise `CheckpointError` listing missing, unexpected and shape-mismatched keys."""
    expected = {k: tuple(v.shape) for k, v in unwrap_model(model).state_dict().items()}
    given = {k: tuple(v.shape) for k, v in state.items()}
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


def load_model_checkpoint(model: nn.Module, path: str, use_ema: bool = False) -> nn.Module:
    """Load a checkpoint (file, checkpoints dir or run dir; local or s3) into a plain (unwrapped) model.

    With `use_ema` and an `ema_<n>.pt` next to the checkpoint, the EMA weights are loaded instead.
    """
    ref = resolve_checkpoint(path)
    state = load_file(ref.model_file)
    if use_ema and storage.exists(ref.sibling("ema")):
        state = {**state, **load_file(ref.sibling("ema"))["shadow"]}
    check_state_dict_matches(model, state, ref.model_file)
    model.load_state_dict(state, strict=True)
    return model


def full_model_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Consolidated CPU state dict (a collective under FSDP2; rank 0 gets the tensors, other ranks `{}`)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def set_full_model_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a full state dict into a (possibly FSDP2-sharded) model; every rank passes the full dict."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    check_state_dict_matches(model, state, source)
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=True))


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


def save_checkpoint(
    run_dir: str,
    n: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    ema: Any,
    trainer_state: dict[str, Any],
    ctx: DistributedContext,
    scaler: Any = None,
) -> None:
    """Write checkpoint n. Collective: every rank calls it; rank 0 writes the files."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    model_state = full_model_state_dict(model)
    optim_state = get_optimizer_state_dict(
        model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    ema_state = ema.state_dict() if ema is not None else None
    rngs = all_gather_objects(rng_state())
    if ctx.is_main:
        save_file(model_state, checkpoint_file(run_dir, n))
        optim_file = {"optimizer": optim_state, "scheduler": scheduler.state_dict()}
        if scaler is not None:
            optim_file["grad_scaler"] = scaler.state_dict()
        save_file(optim_file, checkpoint_file(run_dir, n, "optimizer"))
        if ema_state is not None:
            save_file(ema_state, checkpoint_file(run_dir, n, "ema"))
        state = {**trainer_state, "checkpoint": n, "world_size": ctx.world_size, "rng": rngs}
        save_file(state, checkpoint_file(run_dir, n, "trainer_state"))
    barrier()


def load_training_state(
    ref: CheckpointRef,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    ema: Any,
    ctx: DistributedContext,
    warn: Callable[[str], None] = print,
    scaler: Any = None,
) -> dict[str, Any]:
    """Restore model, optimizer, scheduler, EMA and this rank's RNG from checkpoint `ref`; returns trainer state.

    Under FSDP2 only rank 0 reads the model and optimizer files and broadcasts them while each rank keeps its shard
    (host memory stays at one full copy per node's rank 0, not one per process); otherwise every rank reads them.
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    trainer_file = ref.sibling("trainer_state")
    if not storage.exists(trainer_file):
        raise CheckpointError(f"{ref.model_file} has no {storage.basename(trainer_file)}: it cannot be resumed")
    broadcast = ctx.wrapping == "fsdp"
    reads = ctx.is_main or not broadcast
    model_state = load_file(ref.model_file) if reads else {}
    # Rank 0 checks the keys and shapes; every rank raises the same error instead of waiting in a broadcast.
    error = None
    if reads:
        try:
            check_state_dict_matches(model, model_state, ref.model_file)
        except CheckpointError as e:
            error = str(e)
    error = broadcast_object(error) if broadcast else error
    if error:
        raise CheckpointError(error)
    options = StateDictOptions(full_state_dict=True, strict=True, broadcast_from_rank0=broadcast)
    set_model_state_dict(model, model_state, options=options)
    del model_state
    optim_file = load_file(ref.sibling("optimizer")) if reads else {"optimizer": {}}
    set_optimizer_state_dict(model, optimizer, optim_file["optimizer"], options=options)
    if not reads:
        optim_file = broadcast_object(None)
    elif broadcast:
        broadcast_object({k: v for k, v in optim_file.items() if k != "optimizer"})
    scheduler.load_state_dict(optim_file["scheduler"])
    if scaler is not None and "grad_scaler" in optim_file:
        scaler.load_state_dict(optim_file["grad_scaler"])
    if ema is not None:
        ema_file = ref.sibling("ema")
        if storage.exists(ema_file):
            ema.load_state_dict(load_file(ema_file))
        else:
            warn(f"{ema_file} not found: EMA restarts from the current weights")
    state = load_file(trainer_file)
    rngs = state.get("rng", [])
    if len(rngs) == ctx.world_size:
        set_rng_state(rngs[ctx.rank])
    else:
        warn(
            f"checkpoint was written by {len(rngs)} processes, this run has {ctx.world_size}: RNG states are not "
            "restored, so the continuation is not bitwise identical"
        )
    return state


def prune_checkpoints(run_dir: str, limit: int | None) -> list[int]:
    """Delete all but the newest `limit` complete checkpoints (all sibling files); returns the removed numbers."""
    if limit is None:
        return []
    numbers = list_checkpoints(run_dir, complete_only=True)
    removed = numbers[:-limit] if len(numbers) > limit else []
    for n in removed:
        for kind in SIBLING_PREFIXES:
            storage.remove(checkpoint_file(run_dir, n, kind))
    return removed


def export_weights(path: str, output: str, use_ema: bool = False) -> str:
    """Write a checkpoint's consolidated weights (or its EMA weights) as one file: `.safetensors` or `.pt`.

    Tensors that share memory (tied embeddings) are stored once each, as safetensors requires.
    """
    ref = resolve_checkpoint(path)
    state = load_file(ref.model_file)
    if use_ema:
        ema_file = ref.sibling("ema")
        if not storage.exists(ema_file):
            raise CheckpointError(f"no EMA weights next to {ref.model_file} ({ema_file} does not exist)")
        state = {**state, **{k: v.to(state[k].dtype) for k, v in load_file(ema_file)["shadow"].items()}}
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    if output.endswith(".safetensors"):
        from safetensors.torch import save_file as save_safetensors

        with storage.atomic_local_path(output) as tmp:
            save_safetensors(state, tmp)
    elif output.endswith(".pt"):
        save_file(state, output)
    else:
        raise ValueError(f"--output {output!r} must end with .safetensors or .pt")
    return output


def main(argv: list[str] | None = None) -> int:
    """`python -m vla_foundry.checkpoint RUN_OR_CHECKPOINT --output model.safetensors [--ema]`"""
    import argparse
    import sys

    parser = argparse.ArgumentParser(description="Export a checkpoint's consolidated weights to one file.")
    parser.add_argument("checkpoint", help="checkpoint_<n>.pt, checkpoints/ dir or run dir (local or s3://)")
    parser.add_argument("--output", required=True, help="a .safetensors or .pt file")
    parser.add_argument("--ema", action="store_true", help="export the EMA weights")
    args = parser.parse_args(argv)
    try:
        out = export_weights(args.checkpoint, args.output, use_ema=args.ema)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
