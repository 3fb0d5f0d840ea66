"""One shape for the data path's registries (converters by `--type`, stream sources by modality, pipelines by
`data.type`): named entries registered by a decorator, built-in ones imported on first use, unknown names a
`ConfigError` with the closest valid ones."""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

from vla_foundry.names import closest_names
from vla_foundry.params.base_params import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries by name. `builtins` maps a built-in name to the module whose import registers it; `unknown` is the
    error text of a name not found, formatted with `name`, `hint` (closest names, or empty) and `valid`."""

    def __init__(self, kind: str, builtins: dict[str, str], unknown: str) -> None:
        self.kind = kind
        self.builtins = builtins
        self.unknown = unknown
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> None:
        """Add `entry` as `name`; registering the same entry again is a no-op (a module imported twice)."""
        existing = self._entries.get(name)
        if existing is not None and existing is not entry:
            where = f"{getattr(existing, '__module__', '?')}.{getattr(existing, '__qualname__', existing)}"
            raise ValueError(f"{self.kind} {name!r} is already registered ({where})")
        self._entries[name] = entry

    def names(self) -> list[str]:
        """Every name: built-in and registered, sorted."""
        return sorted(set(self.builtins) | set(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self.builtins or name in self._entries

    def get(self, name: str) -> T:
        if name not in self._entries and name in self.builtins:
            importlib.import_module(self.builtins[name])
        if name not in self._entries:
            valid = self.names()
            close = closest_names(name, valid)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(self.unknown.format(name=repr(name), hint=hint, valid=", ".join(valid)))
        return self._entries[name]
