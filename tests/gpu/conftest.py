"""Fixtures for the CUDA tests (`pytest -m gpu`): the device, a one-process FSDP2 context, tiny training helpers.

Every test module here is marked `gpu` (`pytestmark`), so the default run deselects them. They run on `cuda:0`; with
VLA_FOUNDRY_TEST_DEVICE=cpu the same tests run on the CPU (gloo instead of NCCL), which is how they are dry-run on a
machine without a GPU. Asked for CUDA where there is none, every test fails with one line saying so.
"""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Iterator
from typing import Any

# cuBLAS reads this when its first handle is made: fixed workspaces make its matmuls run-to-run deterministic, which
# the bitwise-resume test needs (set before any CUDA work, i.e. at collection).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import pytest
import torch

from vla_foundry.distributed import DistributedContext
from vla_foundry.params import HyperParams, TextDataParams, TrainExperimentParams, TransformerParams
from vla_foundry.params.train_experiment_params import derive_params

VOCAB = 64
SEQ_LEN = 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def device() -> torch.device:
    """cuda:0, or the CPU when VLA_FOUNDRY_TEST_DEVICE=cpu (a dry run of the same code paths)."""
    name = os.environ.get("VLA_FOUNDRY_TEST_DEVICE", "cuda")
    if name not in ("cuda", "cpu"):
        pytest.fail(f"VLA_FOUNDRY_TEST_DEVICE={name!r}: expected 'cuda' (default) or 'cpu'")
    if name == "cuda" and not torch.cuda.is_available():
        pytest.fail(
            "the gpu tests need CUDA and torch.cuda.is_available() is False here; run them on a GPU machine, or dry-run "
            "them on this CPU with VLA_FOUNDRY_TEST_DEVICE=cpu"
        )
    if name == "cuda":
        torch.cuda.set_device(0)
        return torch.device("cuda", 0)
    return torch.device("cpu")


@pytest.fixture(scope="module")
def fsdp_ctx(device: torch.device) -> Iterator[DistributedContext]:
    """A one-process group (NCCL on CUDA, gloo on CPU) and a context that wraps models with FSDP2, as a one-GPU
    benchmark does; main.py itself leaves a single process unwrapped. Per module: `run_training` ends by destroying
    the process group, so no group may outlive the module that made it."""
    import torch.distributed as dist

    from vla_foundry.distributed import destroy_distributed

    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{_free_port()}",
        rank=0,
        world_size=1,
        device_id=device if backend == "nccl" else None,
    )
    try:
        yield DistributedContext(0, 1, 0, device, backend, "fsdp")
    finally:
        destroy_distributed()


def plain_ctx(device: torch.device) -> DistributedContext:
    return DistributedContext(0, 1, 0, device, None, "none")


def tiny_lm_params(**overrides: Any) -> TransformerParams:
    fields = {"hidden_dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": VOCAB, "max_seq_len": 128}
    return TransformerParams(**{**fields, **overrides})


def lm_experiment(steps: int, batch_size: int = 4, **hparams: Any) -> TrainExperimentParams:
    """A text experiment for the tiny transformer: `steps` optimizer steps in one window."""
    hp = {"lr": 3e-3, "warmup": 0, "weight_decay": 0.0, "lr_scheduler": "constant", "precision": "fp32", **hparams}
    params = TrainExperimentParams(
        model=tiny_lm_params(),
        data=TextDataParams(seq_len=SEQ_LEN),
        hparams=HyperParams(per_gpu_batch_size=batch_size, **hp),
        total_train_samples=steps * batch_size,
        log_every_n_steps=1,
    )
    return derive_params(params)


def lm_batches(steps: int, batch_size: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Token batches (B, SEQ_LEN + 1) with a learnable pattern: token t+1 = token t + 1 mod VOCAB."""
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, VOCAB, (steps * batch_size, 1), generator=gen)
    ids = (starts + torch.arange(SEQ_LEN + 1)) % VOCAB  # (N, T + 1)
    return [{"input_ids": ids[i : i + batch_size]} for i in range(0, steps * batch_size, batch_size)]


@dataclasses.dataclass
class Trainer:
    """A model wrapped and trained exactly as `training_run` does (parallelize, optimizer, scheduler, scaler)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    cfg: TrainExperimentParams
    ctx: DistributedContext
    fsdp_mixed_precision: bool

    def train(self, batches: list[dict[str, Any]], state: Any = None) -> list[float]:
        """Run one optimizer step per batch; returns the losses."""
        from vla_foundry.metrics import MetricsLogger
        from vla_foundry.models.registry import get_batch_handler
        from vla_foundry.train import Trainer

        cfg = dataclasses.replace(self.cfg, samples_per_checkpoint=len(batches) * self.cfg.global_batch_size)
        logger = MetricsLogger("unused", enabled=False, total_steps=len(batches), start_step=0)
        trainer = Trainer(
            cfg, self.ctx, self.model, get_batch_handler(cfg.model), self.optimizer, self.scheduler, logger,
            scaler=self.scaler, state=state, fsdp_mixed_precision=self.fsdp_mixed_precision,
        )  # fmt: skip
        return trainer.train_interval(iter(batches)).losses


def build_trainer(cfg: TrainExperimentParams, ctx: DistributedContext, init_seed: int = 0) -> Trainer:
    """Create, wrap and equip the model of `cfg` on `ctx.device`, as `training_run.run_training` does."""
    from vla_foundry.distributed import mixed_precision_dtypes, parallelize_model, unwrap_model
    from vla_foundry.models.registry import create_model
    from vla_foundry.optim import build_optimizer, build_scheduler

    torch.manual_seed(init_seed)
    model = create_model(cfg.model)
    model = parallelize_model(model, ctx, cfg.distributed, cfg.hparams)
    fsdp_mp = ctx.wrapping == "fsdp" and mixed_precision_dtypes(cfg.hparams, ctx.device)[0] is not None
    optimizer = build_optimizer(unwrap_model(model), cfg.hparams)
    scheduler = build_scheduler(optimizer, cfg.hparams, cfg.total_steps)
    scaler = torch.amp.GradScaler(ctx.device.type) if cfg.hparams.precision == "fp16" else None
    return Trainer(model, optimizer, scheduler, scaler, cfg, ctx, fsdp_mp)


def local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (the whole tensor in a one-process group), or the tensor itself."""
    return t.to_local() if hasattr(t, "to_local") else t
