"""Run under `torchrun --nproc_per_node 2`: train the same tiny model with FSDP2 and with DDP on the same global
batches, write the per-step losses and an FSDP checkpoint to OUT_DIR (argv[1]) for the tests to compare; then, when
argv[2] names a JSON list of training flags, run that whole training job (FSDP2) in the same launch."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import torch

from tests.training.conftest import rank_micro_batches, tiny_experiment
from vla_foundry.checkpoint import save_checkpoint
from vla_foundry.distributed import destroy_distributed, init_distributed, parallelize_model, unwrap_model
from vla_foundry.metrics import MetricsLogger
from vla_foundry.models.ema import EMA
from vla_foundry.models.registry import create_model, get_batch_handler
from vla_foundry.optim import build_optimizer, build_scheduler
from vla_foundry.params import DistributedParams
from vla_foundry.train import TrainState, train_one_checkpoint

# 4 optimizer steps of a global batch of 8: 2 ranks x per-GPU 2 x accumulation 2.
NUM_SAMPLES, GLOBAL_BATCH, PER_GPU = 32, 8, 2


def train(mode: str, out_dir: str) -> list[float]:
    ctx = dataclasses.replace(init_distributed(DistributedParams()), wrapping=mode)
    cfg = tiny_experiment(
        total_train_samples=NUM_SAMPLES, per_gpu_batch_size=PER_GPU, global_batch_size=GLOBAL_BATCH, grad_clip_norm=0.5
    )
    assert cfg.hparams.accumulation_steps == 2, cfg.hparams
    torch.manual_seed(0)
    model = create_model(cfg.model)
    model = parallelize_model(model, ctx, cfg.distributed, cfg.hparams)
    optimizer = build_optimizer(unwrap_model(model), cfg.hparams)
    scheduler = build_scheduler(optimizer, cfg.hparams, cfg.total_steps)
    ema = EMA(unwrap_model(model), dataclasses.replace(cfg.ema, enabled=True, decay=0.5))
    batches = rank_micro_batches(NUM_SAMPLES, GLOBAL_BATCH, PER_GPU, ctx.rank, ctx.world_size)
    logger = MetricsLogger(out_dir, enabled=False, total_steps=cfg.total_steps, start_step=0)
    result = train_one_checkpoint(
        model, get_batch_handler(cfg.model), optimizer, scheduler, batches, TrainState(), cfg, ctx, logger, ema=ema
    )
    save_checkpoint(os.path.join(out_dir, f"{mode}_run"), 1, model, optimizer, scheduler, ema, {"step": 4}, ctx)
    return result.losses


def main() -> None:
    out_dir = sys.argv[1]
    losses = {mode: train(mode, out_dir) for mode in ("fsdp", "ddp")}
    if int(os.environ["RANK"]) == 0:
        with open(os.path.join(out_dir, "losses.json"), "w") as f:
            json.dump(losses, f)
    if len(sys.argv) > 2:
        from vla_foundry.params import parse_train_params
        from vla_foundry.training_run import run_training

        with open(sys.argv[2]) as f:
            run_training(parse_train_params(json.load(f)))
    destroy_distributed()


if __name__ == "__main__":
    main()
