"""A whole training run: the per-checkpoint loop behind `vla_foundry/main.py`.

init distributed -> seed -> check the resume path exists (local or s3) -> derive data-side values and shared
attributes -> build the model -> load weights -> wrap (FSDP2 / DDP / plain) -> optimizer, scheduler, EMA ->
for each checkpoint window: plan data, build loader, train_one_checkpoint, save checkpoint, validate, sync.
"""

from __future__ import annotations

import datetime
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vla_foundry import storage
from vla_foundry.checkpoint import (
    CheckpointError,
    CheckpointRef,
    checkpoint_file,
    list_checkpoints,
    load_file,
    load_training_state,
    prune_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
    set_full_model_state_dict,
)
from vla_foundry.data.dataloader import BadDataError
from vla_foundry.data.manifest import ManifestError
from vla_foundry.data.planner import DataExhaustedError
from vla_foundry.data.robotics.stats import StatsError
from vla_foundry.distributed import (
    DistributedContext,
    barrier,
    broadcast_object,
    destroy_distributed,
    init_distributed,
    mixed_precision_dtypes,
    parallelize_model,
    unwrap_model,
)
from vla_foundry.metrics import MetricsLogger, model_flops_per_token, truncate_metrics
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.parsing import params_to_dict, save_params
from vla_foundry.params.train_experiment_params import TrainExperimentParams, init_shared_attributes
from vla_foundry.remote_sync import RemoteSyncError
from vla_foundry.storage import StorageError
from vla_foundry.train import TrainState, evaluate, train_one_checkpoint

# Errors whose message already says what is wrong, where, and what is valid: `main.py` prints them as one line.
USER_FACING_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    FileNotFoundError,
    CheckpointError,
    ManifestError,
    StatsError,
    DataExhaustedError,
    BadDataError,
    StorageError,
    RemoteSyncError,
)

# Files of a run dir a resume from a remote copy brings back (checkpoints are fetched one by one).
RUN_DIR_FILES = (
    "config.yaml",
    "config_model.yaml",
    "metrics.jsonl",
    "config_processor.yaml",
    "config_normalizer.yaml",
    "stats.json",
    "preprocessing_config.yaml",
    "processing_metadata.json",
)


@dataclass
class RunResult:
    """What a run did (returned to callers such as tests and notebooks)."""

    run_dir: str
    state: TrainState
    losses: list[float] = field(default_factory=list)
    val_losses: dict[int, float] = field(default_factory=dict)


