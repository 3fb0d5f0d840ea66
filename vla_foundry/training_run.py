"""A whole training run behind `vla_foundry/main.py`: `TrainingRun`, read top to bottom.

init distributed -> `prepare` (check the resume path and checkpoint backend, derive data-side values and shared
attributes, run dir) -> `build` (model, weights, wrap with FSDP2 / DDP / plain, optimizer, scheduler, EMA, the
`Checkpointer`, the `Trainer`; restore a resumed state) -> `fit` (per checkpoint interval: plan data, build the
loader, `Trainer.train_interval`, save a checkpoint, validate, sync) -> `finish` (export weights, final upload).
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
    Checkpointer,
    CheckpointError,
    CheckpointRef,
    checkpoint_backend,
    export_run_weights,
    fetch_checkpoint,
    latest_checkpoint,
    load_model_checkpoint,
    remove_incomplete_checkpoints,
    resolve_checkpoint,
    resolve_resume_checkpoint,
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
from vla_foundry.train import NonFiniteLossError, Trainer, TrainState

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
        f"steps, {params.total_train_samples} samples in {params.num_checkpoints} checkpoint intervals of "
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
    """The run on an initialised process group (`run_training` sets up and tears down around it)."""
    return TrainingRun(params, ctx, progress).run()


class TrainingRun:
    """One training job: its resume point, run dir, `Trainer` and `Checkpointer` as attributes, each phase a
    short method. Collective: every rank builds one and calls `run()`."""

    def __init__(self, params: TrainExperimentParams, ctx: DistributedContext, progress: RunProgress | None = None):
        self.params = params
        self.ctx = ctx
        self.progress = progress if progress is not None else RunProgress()
        self.resume: CheckpointRef | None = None
        self.full_resume = False
        self.run_dir = ""
        self.backend: type[Checkpointer]
        self.trainer: Trainer
        self.checkpointer: Checkpointer
        self.sync: Any = None
        self.sim_eval: Any = None
        self.result: RunResult

    def log(self, message: str) -> None:
        log(self.ctx, message)

    def run(self) -> RunResult:
        self.prepare()
        previous = self.build()
        self.fit(previous)
        self.finish()
        return self.result

    # ------------------------------------------------------------------------------------------- prepare

    def prepare(self) -> None:
        """Fail fast (checkpoint backend, resume path, nested weights, budget) before anything heavy is built; then
        open the run dir."""
        params, ctx = self.params, self.ctx
        if params.hparams.torch_threads is not None:
            # Tiny CPU models lose more to thread synchronisation (and, on a busy machine, to core contention) than
            # they gain from parallel kernels.
            torch.set_num_threads(params.hparams.torch_threads)
        self.backend = checkpoint_backend(params.checkpoint_backend)
        self.resume, restart_dir = resolve_resume(params, ctx)
        self.full_resume = self.resume is not None and not params.model.resume_weights_only
        check_nested_weight_paths(params.model)
        self.params = params = derive_data_values(params)
        if params.samples_per_checkpoint is None:
            raise ConfigError("set a training budget: total_train_samples or num_epochs")
        self.open_run_dir(restart_dir or resolve_run_dir(params, self.resume, ctx))

    def open_run_dir(self, run_dir: str) -> None:
        """Lock the run dir, refuse to overwrite a run's checkpoints, remove leftovers of interrupted saves, fetch a
        remote resume checkpoint, write the run files."""
        params, ctx = self.params, self.ctx
        self.run_dir = run_dir
        self.progress.run_dir = run_dir
        # One job per run dir (rank 0 holds the lock until run_training returns); a second job stops here.
        lock_run_dir(run_dir, ctx, warn=self.log)
        if not self.full_resume and latest_checkpoint(run_dir, warn=lambda m: None) is not None:
            raise ConfigError(
                f"run dir {run_dir} already holds checkpoints: continue it with --model.resume_from_checkpoint "
                f"{run_dir}, or start a new run with another --name (or --save_path)"
            )
        if ctx.is_main:
            # Interrupted saves (a directory without its index) and temporary files are removed before training.
            remove_incomplete_checkpoints(run_dir, warn=self.log)
        barrier()
        if self.full_resume and storage.is_s3(self.resume.run_dir):
            self.resume = fetch_checkpoint(self.resume, run_dir, ctx, RUN_DIR_FILES)
        if ctx.is_main:
            write_run_files(params, run_dir)
        barrier()
        self.log(f"run dir: {run_dir} | world size {ctx.world_size} ({ctx.wrapping}) on {ctx.device.type}")
        self.log(batch_summary(params))

    # --------------------------------------------------------------------------------------------- build

    def build(self) -> Any:
        """Model, optimizer, scheduler, EMA, `Checkpointer` and `Trainer`; a resume restores their state. Returns
        the data plan state the next checkpoint interval continues from (None from the start)."""
        from vla_foundry.data.planner import DataPlanState
        from vla_foundry.models.ema import EMA
        from vla_foundry.models.registry import get_batch_handler
        from vla_foundry.optim import build_optimizer, build_scheduler

        params, ctx, hp = self.params, self.ctx, self.params.hparams
        model, flops_fn, num_params = self._build_model()
        fsdp_mp = ctx.wrapping == "fsdp" and mixed_precision_dtypes(hp, ctx.device)[0] is not None
        optimizer = build_optimizer(unwrap_model(model), hp, lr_multipliers(unwrap_model(model)))
        scheduler = build_scheduler(optimizer, hp, params.total_steps)
        ema = EMA(unwrap_model(model), params.ema) if params.ema.enabled else None
        scaler = torch.amp.GradScaler(ctx.device.type) if hp.precision == "fp16" else None
        self.checkpointer = self.backend(
            self.run_dir, ctx, model, optimizer, scheduler, ema, scaler,
            async_save=params.async_checkpoint, keep_last=params.max_checkpoint_limit,
            on_complete=self._checkpoint_complete, warn=self.log,
        )  # fmt: skip
        saved = self._restore()
        state = TrainState.from_dict(saved) if saved else TrainState()
        self.log(f"model {params.model.type}: {num_params / 1e6:.2f}M parameters; {params.total_steps} steps")
        logger = self._build_logger(state.step, saved.get("wandb_run_id"))
        self.trainer = Trainer(
            params, ctx, model, get_batch_handler(params.model), optimizer, scheduler, logger,
            ema=ema, scaler=scaler, state=state, flops_per_token=flops_fn, fsdp_mixed_precision=fsdp_mp,
        )  # fmt: skip
        self._build_sync_and_sim_eval()
        self.result = RunResult(run_dir=self.run_dir, state=state)
        self.progress.state = state
        data_state = saved.get("data_plan_state")
        return DataPlanState.from_dict(data_state) if data_state else None

    def _build_model(self) -> tuple[Any, Any, int]:
        """(wrapped model, its FLOPs per token function or None, parameter count); identical initial weights on
        every rank (FSDP2 shards whatever each rank built)."""
        from vla_foundry.models.registry import create_model

        params, ctx = self.params, self.ctx
        seed_everything(params.hparams.seed)
        model = create_model(params.model, load_pretrained=not self.full_resume)
        if self.resume is not None and params.model.resume_weights_only:
            # Fine-tuning: weights only, loaded into the plain model before wrapping.
            load_model_checkpoint(model, self.resume.path)
            self.log(f"loaded weights from {self.resume.path}")
        plain = model
        flops_fn = (
            (lambda seq_len: model_flops_per_token(plain, seq_len)) if hasattr(model, "flops_per_token") else None
        )
        num_params = sum(p.numel() for p in model.parameters())
        return parallelize_model(model, ctx, params.distributed, params.hparams), flops_fn, num_params

    def _restore(self) -> dict[str, Any]:
        """The resumed trainer state ({} for a new run), after the checkpointer restored every stateful object;
        metrics past the resumed step are dropped and each rank's own randomness is seeded or restored."""
        ctx = self.ctx
        saved = self.checkpointer.load(self.resume) if self.full_resume else {}
        step = int(saved.get("step", 0))
        if ctx.is_main:
            # Records past the resumed step (or of an attempt that died before its first checkpoint) are dropped.
            truncate_metrics(
                os.path.join(self.run_dir, "metrics.jsonl"), step, warn=lambda m: self.log(f"warning: {m}")
            )
        if self.full_resume:
            self.log(f"resumed from {self.resume.path}: step {step}, {saved.get('samples_seen')} samples seen")
        else:
            # Per-rank randomness (dropout, noise) after the shared initialisation; a resume restored it above.
            seed_everything(self.params.hparams.seed + 1 + ctx.rank)
        return saved

    def _build_logger(self, start_step: int, wandb_run_id: str | None) -> MetricsLogger:
        params = self.params
        return MetricsLogger(
            self.run_dir,
            enabled=self.ctx.is_main,
            total_steps=params.total_steps,
            start_step=start_step,
            use_wandb=params.wandb,
            wandb_project=params.wandb_project,
            wandb_entity=params.wandb_entity,
            wandb_run_id=wandb_run_id,
            run_name=os.path.basename(self.run_dir),
            config=params_to_dict(params),
        )

    def _build_sync_and_sim_eval(self) -> None:
        """Rank 0's background upload (`--remote_sync`) and closed-loop evaluation in simulation (`eval.sim_env`)."""
        from vla_foundry.remote_sync import RemoteSync, run_remote_url

        params, ctx = self.params, self.ctx
        if params.remote_sync and ctx.is_main:
            url = run_remote_url(params.remote_sync, self.run_dir)
            self.sync = RemoteSync(self.run_dir, url, timeout_s=params.remote_sync_timeout_s, log=self.log)
            self.progress.remote_url = self.sync.remote_url
        if params.eval.sim_env is not None and ctx.is_main:
            from vla_foundry.eval.during_training import SimEvalDuringTraining

            device = "cuda" if ctx.device.type == "cuda" else "cpu"
            self.sim_eval = SimEvalDuringTraining(params.eval, self.run_dir, device)

    def _checkpoint_complete(self, n: int, removed: list[int]) -> None:
        # Rank 0, in the background once checkpoint n is indexed and older ones pruned: upload.
        if self.sync is not None:
            self.sync.start(delete=[f"checkpoints/checkpoint_{k}" for k in removed])

    # ----------------------------------------------------------------------------------------------- fit

    def fit(self, previous: Any) -> None:
        """Every remaining checkpoint interval; a pending save is flushed on every exit path, so checkpoint k stays
        whole when interval k+1 raises."""
        finished = False
        try:
            for interval in range(self.trainer.state.intervals_done, self.params.num_checkpoints):
                previous = self.train_interval(interval, previous)
            self.checkpointer.wait()
            finished = True
        finally:
            try:
                self.checkpointer.close()
            finally:
                self.trainer.logger.close()
                if self.sync is not None and not finished:
                    self.progress.remote_missing = self.sync.abandon()
        barrier()

    def train_interval(self, interval: int, previous: Any) -> Any:
        """Plan and load checkpoint interval `interval`'s data, train on it, save checkpoint `interval + 1`,
        validate / evaluate; returns the data plan state the next interval continues from."""
        from vla_foundry.data.planner import plan_checkpoint

        params, state = self.params, self.trainer.state
        plan = plan_checkpoint(params.data, interval, params.samples_per_checkpoint, previous)
        self.log(shorten_lines(str(plan)))
        loader = build_batches(params, plan, self.ctx)
        self.result.losses.extend(self.trainer.train_interval(iter(loader)).losses)
        report_data_quality(loader.stats, interval, state.step, self.trainer.logger, self.ctx)
        state.intervals_done = interval + 1
        self.save(state.intervals_done, plan)
        self.after_checkpoint(state.intervals_done)
        return plan.state

    def save(self, n: int, plan: Any) -> None:
        trainer = self.trainer
        trainer_state = {
            **trainer.state.to_dict(),
            "data_plan_state": plan.state.to_dict(),
            "wandb_run_id": trainer.logger.wandb_run_id,
            "saved_at": time.time(),
        }
        blocked = self.checkpointer.save(n, trainer_state)
        trainer.logger.log(trainer.state.step, {"checkpoint": n, "checkpoint_blocked_s": round(blocked, 4)})

    def after_checkpoint(self, n: int) -> None:
        """Validation loss and closed-loop evaluation due after checkpoint n."""
        if _should_validate(self.params, n):
            val_loss = self.validate(n)
            self.result.val_losses[n] = val_loss
            self.trainer.logger.log(self.trainer.state.step, {"val_loss": val_loss})
        if self.sim_eval is not None and self.sim_eval.due(n):
            # Rank 0, in a separate process on the checkpoint just saved: it must be complete (indexed) first.
            self.checkpointer.wait()
            self.sim_eval.after_checkpoint(n, self.trainer.state.step, self.trainer.logger)

    def validate(self, n: int) -> float:
        """Loss on `total_val_samples` of the validation datasets (the same samples at every validation)."""
        from vla_foundry.data.planner import plan_checkpoint

        params, ctx = self.params, self.ctx
        per_batch = params.hparams.per_gpu_batch_size * ctx.world_size
        num_batches = max(1, params.total_val_samples // per_batch)
        plan = plan_checkpoint(params.data, 0, num_batches * per_batch, split="val")
        loss = self.trainer.evaluate(iter(build_batches(params, plan, ctx, training=False)), num_batches)
        self.log(f"validation after checkpoint {n}: loss {loss:.4f}")
        return loss

    # -------------------------------------------------------------------------------------------- finish

    def finish(self) -> None:
        """Consolidated weights of the last checkpoint in the run dir; the final upload (an incomplete remote copy
        fails the run here)."""
        if self.ctx.is_main:
            with_ema = self.trainer.ema is not None
            for path in export_run_weights(self.run_dir, with_ema=with_ema, warn=self.log):
                self.log(f"exported {path}")
        if self.sync is not None:
            # Only rank 0 uploads; the other ranks are done.
            self.sync.finish()
            self.progress.remote_missing = []
            self.log(f"remote copy complete: {self.sync.remote_url}")


def shorten_lines(text: str, width: int = 240) -> str:
    """Long shard lists (many small shards, many epochs) are cut for the console; the full plan is in the checkpoint."""
    return "\n".join(line if len(line) <= width else line[: width - 20] + " ... (cut)" for line in text.splitlines())


def report_data_quality(stats: Any, interval: int, step: int, logger: MetricsLogger, ctx: DistributedContext) -> None:
    """Skipped samples and shard errors of the checkpoint interval, summed over ranks; logged and printed when
    non-zero."""
    from vla_foundry.distributed import all_reduce_sum

    bad, shard_errors, repeats, samples = all_reduce_sum(
        [stats.bad_samples, stats.shard_errors, stats.repeated_passes, stats.samples], ctx.device
    )
    logger.log(
        step,
        {
            "checkpoint_interval": interval,
            "skipped_samples": int(bad),
            "shard_errors": int(shard_errors),
            "repeated_passes": int(repeats),
            "interval_samples_read": int(samples),
        },
    )
    if bad and ctx.is_main:
        listed = "\n  ".join(stats.bad[:10])
        log(
            ctx,
            f"checkpoint interval {interval}: {int(bad)} samples skipped ({int(shard_errors)} shard errors); rank 0:"
            f"\n  {listed}",
        )


def _should_validate(params: TrainExperimentParams, intervals_done: int) -> bool:
    return (
        params.val_every_n_checkpoints > 0
        and params.total_val_samples > 0
        and bool(params.data.val_dataset_manifest)
        and intervals_done % params.val_every_n_checkpoints == 0
    )
