"""Consolidated `.safetensors` weights of a checkpoint, streamed tensor batch by tensor batch (host memory stays
far below the model size), whatever backend wrote it."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from vla_foundry import storage
from vla_foundry.checkpoint.checkpointer import backend_of
from vla_foundry.checkpoint.layout import (
    EXPORTED_EMA,
    EXPORTED_MODEL,
    CheckpointError,
    checkpoint_dir,
    warn_stderr,
)
from vla_foundry.checkpoint.remote import local_checkpoint
from vla_foundry.checkpoint.scan import latest_checkpoint, resolve_checkpoint
from vla_foundry.checkpoint.weights import has_ema, read_checkpoint_weights

_SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def write_safetensors_streaming(
    output: str,
    specs: dict[str, tuple[tuple[int, ...], torch.dtype]],
    load_batch: Callable[[list[str]], dict[str, torch.Tensor]],
    max_batch_bytes: int,
) -> int:
    """Write a .safetensors file whose header is known up front (from the checkpoint metadata), loading and writing
    the tensors a batch of at most `max_batch_bytes` at a time; returns the largest batch in bytes.

    safetensors' own writer needs every tensor in memory at once; the format (8-byte little-endian header length,
    JSON header with dtype, shape and byte offsets, then the raw little-endian bytes) allows streaming."""
    names = sorted(specs)
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    sizes = {}
    for name in names:
        shape, dtype = specs[name]
        if dtype not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"tensor {name} has dtype {dtype}, which safetensors export does not support")
        sizes[name] = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + sizes[name]],
        }
        offset += sizes[name]
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    largest = 0
    with storage.atomic_local_path(output) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        batch: list[str] = []
        batch_bytes = 0
        for i, name in enumerate(names):
            batch.append(name)
            batch_bytes += sizes[name]
            if i + 1 < len(names) and batch_bytes + sizes[names[i + 1]] <= max_batch_bytes:
                continue
            tensors = load_batch(batch)
            for key in batch:
                t = tensors[key].contiguous()
                f.write(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            largest = max(largest, batch_bytes)
            batch, batch_bytes = [], 0
    return largest


def export_weights(
    path: str,
    output: str | None = None,
    use_ema: bool = False,
    checkpoint: int | None = None,
    max_batch_bytes: int = 256 << 20,
) -> str:
    """Write a checkpoint's consolidated weights (or its EMA weights in place of the trainable ones) as one
    `.safetensors` file, streaming at most `max_batch_bytes` of tensors at a time. `path`: a run dir (latest
    complete checkpoint, or `checkpoint`), a checkpoint dir or file. Default output: `<run>/model.safetensors`
    (`ema.safetensors` with `use_ema`)."""
    if checkpoint is not None:
        path = checkpoint_dir(path, checkpoint)
    ref = resolve_checkpoint(path, verify=True)
    if output is None:
        if ref.run_dir and not storage.is_s3(ref.run_dir) and ref.number >= 0:
            output = os.path.join(ref.run_dir, EXPORTED_EMA if use_ema else EXPORTED_MODEL)
        else:
            raise CheckpointError(f"give --output for {path} (a local .safetensors path)")
    if not output.endswith(".safetensors"):
        raise CheckpointError(f"--output {output!r} must end with .safetensors")
    with local_checkpoint(ref) as local:
        if not local.sharded:
            from safetensors.torch import save_file as save_safetensors

            state = read_checkpoint_weights(path, use_ema=use_ema, verify=False)
            # Tensors that share memory (tied embeddings) are stored once each, as safetensors requires.
            state = {k: v.detach().clone().contiguous() for k, v in state.items()}
            with storage.atomic_local_path(output) as tmp:
                save_safetensors(state, tmp)
            return output
        backend = backend_of(local.path)
        specs = backend.saved_tensors(local.path, "model")
        ema_specs = backend.saved_tensors(local.path, "ema") if use_ema else {}
        if use_ema and not ema_specs:
            raise CheckpointError(f"checkpoint {ref.path} holds no EMA weights (the run had ema.enabled=False)")

        def load_batch(keys: list[str]) -> dict[str, torch.Tensor]:
            out = {k: torch.empty(specs[k][0], dtype=specs[k][1]) for k in keys if k not in ema_specs}
            if out:
                backend.read_tensors(local.path, "model", out)
            ema = {k: torch.empty(ema_specs[k][0], dtype=ema_specs[k][1]) for k in keys if k in ema_specs}
            if ema:
                backend.read_tensors(local.path, "ema", ema)
            out.update({k: v.to(specs[k][1]) for k, v in ema.items()})
            return out

        write_safetensors_streaming(output, specs, load_batch, max_batch_bytes)
    return output


def export_run_weights(run_dir: str, with_ema: bool, warn: Callable[[str], None] = warn_stderr) -> list[str]:
    """`model.safetensors` (and `ema.safetensors`) of a run's latest complete checkpoint, in the run dir."""
    ref = latest_checkpoint(run_dir, warn=warn)
    if ref is None:
        return []
    outputs = [export_weights(ref.path, os.path.join(run_dir, EXPORTED_MODEL))]
    if with_ema and has_ema(ref):
        outputs.append(export_weights(ref.path, os.path.join(run_dir, EXPORTED_EMA), use_ema=True))
    return outputs
