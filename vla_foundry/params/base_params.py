"""Shared machinery for the frozen params dataclasses: choice registries and the config error type."""

from __future__ import annotations

from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """A configuration problem a user can fix: the message names the field or file and what is valid."""


class ParamsRegistry:
    """Mixin for `ModelParams` / `DataParams` (which also derive directly from `draccus.ChoiceRegistry`, as draccus
    requires): subclasses are chosen by the `type` key (`--model.type vlm`)."""

    @property
    def type(self) -> str:
        """The name this params class is registered under (what `--<group>.type` selects)."""
        return type(self).get_choice_name(type(self))

    @classmethod
    def registered_names(cls) -> list[str]:
        return sorted(cls.get_known_choices())


DERIVED = "derived"


def derived_field(default: Any = None, source: str = "") -> Any:
    """A field filled by `derive_params` or the resolve step (from its owner, the data or the environment),
    never typed by hand; `source` says where its value comes from (shown by `--help`). A user value equal to the
    derived one is accepted, a different one is an error."""
    return field(default=default, metadata={DERIVED: source or "derived"})


def derived_source(f: Any) -> str | None:
    """Where a derived field's value comes from, or None for a field users set."""
    return f.metadata.get(DERIVED) if hasattr(f, "metadata") else None
