"""The root config of a training run, and the derive phase that fills its derived values (see docs/training.md,
"The config pipeline")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from vla_foundry.params.base_params import ConfigError, derived_field
from vla_foundry.params.data_params import DataParams
from vla_foundry.params.distributed_params import DistributedParams
from vla_foundry.params.ema_params import EMAParams
from vla_foundry.params.eval_params import EvalParams
from vla_foundry.params.hyper_params import HyperParams
from vla_foundry.params.model_params import ModelParams, PolicyParams


@dataclass(frozen=True)
class TrainExperimentParams:
    # The model: `--model.type NAME` picks the kind, its fields follow.
    model: ModelParams
    # The data: `--data.type NAME` picks the kind, its fields follow.
    data: DataParams
    # Optimisation hyperparameters.
    hparams: HyperParams = field(default_factory=HyperParams)
    # Multi-process settings (FSDP2 / DDP).
    distributed: DistributedParams = field(default_factory=DistributedParams)
    # Exponential moving average of the weights.
    ema: EMAParams = field(default_factory=EMAParams)
    # Closed-loop evaluation in simulation after checkpoints (acting policies).
    eval: EvalParams = field(default_factory=EvalParams)

    # Modules imported before the rest of the config is parsed: their decorators register model / data types
    # (`--plugins my_pkg.toy_model,other.module`); entry points of the `vla_foundry.plugins` group load too.
    plugins: list[str] = field(default_factory=list)
    # Run directory is <save_path>/<name>; None names the run from the model type and a timestamp.
    name: str | None = None
    # Folder the run directory is created in (local path).
    save_path: str = "experiments"
    # s3://bucket/prefix the run directory is uploaded to after every checkpoint.
    remote_sync: str | None = None
    # Seconds each background upload pass (one per checkpoint, and the final one) may take before it gives up and
    # reports what is missing; an unreachable remote never holds up training or the end of the run for longer.
    remote_sync_timeout_s: float = 300.0
    # Write checkpoints in the background (DCP async save): training waits only while the state is copied.
    async_checkpoint: bool = True
    # Checkpoint backend that saves and resumes the training state: `dcp` (torch.distributed.checkpoint, sharded)
    # or one a plugin registers (`@register_checkpoint_backend`, docs/extending.md).
    checkpoint_backend: str = "dcp"
    # Training budget: total_train_samples, or num_epochs x the datasets' size.
    total_train_samples: int | None = None
    # Budget as passes over the datasets (their manifests' sample counts); or total_train_samples.
    num_epochs: int | None = None
    # The budget is split into this many checkpoint intervals, each ending with a checkpoint.
    num_checkpoints: int = 1
    # Keep at most this many checkpoints (local and remote); None keeps all.
    max_checkpoint_limit: int | None = None
    # Write a metrics line every n optimizer steps.
    log_every_n_steps: int = 10
    # Also log metrics to Weights & Biases.
    wandb: bool = False
    # Weights & Biases project.
    wandb_project: str = "vla_foundry"
    # Weights & Biases entity (team or user); None uses the login's default.
    wandb_entity: str | None = None
    # Validate after every n-th checkpoint (0 never) on total_val_samples samples of data.val_dataset_manifest.
    val_every_n_checkpoints: int = 1
    # Samples of validation data per validation (0 disables validation).
    total_val_samples: int = 0
    # Print the fully resolved config and exit; with a path, also write <path>/resolved_config.yaml.
    resolve_configs: bool = False
    # Folder to write resolved_config.yaml into (implies resolve_configs).
    resolve_configs_path: str | None = None

    samples_per_checkpoint: int | None = derived_field(None, "total_train_samples / num_checkpoints")
    total_steps: int | None = derived_field(None, "total_train_samples / global_batch_size")

    @property
    def global_batch_size(self) -> int:
        """Samples per optimizer step (`derive_params` fills it when the job leaves it unset)."""
        return self.hparams.global_batch_size or self.hparams.per_gpu_batch_size * self.distributed.world_size

    @property
    def steps_per_checkpoint(self) -> int:
        assert self.samples_per_checkpoint is not None, "call derive_params first"
        return self.samples_per_checkpoint // self.global_batch_size

    def validate(self) -> None:
        if self.num_checkpoints < 1:
            raise ConfigError(f"num_checkpoints={self.num_checkpoints} must be >= 1")
        if self.total_train_samples is not None and self.total_train_samples < 1:
            raise ConfigError(f"total_train_samples={self.total_train_samples} must be >= 1")
        if self.max_checkpoint_limit is not None and self.max_checkpoint_limit < 1:
            raise ConfigError(f"max_checkpoint_limit={self.max_checkpoint_limit} must be >= 1 (or unset)")
        if self.remote_sync is not None and not self.remote_sync.startswith("s3://"):
            raise ConfigError(f"remote_sync={self.remote_sync!r} must be an s3:// URL")
        if self.remote_sync_timeout_s <= 0:
            raise ConfigError(f"remote_sync_timeout_s={self.remote_sync_timeout_s} must be > 0 (seconds)")
        if self.log_every_n_steps < 1:
            raise ConfigError(f"log_every_n_steps={self.log_every_n_steps} must be >= 1")
        if self.eval.sim_env is not None and not isinstance(self.model, PolicyParams):
            policies = [
                n for n in ModelParams.registered_names() if issubclass(ModelParams.get_choice_class(n), PolicyParams)
            ]
            raise ConfigError(
                f"eval.sim_env needs an acting policy model; model.type={self.model.type!r} is not one "
                f"(policies: {', '.join(policies)})"
            )


def shared_value(owner_name: str, value: Any, current: Any, target_name: str) -> Any:
    """The value a non-owner field takes from its owner; a different user-given value there is a contradiction."""
    if current is not None and value is not None and current != value:
        raise ConfigError(
            f"{target_name}={current!r} contradicts {owner_name}={value!r}; {target_name} is taken from "
            f"{owner_name}, leave it unset"
        )
    return current if value is None else value


def validate_params(params: Any) -> None:
    """Run `validate()` of every params dataclass in the tree, innermost first."""
    for f in fields(params):
        child = getattr(params, f.name)
        if is_dataclass(child):
            validate_params(child)
    if hasattr(params, "validate"):
        params.validate()


def derive_params(
    cfg: TrainExperimentParams,
    dataset_num_samples: int | None = None,
    resolved: bool = False,
    environ: Mapping[str, str] | None = None,
) -> TrainExperimentParams:
    """New params with shared attributes filled from their owners and derived values computed (`cfg` is unchanged).

    Owners: the environment -> distributed rank / world size -> hparams.world_size; hparams.seed -> data.seed;
    global_batch_size, per_gpu_batch_size and world size -> accumulation_steps; the model type's declared values ->
    data (`ModelParams.shared_to_data`); data -> the model type's declared fields (`ModelParams.SHARED_FROM_DATA`);
    the budget -> samples_per_checkpoint and total_steps. `dataset_num_samples` (the datasets' total samples, read
    from manifests) is needed only when the budget is given as num_epochs. `resolved` says the resolve step has read
    the files the model's shared values may depend on (a policy's backbone run). Reads no file and no network.
    """
    validate_params(cfg)
    distributed = cfg.distributed.from_environment(environ)
    world = distributed.world_size
    hp = cfg.hparams
    data = replace(cfg.data, seed=shared_value("hparams.seed", hp.seed, cfg.data.seed, "data.seed"))
    hp = replace(hp, **_batch_values(hp, world, announce=distributed.rank == 0))
    model, data = share_model_and_data(cfg.model, data, resolved)

    # Budget: samples per checkpoint interval and total optimizer steps.
    total = cfg.total_train_samples
    if cfg.num_epochs is not None and dataset_num_samples is not None:
        total = shared_value(
            f"num_epochs x dataset samples = {cfg.num_epochs} x {dataset_num_samples}",
            cfg.num_epochs * dataset_num_samples,
            total,
            "total_train_samples",
        )
    elif cfg.num_epochs is not None and total is not None:
        raise ConfigError("give total_train_samples or num_epochs, not both")
    interval, steps = cfg.samples_per_checkpoint, cfg.total_steps
    if total is not None:
        if total % cfg.num_checkpoints != 0:
            raise ConfigError(
                f"total_train_samples={total} is not divisible into num_checkpoints={cfg.num_checkpoints} checkpoint "
                "intervals"
            )
        if (total // cfg.num_checkpoints) % hp.global_batch_size != 0:
            raise ConfigError(
                f"a checkpoint interval of {total // cfg.num_checkpoints} samples (total_train_samples / "
                f"num_checkpoints) is not a whole number of global batches of {hp.global_batch_size}"
            )
        interval = shared_value(
            "total_train_samples / num_checkpoints", total // cfg.num_checkpoints, interval, "samples_per_checkpoint"
        )
        steps = shared_value(
            "total_train_samples / global_batch_size", total // hp.global_batch_size, steps, "total_steps"
        )
    return replace(
        cfg,
        model=model,
        data=data,
        hparams=hp,
        distributed=distributed,
        total_train_samples=total,
        samples_per_checkpoint=interval,
        total_steps=steps,
    )


def _batch_values(hp: HyperParams, world: int, announce: bool = True) -> dict[str, int]:
    """global_batch_size, per_gpu_batch_size, world_size and accumulation_steps: the global batch is kept on any
    world size. Accumulation = global / (per_gpu x world); when even one micro-batch per process would exceed the
    global batch, the micro-batch is lowered to global / world instead, said in one line (by rank 0: `announce`)."""
    global_bs = hp.global_batch_size
    if global_bs is None:
        if world > 1:
            raise ConfigError(
                f"hparams.global_batch_size is unset and {world} processes run: state the global batch (samples per "
                f"optimizer step) in the job file, e.g. --hparams.global_batch_size "
                f"{hp.per_gpu_batch_size * world}, so it is the same on any number of GPUs"
            )
        global_bs = hp.per_gpu_batch_size
    per_gpu = hp.per_gpu_batch_size
    if global_bs < per_gpu * world and global_bs % world == 0:
        if announce:
            import sys

            # A plain line, not a UserWarning: Python would print the warning's source line with it.
            print(
                f"warning: hparams.per_gpu_batch_size={per_gpu} lowered to {global_bs // world} so that {world} "
                f"processes keep hparams.global_batch_size={global_bs} (no accumulation)",
                file=sys.stderr,
                flush=True,
            )
        per_gpu = global_bs // world
    per_step = per_gpu * world
    if global_bs % per_step != 0:
        fitting = [b for b in range(per_gpu, 0, -1) if global_bs % (b * world) == 0]
        hint = f"; e.g. --hparams.per_gpu_batch_size {fitting[0]}" if fitting else ""
        raise ConfigError(
            f"hparams.global_batch_size={global_bs} is not divisible by per_gpu_batch_size x world_size = "
            f"{per_gpu} x {world} = {per_step}{hint}"
        )
    return {
        "global_batch_size": global_bs,
        "per_gpu_batch_size": per_gpu,
        "world_size": shared_value("distributed.world_size", world, hp.world_size, "hparams.world_size"),
        "accumulation_steps": shared_value(
            "global_batch_size / (per_gpu_batch_size x world_size)",
            global_bs // per_step,
            hp.accumulation_steps,
            "hparams.accumulation_steps",
        ),
    }


def share_model_and_data(model: ModelParams, data: DataParams, resolved: bool) -> tuple[ModelParams, DataParams]:
    """Values the model type declares as its own go to the data params, and data-owned values to the model.

    A model type declares both on its params class (`shared_to_data`, `SHARED_FROM_DATA`); a field the other side
    lacks is skipped, so one model type can train on several data types.
    """
    data_fields = {f.name for f in fields(data)}
    data_changes = {
        name: shared_value(owner, value, getattr(data, name), f"data.{name}")
        for name, (owner, value) in model.shared_to_data(resolved).items()
        if name in data_fields
    }
    data = replace(data, **data_changes) if data_changes else data
    model_changes = {
        model_field: shared_value(
            f"data.{data_field}", getattr(data, data_field), getattr(model, model_field), f"model.{model_field}"
        )
        for model_field, data_field in model.SHARED_FROM_DATA.items()
        if data_field in data_fields
    }
    return (replace(model, **model_changes) if model_changes else model), data
