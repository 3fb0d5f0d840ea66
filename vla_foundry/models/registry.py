"""The model registry: one name per model type, mapping to its factory, batch handler and FSDP block types.

A model type is one module that registers, under the name of its params class (`--model.type NAME`):
  - a factory `(params, load_pretrained) -> nn.Module` with `@register_model(NAME)`;
  - a batch handler class with `@register_batch_handler(NAME)` (see `BatchHandler`);
  - its FSDP units: native blocks subclass `FSDPBlock`; other models (e.g. HF wrappers) define
    `fsdp_block_types() -> tuple[type, ...]`.
Every module of the `vla_foundry.models` package is imported with it; nothing else changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.model_params import ModelParams

ModelFactory = Callable[[Any, bool], nn.Module]

_FACTORIES: dict[str, ModelFactory] = {}
_BATCH_HANDLERS: dict[str, type] = {}


class FSDPBlock(nn.Module):
    """Marker base class: each instance is wrapped as one FSDP unit (`fully_shard`) and one activation-checkpoint
    region. Native transformer / ViT blocks derive from it."""


@dataclass
class LossOutput:
    """What a batch handler returns for one micro-batch.

    `loss` is the mean over the elements that contribute (mask True = contributes to the loss); `num_tokens`
    counts them (tokens for language models, action elements for policies) for throughput metrics.
    """

    loss: torch.Tensor
    num_tokens: int
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class BatchHandler:
    """Turns a collated data batch into model inputs and a loss. One subclass per model type.

    Mask convention used across the codebase: a boolean mask is True where an element is real and contributes
    to the loss; False marks padding, image placeholders and other ignored positions.
    """

    def __init__(self, model_params: ModelParams) -> None:
        self.model_params = model_params

    def to_device(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def compute_loss(self, model: nn.Module, batch: dict[str, Any]) -> LossOutput:
        raise NotImplementedError


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    def decorate(factory: ModelFactory) -> ModelFactory:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"model type {name!r} is already registered")
        _FACTORIES[name] = factory
        return factory

    return decorate


def register_batch_handler(name: str) -> Callable[[type], type]:
    def decorate(cls: type) -> type:
        if name in _BATCH_HANDLERS and _BATCH_HANDLERS[name] is not cls:
            raise ValueError(f"batch handler for {name!r} is already registered")
        _BATCH_HANDLERS[name] = cls
        return cls

    return decorate


def _ensure_model_modules_imported() -> None:
    importlib.import_module("vla_foundry.models")


def list_registered_models() -> list[str]:
    _ensure_model_modules_imported()
    return sorted(_FACTORIES)


def create_model(model_params: ModelParams, load_pretrained: bool = True) -> nn.Module:
    """Build the model `model_params.type` names. `load_pretrained=False` builds HF models from config only.

    Unknown types raise `ConfigError` listing the registered ones; `model_params.freeze` freezes the result.
    """
    _ensure_model_modules_imported()
    name = model_params.type
    if name not in _FACTORIES:
        raise ConfigError(f"model type {name!r} has no registered model; registered: {', '.join(sorted(_FACTORIES))}")
    model = _FACTORIES[name](model_params, load_pretrained)
    if model_params.freeze:
        # `model.freeze`: no parameter of this model (or sub-model, for `model.vit.freeze` etc.) is trained.
        for param in model.parameters():
            param.requires_grad_(False)
    return model


def get_batch_handler(model_params: ModelParams) -> BatchHandler:
    _ensure_model_modules_imported()
    name = model_params.type
    if name not in _BATCH_HANDLERS:
        raise ConfigError(
            f"model type {name!r} has no registered batch handler; registered: {', '.join(sorted(_BATCH_HANDLERS))}"
        )
    return _BATCH_HANDLERS[name](model_params)


def fsdp_block_types(model: nn.Module) -> tuple[type, ...]:
    """The module classes wrapped one-per-FSDP-unit: the model's own declaration, else its `FSDPBlock`s."""
    declared = getattr(model, "fsdp_block_types", None)
    if callable(declared):
        return tuple(declared())
    return tuple(sorted({type(m) for m in model.modules() if isinstance(m, FSDPBlock)}, key=lambda t: t.__name__))
