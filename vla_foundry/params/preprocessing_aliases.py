"""VLA Foundry's preprocessing keys read as this project's fields, so an existing preprocessing YAML (or command) runs.

Each old key found in the composed config (YAML or CLI) is renamed to the field it means here, its value converted
where the meaning is stated the other way round, and one line on stderr says so. Old values that name the same
behaviour differently (`padding_strategy: copy`, `max_episodes_to_process: -1`) are translated the same way. A key
given under both names is an error: there would be two answers to one question.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from vla_foundry.params.base_params import ConfigError


@dataclass(frozen=True)
class KeyAlias:
    """`old` (VLA Foundry's key) is this project's `new`; `convert` maps the old value to the new field's."""

    old: str
    new: str
    convert: Callable[[Any], Any] | None = None
    meaning: str = ""


KEY_ALIASES = (
    KeyAlias("resize_images_size", "image_size"),
    KeyAlias("image_resizing_method", "resize_mode"),
    KeyAlias("max_padding_left", "max_past_padding"),
    KeyAlias("max_padding_right", "max_future_padding"),
    KeyAlias("skip_git_tagging", "record_git_commit", lambda skip: not skip, " (= not skip_git_tagging)"),
)

# (field, old value) -> this project's value for the same behaviour.
VALUE_ALIASES: dict[tuple[str, Any], Any] = {
    ("padding_strategy", "copy"): "edge",  # padded rows repeat the nearest valid row
    ("max_episodes_to_process", -1): None,  # every episode
}


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def apply_preprocessing_aliases(cls: type, data: dict, note: Callable[[str], None] = _note) -> dict:
    """A copy of the composed config `data` for `cls` with VLA Foundry's keys and values read as this project's."""
    names = {f.name for f in fields(cls)}
    out = dict(data)
    for alias in KEY_ALIASES:
        if alias.old not in out or alias.new not in names:
            continue
        if alias.new in out:
            raise ConfigError(f"{alias.old} (VLA Foundry's name) and {alias.new} are both given; keep only {alias.new}")
        value = out.pop(alias.old)
        out[alias.new] = alias.convert(value) if alias.convert else value
        note(f"{alias.old} is deprecated here; read as {alias.new}: {out[alias.new]!r}{alias.meaning}")
    for (name, old_value), new_value in VALUE_ALIASES.items():
        value = out.get(name)
        # `type(value) is type(old_value)` keeps True from matching 1 and 1.0 from matching 1.
        if name in names and type(value) is type(old_value) and value == old_value:
            out[name] = new_value
            note(f"{name}: {old_value!r} is deprecated here; read as {name}: {new_value!r}")
    return out
