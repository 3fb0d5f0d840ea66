"""The optimisation steps of a run: `Trainer.train_interval` runs one checkpoint interval of them.

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
import sys
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
    # Checkpoint intervals completed (= the number of the last checkpoint written).
    intervals_done: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "step": self.step,
            "samples_seen": self.samples_seen,
            "tokens_seen": self.tokens_seen,
            "intervals_done": self.intervals_done,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        if "intervals_done" not in d and "windows_done" in d:
            # Checkpoints written before the rename hold the count as `windows_done`.
            print(
                "warning: trainer state key windows_done is read as intervals_done (older checkpoint)", file=sys.stderr
            )
            d = {**d, "intervals_done": d["windows_done"]}
        return cls(int(d["step"]), int(d["samples_seen"]), int(d["tokens_seen"]), int(d["intervals_done"]))


@dataclass
class IntervalResult:
    """What one checkpoint interval produced: the global loss of every step (for logs and tests) and throughput."""

    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    seconds: float = 0.0
    # Seconds this rank waited for batches (the benchmarks report it as a fraction of `seconds`).
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


def _next_batch(batches: Iterator[dict[str, Any]], interval: int, step: int) -> dict[str, Any]:
    try:
        return next(batches)
    except StopIteration:
        raise RuntimeError(
            f"the data loader of checkpoint interval {interval} ran out of batches at optimizer step {step}; the data "
            "plan gives fewer samples than samples_per_checkpoint (check the manifests' num_sequences)"
        ) from None


class NonFiniteLossError(RuntimeError):
    """The loss of an optimizer step is NaN or Inf: the run stops before that step updates anything."""


def check_finite_loss(
    loss: float, micro_losses: list[tuple[torch.Tensor | float, list[str]]], state: TrainState, rank: int
) -> None:
    """Raise NonFiniteLossError naming the step, the checkpoint interval and the offending samples.

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
        f"non-finite loss ({loss}) at optimizer step {state.step + 1}, checkpoint interval {state.intervals_done}; "
        f"{which}: {shown}. Nothing of this step was applied or saved (the latest checkpoint is the last good one): "
        "check those samples with python -m vla_foundry.data.validate, or lower hparams.lr, then resume with "
        "--model.resume_from_checkpoint <run dir>"
    )


@dataclass
class _Throughput:
    """Time, data wait, samples and tokens since the last metrics line."""

    start: float = field(default_factory=time.perf_counter)
    wait: float = 0.0
    samples: int = 0
    tokens: int = 0


@dataclass
class _StepTotals:
    """This rank's sums over the micro-batches of one optimizer step."""

    loss_sum: torch.Tensor  # () float64: sum of loss x contributing elements
    tokens: int = 0
    handler_metrics: dict[str, float] = field(default_factory=dict)
    # (loss, sample keys) of each micro-batch, to name the samples of a non-finite loss.
    micro_losses: list[tuple[torch.Tensor, list[str]]] = field(default_factory=list)
    seq_len: int | None = None


