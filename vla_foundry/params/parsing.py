"""Turning YAML presets and CLI flags into frozen params, and params back into YAML.

Composition, lowest to highest precedence:
  1. dataclass defaults;
  2. YAML: `--config_path job.yaml`, whose mappings may pull in other files with `key: !include rel.yaml` or
     `<<: !include rel.yaml` (paths relative to the including file). With `<<`, keys written in the outer file
     win, and nested blocks are merged key by key, so an outer file can change one field of an included block;
  3. CLI flags `--a.b value` (or `--a.b=value`); `--model "include path.yaml"` loads a whole block, relative
     to the working directory, replacing that block of the YAML. A CLI override of one nested field keeps the
     rest of an included block.

Before decoding, every key is checked against the dataclasses: an unknown key is an error naming the key,
where it came from and the closest valid names; `type` selects a model/data class; union fields resolve to
the first variant that has every given key. Leaf values (numbers, lists, tuples) are decoded by draccus.

Loading refuses, in one line naming the file: an include cycle, a document whose aliases expand past
`structured_files.MAX_YAML_NODES` values, and a missing file (with the closest names in its folder).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import posixpath
import types
import typing
import warnings
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, get_args, get_origin

import draccus
import yaml
from draccus.parsers.yaml_loader import SafeLoaderWithInclusion

from vla_foundry import storage
from vla_foundry.names import closest_names
from vla_foundry.params.base_params import ConfigError, ParamsRegistry
from vla_foundry.structured_files import load_yaml_document, read_structured_file, yaml_problem

T = TypeVar("T")
logger = logging.getLogger(__name__)

CONFIG_PATH_FLAG = "config_path"
INCLUDE_PREFIX = "include "


# ---------------------------------------------------------------------------------------------------------------
# YAML with includes


class _IncludeLoader(SafeLoaderWithInclusion):
    """YAML loader for `!include` with a key-by-key merge for `<<: !include` and a record of files read."""

    files_read: list[str]
    include_chain: tuple[str, ...]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        # Pull out `<<: !include file` entries and merge them under the mapping's own keys (deep merge),
        # instead of YAML's shallow merge where an outer `transformer:` would replace the whole included block.
        included: list[dict] = []
        kept = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" and value_node.tag == "!include":
                value = self.construct_object(value_node, deep=True)
                if not isinstance(value, dict):
                    raise ConfigError(f"{value_node.value}: a file merged with `<<: !include` must hold a mapping")
                included.append(value)
            else:
                kept.append((key_node, value_node))
        node.value = kept
        own = super().construct_mapping(node, deep=True)
        merged: dict = {}
        for block in included:
            merged = deep_merge(merged, block)
        return deep_merge(merged, own)


def _include(loader: _IncludeLoader, node: yaml.Node) -> Any:
    parent = getattr(loader, "current_file", None) or getattr(loader.stream, "name", ".")
    path = _relative_to(parent, node.value)
    chain = loader.include_chain
    if _same_file_key(path) in [_same_file_key(p) for p in chain]:
        cycle = [*chain[[_same_file_key(p) for p in chain].index(_same_file_key(path)) :], path]
        raise ConfigError(f"include cycle: {' -> '.join(cycle)}; a file cannot include itself, directly or not")
    return _load_yaml_file(path, loader.files_read, included_from=parent, chain=chain)


def _same_file_key(path: str) -> str:
    """One spelling per file: a path through `..`, a symlink and the plain path name the same local file."""
    return path if storage.is_s3(path) else os.path.realpath(path)


def _relative_to(parent: str, path: str) -> str:
    """`path` as written in the config file `parent` (local or s3://): relative paths are from its folder."""
    if storage.is_remote(path) or os.path.isabs(path):
        return path
    if storage.is_s3(parent):
        bucket_and_key = parent[len("s3://") :]
        return "s3://" + posixpath.normpath(posixpath.join(posixpath.dirname(bucket_and_key), path))
    return os.path.normpath(os.path.join(os.path.dirname(parent), path))


_IncludeLoader.add_constructor("!include", _include)


def _load_yaml_file(
    path: str, files_read: list[str], included_from: str | None = None, chain: tuple[str, ...] = ()
) -> Any:
    """One YAML config file (local or s3://) with its includes; any unreadable file is a one-line ConfigError.
    `chain`: the files whose includes led here (outermost first), to name an include cycle."""
    where = f" (included from {included_from})" if included_from else ""
    try:
        text = storage.read_text(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ConfigError(f"config file not found: {path}{where}{_closest_files(path)}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}{where} is not a text file (undecodable byte at offset {e.start}): give a YAML config"
        ) from None
    files_read.append(path)
    loader = _IncludeLoader(text)
    loader.files_read = files_read
    loader.current_file = path
    loader.include_chain = (*chain, path)
    try:
        return load_yaml_document(loader, path, ConfigError)
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML in {path}: {yaml_problem(e)}") from None
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to be a config (corrupt or generated?)") from None
    finally:
        loader.dispose()


def _closest_files(path: str) -> str:
    """ "; closest: a.yaml, b.yaml" from the YAML files beside a missing local `path` (empty when none is close);
    a missing folder is named, with the closest folders beside it."""
    if storage.is_s3(path):
        return ""
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        parent = os.path.dirname(os.path.normpath(folder)) or "."
        if not os.path.isdir(parent):
            return f"; folder {folder} does not exist"
        dirs = [d for d in os.listdir(parent) if os.path.isdir(os.path.join(parent, d))]
        close = closest_names(os.path.basename(os.path.normpath(folder)), dirs, cutoff=0.6)
        shown = ", ".join(os.path.join(parent, d) if parent != "." else d for d in close)
        return f"; folder {folder} does not exist" + (f" (closest: {shown})" if close else "")
    names = [n for n in os.listdir(folder) if n.endswith((".yaml", ".yml"))]
    close = closest_names(os.path.basename(path), names, cutoff=0.6)
    return "; closest: " + ", ".join(os.path.join(os.path.dirname(path), n) for n in close) if close else ""


def load_yaml(path: str | os.PathLike) -> tuple[dict, list[str]]:
    """Load a YAML config with its includes; returns (mapping, files read in order)."""
    files: list[str] = []
    data = _load_yaml_file(str(path), files)
    if data is None:
        # A config file with no content at all is a truncated or wrongly written file, not an empty config.
        raise ConfigError(f"{path} is empty: a config file holds a mapping of fields (truncated? rewrite it)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping at the top level")
    return data, files


def deep_merge(base: dict, override: dict) -> dict:
    """A new dict: `override` over `base`, recursing into nested mappings."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------------------------------
# CLI


def split_cli(args: Sequence[str]) -> list[tuple[str, str]]:
    """`["--a.b", "1", "--c=2"]` -> `[("a.b", "1"), ("c", "2")]`, in order."""
    pairs: list[tuple[str, str]] = []
    i = 0
    args = list(args)
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"unexpected argument {arg!r}: flags look like --group.field VALUE")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            i += 1
        else:
            key = arg[2:]
            if i + 1 >= len(args) or (args[i + 1].startswith("--") and len(args[i + 1]) > 2):
                raise ConfigError(f"flag --{key} needs a value")
            value = args[i + 1]
            i += 2
        pairs.append((key, value))
    return pairs


def _parse_cli_value(key: str, raw: str) -> Any:
    if raw.startswith(INCLUDE_PREFIX):
        path = raw[len(INCLUDE_PREFIX) :].strip()
        data, _ = load_yaml(path)
        return data
    try:
        return yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        return raw


def cli_to_dict(pairs: Sequence[tuple[str, str]]) -> dict:
    """Nest dotted CLI keys; a whole-block value (`--model "include x.yaml"`) is applied before its sub-keys."""
    out: dict = {}
    for key, raw in sorted(pairs, key=lambda kv: kv[0].count(".")):
        value = _parse_cli_value(key, raw)
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        # A block loaded whole with `include` replaces what an outer include put there (it may be another kind);
        # an inline mapping (`--model.vit "{n_layers: 3}"`) merges into it.
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict) and not raw.startswith(INCLUDE_PREFIX):
            node[parts[-1]] = deep_merge(node[parts[-1]], value)
        else:
            node[parts[-1]] = value
    return out


# ---------------------------------------------------------------------------------------------------------------
# Key checking against the dataclasses


@dataclasses.dataclass
class _Sources:
    """Where values came from, for error messages."""

    cli_keys: set[str]
    files: list[str]

    def where(self, dotted: str) -> str:
        if dotted in self.cli_keys or any(dotted.startswith(k + ".") for k in self.cli_keys):
            return "on the command line"
        # A misspelled group (`hparam`) given only through flags inside it (`--hparam.lr`).
        inside = sorted(k for k in self.cli_keys if k.startswith(dotted + "."))
        if inside:
            return f"on the command line: --{inside[0]}"
        leaf = dotted.rsplit(".", 1)[-1]
        for path in reversed(self.files):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip().startswith(f"{leaf}:"):
                        return f"in {path}"
        if self.files:
            return f"in {self.files[0]} or a file it includes"
        return "in the given values"


def _unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _dataclass_variants(tp: Any) -> list[type]:
    """The dataclasses a field annotation may hold (one for a plain dataclass, several for a union)."""
    tp = _unwrap_optional(tp)
    if get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in get_args(tp) if dataclasses.is_dataclass(a)]
    if dataclasses.is_dataclass(tp):
        return [tp]
    return []


def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


# Names users bring from other frameworks -> the field names here that mean the same (merged into suggestions).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "learning_rate": ("lr",),
    "batch_size": ("per_gpu_batch_size", "global_batch_size"),
    "train_batch_size": ("global_batch_size", "per_gpu_batch_size"),
    "micro_batch_size": ("per_gpu_batch_size",),
    "gradient_accumulation_steps": ("global_batch_size",),
    "max_grad_norm": ("grad_clip_norm",),
    "clip_grad_norm": ("grad_clip_norm",),
    "warmup_steps": ("warmup",),
    "epochs": ("num_epochs",),
    "max_steps": ("total_train_samples",),
    "output_dir": ("save_path", "name"),
    "dtype": ("precision",),
    "mixed_precision": ("precision",),
}


def _closest(name: str, valid: Sequence[str]) -> str:
    known = [alias for alias in SYNONYMS.get(name, ()) if alias in valid]
    close = known + [c for c in closest_names(name, valid) if c not in known]
    return ", ".join(close) if close else ", ".join(sorted(valid))


def _env_only_fields(cls: type) -> dict[str, str]:
    """Fields read from the environment (distributed rank etc.): never set by users."""
    return dict(getattr(cls, "ENVIRONMENT_FIELDS", {}))


def build_params(cls: type[T], data: Any, path: str, sources: _Sources, strict: bool = True) -> T:
    """Check `data` against `cls` and construct it; registries resolve by `type`, unions by given fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'} must be a mapping of fields, got {data!r}")
    if isinstance(cls, type) and issubclass(cls, ParamsRegistry):
        cls = _resolve_choice(cls, data, path, sources)
        data = {k: v for k, v in data.items() if k != "type"}
    return _build_dataclass(cls, data, path, sources, strict)


def _resolve_choice(cls: type, data: dict, path: str, sources: _Sources) -> type:
    from vla_foundry.plugins import load_builtin_params

    # The built-in types kept in folders of their own (`vla_foundry/models/<type>/params.py`) are known to every
    # parse, whichever entry point started it.
    load_builtin_params()
    choices = cls.get_known_choices()
    try:
        name = cls.get_choice_name(cls)
    except ValueError:
        name = None
    if name is not None:  # already a concrete registered class
        given = data.get("type")
        if given is not None and given != name:
            raise ConfigError(f"{path}.type={given!r} does not match the expected {name!r}")
        return cls
    if "type" not in data:
        raise ConfigError(f"{path}.type is required (--{path}.type NAME); choose one of: {', '.join(sorted(choices))}")
    name = data["type"]
    if name not in choices:
        raise ConfigError(
            f"{path}.type={name!r} ({sources.where(path + '.type')}) is not registered; "
            f"closest: {_closest(str(name), list(choices))}; registered: {', '.join(sorted(choices))} (a type "
            "defined in your own module registers when the module is imported: --plugins my_pkg.module)"
        )
    return choices[name]


def _build_dataclass(cls: type, data: dict, path: str, sources: _Sources, strict: bool) -> Any:
    hints = typing.get_type_hints(cls)
    valid = _field_names(cls)
    env_only = _env_only_fields(cls)
    kwargs: dict = {}
    for key, value in data.items():
        dotted = f"{path}.{key}" if path else str(key)
        if key in env_only:
            # A saved config records the values of its run; they are read again from this run's environment.
            if strict and dotted in sources.cli_keys:
                raise ConfigError(
                    f"{dotted} is read from the torchrun environment variable {env_only[key]}; do not set it"
                )
            continue
        if key not in valid:
            if strict:
                raise ConfigError(
                    f"unknown key {dotted!r} ({sources.where(dotted)}); closest valid names under "
                    f"{path or 'the top level'}: {_closest(str(key), valid)}"
                )
            warnings.warn(f"dropping key {dotted!r}: not a field of {cls.__name__} in this version", stacklevel=2)
            continue
        kwargs[key] = _build_value(hints[key], value, dotted, sources, strict)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.init
        and f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        name = f"{path}.{missing[0]}" if path else missing[0]
        hint = f" (e.g. --{name}.type NAME)" if hasattr(hints[missing[0]], "get_known_choices") else ""
        raise ConfigError(f"{name} is required{hint}")
    return cls(**kwargs)


def _build_value(tp: Any, value: Any, dotted: str, sources: _Sources, strict: bool) -> Any:
    inner = _unwrap_optional(tp)
    if get_origin(inner) is Literal and value is not None:
        allowed = get_args(inner)
        for option in allowed:
            if value == option or str(value) == str(option):
                return option
        raise ConfigError(
            f"{dotted}={value!r} ({sources.where(dotted)}) is not valid; choose one of: "
            f"{', '.join(str(a) for a in allowed)}"
        )
    variants = _dataclass_variants(tp)
    if variants and isinstance(value, str) and value.strip().endswith((".yaml", ".yml")):
        # A preset path where a block is expected: the file is loaded only when asked to (`include`, `!include`).
        where = sources.where(dotted)
        fix = (
            f'--{dotted} "include {value}"'
            if where.startswith("on the command line")
            else f"{dotted}: !include {value}"
        )
        raise ConfigError(
            f"{dotted}={value!r} ({where}) is a file name where a block of fields is expected; load it with {fix}"
        )
    if not variants or not isinstance(value, dict):
        return _decode_leaf(tp, value, dotted, sources)
    if len(variants) == 1:
        return build_params(variants[0], value, dotted, sources, strict)
    # A union: the variant `type` names (a registered model/data name), else the first with every given key.
    if "type" in value:
        for variant in variants:
            if hasattr(variant, "get_known_choices") and variant.get_known_choices().get(value["type"]) is variant:
                return build_params(variant, value, dotted, sources, strict)
    for variant in variants:
        if set(value) - {"type"} <= set(_field_names(variant)):
            return build_params(variant, value, dotted, sources, strict)
    all_names = sorted({n for v in variants for n in _field_names(v)})
    unknown = sorted(set(value) - set(all_names) - {"type"})
    if unknown:
        key = unknown[0]
        raise ConfigError(
            f"unknown key {dotted + '.' + key!r} ({sources.where(dotted + '.' + key)}); closest valid names under "
            f"{dotted}: {_closest(key, all_names)}"
        )
    kinds = " | ".join(v.__name__ for v in variants)
    raise ConfigError(
        f"{dotted} mixes fields of different kinds ({kinds}): {', '.join(sorted(value))}; "
        f"give the fields of one kind only"
    )


def _decode_leaf(tp: Any, value: Any, dotted: str, sources: _Sources) -> Any:
    """Type conversion of a non-dataclass value by draccus (ints, floats, lists, tuples, dicts, unions)."""
    try:
        return draccus.decode(tp, value)
    except Exception as e:
        message = e.message if isinstance(e, draccus.utils.DecodingError) else str(e)
        raise ConfigError(
            f"{dotted}={value!r} ({sources.where(dotted)}) is not a valid {_type_label(tp)}: {_first_line(message)}"
        ) from None


def _type_label(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


def parse_params(cls: type[T], args: Sequence[str] | None = None) -> T:
    """Parse `--config_path` and CLI flags into `cls` (no shared-attribute pass: see `parse_train_params`)."""
    data, sources = compose_config(args)
    return build_params(cls, data, "", sources)


def compose_config(args: Sequence[str] | None) -> tuple[dict, _Sources]:
    """Merge YAML (`--config_path`) and CLI flags into one mapping, remembering where values came from."""
    pairs = split_cli(args if args is not None else [])
    config_paths = [v for k, v in pairs if k == CONFIG_PATH_FLAG]
    pairs = [(k, v) for k, v in pairs if k != CONFIG_PATH_FLAG]
    file_data: dict = {}
    files: list[str] = []
    for path in config_paths:
        loaded, read = load_yaml(path)
        file_data = deep_merge(file_data, loaded)
        files.extend(read)
    sources = _Sources(cli_keys={k for k, _ in pairs}, files=files)
    for _, raw in pairs:
        if raw.startswith(INCLUDE_PREFIX):
            sources.files.extend(load_yaml(raw[len(INCLUDE_PREFIX) :].strip())[1])
    for key, raw in pairs:
        # A block given whole on the CLI (`--model.vit "include vit_hf.yaml"`) replaces that block of the YAML
        # instead of merging into it: it may be a different kind (a native ViT preset replaced by an HF one).
        if raw.startswith(INCLUDE_PREFIX):
            _delete_path(file_data, key.split("."))
    return deep_merge(file_data, cli_to_dict(pairs)), sources


def _delete_path(data: dict, parts: list[str]) -> None:
    node = data
    for part in parts[:-1]:
        node = node.get(part)
        if not isinstance(node, dict):
            return
    node.pop(parts[-1], None)


def parse_train_params(args: Sequence[str] | None = None) -> Any:
    """Parse a training config and run the shared-attribute / derived-value pass.

    Plugins (`plugins:` in the YAML, `--plugins a.b,c` on the command line, and `vla_foundry.plugins` entry points)
    are imported first, so the model / data types they register can be named. Reads the config files only: no
    dataset, tokenizer, backbone run or network (that is the resolve step, `vla_foundry.params.resolve`).
    """
    from vla_foundry.params.train_experiment_params import TrainExperimentParams, derive_params
    from vla_foundry.plugins import load_plugins, split_plugin_names

    data, sources = compose_config(args)
    if data.get("plugins") is not None:
        data["plugins"] = split_plugin_names(data["plugins"])
    load_plugins(data.get("plugins") or [])
    return derive_params(build_params(TrainExperimentParams, data, "", sources))


# ---------------------------------------------------------------------------------------------------------------
# Saving and loading


def params_to_dict(params: Any) -> dict:
    """Plain YAML-able dict; every model/data params block carries its `type` (so unions reload unambiguously)."""
    return _tag_types(params, draccus.encode(params))


def _tag_types(params: Any, encoded: Any) -> Any:
    if not dataclasses.is_dataclass(params) or not isinstance(encoded, dict):
        return encoded
    out = {"type": params.type} if isinstance(params, ParamsRegistry) else {}
    for key, value in encoded.items():
        out[key] = _tag_types(getattr(params, key, None), value)
    return out


def params_to_yaml(params: Any) -> str:
    return yaml.safe_dump(params_to_dict(params), sort_keys=False, default_flow_style=False)


def save_params(params: Any, path: str | os.PathLike) -> None:
    """Write params as YAML to a local path or s3:// URL."""
    storage.write_text(str(path), params_to_yaml(params))


def load_params_from_yaml(cls: type[T], path: str | os.PathLike, strict: bool = False) -> T:
    """Read params saved by `save_params` (local or s3://).

    `cls` may be a sub-part of what the file holds: `load_params_from_yaml(ModelParams, run/config.yaml)` reads
    the `model` block. Keys this version no longer has are dropped with a warning (saved runs stay loadable);
    `strict=True` makes them errors.
    """
    path = str(path)
    data = read_structured_file(
        path,
        ConfigError,
        fix="restore it from the run's remote copy, or re-save the params",
        missing=f"params file not found: {path}",
        expect=None,
    )
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"{path} does not hold a mapping of params (empty or truncated?): restore it from the run's remote copy, "
            "or re-save the params"
        )
    from vla_foundry.plugins import load_plugins, split_plugin_names

    # A run of a plugin's model type records its plugins; entry-point plugins load in any case.
    load_plugins(split_plugin_names(data.get("plugins") or []))
    section = _section_for(cls)
    if section and section in data and "type" not in data:
        data = data[section]
    sources = _Sources(cli_keys=set(), files=[] if storage.is_s3(path) else [path])
    return build_params(cls, data, section or "", sources, strict=strict)


def _section_for(cls: type) -> str | None:
    from vla_foundry.params.train_experiment_params import TrainExperimentParams

    for f in dataclasses.fields(TrainExperimentParams):
        tp = typing.get_type_hints(TrainExperimentParams)[f.name]
        if isinstance(tp, type) and isinstance(cls, type) and issubclass(cls, tp):
            return f.name
    return None