def log(ctx: DistributedContext, message: str) -> None:
    if ctx.is_main:
        print(message, file=sys.stderr, flush=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_run_name(params: TrainExperimentParams) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{params.model.type}_{stamp}"


def resolve_run_dir(params: TrainExperimentParams, resume: CheckpointRef | None, ctx: DistributedContext) -> str:
    """`<save_path>/<name>`; a full resume continues in the checkpoint's run dir (or its local mirror for s3)."""
    full_resume = resume is not None and not params.model.resume_weights_only
    if full_resume and not storage.is_s3(resume.run_dir):
        return resume.run_dir
    if full_resume:
        name = params.name or storage.basename(resume.run_dir)
    else:
        # One timestamp for all ranks.
        name = params.name or broadcast_object(default_run_name(params) if ctx.is_main else None)
    return os.path.join(params.save_path, name)


def fetch_remote_checkpoint(ref: CheckpointRef, run_dir: str, ctx: DistributedContext) -> CheckpointRef:
    """Copy checkpoint `ref` and the run's small files from s3 into the local run dir. The first process of every
    node downloads (nodes need not share a file system)."""
    if ctx.local_rank == 0:
        for name in RUN_DIR_FILES:
            url = storage.join(ref.run_dir, name)
            if storage.exists(url):
                storage.download_file(url, os.path.join(run_dir, name))
        for kind in ("checkpoint", "optimizer", "ema", "trainer_state"):
            url = ref.sibling(kind)
            if storage.exists(url):
                storage.download_file(url, checkpoint_file(run_dir, ref.number, kind))
    barrier()
    return CheckpointRef(run_dir, ref.number, checkpoint_file(run_dir, ref.number))


def derive_data_values(params: TrainExperimentParams) -> None:
    """Fill data-derived values (robotics dims, the dataset size for num_epochs) and run the shared-attribute pass."""
    from vla_foundry.data.manifest import read_manifest
    from vla_foundry.data.planner import dataset_sources

    # Every manifest is read now, before the run dir exists: a wrong dataset path fails in seconds, naming it.
    paths, _, _ = dataset_sources(params.data)
    dataset_num_samples = sum(read_manifest(p).num_samples for p in paths)
    if params.data.val_dataset_manifest:
        for path in dataset_sources(params.data, split="val")[0]:
            read_manifest(path)
    if params.num_epochs is None or params.total_train_samples is not None:
        dataset_num_samples = None
    if params.data.type == "robotics":
        from vla_foundry.data.robotics.processor import resolve_robotics_dims

        # action / proprioception dims and the stored window come from the datasets (owner: data).
        resolve_robotics_dims(params.data)
    init_shared_attributes(params, dataset_num_samples=dataset_num_samples)
    check_image_token_id(params)


def check_image_token_id(params: TrainExperimentParams) -> None:
    """A native VLM's `model.image_token_id` must be the `<image>` id of `data.tokenizer`: the caption pipeline
    writes that id as the image placeholders, and the model puts image embeddings where it finds its own id. A
    mismatch would otherwise only fail at the first step. Loading an HF tokenizer reads its files."""
    from vla_foundry.data.processors.tokenizers import get_tokenizer
    from vla_foundry.params.data_params import ImageCaptionDataParams
    from vla_foundry.params.model_params import VLMParams

    model, data = params.model, params.data
    # With data.processor the placeholders are the processor's own (a vlm_hf setup): nothing to compare.
    if not isinstance(model, VLMParams) or not isinstance(data, ImageCaptionDataParams) or data.processor:
        return
    tokenizer_id = get_tokenizer(data.tokenizer).image_token_id
    if model.image_token_id != tokenizer_id:
        raise ConfigError(
            f"model.image_token_id={model.image_token_id} but data.tokenizer {data.tokenizer!r} gives <image> the id "
            f"{tokenizer_id} (the id the captions' image placeholders carry): set --model.image_token_id {tokenizer_id}"
        )


def write_run_files(params: TrainExperimentParams, run_dir: str) -> None:
    """config.yaml, config_model.yaml and, for robotics, the processor / normaliser / stats and the first dataset's
    preprocessing files (rank 0)."""
    os.makedirs(run_dir, exist_ok=True)
    save_params(params, os.path.join(run_dir, "config.yaml"))
    save_params(params.model, os.path.join(run_dir, "config_model.yaml"))
    if params.data.type != "robotics":
        return
    from vla_foundry.data.manifest import dataset_paths
    from vla_foundry.data.robotics.processor import RoboticsProcessor

    RoboticsProcessor.from_data_params(params.data).save(run_dir)
    first_dataset = dataset_paths(params.data.dataset_manifest[0])[0]
    for name in ("preprocessing_config.yaml", "processing_metadata.json"):
        source = storage.join(first_dataset, name)
        if storage.exists(source):
            storage.download_file(source, os.path.join(run_dir, name))


def build_batches(params: TrainExperimentParams, plan: Any, ctx: DistributedContext, training: bool = True) -> Any:
    """This rank's loader over the plan's shards (the data side splits shards across ranks and workers)."""
    from vla_foundry.data.dataloader import build_dataloader

    return build_dataloader(
        params.data,
        plan,
        batch_size=params.hparams.per_gpu_batch_size,
        rank=ctx.rank,
        world_size=ctx.world_size,
        model_params=params.model,
        training=training,
    )


def lr_multipliers(model: Any) -> dict[str, float]:
    """Per-prefix learning-rate factors a model declares (`lr_multipliers()`, e.g. a VLA backbone trained slower)."""
    declared = getattr(model, "lr_multipliers", None)
    return dict(declared()) if callable(declared) else {}


def run_training(params: TrainExperimentParams) -> RunResult:
    ctx = init_distributed(params.distributed)
    try:
        return _run(params, ctx)
    finally:
        destroy_distributed()


def check_nested_weight_paths(model_params: Any, where: str = "model") -> None:
    """Sub-models' `resume_from_checkpoint` (a VLM's language model, ...) and a policy's `backbone_run` must exist
    before anything is built; the error names the field and the path."""
    from dataclasses import fields

    from vla_foundry.checkpoint import CheckpointError
    from vla_foundry.params.model_params import ModelParams

    for f in fields(model_params):
        child = getattr(model_params, f.name)
        if isinstance(child, ModelParams):
            if child.resume_from_checkpoint:
                try:
                    resolve_checkpoint(child.resume_from_checkpoint)
                except CheckpointError as e:
                    raise CheckpointError(f"{where}.{f.name}.resume_from_checkpoint: {e}") from None
            check_nested_weight_paths(child, f"{where}.{f.name}")
        elif f.name == "backbone_run" and child and not storage.exists(storage.join(child, "config_model.yaml")):
            raise CheckpointError(f"{where}.backbone_run={child}: no config_model.yaml there (not a run directory)")


def _run(params: TrainExperimentParams, ctx: DistributedContext) -> RunResult:
    from vla_foundry.data.planner import DataPlanState, plan_checkpoint
    from vla_foundry.models.ema import EMA
    from vla_foundry.models.registry import create_model, get_batch_handler
    from vla_foundry.optim import build_optimizer, build_scheduler
    from vla_foundry.remote_sync import RemoteSync

    hp = params.hparams
    # Fail fast: the resume path must exist before anything heavy is built.
    resume = resolve_checkpoint(params.model.resume_from_checkpoint) if params.model.resume_from_checkpoint else None
    full_resume = resume is not None and not params.model.resume_weights_only
    check_nested_weight_paths(params.model)
    derive_data_values(params)
    if params.samples_per_checkpoint is None:
        raise ValueError("set a training budget: total_train_samples or num_epochs")
    run_dir = resolve_run_dir(params, resume, ctx)
    if not full_resume and list_checkpoints(run_dir, complete_only=False):
        raise ConfigError(
            f"run dir {run_dir} already holds checkpoints: continue it with --model.resume_from_checkpoint "
            f"{run_dir}, or start a new run with another --name (or --save_path)"
        )
    if full_resume and storage.is_s3(resume.run_dir):
        resume = fetch_remote_checkpoint(resume, run_dir, ctx)
    if ctx.is_main:
        write_run_files(params, run_dir)
    barrier()
    log(ctx, f"run dir: {run_dir} | world size {ctx.world_size} ({ctx.wrapping}) on {ctx.device.type}")

    # Identical initial weights on every rank (FSDP2 shards whatever each rank built).
    seed_everything(hp.seed)
    model = create_model(params.model, load_pretrained=not full_resume)
    if resume is not None and params.model.resume_weights_only:
        # Fine-tuning: weights only, loaded into the plain model before wrapping.
        set_full_model_state_dict(model, load_file(resume.model_file), resume.model_file)
        log(ctx, f"loaded weights from {resume.model_file}")
    plain_model = model
    flops_fn = (
        (lambda seq_len: model_flops_per_token(plain_model, seq_len)) if hasattr(model, "flops_per_token") else None
    )
    num_params = sum(p.numel() for p in model.parameters())
    model = parallelize_model(model, ctx, params.distributed, hp)
    fsdp_mp = ctx.wrapping == "fsdp" and mixed_precision_dtypes(hp, ctx.device)[0] is not None
    batch_handler = get_batch_handler(params.model)

    optimizer = build_optimizer(unwrap_model(model), hp, lr_multipliers(unwrap_model(model)))
    scheduler = build_scheduler(optimizer, hp, params.total_steps)
    ema = EMA(unwrap_model(model), params.ema) if params.ema.enabled else None
    scaler = torch.amp.GradScaler(ctx.device.type) if hp.precision == "fp16" else None

    state = TrainState()
    data_state: dict | None = None
    wandb_run_id = None
    if full_resume:
        saved = load_training_state(
            resume, model, optimizer, scheduler, ema, ctx, warn=lambda m: log(ctx, m), scaler=scaler
        )
        state = TrainState.from_dict(saved)
        data_state = saved.get("data_plan_state")
        wandb_run_id = saved.get("wandb_run_id")
    if ctx.is_main:
        # Records past the resumed step (or of an attempt that died before its first checkpoint) are dropped.
        truncate_metrics(os.path.join(run_dir, "metrics.jsonl"), state.step)
    if full_resume:
        log(ctx, f"resumed from {resume.model_file}: step {state.step}, {state.samples_seen} samples seen")
    # Per-rank randomness (dropout, noise) after the shared initialisation; a resume restored it above.
    if not full_resume:
        seed_everything(hp.seed + 1 + ctx.rank)

    log(ctx, f"model {params.model.type}: {num_params / 1e6:.2f}M parameters; {params.total_steps} steps")
    logger = MetricsLogger(
        run_dir,
        enabled=ctx.is_main,
        total_steps=params.total_steps,
        start_step=state.step,
        use_wandb=params.wandb,
        wandb_project=params.wandb_project,
        wandb_entity=params.wandb_entity,
        wandb_run_id=wandb_run_id,
        run_name=os.path.basename(run_dir),
        config=params_to_dict(params),
    )
    sync = RemoteSync(run_dir, params.remote_sync) if params.remote_sync and ctx.is_main else None
    sim_eval = None
    if params.eval.sim_env is not None and ctx.is_main:
        from vla_foundry.eval.during_training import SimEvalDuringTraining

        sim_eval = SimEvalDuringTraining(params.eval, run_dir, "cuda" if ctx.device.type == "cuda" else "cpu")
    result = RunResult(run_dir=run_dir, state=state)
    previous = DataPlanState.from_dict(data_state) if data_state else None

    try:
        for window in range(state.windows_done, params.num_checkpoints):
            plan = plan_checkpoint(params.data, window, params.samples_per_checkpoint, previous)
            log(ctx, shorten_lines(str(plan)))
            loader = build_batches(params, plan, ctx)
            batches = iter(loader)
            window_result = train_one_checkpoint(
                model, batch_handler, optimizer, scheduler, batches, state, params, ctx, logger,
                ema=ema, scaler=scaler, flops_per_token=flops_fn, fsdp_mixed_precision=fsdp_mp,
            )  # fmt: skip
            result.losses.extend(window_result.losses)
            report_data_quality(loader.stats, window, state.step, logger, ctx)
            state.windows_done = window + 1
            previous = plan.state

            trainer_state = {
                **state.to_dict(),
                "data_plan_state": plan.state.to_dict(),
                "wandb_run_id": logger.wandb_run_id,
                "saved_at": time.time(),
            }
            save_checkpoint(
                run_dir, state.windows_done, model, optimizer, scheduler, ema, trainer_state, ctx, scaler=scaler
            )
            removed = prune_checkpoints(run_dir, params.max_checkpoint_limit) if ctx.is_main else []
            barrier()

            if _should_validate(params, state.windows_done):
                val_loss = validate(params, model, batch_handler, ctx, state.windows_done, fsdp_mp)
                result.val_losses[state.windows_done] = val_loss
                logger.log(state.step, {"val_loss": val_loss})
            if sim_eval is not None:  # rank 0, in a separate process on the checkpoint just saved
                sim_eval.after_checkpoint(state.windows_done, state.step, logger)
            if sync is not None:
                sync.start(delete=[f"checkpoints/{k}_{n}.pt" for n in removed for k in _KINDS])
    finally:
        logger.close()
    barrier()
    if sync is not None:
        # Only rank 0 uploads; the other ranks are done. An incomplete remote copy fails the run here.
        sync.finish()
        log(ctx, f"remote copy complete: {params.remote_sync}")
    return result


_KINDS = ("checkpoint", "optimizer", "ema", "trainer_state")


def shorten_lines(text: str, width: int = 240) -> str:
    """Long shard lists (many small shards, many epochs) are cut for the console; the full plan is in the checkpoint."""
    return "\n".join(line if len(line) <= width else line[: width - 20] + " ... (cut)" for line in text.splitlines())


def report_data_quality(stats: Any, window: int, step: int, logger: MetricsLogger, ctx: DistributedContext) -> None:
    """Skipped samples and shard errors of the window, summed over ranks; logged and printed when non-zero."""
    from vla_foundry.distributed import all_reduce_sum

    bad, shard_errors, repeats, samples = all_reduce_sum(
        [stats.bad_samples, stats.shard_errors, stats.repeated_passes, stats.samples], ctx.device
    )
    logger.log(
        step,
        {
            "window": window,
            "skipped_samples": int(bad),
            "shard_errors": int(shard_errors),
            "repeated_passes": int(repeats),
            "window_samples_read": int(samples),
        },
    )
    if bad and ctx.is_main:
        listed = "\n  ".join(stats.bad[:10])
        log(ctx, f"window {window}: {int(bad)} samples skipped ({int(shard_errors)} shard errors); rank 0:\n  {listed}")


def _should_validate(params: TrainExperimentParams, windows_done: int) -> bool:
    return (
        params.val_every_n_checkpoints > 0
        and params.total_val_samples > 0
        and bool(params.data.val_dataset_manifest)
        and windows_done % params.val_every_n_checkpoints == 0
    )


def validate(
    params: TrainExperimentParams, model: Any, batch_handler: Any, ctx: DistributedContext, window: int, fsdp_mp: bool
) -> float:
    """Loss on `total_val_samples` of the validation datasets (the same samples at every validation)."""
    from vla_foundry.data.planner import plan_checkpoint

    per_batch = params.hparams.per_gpu_batch_size * ctx.world_size
    num_batches = max(1, params.total_val_samples // per_batch)
    plan = plan_checkpoint(params.data, 0, num_batches * per_batch, split="val")
    batches = iter(build_batches(params, plan, ctx, training=False))
    loss = evaluate(model, batch_handler, batches, num_batches, ctx, params.hparams.precision, fsdp_mp)
    log(ctx, f"validation after checkpoint {window}: loss {loss:.4f}")
    return loss
