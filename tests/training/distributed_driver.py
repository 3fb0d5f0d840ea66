"""Run under `torchrun --nproc_per_node 2`: train the same tiny model with FSDP2 and with DDP on the same global
batches, write the per-step losses and a checkpoint per mode to OUT_DIR (argv[1]) for the tests to compare; under
FSDP2 also an asynchronous save overlapped with more training steps, and the EMA's tensor types. Then, when argv[2]
names a JSON list of jobs ({"args": training flags, optional "copy": [src, dst, n]: rank 0 first copies run dir
src to dst as it was after checkpoint n}), run those whole training jobs in the same launch."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys

import torch

from tests.training.conftest import rank_micro_batches, tiny_experiment
from vla_foundry.checkpoint import DCPCheckpointer
from vla_foundry.distributed import barrier, destroy_distributed, init_distributed, parallelize_model, unwrap_model
from vla_foundry.metrics import MetricsLogger
from vla_foundry.models.ema import EMA
from vla_foundry.models.registry import create_model, get_batch_handler
from vla_foundry.optim import build_optimizer, build_scheduler
from vla_foundry.params import DistributedParams
from vla_foundry.train import Trainer

# 4 optimizer steps of a global batch of 8: 2 ranks x per-GPU 2 x accumulation 2.
NUM_SAMPLES, GLOBAL_BATCH, PER_GPU = 32, 8, 2


def ema_layout(ema: EMA) -> dict[str, list]:
    """{name: [tensor type, placements, local numel, global numel]} of the EMA's shadow tensors."""
    out = {}
    for name, t in ema.shards().items():
        local = t.to_local() if hasattr(t, "to_local") else t
        out[name] = [type(t).__name__, str(getattr(t, "placements", "")), local.numel(), t.numel()]
    return out


def train(mode: str, out_dir: str) -> dict:
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
    trainer = Trainer(cfg, ctx, model, get_batch_handler(cfg.model), optimizer, scheduler, logger, ema=ema)
    result = trainer.train_interval(batches)
    sync_run = os.path.join(out_dir, f"{mode}_run")
    checkpointer = DCPCheckpointer(sync_run, ctx, model, optimizer, scheduler, ema, async_save=False)
    checkpointer.save(1, {"step": 4})
    checkpointer.close()
    out = {"losses": result.losses, "ema": ema_layout(ema)}
    if mode == "fsdp":
        # The same state saved asynchronously while 4 more steps change the weights and optimizer state in place.
        saver = DCPCheckpointer(os.path.join(out_dir, "fsdp_async_run"), ctx, model, optimizer, scheduler, ema)
        saver.save(1, {"step": 4})
        trainer.train_interval(rank_micro_batches(NUM_SAMPLES, GLOBAL_BATCH, PER_GPU, ctx.rank, ctx.world_size, seed=1))
        saver.close()
        out["steps_after_async_save"] = trainer.state.step - 4
    barrier()
    return out


def run_jobs(jobs_file: str) -> None:
    from vla_foundry.params import parse_train_params
    from vla_foundry.training_run import _run

    with open(jobs_file) as f:
        jobs = json.load(f)
    for job in jobs:
        if "copy" in job and int(os.environ["RANK"]) == 0:
            src, dst, n = job["copy"]
            later = [f"checkpoint_{k}" for k in range(n + 1, 10)]
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*later, "*.safetensors"))
        barrier()
        params = parse_train_params(job["args"])
        # The whole run on the process group of this launch (a second init after a destroy can hang gloo).
        _run(params, init_distributed(params.distributed))


def main() -> None:
    out_dir = sys.argv[1]
    results = {mode: train(mode, out_dir) for mode in ("fsdp", "ddp")}
    if int(os.environ["RANK"]) == 0:
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(results, f)
    if len(sys.argv) > 2:
        run_jobs(sys.argv[2])
    destroy_distributed()


if __name__ == "__main__":
    main()