class Trainer:
    """The optimisation of a run: its components as attributes, one checkpoint interval per `train_interval` call.

    Built by `vla_foundry.training_run` (or directly, by tests and benchmarks) from a wrapped model, its batch
    handler, optimizer, scheduler and metrics logger; `state` holds the counters a checkpoint saves.
    """

    def __init__(
        self,
        params: TrainExperimentParams,
        ctx: DistributedContext,
        model: nn.Module,
        batch_handler: BatchHandler,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        logger: MetricsLogger,
        ema: Any = None,
        scaler: torch.amp.GradScaler | None = None,
        state: TrainState | None = None,
        flops_per_token: Callable[[int], float | None] | None = None,
        fsdp_mixed_precision: bool = False,
    ) -> None:
        self.params = params
        self.ctx = ctx
        self.model = model
        self.batch_handler = batch_handler
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.logger = logger
        self.ema = ema
        self.scaler = scaler
        self.state = state if state is not None else TrainState()
        self.flops_per_token = flops_per_token
        self.fsdp_mixed_precision = fsdp_mixed_precision
        self.token_scale = token_scale(params)
        self.peak_flops = peak_flops(ctx.device)

    def train_interval(self, batches: Iterator[dict[str, Any]]) -> IntervalResult:
        """Run `params.steps_per_checkpoint` optimizer steps on `batches` (micro-batches of `per_gpu_batch_size`)."""
        steps = self.params.steps_per_checkpoint
        result = IntervalResult()
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.model.train()
        begin = time.perf_counter()
        meter = _Throughput(start=begin)
        for _ in range(steps):
            totals = self._accumulate(batches, meter)
            # One collective per step: the global loss sum and the global count of contributing elements.
            loss_sum, tokens = all_reduce_sum([totals.loss_sum.item(), float(totals.tokens)], self.ctx.device)
            loss = loss_sum / max(tokens, 1.0)
            # Every rank holds the same reduced loss, so every rank stops here together, before the optimizer step.
            check_finite_loss(loss, totals.micro_losses, self.state, self.ctx.rank)
            lr = self.optimizer.param_groups[0]["lr"]
            grad_norm = self._apply_gradients(trainable, tokens)
            self._advance(tokens)
            result.losses.append(loss)
            result.grad_norms.append(grad_norm)
            meter.samples += self.params.global_batch_size
            meter.tokens += int(tokens)
            if self.state.step % self.params.log_every_n_steps == 0 or len(result.losses) == steps:
                result.data_wait_seconds += meter.wait
                meter = _Throughput(start=self._log_step(loss, lr, grad_norm, totals, meter))
        result.data_wait_seconds += meter.wait
        result.seconds = time.perf_counter() - begin
        return result

    def _accumulate(self, batches: Iterator[dict[str, Any]], meter: _Throughput) -> _StepTotals:
        """Forward and backward over the step's micro-batches; gradients are reduced across ranks on the last."""
        hp = self.params.hparams
        accumulation = hp.accumulation_steps or 1
        totals = _StepTotals(loss_sum=torch.zeros((), dtype=torch.float64, device=self.ctx.device))
        for micro in range(accumulation):
            wait_start = time.perf_counter()
            batch = _next_batch(batches, self.state.intervals_done, self.state.step)
            meter.wait += time.perf_counter() - wait_start
            batch = self.batch_handler.to_device(batch, self.ctx.device)
            if hp.precision == "pure_bf16":
                batch = _cast_floats(batch, torch.bfloat16)
            totals.seq_len = totals.seq_len or _sequence_length(batch)
            with gradient_sync(self.model, enabled=micro == accumulation - 1):
                with autocast_context(hp.precision, self.ctx.device, self.fsdp_mixed_precision):
                    out = self.batch_handler.compute_loss(self.model, batch)
                summed = out.loss.float() * (out.num_tokens / self.token_scale)  # a (scaled) sum over elements
                if self.scaler is not None:
                    summed = self.scaler.scale(summed)
                summed.backward()
            totals.loss_sum += out.loss.detach().double() * out.num_tokens
            # Kept as a tensor: read back only when the step's loss is non-finite (no extra device sync).
            totals.micro_losses.append((out.loss.detach(), list(batch.get(SAMPLE_KEYS) or [])))
            totals.tokens += int(out.num_tokens)
            for k, v in out.metrics.items():
                totals.handler_metrics[k] = totals.handler_metrics.get(k, 0.0) + float(v) / accumulation
        return totals

    def _apply_gradients(self, trainable: list[nn.Parameter], global_tokens: float) -> float:
        """Scale the summed gradients to the global mean, clip, step optimizer and scheduler; returns the norm."""
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if global_tokens > 0:
            grads = [p.grad for p in trainable if p.grad is not None]
            torch._foreach_mul_(grads, self.ctx.world_size * self.token_scale / global_tokens)
        grad_norm = clip_grad_norm(trainable, self.params.hparams.grad_clip_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(grad_norm)

    def _advance(self, global_tokens: float) -> None:
        self.state.step += 1
        self.state.samples_seen += self.params.global_batch_size
        self.state.tokens_seen += int(global_tokens)
        if self.ema is not None:
            self.ema.update(self.state.step)
        self.logger.advance()

    def _log_step(self, loss: float, lr: float, grad_norm: float, totals: _StepTotals, meter: _Throughput) -> float:
        """Log the step's metrics line; returns the time the next line's throughput counts from."""
        ctx = self.ctx
        # The batch handler's own terms (e.g. ce_loss), averaged over ranks like the loss.
        names = sorted(totals.handler_metrics)
        averaged = all_reduce_sum([totals.handler_metrics[k] for k in names], ctx.device) if names else []
        now = time.perf_counter()
        elapsed = max(now - meter.start, 1e-9)
        tokens_per_sec = meter.tokens / elapsed
        values: dict[str, Any] = {
            "loss": loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "samples_seen": self.state.samples_seen,
            "tokens_seen": self.state.tokens_seen,
            "samples_per_sec": meter.samples / elapsed,
            "samples_per_sec_per_gpu": meter.samples / elapsed / ctx.world_size,
            "tokens_per_sec": tokens_per_sec,
            "data_wait_fraction": meter.wait / elapsed,
            "peak_memory_gib": peak_memory_gib(ctx.device),
            **{k: v / ctx.world_size for k, v in zip(names, averaged)},
        }
        if self.scaler is not None:
            values["grad_scale"] = self.scaler.get_scale()
        fpt = self.flops_per_token(totals.seq_len) if self.flops_per_token is not None and totals.seq_len else None
        if fpt is not None and self.peak_flops is not None:
            values["mfu"] = fpt * tokens_per_sec / (self.peak_flops * ctx.world_size)
        self.logger.log(self.state.step, values)
        return now

    @torch.no_grad()
    def evaluate(self, batches: Iterator[dict[str, Any]], num_batches: int) -> float:
        """Token-weighted mean loss over `num_batches` micro-batches per rank, reduced over ranks."""
        precision = self.params.hparams.precision
        self.model.eval()
        loss_sum, tokens = 0.0, 0.0
        for _ in range(num_batches):
            try:
                batch = next(batches)
            except StopIteration:
                break
            batch = self.batch_handler.to_device(batch, self.ctx.device)
            if precision == "pure_bf16":
                batch = _cast_floats(batch, torch.bfloat16)
            with autocast_context(precision, self.ctx.device, self.fsdp_mixed_precision):
                out = self.batch_handler.compute_loss(self.model, batch)
            loss_sum += float(out.loss) * out.num_tokens
            tokens += out.num_tokens
        self.model.train()
        total_loss, total_tokens = all_reduce_sum([loss_sum, tokens], self.ctx.device)
        return total_loss / max(total_tokens, 1.0)
