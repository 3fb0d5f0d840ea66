"""Shared machinery for the frozen params dataclasses: choice registries and the config error type."""

from __future__ import annotations

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


def update_field(params: Any, name: str, value: Any) -> None:
    """Set a field of a frozen params object; used only by the shared-attribute / derived-value pass."""
    object.__setattr__(params, name, value)
