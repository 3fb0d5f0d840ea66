"""User plugins: modules that register models, data types or robotics converters from outside the package.

A plugin is an ordinary module whose import runs registration decorators (`@register_model`,
`@register_batch_handler`, `@register_converter`, ...). Two ways to name one:

- on the command line or in a job YAML: `--plugins my_pkg.toy_model,my_pkg.more` (`plugins: [...]`);
- as an installed package's entry point in the `vla_foundry.plugins` group (pyproject.toml:
  `[project.entry-points."vla_foundry.plugins"] toy = "my_pkg.toy_model"`), loaded by every entry point.

Plugins are imported before parsing, so their params classes and names are known to the parser. The built-in model
types kept in a folder of their own (`vla_foundry/models/<type>/params.py`) register their params the same way:
`load_plugins` imports every such `params.py` first (`load_builtin_params`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterable

from vla_foundry.params.base_params import ConfigError

ENTRY_POINT_GROUP = "vla_foundry.plugins"

_loaded: set[str] = set()


def split_plugin_names(value: str | Iterable[str]) -> list[str]:
    """`"a.b,c"`, `"[a.b, c]"` or a list -> `["a.b", "c"]`."""
    items = value.strip().strip("[]").split(",") if isinstance(value, str) else list(value)
    return [str(item).strip().strip("'\"") for item in items if str(item).strip().strip("'\"")]


# Built-in modules that register into the params layer (which imports none of them): the data package's reads of the
# resolve step.
BUILTIN_REGISTRATIONS = ("vla_foundry.data.resolve",)


def load_builtin_params() -> list[str]:
    """Import `params.py` of every model-type folder under `vla_foundry/models/` (pure-data modules: no torch), so that
    their params classes are registered before parsing, and the `BUILTIN_REGISTRATIONS`. Returns the modules
    imported by this call."""
    import importlib.util
    import pkgutil

    imported = []
    for name in BUILTIN_REGISTRATIONS:
        if name not in _loaded:
            importlib.import_module(name)
            _loaded.add(name)
            imported.append(name)
    models = importlib.import_module("vla_foundry.models")
    for module in pkgutil.iter_modules(models.__path__, prefix="vla_foundry.models."):
        name = f"{module.name}.params"
        if module.ispkg and name not in _loaded and importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
            _loaded.add(name)
            imported.append(name)
    return imported


def load_plugins(modules: Iterable[str] = (), entry_points: bool = True) -> list[str]:
    """Import the named modules and (when `entry_points`) every `vla_foundry.plugins` entry point, once each.

    The built-in model params load first (`load_builtin_params`). Returns the plugin modules imported by this call.
    A module that cannot be imported is a `ConfigError` naming it.
    """
    load_builtin_params()
    imported = []
    for name in modules:
        if name in _loaded:
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            raise ConfigError(
                f"plugin {name!r} cannot be imported ({e}); give an importable module path (is its folder on "
                f"PYTHONPATH, or its package installed?)"
            ) from e
        _loaded.add(name)
        imported.append(name)
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            key = f"entry_point:{ep.value}"
            if key in _loaded:
                continue
            try:
                ep.load()
            except Exception as e:
                raise ConfigError(
                    f"plugin entry point {ep.name!r} = {ep.value!r} (group {ENTRY_POINT_GROUP}) failed to load: {e}"
                ) from e
            _loaded.add(key)
            imported.append(ep.value)
    return imported
