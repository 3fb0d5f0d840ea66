"""`--help` text generated from the params dataclasses (field names, types and defaults)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from vla_foundry.params.parsing import _dataclass_variants


def _type_name(tp: Any) -> str:
    text = getattr(tp, "__name__", None) or str(tp)
    return text.replace("typing.", "").replace("vla_foundry.params.", "")


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return type(value).__name__ + "()" if dataclasses.is_dataclass(value) else repr(value)
    return "required"


def field_lines(cls: type, prefix: str = "", depth: int = 0) -> list[str]:
    """One line per field, recursing into nested dataclasses (not into choice registries)."""
    lines: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        name = f"{prefix}{f.name}"
        tp = hints[f.name]
        variants = _dataclass_variants(tp)
        if variants and depth < 2:
            kinds = " | ".join(v.__name__ for v in variants)
            lines.append(f"  --{name}.*  ({kinds})")
            for variant in variants:
                lines.extend(field_lines(variant, f"{name}.", depth + 1))
            continue
        lines.append(f"  --{name}  {_type_name(tp)} = {_default_text(f)}")
    return lines


def train_help() -> str:
    from vla_foundry.params.data_params import DataParams
    from vla_foundry.params.model_params import ModelParams
    from vla_foundry.params.train_experiment_params import TrainExperimentParams

    out = [
        "usage: [torchrun ...] vla_foundry/main.py [--config_path job.yaml] [--group.field VALUE ...]",
        "",
        'Values are YAML (`[a, b]` lists, `True`, `1e-4`); `--model "include path.yaml"` loads a block.',
        "Precedence: command line > YAML (outer file over included files) > defaults.",
        "",
        f"--model.type: {', '.join(ModelParams.registered_names())}",
        f"--data.type:  {', '.join(DataParams.registered_names())}",
        "",
        "Run fields:",
    ]
    root = [ln for ln in field_lines(TrainExperimentParams) if not ln.startswith(("  --model", "  --data"))]
    out.extend(root)
    for label, registry in (("model", ModelParams), ("data", DataParams)):
        for name in registry.registered_names():
            out += ["", f"--{label}.type {name}:"]
            out.extend(field_lines(registry.get_choice_class(name), f"{label}."))
    return "\n".join(out)
