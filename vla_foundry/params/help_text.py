"""`--help` text generated from the params dataclasses: per field its type, default and the one-line description
taken from the comment above it (or its inline comment / docstring), read with draccus's docstring helper."""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sys
import textwrap
import typing
from collections.abc import Sequence
from typing import Any

from vla_foundry.names import closest_names
from vla_foundry.params.base_params import ConfigError, derived_source
from vla_foundry.params.parsing import _dataclass_variants

# Descriptions are wrapped (never cut) to this width.
HELP_WIDTH = 120


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "{" + ",".join(str(a) for a in typing.get_args(tp)) + "}"
    text = str(tp) if typing.get_args(tp) else getattr(tp, "__name__", None) or str(tp)
    return text.replace("typing.", "").replace("vla_foundry.params.", "")


def _default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default)
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return type(value).__name__ + "()" if dataclasses.is_dataclass(value) else repr(value)
    return "required"


def field_description(cls: type, name: str) -> str:
    """The comment block right above the field's line in its class (searched along the MRO), joined into one line;
    "" when it has none. (draccus's docstring helper skips fields annotated `Literal["a", "b"]`, attaching their
    comment to the next field, so the class source is read directly.)"""
    for klass in cls.__mro__:
        comments = _field_comments(klass)
        if name in comments:
            return comments[name]
    return ""


def _description_lines(text: str, indent: str = "      ") -> list[str]:
    """A description wrapped to HELP_WIDTH, every word kept."""
    return textwrap.wrap(text, HELP_WIDTH, initial_indent=indent, subsequent_indent=indent, break_on_hyphens=False)


@functools.cache
def _field_comments(cls: type) -> dict[str, str]:
    """field name -> the `#` comment lines directly above its definition in `cls`'s body. Reads the module's source
    text directly (`inspect.getsource` parses the whole module per class, which made `--help` slow)."""
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    if not path or not os.path.isfile(path):
        return {}
    lines = _source_lines(path)
    start = next((i for i, line in enumerate(lines) if re.match(rf"class {cls.__name__}\b", line)), None)
    if start is None:
        return {}
    out: dict[str, str] = {}
    block: list[str] = []
    for line in lines[start + 1 :]:
        if line and not line[0].isspace():
            break  # the class body ended
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        match = _FIELD_LINE.match(line)
        if match and block:
            out[match.group(1)] = " ".join(block)
        block = []
    return out


@functools.cache
def _source_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


_FIELD_LINE = re.compile(r"^    (\w+)\s*:")


def _variant_label(cls: type) -> str:
    try:
        return f"{cls.__name__}, type {cls.get_choice_name(cls)}"
    except (AttributeError, ValueError):
        return cls.__name__


def field_lines(cls: type, prefix: str = "", depth: int = 0, skip: Sequence[str] = ()) -> list[str]:
    """Per field `--name  TYPE = DEFAULT` and its description, recursing into nested dataclasses; a union field's
    choices are listed variant by variant. Derived fields are marked read-only with the value's source."""
    lines: list[str] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.name in skip:
            continue
        name = f"{prefix}{f.name}"
        tp = hints[f.name]
        description = field_description(cls, f.name)
        variants = _dataclass_variants(tp)
        if variants and depth < 2:
            if len(variants) == 1:
                lines.extend(textwrap.wrap(f"  --{name}.*  {description}", HELP_WIDTH, subsequent_indent="      "))
                lines.extend(field_lines(variants[0], f"{name}.", depth + 1))
                continue
            lines.append(f"  --{name}.*  one of {len(variants)} kinds, chosen by the fields given or `type`.")
            lines.extend(_description_lines(description))
            for variant in variants:
                lines.append(f"  [{name} as {_variant_label(variant)}]")
                lines.extend(field_lines(variant, f"{name}.", depth + 1))
            continue
        source = derived_source(f)
        if source:
            lines.append(f"  --{name}  (derived, read-only: from {source})")
            continue
        lines.append(f"  --{name}  {_type_name(tp)} = {_default_text(f)}")
        lines.extend(_description_lines(description))
    return lines


def help_groups() -> dict[str, list[str]]:
    """`--help GROUP` names -> the lines of that group: `run` (the run-level fields), one per nested group of the
    run (`hparams`, `distributed`, `ema`, ...), and `model` / `data` (every registered type with its fields)."""
    from vla_foundry.params.data_params import DataParams
    from vla_foundry.params.model_params import ModelParams
    from vla_foundry.params.train_experiment_params import TrainExperimentParams

    groups: dict[str, list[str]] = {"run": []}
    hints = typing.get_type_hints(TrainExperimentParams)
    for f in dataclasses.fields(TrainExperimentParams):
        if not f.init or f.name in ("model", "data"):
            continue
        nested = _dataclass_variants(hints[f.name])
        if nested:
            groups[f.name] = field_lines(TrainExperimentParams, skip=_other_fields(f.name))
        else:
            groups["run"] += field_lines(TrainExperimentParams, skip=_other_fields(f.name))
    for label, registry in (("model", ModelParams), ("data", DataParams)):
        lines: list[str] = []
        for name in registry.registered_names():
            cls = registry.get_choice_class(name)
            doc = " ".join((cls.__doc__ or "").split("\n\n")[0].split())
            lines += ["", *textwrap.wrap(f"--{label}.type {name}: {doc}".rstrip(), HELP_WIDTH)]
            lines.extend(field_lines(cls, f"{label}."))
        groups[label] = lines[1:]
    return groups


def _other_fields(keep: str) -> tuple[str, ...]:
    from vla_foundry.params.train_experiment_params import TrainExperimentParams

    return tuple(f.name for f in dataclasses.fields(TrainExperimentParams) if f.name != keep)


def group_help(group: str) -> str:
    """The `--help GROUP` text; a ConfigError naming the valid groups (closest first) for an unknown one."""
    groups = help_groups()
    if group not in groups:
        close = closest_names(group, groups, n=2, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ConfigError(f"--help {group}: no such group{hint}; valid: {', '.join(groups)}")
    return "\n".join(groups[group])


def train_help(plugins: Sequence[str] = ()) -> str:
    from vla_foundry.params.data_params import DataParams
    from vla_foundry.params.model_params import ModelParams

    groups = help_groups()
    out = [
        "usage: [torchrun ...] vla_foundry/main.py [--config_path job.yaml] [--group.field VALUE ...]",
        "",
        "  --config_path PATH   a job YAML (may pull in presets with `!include`); repeatable, later files win",
        "  --plugins A.B,C      modules to import first: they register model / data types (also `plugins:` in YAML)",
        "  --resolve_configs True   print the resolved config (data-derived values included) and exit",
        "  --debug [BOOL]       full tracebacks instead of one-line configuration errors (`--debug` alone means True)",
        "  --help, -h [GROUP]   this text; with a GROUP only its fields: " + ", ".join(groups),
        "",
        'Values are YAML (`[a, b]` lists, `True`, `1e-4`); `--model "include path.yaml"` loads a block.',
        "Precedence: command line > YAML (outer file over included files) > defaults.",
        "Fields marked derived are filled from their owner (data, model, environment); leave them unset.",
        "",
        f"--model.type: {', '.join(ModelParams.registered_names())}",
        f"--data.type:  {', '.join(DataParams.registered_names())}",
    ]
    if plugins:
        out.append(f"plugins loaded: {', '.join(plugins)}")
    out += ["", "Run fields:"]
    for name, lines in groups.items():
        if name not in ("model", "data"):
            out += lines
    for name in ("model", "data"):
        out += ["", *groups[name]]
    return "\n".join(out)
