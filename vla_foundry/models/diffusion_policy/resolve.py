"""The file reads behind `DiffusionPolicyParams`'s resolve hooks: the backbone run's config and the tokenizer.

Called from the resolve step (`vla_foundry.params.resolve`) through `resolve_files` / `check_data`, never while
parsing.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from vla_foundry.models.diffusion_policy.params import BACKBONE_TYPES, CLIPBackboneParams, DiffusionPolicyParams
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.model_params import (
    ModelParams,
    TransformerParams,
    VLMHFParams,
    VLMParams,
    without_weight_sources,
)


def resolve_backbone_run(params: DiffusionPolicyParams) -> DiffusionPolicyParams:
    """`params` with `backbone` replaced by the params in the backbone run's config_model.yaml (reads one small file,
    local or s3).

    A backbone given explicitly that differs from the run's is an error (a default backbone is simply replaced).
    """
    if params.backbone_run is None:
        return params
    from vla_foundry.params.parsing import load_params_from_yaml

    config_path = backbone_run_config_path(params.backbone_run)
    run_params = load_params_from_yaml(ModelParams, config_path)
    if run_params.type not in BACKBONE_TYPES:
        raise ConfigError(
            f"model.backbone_run={params.backbone_run!r}: {config_path} holds a {run_params.type!r} model; "
            f"a backbone run must hold one of: {', '.join(BACKBONE_TYPES)}"
        )
    # The run's weights supersede whatever it was itself initialised from.
    run_params = with_training_image_stats(without_weight_sources(run_params), params.backbone_run)
    given = without_weight_sources(params.backbone)
    if given != VLMParams() and isinstance(given, VLMParams) and isinstance(run_params, VLMParams):
        # Normalisation is recorded by the run, not part of the architecture compared here.
        given = dataclasses.replace(given, image_mean=run_params.image_mean, image_std=run_params.image_std)
    if given not in (VLMParams(), run_params):
        raise ConfigError(
            f"model.backbone ({given.type}) differs from the backbone run's {config_path} ({run_params.type}); "
            "the backbone is taken from model.backbone_run: leave model.backbone unset or give the same "
            "architecture"
        )
    return dataclasses.replace(params, backbone=run_params)


def with_training_image_stats(params: ModelParams, run: str) -> ModelParams:
    """A native VLM's params with the image mean / std it was trained with: recorded in its config_model.yaml, or
    (runs saved before they were recorded there) the `data` block of the run's config.yaml. Neither: a warning
    naming the run (its images would be normalised with the 0.5 / 0.5 defaults)."""
    import yaml

    from vla_foundry import storage

    if not isinstance(params, VLMParams) or params.image_mean is not None:
        return params
    config = storage.join(storage.dirname(backbone_run_config_path(run)), "config.yaml")
    data = (yaml.safe_load(storage.read_text(config)) or {}).get("data") or {} if storage.exists(config) else {}
    if data.get("image_mean") and data.get("image_std"):
        return dataclasses.replace(params, image_mean=tuple(data["image_mean"]), image_std=tuple(data["image_std"]))
    warnings.warn(
        f"model.backbone_run={run}: neither its config_model.yaml nor {config} records the image mean / std the VLM "
        "was trained with; camera images are normalised with mean 0.5, std 0.5 (set --model.backbone.image_mean "
        "and --model.backbone.image_std if it used others)",
        stacklevel=2,
    )
    return params


def backbone_run_config_path(backbone_run: str) -> str:
    """config_model.yaml of a run directory, or of the run holding a checkpoint file (`run/checkpoints/x.pt`)."""
    from vla_foundry import storage

    path = backbone_run.rstrip("/")
    if path.endswith((".pt", ".safetensors")):
        path = storage.dirname(storage.dirname(path))
    return storage.join(path, "config_model.yaml")


def check_tokenizer(params: DiffusionPolicyParams, data: Any) -> None:
    """Refuse a data processor that cannot feed this backbone (tokenizer / vocabulary mismatch)."""
    tokenizer = getattr(data, "tokenizer", None)
    backbone = params.backbone
    hf_name = getattr(backbone, "hf_pretrained", None) if isinstance(backbone, VLMHFParams) else None
    if isinstance(backbone, CLIPBackboneParams):
        hf_name = backbone.clip_pretrained
    if hf_name is not None and tokenizer != hf_name:
        raise ConfigError(
            f"data.tokenizer={tokenizer!r} does not match the backbone's processor {hf_name!r}; an HF backbone "
            f"reads instructions tokenized by its own tokenizer: set data.tokenizer {hf_name}"
        )
    if isinstance(backbone, VLMParams) and tokenizer is not None:
        _check_native_tokenizer(params, tokenizer)


def _check_native_tokenizer(params: DiffusionPolicyParams, tokenizer: str) -> None:
    """The native VLM path needs the tokenizer's special ids and a vocabulary that holds them."""
    from vla_foundry.data.processors.tokenizers import get_tokenizer

    tok = get_tokenizer(tokenizer)
    expected = {
        "model.action_token_id": (params.action_token_id, tok.action_token_id, "<action>"),
        "model.pad_token_id": (params.pad_token_id, tok.pad_token_id, "<pad>"),
        "model.backbone.image_token_id": (params.backbone.image_token_id, tok.image_token_id, "<image>"),
    }
    for name, (given, actual, token) in expected.items():
        if given != actual:
            raise ConfigError(
                f"{name}={given} but data.tokenizer {tokenizer!r} gives {token} the id {actual}; set {name} {actual}"
            )
    transformer = params.backbone.transformer
    if isinstance(transformer, TransformerParams) and transformer.vocab_size < tok.vocab_size:
        raise ConfigError(
            f"model.backbone.transformer.vocab_size={transformer.vocab_size} is smaller than data.tokenizer "
            f"{tokenizer!r}'s {tok.vocab_size} ids (the instruction and the <action> token must be embeddable)"
        )
