"""Inference: load a run (local or s3://), generate text, caption images, and run robot policies.

    from vla_foundry.inference import load_run, generate_text, caption_image, Policy

    generate_text(load_run("experiments/llm"), "Once upon a time")
    caption_image(load_run("experiments/vlm"), image_uint8_hwc)
    Policy.from_run("experiments/vla").predict(observation)    # denormalised action chunk

`policy_server` serves a policy over HTTP for robot clients; `open_loop_eval` compares predicted and recorded
action chunks on a dataset; `sample_prediction` runs a policy on recorded samples. Each is also a command
(`python -m vla_foundry.inference.<module> --help`).
"""

from __future__ import annotations

import importlib
from typing import Any

# Names exported here, resolved on first use: importing the package stays light, and running one of its modules as
# a command (`python -m vla_foundry.inference.policy_server`) does not import that module twice.
_EXPORTS = {
    "LoadedRun": "vla_foundry.inference.run_loading",
    "load_run": "vla_foundry.inference.run_loading",
    "generate_text": "vla_foundry.inference.generation",
    "caption_image": "vla_foundry.inference.generation",
    "Policy": "vla_foundry.inference.policy",
    "PolicyServer": "vla_foundry.inference.policy_server",
    "PolicyClient": "vla_foundry.inference.policy_server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vla_foundry.inference' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
