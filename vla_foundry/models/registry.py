"""The model registry: one name per model type, mapping to its factory, batch handler and FSDP block types.

A model type is one module that registers, under the name of its params class (`--model.type NAME`):
  - a factory `(params, load_pretrained) -> nn.Module` with `@register_model(NAME)`;
  - a batch handler class with `@register_batch_handler(NAME)` (see `BatchHandler`);
  - its FSDP units: native blocks subclass `FSDPBlock` (or, for a block class it cannot change, `@register_fsdp_block`);
    other models (e.g. HF wrappers) define `fsdp_block_types() -> tuple[type, ...]`.
Every module of the `vla_foundry.models` package (folders included) is imported before a model is built; nothing
else changes. A model type in a user's
own module registers the same way when the module is imported as a plugin (`--plugins my_pkg.toy_model`, `plugins:`
in a job YAML, or a `vla_foundry.plugins` entry point; see `vla_foundry/plugins.py` and
tutorials/adding_new_models.ipynb). Its params class (`@register_model_params`) declares what it shares with the
data params (`SHARED_FROM_DATA`, `shared_to_data`).

An acting policy (a model that maps robot observations to action chunks) is a model type whose params derive from
`PolicyParams` (the action spec, shared from the robotics data) and whose model implements `ActingPolicy`
(`generate_actions`); its batch handler's `to_device` is also the processing `Policy` applies to observations.
That is the whole contract training, `vla_foundry.inference.policy.Policy`, the policy server and sim evaluation
rely on; `create_model` checks it. docs/extending.md ("A new policy") lists the files a new policy touches.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.model_params import ActionSpec, ModelParams, PolicyParams

ModelFactory = Callable[[Any, bool], nn.Module]

_FACTORIES: dict[str, ModelFactory] = {}
_BATCH_HANDLERS: dict[str, type] = {}
# Block classes registered as FSDP units without subclassing `FSDPBlock`.
_FSDP_BLOCKS: set[type] = set()


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


class BatchHandler(ABC):
    """Turns a collated data batch into model inputs and a loss. One subclass per model type.

    Mask convention used across the codebase: a boolean mask is True where an element is real and contributes
    to the loss; False marks padding, image placeholders and other ignored positions.
    """

    def __init__(self, model_params: ModelParams) -> None:
        self.model_params = model_params

    def to_device(self, batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
        """The batch with every tensor moved to `device` (other values, e.g. metadata lists, as they are)."""
        return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    @abstractmethod
    def compute_loss(self, model: nn.Module, batch: dict[str, Any]) -> LossOutput:
        """Run `model` on one micro-batch and return its loss."""


class ActingPolicy(nn.Module, ABC):
    """The model side of the acting-policy contract (the params side is `PolicyParams`).

    `self.params` holds the policy's `PolicyParams`. Batches are what the robotics processor makes of observations
    (`images` (B, n_images, 3, H, W), `image_mask`, `proprioception` (B, past + 1, P), `input_ids` /
    `attention_mask`, `past_mask` (B, T), `metadata`), after the batch handler's `to_device`; actions are in the
    normalised units of the run's normaliser, which `Policy` undoes.
    """

    params: PolicyParams

    @property
    def action_spec(self) -> ActionSpec:
        return self.params.action_spec()

    @abstractmethod
    def generate_actions(
        self,
        batch: dict[str, Any],
        known_actions: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A normalised action window (B, T, A), T = past + 1 + future rows, for a batch of observations.

        `known_actions` (B, T, A) with `known_mask` (B, T) are rows already executed that the policy may keep fixed
        (policies that cannot condition on them ignore them). With a seeded `generator` the result is reproducible.
        """


def _registrar(table: dict[str, Any], name: str, what: str) -> Callable[[Any], Any]:
    """A decorator entering the decorated object in `table` under `name`; a second, different entry is an error."""

    def decorate(obj: Any) -> Any:
        if name in table and table[name] is not obj:
            raise ValueError(f"{what} for model type {name!r} is already registered ({table[name]!r})")
        table[name] = obj
        return obj

    return decorate


def register_model(name: str) -> Callable[[ModelFactory], ModelFactory]:
    """Register the factory `(params, load_pretrained) -> nn.Module` of model type `name`."""
    return _registrar(_FACTORIES, name, "a model factory")


def register_batch_handler(name: str) -> Callable[[type], type]:
    """Register the `BatchHandler` subclass of model type `name`."""
    return _registrar(_BATCH_HANDLERS, name, "a batch handler")


def register_fsdp_block(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: each instance of `cls` is one FSDP unit and activation-checkpoint region, like an
    `FSDPBlock` subclass (for a block class defined elsewhere: `register_fsdp_block(TheirBlock)`)."""
    _FSDP_BLOCKS.add(cls)
    return cls


def _ensure_model_modules_imported() -> None:
    """Import every module of the `vla_foundry.models` package, folders (a model type's own package) included."""
    import pkgutil

    package = importlib.import_module("vla_foundry.models")
    for module in pkgutil.walk_packages(package.__path__, prefix="vla_foundry.models."):
        if not module.name.rpartition(".")[2].startswith("_"):
            importlib.import_module(module.name)


def list_registered_models() -> list[str]:
    """The registered model type names, sorted."""
    _ensure_model_modules_imported()
    return sorted(_FACTORIES)


def list_registered_policies() -> list[str]:
    """The registered model types that are acting policies (params deriving from `PolicyParams`), sorted."""
    _ensure_model_modules_imported()
    return [name for name in sorted(_FACTORIES) if _is_policy_params(ModelParams.get_known_choices().get(name))]


def _is_policy_params(cls: type | None) -> bool:
    return isinstance(cls, type) and issubclass(cls, PolicyParams)


def create_model(model_params: ModelParams, load_pretrained: bool = True) -> nn.Module:
    """Build the model `model_params.type` names. `load_pretrained=False` builds HF models from config only.

    Unknown types raise `ConfigError` listing the registered ones; `model_params.freeze` freezes the result.
    """
    _ensure_model_modules_imported()
    name = model_params.type
    if name not in _FACTORIES:
        raise ConfigError(f"model type {name!r} has no registered model; registered: {', '.join(sorted(_FACTORIES))}")
    model = _FACTORIES[name](model_params, load_pretrained)
    if isinstance(model_params, PolicyParams) and not isinstance(model, ActingPolicy):
        raise TypeError(
            f"model type {name!r} has PolicyParams but its factory built a {type(model).__name__}, which does not "
            "implement vla_foundry.models.registry.ActingPolicy (generate_actions)"
        )
    if model_params.freeze:
        # `model.freeze`: no parameter of this model (or sub-model, for `model.vit.freeze` etc.) is trained.
        for param in model.parameters():
            param.requires_grad_(False)
    return model


def get_batch_handler(model_params: ModelParams) -> BatchHandler:
    """The batch handler of the model type `model_params.type` names."""
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
    blocks = {type(m) for m in model.modules() if isinstance(m, FSDPBlock) or type(m) in _FSDP_BLOCKS}
    return tuple(sorted(blocks, key=lambda t: t.__name__))
