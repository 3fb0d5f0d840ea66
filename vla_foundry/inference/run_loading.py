"""Load a trained run (local, s3:// or hf://) for inference: config_model.yaml -> model -> checkpoint weights.

    run = load_run("experiments/my_vla")                       # latest checkpoint, EMA weights when saved
    run = load_run("s3://bucket/runs/my_vla", checkpoint=3)    # checkpoints/checkpoint_3/
    run = load_run("hf://org/my_vla")                          # a pushed run: its exported (EMA) weights
    run = load_run("experiments/my_vla/checkpoints/checkpoint_2", use_ema=False)

Only the model config is needed (never the data config); the model is built without downloading pretrained
weights (`create_model(..., load_pretrained=False)`: the checkpoint holds every weight), then the checkpoint — or,
when the run kept an EMA and `use_ema` is on, the EMA weights — is read straight from the sharded checkpoint in this
one process (no process group; an s3 checkpoint is downloaded to a temporary directory first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import yaml
from torch import nn

from vla_foundry import storage
from vla_foundry.params.base_params import ConfigError

MODEL_CONFIG = "config_model.yaml"
EXPERIMENT_CONFIG = "config.yaml"


@dataclass
class LoadedRun:
    """A model ready for inference and where it came from."""

    run_dir: str
    model_params: Any
    model: nn.Module
    checkpoint: str
    used_ema: bool
    device: torch.device

    def experiment_config(self) -> dict:
        """The run's whole config.yaml as a plain mapping ({} when absent): data-side settings such as the
        tokenizer and image normalisation used in training."""
        path = storage.join(self.run_dir, EXPERIMENT_CONFIG)
        if not storage.exists(path):
            return {}
        return yaml.safe_load(storage.read_text(path)) or {}


def split_run_path(path: str, checkpoint: int | str | None = None) -> tuple[str, str]:
    """(run dir, checkpoint path) for a run dir (its latest complete checkpoint, or checkpoint number
    `checkpoint`), a `checkpoint_<n>` directory or a weights file."""
    from vla_foundry.checkpoint import checkpoint_dir, checkpoint_file, checkpoint_number, resolve_checkpoint

    # hf://org/name[@revision][/...]: the run's files as the Hub cache holds them (fetched when missing).
    path = storage.local_run(str(path).rstrip("/"))
    if path.endswith((".pt", ".safetensors")) or checkpoint_number(storage.basename(path)) is not None:
        ref = resolve_checkpoint(path, verify=True)
        return ref.run_dir, ref.path
    if not storage.exists(storage.join(path, MODEL_CONFIG)):
        raise FileNotFoundError(
            f"{path} is not a run directory: {storage.join(path, MODEL_CONFIG)} does not exist (give the directory a "
            "training run wrote, or one of its checkpoints/checkpoint_<n> directories)"
        )
    if checkpoint is None:
        # The newest complete checkpoint whose checksums match (a corrupt newer one is skipped with a warning).
        return path, resolve_checkpoint(path, verify=True).path
    if isinstance(checkpoint, int) or str(checkpoint).isdigit():
        for candidate in (checkpoint_dir(path, int(checkpoint)), checkpoint_file(path, int(checkpoint))):
            if storage.list_files(candidate) or storage.exists(candidate):
                return path, resolve_checkpoint(candidate, verify=True).path
        raise FileNotFoundError(
            f"checkpoint {checkpoint} of run {path} does not exist: {checkpoint_dir(path, int(checkpoint))}"
        )
    return path, resolve_checkpoint(str(checkpoint), verify=True).path


def load_run(
    path: str,
    checkpoint: int | str | None = None,
    use_ema: bool = True,
    device: str | torch.device = "cpu",
) -> LoadedRun:
    """Build the run's model and load its weights (EMA when present and `use_ema`); eval mode, on `device`."""
    from vla_foundry.checkpoint import EXPORTED_EMA, EXPORTED_MODEL, has_ema, load_model_checkpoint, resolve_checkpoint
    from vla_foundry.models.registry import create_model
    from vla_foundry.params.model_params import ModelParams, without_weight_sources
    from vla_foundry.params.parsing import load_params_from_yaml

    run_dir, ckpt = split_run_path(path, checkpoint)
    config_path = storage.join(run_dir, MODEL_CONFIG)
    try:
        model_params = load_params_from_yaml(ModelParams, config_path)
    except ConfigError as e:
        raise ConfigError(f"cannot read the model config of run {run_dir}: {e}") from None
    # Every weight comes from the checkpoint: the sources the run was initialised from need not be reachable.
    model = create_model(without_weight_sources(model_params), load_pretrained=False)
    used_ema = use_ema and has_ema(resolve_checkpoint(ckpt))
    exported_ema = storage.join(storage.dirname(ckpt), EXPORTED_EMA)
    named_a_file = str(path).rstrip("/").endswith((".pt", ".safetensors"))
    if use_ema and not named_a_file and storage.basename(ckpt) == EXPORTED_MODEL and storage.exists(exported_ema):
        # A run holding exported weights only (as pushed to the Hub): its exported EMA weights when it has them
        # (that file holds the EMA values under the model's own names).
        ckpt = exported_ema
        load_model_checkpoint(model, ckpt, verify=False)
        used_ema = True
    else:
        load_model_checkpoint(model, ckpt, use_ema=used_ema, verify=False)  # split_run_path verified it
    device = torch.device(device)
    model.to(device).eval()
    return LoadedRun(run_dir, model_params, model, ckpt, used_ema, device)
