"""Process group, device and model wrapping (FSDP2, DDP or plain), applied from outside the model.

Order of `parallelize_model` (the torchtitan order): activation checkpointing per block, `compile()` per
block, then `fully_shard` on every declared block and finally on the root (or DDP around the whole model).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.checkpoint import checkpoint

from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.distributed_params import DistributedParams
from vla_foundry.params.hyper_params import HyperParams


@dataclass(frozen=True)
class DistributedContext:
    """Where this process runs: rank, world size and device. `wrapping` is "fsdp", "ddp" or "none"."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None
    wrapping: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(params: DistributedParams) -> DistributedContext:
    """Initialise the process group from the torchrun / SageMaker environment (RANK, WORLD_SIZE, MASTER_ADDR ...).

    A single process (WORLD_SIZE unset or 1) gets no process group. NCCL on GPU, gloo on CPU unless forced.
    """
    # The process group itself is set up from the environment (MASTER_ADDR ...), so rank and world size are too.
    params = params.from_environment()
    world_size, rank, local_rank = params.world_size, params.rank, params.local_rank
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    backend = None
    if world_size > 1:
        backend = params.backend if params.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
        if not dist.is_initialized():
            dist.init_process_group(
                backend=backend,
                timeout=datetime.timedelta(seconds=params.timeout_s),
                device_id=device if backend == "nccl" else None,
            )
    if world_size > 1 and params.fsdp:
        wrapping = "fsdp"
    elif world_size > 1 and params.ddp:
        wrapping = "ddp"
    else:
        wrapping = "none"
    return DistributedContext(rank, world_size, local_rank, device, backend, wrapping)


_CHECKPOINT_GROUP: list[Any] = []


def checkpoint_process_group() -> Any:
    """A gloo process group of all ranks used only by checkpoint saves and loads (None in a single process).

    Collective: every rank must call it the first time, at the same point. An asynchronous save runs its
    collectives (plan exchange, metadata gather) from a background thread; on the training's own group they
    would interleave with the training step's collectives (measured with FSDP2 on gloo: the next collective
    fails with "Received data size doesn't match"), so checkpoints get a group of their own. gloo also lets
    NCCL runs save from host memory.
    """
    if not dist.is_initialized():
        return None
    if not _CHECKPOINT_GROUP:
        _CHECKPOINT_GROUP.append(dist.new_group(backend="gloo"))
    return _CHECKPOINT_GROUP[0]


def destroy_distributed() -> None:
    _CHECKPOINT_GROUP.clear()
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def broadcast_object(value: Any, src: int = 0) -> Any:
    """The value of rank `src` on every rank (the value itself in a single process)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(value: Any) -> list[Any]:
    """One entry per rank (rank order); a single process gets `[value]`."""
    if not dist.is_initialized():
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few scalars over ranks in one collective (float64 so token counts stay exact)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def _checkpointed_forward(forward: Any, *args: Any, **kwargs: Any) -> Any:
    # Non-reentrant checkpointing: keyword arguments and FSDP2's backward hooks both work with it.
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


def apply_activation_checkpointing(model: nn.Module, block_types: tuple[type, ...]) -> int:
    """Recompute each block's activations in backward instead of storing them; returns the number of blocks.

    The block's `forward` is replaced on the instance (no wrapper module), so parameter names stay unchanged.
    """
    count = 0
    for module in model.modules():
        if block_types and isinstance(module, block_types):
            module.forward = functools.partial(_checkpointed_forward, module.forward)
            count += 1
    return count


def compile_blocks(model: nn.Module, block_types: tuple[type, ...], backend: str = "inductor") -> None:
    """`torch.compile` each block in place (`nn.Module.compile` keeps parameter names free of `_orig_mod`).

    Compiling blocks rather than the whole model keeps compile time flat in depth: every block shares one graph.
    """
    blocks = [m for m in model.modules() if block_types and isinstance(m, block_types)]
    for block in blocks:
        block.compile(backend=backend)
    if not blocks:
        model.compile(backend=backend)


def mixed_precision_dtypes(hparams: HyperParams, device: torch.device) -> tuple[torch.dtype | None, torch.dtype]:
    """(FSDP2 param dtype for compute, gradient reduce dtype). Master weights stay fp32 except in pure_bf16."""
    if hparams.precision == "amp_bf16" and device.type == "cuda":
        # bf16 all-gathers and compute; gradients are reduced in fp32 so small updates are not rounded away.
        return torch.bfloat16, torch.float32
    return None, torch.float32


def parallelize_model(
    model: nn.Module, ctx: DistributedContext, dparams: DistributedParams, hparams: HyperParams
) -> nn.Module:
    """Move the model to its device and apply checkpointing, compilation and FSDP2 / DDP as configured."""
    from vla_foundry.models.registry import fsdp_block_types

    if dparams.cpu_offload and ctx.wrapping == "fsdp" and ctx.device.type != "cuda":
        raise ConfigError(
            "distributed.cpu_offload=True needs GPUs: it keeps FSDP2 shards in host memory between their uses on the "
            "GPU; on CPU the parameters are in host memory already, so leave it False"
        )
    block_types = fsdp_block_types(model)
    if hparams.precision == "pure_bf16":
        model = model.to(dtype=torch.bfloat16)
    if hparams.grad_checkpointing:
        apply_activation_checkpointing(model, block_types)
    if hparams.torch_compile:
        compile_blocks(model, block_types)

    if ctx.wrapping == "fsdp":
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

        param_dtype, reduce_dtype = mixed_precision_dtypes(hparams, ctx.device)
        kwargs: dict[str, Any] = {"mp_policy": MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)}
        if dparams.cpu_offload:
            kwargs["offload_policy"] = CPUOffloadPolicy()
        else:
            model = model.to(ctx.device)
        blocks = [m for m in model.modules() if block_types and isinstance(m, block_types)]
        for i, block in enumerate(blocks):
            # The last block is not resharded after forward: backward needs it at once, so it would be
            # gathered again immediately.
            reshard = dparams.reshard_after_forward and i < len(blocks) - 1
            fully_shard(block, reshard_after_forward=reshard, **kwargs)
        fully_shard(model, reshard_after_forward=dparams.reshard_after_forward, **kwargs)
        return model

    model = model.to(ctx.device)
    if ctx.wrapping == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)
    return model


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's model under DDP / whole-model compilation (FSDP2 wraps in place and needs no unwrapping)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


@contextlib.contextmanager
def gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce / reduce-scatter on non-final micro-batches of an accumulation step."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        if enabled:
            yield
        else:
            with model.no_sync():
                yield
        return
    if hasattr(model, "set_requires_gradient_sync"):
        model.set_requires_gradient_sync(enabled)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
        return
    yield


def clip_grad_norm(parameters: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Global gradient norm over all ranks (sharded DTensor gradients included), clipped when max_norm > 0."""
    grads = [p for p in parameters if p.grad is not None]
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(grads, max_norm, foreach=True)
    else:
        norm = torch.nn.utils.get_total_norm([p.grad for p in grads], foreach=True)
    if hasattr(norm, "full_tensor"):
        # Under FSDP2 the norm is a DTensor of partial sums; the reduction makes it the true global norm.
        norm = norm.full_tensor()
    return norm


def peak_memory_gib(device: torch.device) -> float:
    """Peak accelerator memory allocated (GPU), or the peak resident set size of this process (CPU)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 2**20 if os.uname().sysname != "Darwin" else kib / 2**30
