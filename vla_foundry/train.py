"""One checkpoint window of optimisation steps: `train_one_checkpoint`.

Loss scaling: each micro-batch loss is a mean over its contributing elements (tokens, action values). To make the
step's gradient the mean over every contributing element of the GLOBAL batch -- whatever the split into ranks and
micro-batches -- each micro-batch backpropagates `loss * num_tokens / C` (a sum, divided by a power of two C of
the size of a micro-batch's token count, which keeps fp16 gradients in range and is exact in floating point), and
before the optimizer step the gradients are multiplied by `world_size * C / total_tokens` (FSDP2 and DDP average
gradients over ranks). Accumulating 4 x 2 samples therefore gives the gradient of one batch of 8, and 2 ranks x 4
that of one process with 8.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vla_foundry.data.dataloader import SAMPLE_KEYS
from vla_foundry.distributed import DistributedContext, all_reduce_sum, clip_grad_norm, gradient_sync, peak_memory_gib
from vla_foundry.metrics import MetricsLogger, peak_flops
from vla_foundry.models.registry import BatchHandler
from vla_foundry.params.train_experiment_params import TrainExperimentParams


@dataclass
class TrainState:
    """Counters that a checkpoint stores and a resume restores."""

    step: int = 0
    samples_seen: int = 0
    tokens_seen: int = 0
    # Checkpoint windows completed.
    windows_done: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "step": self.step,
            "samples_seen": self.samples_seen,
            "tokens_seen": self.tokens_seen,
            "windows_done": self.windows_done,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(int(d["step"]), int(d["samples_seen"]), int(d["tokens_seen"]), int(d["windows_done"]))


@dataclass
class WindowResult:
    """What one window produced: the global loss of every step (for logs and tests) and throughput."""

    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    data_wait_seconds: float = 0.0


def autocast_context(
    precision: str, device: torch.device, fsdp_mixed_precision: bool
) -> contextlib.AbstractContextManager:
    """bf16 / fp16 autocast for the forward pass. Under FSDP2 with a bf16 MixedPrecisionPolicy the parameters are
    already gathered in bf16, so no autocast is needed."""
    if precision == "amp_bf16" and not fsdp_mixed_precision:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "fp16":
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def _cast_floats(batch: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    return {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in batch.items()}


def _sequence_length(batch: dict[str, Any]) -> int | None:
    ids = batch.get("input_ids")
    return int(ids.shape[1]) - 1 if isinstance(ids, torch.Tensor) and ids.dim() == 2 else None


def token_scale(cfg: TrainExperimentParams) -> float:
    """C: the power of two nearest below the expected contributing elements of one micro-batch."""
    expected = cfg.hparams.per_gpu_batch_size * (getattr(cfg.data, "seq_len", None) or 1)
    return float(2 ** int(math.log2(max(expected, 1))))


def _next_batch(batches: Iterator[dict[str, Any]], window: int, step: int) -> dict[str, Any]:
    try:
        return next(batches)
    except StopIteration:
        raise RuntimeError(
            f"the data loader of checkpoint window {window} ran out of batches at optimizer step {step}; the data "
            "plan gives fewer samples than samples_per_checkpoint (check the manifests' num_sequences)"
        ) from None


class NonFiniteLossError(RuntimeError):
    """The loss of an optimizer step is NaN or Inf: the run stops before that step updates anything."""


def check_finite_loss(
    loss: float, micro_losses: list[tuple[torch.Tensor | float, list[str]]], state: TrainState, rank: int
) -> None:
    """Raise NonFiniteLossError naming the step, the window and the offending samples.

    `micro_losses` holds this rank's (loss, sample keys) per micro-batch of the step. Every rank sees the same
    reduced loss, so all of them get here together and gather the keys of the micro-batches whose own loss is
    non-finite, on any rank; when none is (the reduction itself overflowed), this rank's samples of the step are
    named instead."""
    if math.isfinite(loss):
        return
    from vla_foundry.distributed import all_gather_objects

    local = [k for value, keys in micro_losses if not math.isfinite(float(value)) for k in keys]
    keys = [k for per_rank in all_gather_objects(local) for k in per_rank]
    which = "samples of the micro-batches with a non-finite loss"
    if not keys:
        keys = [k for _, group in micro_losses for k in group]
        which = f"no single micro-batch loss was non-finite; samples of the step on rank {rank}"
    shown = ", ".join(keys[:8]) + (f" (+{len(keys) - 8} more)" if len(keys) > 8 else "") if keys else "unknown"
    raise NonFiniteLossError(
        f"non-finite loss ({loss}) at optimizer step {state.step + 1}, checkpoint window {state.windows_done}; "
        f"{which}: {shown}. Nothing of this step was applied or saved (the latest checkpoint is the last good one): "
        "check those samples with python -m vla_foundry.data.validate, or lower hparams.lr, then resume with "
        "--model.resume_from_checkpoint <run dir>"
    )


def train_one_checkpoint(
    model: nn.Module,
    batch_handler: BatchHandler,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batches: Iterator[dict[str, Any]],
    state: TrainState,
    cfg: TrainExperimentParams,
    ctx: DistributedContext,
    logger: MetricsLogger,
    ema: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    flops_per_token: Callable[[int], float | None] | None = None,
    fsdp_mixed_precision: bool = False,
) -> WindowResult:
    """Run `cfg.steps_per_checkpoint` optimizer steps on `batches` (micro-batches of `per_gpu_batch_size`)."""
    hp = cfg.hparams
    accumulation = hp.accumulation_steps or 1
    params = [p for p in model.parameters() if p.requires_grad]
    peak = peak_flops(ctx.device)
    scale = token_scale(cfg)
    result = WindowResult()
    model.train()

    window_start = time.perf_counter()
    interval_start, interval_wait, interval_samples, interval_tokens = window_start, 0.0, 0, 0
    for _ in range(cfg.steps_per_checkpoint):
        loss_sum = torch.zeros((), dtype=torch.float64, device=ctx.device)
        local_tokens = 0
        handler_metrics: dict[str, float] = {}
        micro_losses: list[tuple[torch.Tensor, list[str]]] = []  # (loss, sample keys) of each micro-batch
        seq_len = None
        for micro in range(accumulation):
            wait_start = time.perf_counter()
            batch = _next_batch(batches, state.windows_done, state.step)
            interval_wait += time.perf_counter() - wait_start
            batch = batch_handler.to_device(batch, ctx.device)
            if hp.precision == "pure_bf16":
                batch = _cast_floats(batch, torch.bfloat16)
            seq_len = seq_len or _sequence_length(batch)

            # Gradients are reduced across ranks only on the last micro-batch of the step.
            with gradient_sync(model, enabled=micro == accumulation - 1):
                with autocast_context(hp.precision, ctx.device, fsdp_mixed_precision):
                    out = batch_handler.compute_loss(model, batch)
                summed = out.loss.float() * (out.num_tokens / scale)  # a (scaled) sum over contributing elements
                if scaler is not None:
                    summed = scaler.scale(summed)
                summed.backward()
            loss_sum += out.loss.detach().double() * out.num_tokens
            # Kept as a tensor: read back only when the step's loss is non-finite (no extra device sync).
            micro_losses.append((out.loss.detach(), list(batch.get(SAMPLE_KEYS) or [])))
            local_tokens += int(out.num_tokens)
            for k, v in out.metrics.items():
                handler_metrics[k] = handler_metrics.get(k, 0.0) + float(v) / accumulation

        # One collective per step: the global loss sum and the global count of contributing elements.
        global_loss_sum, global_tokens = all_reduce_sum([loss_sum.item(), float(local_tokens)], ctx.device)
        # Every rank holds the same reduced loss, so every rank stops here together, before the optimizer step.
        check_finite_loss(global_loss_sum / max(global_tokens, 1.0), micro_losses, state, ctx.rank)
        if scaler is not None:
            scaler.unscale_(optimizer)
        if global_tokens > 0:
            grads = [p.grad for p in params if p.grad is not None]
            torch._foreach_mul_(grads, ctx.world_size * scale / global_tokens)
        grad_norm = clip_grad_norm(params, hp.grad_clip_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        state.step += 1
        state.samples_seen += cfg.global_batch_size
        state.tokens_seen += int(global_tokens)
        if ema is not None:
            ema.update(state.step)
        loss = global_loss_sum / max(global_tokens, 1.0)
        result.losses.append(loss)
        result.grad_norms.append(float(grad_norm))
        interval_samples += cfg.global_batch_size
        interval_tokens += int(global_tokens)
        logger.advance()

        last_of_window = len(result.losses) == cfg.steps_per_checkpoint
        if state.step % cfg.log_every_n_steps == 0 or last_of_window:
            # The batch handler's own terms (e.g. ce_loss), averaged over ranks like the loss.
            names = sorted(handler_metrics)
            averaged = all_reduce_sum([handler_metrics[k] for k in names], ctx.device) if names else []
            handler_metrics = {k: v / ctx.world_size for k, v in zip(names, averaged)}
            now = time.perf_counter()
            elapsed = max(now - interval_start, 1e-9)
            tokens_per_sec = interval_tokens / elapsed
            values: dict[str, Any] = {
                "loss": loss,
                "lr": lr,
                "grad_norm": float(grad_norm),
                "samples_seen": state.samples_seen,
                "tokens_seen": state.tokens_seen,
                "samples_per_sec": interval_samples / elapsed,
                "samples_per_sec_per_gpu": interval_samples / elapsed / ctx.world_size,
                "tokens_per_sec": tokens_per_sec,
                "data_wait_fraction": interval_wait / elapsed,
                "peak_memory_gib": peak_memory_gib(ctx.device),
                **handler_metrics,
            }
            if scaler is not None:
                values["grad_scale"] = scaler.get_scale()
            fpt = flops_per_token(seq_len) if flops_per_token is not None and seq_len else None
            if fpt is not None and peak is not None:
                values["mfu"] = fpt * tokens_per_sec / (peak * ctx.world_size)
            logger.log(state.step, values)
            result.data_wait_seconds += interval_wait
            interval_start, interval_wait, interval_samples, interval_tokens = now, 0.0, 0, 0

    result.data_wait_seconds += interval_wait
    result.seconds = time.perf_counter() - window_start
    return result


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batch_handler: BatchHandler,
    batches: Iterator[dict[str, Any]],
    num_batches: int,
    ctx: DistributedContext,
    precision: str,
    fsdp_mixed_precision: bool = False,
) -> float:
    """Token-weighted mean loss over `num_batches` micro-batches per rank, reduced over ranks."""
    model.eval()
    loss_sum, tokens = 0.0, 0.0
    for _ in range(num_batches):
        try:
            batch = next(batches)
        except StopIteration:
            break
        batch = batch_handler.to_device(batch, ctx.device)
        if precision == "pure_bf16":
            batch = _cast_floats(batch, torch.bfloat16)
        with autocast_context(precision, ctx.device, fsdp_mixed_precision):
            out = batch_handler.compute_loss(model, batch)
        loss_sum += float(out.loss) * out.num_tokens
        tokens += out.num_tokens
    model.train()
    total_loss, total_tokens = all_reduce_sum([loss_sum, tokens], ctx.device)
    return total_loss / max(total_tokens, 1.0)
