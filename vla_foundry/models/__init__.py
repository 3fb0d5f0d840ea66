"""Models: a registry of model types (see `registry.py`).

Importing this package imports every module in it, so a new model type is one new file here that registers
itself; nothing else changes. Model modules import heavy libraries (transformers, timm) inside functions.
"""

import importlib
import pkgutil

from vla_foundry.models.registry import (
    BatchHandler,
    FSDPBlock,
    LossOutput,
    create_model,
    fsdp_block_types,
    get_batch_handler,
    list_registered_models,
    register_batch_handler,
    register_fsdp_block,
    register_model,
)

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
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
]
