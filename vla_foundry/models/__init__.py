"""Models: a registry of model types (see `registry.py`).

A model type is a module here (`vit.py`) or a folder (`diffusion_policy/` with `params.py`, `model.py`, ...) that
registers itself; nothing else changes. The registry imports every module of this package (folders included) before
it builds a model, and the parser imports every `params.py` (see `vla_foundry.plugins.load_builtin_params`), so
importing this package itself stays light: the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_REGISTRY_NAMES = (
    "ActingPolicy",
    "BatchHandler",
    "FSDPBlock",
    "LossOutput",
    "create_model",
    "fsdp_block_types",
    "get_batch_handler",
    "list_registered_models",
    "register_batch_handler",
    "register_fsdp_block",
    "register_model",
)


def __getattr__(name: str) -> Any:
    # The registry imports torch; `vla_foundry.models.<type>.params` is imported while parsing, without it.
    if name in _REGISTRY_NAMES:
        return getattr(importlib.import_module("vla_foundry.models.registry"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_REGISTRY_NAMES)
