"""A whole training run: the per-checkpoint loop behind `vla_foundry/main.py`.

init distributed -> seed -> check the resume path exists (local or s3) -> derive data-side values and shared
attributes -> build the model -> load weights -> wrap (FSDP2 / DDP / plain) -> optimizer, scheduler, EMA ->
for each checkpoint window: plan data, build loader, train_one_checkpoint, save checkpoint, validate, sync.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vla_foundry import storage
from vla_foundry.checkpoint import (
    CheckpointError,
    CheckpointRef,
    CheckpointSaver,
    checkpoint_dir,
    export_run_weights,
    latest_checkpoint,
    load_model_checkpoint,
    load_training_state,
    prune_checkpoints,
    remove_incomplete_checkpoints,
    resolve_checkpoint,
    resolve_resume_checkpoint,
    verify_checkpoint,
)
from vla_foundry.data.dataloader import BadDataError
from vla_foundry.data.manifest import ManifestError
from vla_foundry.data.planner import DataExhaustedError
from vla_foundry.data.robotics.stats import StatsError
from vla_foundry.disk_space import DiskFullError, disk_full_message, find_disk_full
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
from vla_foundry.params.train_experiment_params import TrainExperimentParams
from vla_foundry.remote_sync import RemoteSyncError
from vla_foundry.run_lock import RunLockError, lock_run_dir, release_run_locks
from vla_foundry.storage import StorageError
from vla_foundry.train import NonFiniteLossError, TrainState, evaluate, train_one_checkpoint

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
    NonFiniteLossError,
    RunLockError,
    DiskFullError,
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
    """Copy checkpoint `ref` (its whole directory, checked against its index) and the run's small files from s3
    into the local run dir. The first process of every node downloads (nodes need not share a file system)."""
    local = CheckpointRef(run_dir, ref.number, checkpoint_dir(run_dir, ref.number))
    if ctx.local_rank == 0:
        for name in RUN_DIR_FILES:
            url = storage.join(ref.run_dir, name)
            if storage.exists(url):
                storage.download_file(url, os.path.join(run_dir, name))
        if ref.sharded:
            for url in storage.list_files(ref.path):
                storage.download_file(url, os.path.join(local.path, url[len(ref.path) + 1 :]))
            verify_checkpoint(local)
    barrier()
    return local if ref.sharded else ref


def resolve_resume(params: TrainExperimentParams, ctx: DistributedContext) -> tuple[CheckpointRef | None, str | None]:
    """(checkpoint to load, None), or (None, run dir to restart) when `--model.resume_from_checkpoint` names a
    local run dir that was stopped before its first checkpoint was complete: that run starts again from step 0,
    in its own dir. A full resume picks the newest checkpoint whose checksums match (rank 0 verifies)."""
    path = params.model.resume_from_checkpoint
    if not path:
        return None, None
    if params.model.resume_weights_only:
        return resolve_checkpoint(path), None
    if storage.is_hf(path):
        raise CheckpointError(
            f"model.resume_from_checkpoint={path}: a Hub run cannot be continued in place; load its weights with "
            "--model.resume_weights_only True, or pull it (python -m vla_foundry.hub pull ORG/NAME DIR) and resume DIR"
        )
    stripped = str(path).rstrip("/")
    if (
        not storage.is_s3(stripped)
        and os.path.isfile(os.path.join(stripped, "config.yaml"))
        and latest_checkpoint(stripped, warn=lambda m: None) is None
    ):
        log(ctx, f"{stripped} holds no complete checkpoint (stopped before its first save finished): starting it over")
        return None, stripped
    ref = resolve_resume_checkpoint(path, ctx, warn=lambda m: log(ctx, m))
    if not ref.sharded:
        raise CheckpointError(
            f"{ref.path} holds weights only (a consolidated file of an older run, or an export): resume its weights "
            "with --model.resume_weights_only True, or give a run dir / checkpoints/checkpoint_<n> directory"
        )
    return ref, None


def derive_data_values(params: TrainExperimentParams) -> TrainExperimentParams:
    """The resolve step (`vla_foundry.params.resolve`): new params with data-derived values and shared attributes."""
    from vla_foundry.params.resolve import resolve_params

    return resolve_params(params)


def batch_summary(params: TrainExperimentParams) -> str:
    """The derived batch and budget values, printed at the start of a run."""
    hp = params.hparams
    return (
        f"global batch {hp.global_batch_size} = per-GPU {hp.per_gpu_batch_size} x world size "
        f"{params.distributed.world_size} x accumulation {hp.accumulation_steps}; {params.total_steps} optimizer "
        f"steps, {params.total_train_samples} samples in {params.num_checkpoints} checkpoint windows of "
        f"{params.samples_per_checkpoint}"
    )


def write_run_files(params: TrainExperimentParams, run_dir: str) -> None:
    """config.yaml, config_model.yaml and, for robotics, the processor / normaliser / stats and the first dataset's
    preprocessing files (rank 0)."""
    os.makedirs(run_dir, exist_ok=True)
    save_params(params, os.path.join(run_dir, "config.yaml"))
    save_params(params.model, os.path.join(run_dir, "config_model.yaml"))
    if params.data.type != "robotics":
        return
    from vla_foundry.data.robotics.processor import RoboticsProcessor
    from vla_foundry.data.streaming.registry import layout_dirs

    RoboticsProcessor.from_data_params(params.data).save(run_dir)
    first_dataset = layout_dirs(params.data)[0]
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
        # Page-locked batches: the batch handler's non_blocking copy to the GPU is then truly asynchronous.
        pin_memory=ctx.device.type == "cuda",
    )


def lr_multipliers(model: Any) -> dict[str, float]:
    """Per-prefix learning-rate factors a model declares (`lr_multipliers()`, e.g. a VLA backbone trained slower)."""
    declared = getattr(model, "lr_multipliers", None)
    return dict(declared()) if callable(declared) else {}


@dataclass
class RunProgress:
    """What a run has reached, for the line printed when a signal stops it."""

    run_dir: str | None = None
    # The run's live TrainState (its step advances as training goes).
    state: TrainState | None = None
    # None: no --remote_sync; else the remote URL and, once the exit flush ran, the files it still misses.
    remote_url: str | None = None
    remote_missing: list[str] | None = None

    def stop_line(self, signum: int) -> str:
        import signal

        name = signal.Signals(signum).name
        if self.run_dir is None:
            return f"stopped by {name} before the run dir was set up; nothing was saved"
        latest = latest_checkpoint(self.run_dir, warn=lambda m: None)
        if latest is None:
            saved = f"no checkpoint of {self.run_dir} is complete yet (the same command starts the run over)"
        else:
            saved = (
                f"checkpoint {latest.number} is complete ({latest.path}; resume with --model.resume_from_checkpoint "
                f"{self.run_dir})"
            )
        if self.remote_url is None:
            remote = "no remote copy (--remote_sync not set)"
        elif self.remote_missing is None:
            remote = f"remote copy {self.remote_url} not confirmed (the signal came during its final check)"
        elif self.remote_missing:
            remote = f"remote copy {self.remote_url} incomplete: {len(self.remote_missing)} files not uploaded"
        else:
            remote = f"remote copy {self.remote_url} complete"
        step = self.state.step if self.state is not None else 0
        return f"stopped by {name} at step {step}: {saved}; {remote}"


def run_training(params: TrainExperimentParams) -> RunResult:
    ctx = init_distributed(params.distributed)
    ray_use = ""
    progress = RunProgress()
    try:
        with sigterm_as_exit(), disk_full_as_one_line():
            ray_use = start_stream_ray(params, ctx)
            try:
                result = _run(params, ctx, progress)
            except SystemExit as e:
                if isinstance(e.code, int) and e.code > 128:
                    # Stopped by a signal (SIGTERM: a scheduler, a spot reclaim): the pending checkpoint and upload
                    # were flushed on the way out; say where the run stands in one line.
                    log(ctx, progress.stop_line(e.code - 128))
                raise
            if ray_use == "joined" or (ray_use == "started" and ctx.world_size > 1):
                import ray

                # Ranks that joined the Ray rank 0 started leave it before rank 0 shuts it down.
                if ray_use == "joined":
                    ray.shutdown()
                barrier()
            return result
    finally:
        release_run_locks()
        if ray_use == "started":
            import ray

            ray.shutdown()
        destroy_distributed()


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM (a scheduler stopping the job, a spot reclaim) raises SystemExit(143) in the main thread, so the
    pending checkpoint and the remote upload are flushed by the normal exit path before the process ends."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def disk_full_as_one_line() -> Iterator[None]:
    """A write that fails for lack of space outside a checkpoint save (metrics, run files, the final export) ends as
    one `DiskFullError` line naming the file, instead of the traceback of whichever writer hit it first."""
    try:
        yield
    except BaseException as e:
        full = None if isinstance(e, DiskFullError) else find_disk_full(e)
        if full is None:
            raise
        path = str(full.filename) if full.filename else None
        where = os.path.dirname(path) if path else "the run dir"
        hint = (
            "free space or move the run dir to a larger disk, then resume from its latest complete checkpoint with "
            f"--model.resume_from_checkpoint {where}"
        )
        raise DiskFullError(
            disk_full_message(where, os.path.basename(path) if path else "the run's files", None, hint)
        ) from e


def start_stream_ray(params: TrainExperimentParams, ctx: DistributedContext) -> str:
    """When LeRobot roots are streamed: join data.ray_address or an initialised Ray (Ray Train workers), or start a
    local Ray that rank 0 starts and the other ranks join (one node; several nodes need data.ray_address). Returns
    "started" (this process started Ray), "joined" (it joined the Ray rank 0 started) or "" (nothing to undo)."""
    from vla_foundry.data.streaming.registry import needs_ray

    if not needs_ray(params.data):
        return ""
    from vla_foundry.data.streaming.ray_stream import ensure_ray

    if params.data.ray_address or ctx.world_size == 1:
        return "started" if ensure_ray(params.data) else ""
    started, info = False, None
    if ctx.rank == 0:
        started = ensure_ray(params.data)
        import ray

        # A local Ray turns token authentication on (RAY_AUTH_MODE; the token is in ~/.ray): joining ranks need the
        # mode in their environment before Ray is imported.
        info = (ray.get_runtime_context().gcs_address, os.environ.get("RAY_AUTH_MODE"), started)
    address, auth_mode, rank0_started = broadcast_object(info)
    if ctx.rank == 0:
        return "started" if started else ""
    if not rank0_started:
        return ""  # every rank already runs inside the same Ray (Ray Train workers)
    if auth_mode:
        os.environ["RAY_AUTH_MODE"] = auth_mode
    ensure_ray(params.data, address=address)
    return "joined"


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
        elif f.name == "backbone_run" and child:
            try:
                present = storage.exists(storage.join(child, "config_model.yaml"))
            except OSError as e:  # an unreachable or refused hf:// / s3:// location
                raise CheckpointError(f"{where}.backbone_run={child}: {e}") from None
            if not present:
                raise CheckpointError(f"{where}.backbone_run={child}: no config_model.yaml there (not a run directory)")


def _run(params: TrainExperimentParams, ctx: DistributedContext, progress: RunProgress | None = None) -> RunResult:
    from vla_foundry.data.planner import DataPlanState, plan_checkpoint
    from vla_foundry.models.ema import EMA
    from vla_foundry.models.registry import create_model, get_batch_handler
    from vla_foundry.optim import build_optimizer, build_scheduler
    from vla_foundry.remote_sync import RemoteSync, run_remote_url

    hp = params.hparams
    if hp.torch_threads is not None:
        # Tiny CPU models lose more to thread synchronisation (and, on a busy machine, to core contention) than
        # they gain from parallel kernels.
        torch.set_num_threads(hp.torch_threads)
    # Fail fast: the resume path must exist (and its checkpoint be whole) before anything heavy is built.
    resume, restart_dir = resolve_resume(params, ctx)
    full_resume = resume is not None and not params.model.resume_weights_only
    check_nested_weight_paths(params.model)
    params = derive_data_values(params)
    hp = params.hparams
    if params.samples_per_checkpoint is None:
        raise ConfigError("set a training budget: total_train_samples or num_epochs")
    run_dir = restart_dir or resolve_run_dir(params, resume, ctx)
    progress = progress if progress is not None else RunProgress()
    progress.run_dir = run_dir
    # One job per run dir (rank 0 holds the lock until run_training returns); a second job stops here.
    lock_run_dir(run_dir, ctx, warn=lambda message: log(ctx, message))
    if not full_resume and latest_checkpoint(run_dir, warn=lambda m: None) is not None:
        raise ConfigError(
            f"run dir {run_dir} already holds checkpoints: continue it with --model.resume_from_checkpoint "
            f"{run_dir}, or start a new run with another --name (or --save_path)"
        )
    if ctx.is_main:
        # Interrupted saves (a directory without its index) and temporary files are removed before training.
        remove_incomplete_checkpoints(run_dir, warn=lambda m: log(ctx, m))
    barrier()
    if full_resume and storage.is_s3(resume.run_dir):
        resume = fetch_remote_checkpoint(resume, run_dir, ctx)
    if ctx.is_main:
        write_run_files(params, run_dir)
    barrier()
    log(ctx, f"run dir: {run_dir} | world size {ctx.world_size} ({ctx.wrapping}) on {ctx.device.type}")
    log(ctx, batch_summary(params))

    # Identical initial weights on every rank (FSDP2 shards whatever each rank built).
    seed_everything(hp.seed)
    model = create_model(params.model, load_pretrained=not full_resume)
    if resume is not None and params.model.resume_weights_only:
        # Fine-tuning: weights only, loaded into the plain model before wrapping.
        load_model_checkpoint(model, resume.path)
        log(ctx, f"loaded weights from {resume.path}")
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
        truncate_metrics(os.path.join(run_dir, "metrics.jsonl"), state.step, warn=lambda m: log(ctx, f"warning: {m}"))
    if full_resume:
        log(ctx, f"resumed from {resume.path}: step {state.step}, {state.samples_seen} samples seen")
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
    sync = None
    if params.remote_sync and ctx.is_main:
        sync = RemoteSync(
            run_dir, run_remote_url(params.remote_sync, run_dir), timeout_s=params.remote_sync_timeout_s,
            log=lambda m: log(ctx, m),
        )  # fmt: skip
        progress.remote_url = sync.remote_url

    def checkpoint_complete(n: int) -> None:
        # Rank 0, in the background once checkpoint n's index is written: prune, then upload.
        removed = prune_checkpoints(run_dir, params.max_checkpoint_limit)
        if sync is not None:
            sync.start(delete=[f"checkpoints/checkpoint_{k}" for k in removed])

    saver = CheckpointSaver(run_dir, ctx, async_save=params.async_checkpoint, on_complete=checkpoint_complete)
    sim_eval = None
    if params.eval.sim_env is not None and ctx.is_main:
        from vla_foundry.eval.during_training import SimEvalDuringTraining

        sim_eval = SimEvalDuringTraining(params.eval, run_dir, "cuda" if ctx.device.type == "cuda" else "cpu")
    result = RunResult(run_dir=run_dir, state=state)
    progress.state = state
    previous = DataPlanState.from_dict(data_state) if data_state else None

    finished = False
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
            blocked = saver.save(state.windows_done, model, optimizer, scheduler, ema, trainer_state, scaler=scaler)
            logger.log(state.step, {"checkpoint": state.windows_done, "checkpoint_blocked_s": round(blocked, 4)})

            if _should_validate(params, state.windows_done):
                val_loss = validate(params, model, batch_handler, ctx, state.windows_done, fsdp_mp)
                result.val_losses[state.windows_done] = val_loss
                logger.log(state.step, {"val_loss": val_loss})
            if sim_eval is not None and sim_eval.due(state.windows_done):
                # Rank 0, in a separate process on the checkpoint just saved: it must be complete (indexed) first.
                saver.wait()
                sim_eval.after_checkpoint(state.windows_done, state.step, logger)
        saver.wait()
        finished = True
    finally:
        try:
            # A pending save is flushed on every exit path, so checkpoint k stays whole when window k+1 raises.
            saver.close()
        finally:
            logger.close()
            if sync is not None and not finished:
                progress.remote_missing = sync.abandon()
    barrier()
    if ctx.is_main:
        for path in export_run_weights(run_dir, with_ema=ema is not None, warn=lambda m: log(ctx, m)):
            log(ctx, f"exported {path}")
    if sync is not None:
        # Only rank 0 uploads; the other ranks are done. An incomplete remote copy fails the run here.
        sync.finish()
        progress.remote_missing = []
        log(ctx, f"remote copy complete: {sync.remote_url}")
    return result


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
