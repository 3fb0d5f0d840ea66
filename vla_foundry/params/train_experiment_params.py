"""The root config of a training run, its shared attributes and its derived values."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from vla_foundry.params.base_params import ConfigError, update_field
from vla_foundry.params.data_params import DataParams, ImageCaptionDataParams, RoboticsDataParams
from vla_foundry.params.distributed_params import DistributedParams
from vla_foundry.params.ema_params import EMAParams
from vla_foundry.params.eval_params import EvalParams
from vla_foundry.params.hyper_params import HyperParams
from vla_foundry.params.model_params import DiffusionPolicyParams, ModelParams, VLMParams


@dataclass(frozen=True)
class TrainExperimentParams:
    model: ModelParams
    data: DataParams
    hparams: HyperParams = field(default_factory=HyperParams)
    distributed: DistributedParams = field(default_factory=DistributedParams)
    ema: EMAParams = field(default_factory=EMAParams)
    # Closed-loop evaluation in simulation after checkpoints (diffusion policies).
    eval: EvalParams = field(default_factory=EvalParams)

    # Run directory is <save_path>/<name>; None names the run from the model type and a timestamp.
    name: str | None = None
    save_path: str = "experiments"
    # s3://bucket/prefix the run directory is uploaded to after every checkpoint.
    remote_sync: str | None = None
    # Training budget: total_train_samples, or num_epochs x the datasets' size.
    total_train_samples: int | None = None
    num_epochs: int | None = None
    num_checkpoints: int = 1
    # Keep at most this many checkpoints (local and remote); None keeps all.
    max_checkpoint_limit: int | None = None
    log_every_n_steps: int = 10
    wandb: bool = False
    wandb_project: str = "vla_foundry"
    wandb_entity: str | None = None
    # Validate after every n-th checkpoint (0 never) on total_val_samples samples of data.val_dataset_manifest.
    val_every_n_checkpoints: int = 1
    total_val_samples: int = 0
    # Print the fully resolved config and exit; with a path, also write <path>/resolved_config.yaml.
    resolve_configs: bool = False
    resolve_configs_path: str | None = None

    # Derived by `init_shared_attributes`: leave unset.
    samples_per_checkpoint: int | None = None
    total_steps: int | None = None

    @property
    def global_batch_size(self) -> int:
        return self.hparams.global_batch_size or self.hparams.per_gpu_batch_size * self.distributed.world_size

    @property
    def steps_per_checkpoint(self) -> int:
        assert self.samples_per_checkpoint is not None, "call init_shared_attributes first"
        return self.samples_per_checkpoint // self.global_batch_size

    def validate(self) -> None:
        if self.num_checkpoints < 1:
            raise ConfigError(f"num_checkpoints={self.num_checkpoints} must be >= 1")
        if self.total_train_samples is not None and self.num_epochs is not None:
            raise ConfigError("give total_train_samples or num_epochs, not both")
        if self.total_train_samples is not None and self.total_train_samples < 1:
            raise ConfigError(f"total_train_samples={self.total_train_samples} must be >= 1")
        if self.max_checkpoint_limit is not None and self.max_checkpoint_limit < 1:
            raise ConfigError(f"max_checkpoint_limit={self.max_checkpoint_limit} must be >= 1 (or unset)")
        if self.remote_sync is not None and not self.remote_sync.startswith("s3://"):
            raise ConfigError(f"remote_sync={self.remote_sync!r} must be an s3:// URL")
        if self.log_every_n_steps < 1:
            raise ConfigError(f"log_every_n_steps={self.log_every_n_steps} must be >= 1")
        if self.eval.sim_env is not None and not isinstance(self.model, DiffusionPolicyParams):
            raise ConfigError(f"eval.sim_env needs a diffusion_policy model (acting policy); got {self.model.type!r}")


def _share(owner_name: str, value: Any, target: Any, target_field: str, target_name: str) -> None:
    """Copy an owned value to a non-owner field; a different user-given value there is a contradiction."""
    current = getattr(target, target_field)
    if current is not None and value is not None and current != value:
        raise ConfigError(
            f"{target_name}={current!r} contradicts {owner_name}={value!r}; {target_name} is taken from "
            f"{owner_name}, leave it unset"
        )
    if value is not None:
        update_field(target, target_field, value)


def validate_params(params: Any) -> None:
    """Run `validate()` of every params dataclass in the tree, innermost first."""
    for f in fields(params):
        child = getattr(params, f.name)
        if is_dataclass(child):
            validate_params(child)
    if hasattr(params, "validate"):
        params.validate()


def init_shared_attributes(cfg: TrainExperimentParams, dataset_num_samples: int | None = None) -> None:
    """Fill shared attributes from their owners and compute derived values, once, after parsing.

    Owners: hparams.seed -> data.seed; distributed.world_size -> hparams.world_size; model -> data image size and
    image tokens; data window and dims -> diffusion policy. `dataset_num_samples` (the datasets' total samples,
    read from manifests) is needed only when the budget is given as num_epochs.
    """
    validate_params(cfg)
    hp = cfg.hparams
    _share("hparams.seed", hp.seed, cfg.data, "seed", "data.seed")
    _share("distributed.world_size", cfg.distributed.world_size, hp, "world_size", "hparams.world_size")

    # Batch math: global = per_gpu x world x accumulation.
    per_step = hp.per_gpu_batch_size * cfg.distributed.world_size
    global_bs = hp.global_batch_size or per_step
    if global_bs % per_step != 0:
        raise ConfigError(
            f"hparams.global_batch_size={global_bs} is not divisible by per_gpu_batch_size x world_size = "
            f"{hp.per_gpu_batch_size} x {cfg.distributed.world_size} = {per_step}"
        )
    _share(
        "global_batch_size / (per_gpu_batch_size x world_size)",
        global_bs // per_step,
        hp,
        "accumulation_steps",
        "hparams.accumulation_steps",
    )

    _share_model_to_data(cfg)

    # Budget: samples per checkpoint window and total optimizer steps.
    total = cfg.total_train_samples
    if total is None and cfg.num_epochs is not None and dataset_num_samples is not None:
        total = cfg.num_epochs * dataset_num_samples
        update_field(cfg, "total_train_samples", total)
    if total is not None:
        if total % cfg.num_checkpoints != 0:
            raise ConfigError(
                f"total_train_samples={total} is not divisible into num_checkpoints={cfg.num_checkpoints} windows"
            )
        window = total // cfg.num_checkpoints
        if window % global_bs != 0:
            raise ConfigError(
                f"a checkpoint window of {window} samples (total_train_samples / num_checkpoints) is not a whole "
                f"number of global batches of {global_bs}"
            )
        _share("total_train_samples / num_checkpoints", window, cfg, "samples_per_checkpoint", "samples_per_checkpoint")
        _share("total_train_samples / global_batch_size", total // global_bs, cfg, "total_steps", "total_steps")


def _share_model_to_data(cfg: TrainExperimentParams) -> None:
    model, data = cfg.model, cfg.data
    if isinstance(model, VLMParams) and isinstance(data, ImageCaptionDataParams):
        _share("model.img_num_tokens", model.img_num_tokens, data, "img_num_tokens", "data.img_num_tokens")
        _share("model.vit.img_size", model.vit.img_size, data, "image_size", "data.image_size")
    if isinstance(model, DiffusionPolicyParams):
        # The VLM -> VLA hand-off: the backbone's params come from the backbone run's config_model.yaml.
        model.resolve_backbone_run()
    if isinstance(model, DiffusionPolicyParams) and isinstance(data, RoboticsDataParams):
        model.check_data(data)
        _share("data.action_dim", data.action_dim, model, "action_dim", "model.action_dim")
        _share(
            "data.proprioception_dim", data.proprioception_dim, model, "proprioception_dim", "model.proprioception_dim"
        )
        _share("data.past_lowdim_steps", data.past_lowdim_steps, model, "past_lowdim_steps", "model.past_lowdim_steps")
        _share(
            "data.future_lowdim_steps",
            data.future_lowdim_steps,
            model,
            "future_lowdim_steps",
            "model.future_lowdim_steps",
        )
        backbone = model.backbone
        if hasattr(backbone, "vit") or hasattr(backbone, "img_size"):
            img_size = backbone.vit.img_size if hasattr(backbone, "vit") else backbone.img_size
            _share("model.backbone image size", img_size, data, "image_size", "data.image_size")
