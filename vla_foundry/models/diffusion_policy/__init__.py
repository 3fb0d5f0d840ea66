"""`diffusion_policy`: a flow-matching / diffusion action head over a vision(-language) backbone.

One folder holds the whole model type: `params.py` (its params, registered as `--model.type diffusion_policy`),
`model.py` (the network, its factory and batch handler), `backbones.py` (the backbone adapters),
`noise_schedulers.py` and `resolve.py` (the file reads of the resolve step). Importing this package imports nothing
heavy; the model registry imports `model.py` when a model is built.
"""

from __future__ import annotations

import importlib
from typing import Any

# Names code imported from the former single module `vla_foundry.models.diffusion_policy`, loaded on first use.
_MOVED = {
    "DiffusionPolicy": "model",
    "DiffusionPolicyBatchHandler": "model",
    "HeadBlock": "model",
    "ActionHead": "model",
    "build_diffusion_policy": "model",
    "DiffusionPolicyParams": "params",
    "ActionHeadParams": "params",
    "CLIPBackboneParams": "params",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(f"{__name__}.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
