"""The mapping YAML (`--mapping_path`) of the MCAP, HDF5 and Robo-DM sources: which source streams become the
stored cameras, low-dim fields and language of an episode.

    cameras:                 # stored camera name -> source (MCAP topic, HDF5 dataset path, Robo-DM feature)
      head: /camera/head/image_raw/compressed
    lowdim:                  # stored field -> source; MCAP: {topic: ..., field: position} (field: a path or a list)
      observation.state: {topic: /joint_states, field: position}
      action: {topic: /arm/command, field: data}
    language: pick up the cube   # a fixed instruction, or (MCAP) {topic: ..., field: data}, (HDF5) {attribute: ...}
    timestamps: ...              # HDF5 only: dataset of per-step times in seconds

Each source says which keys it reads; an unknown key is a `ConfigError` naming the closest valid one.
"""

from __future__ import annotations

from typing import Any

import yaml

from vla_foundry import storage
from vla_foundry.names import closest_names
from vla_foundry.params.base_params import ConfigError


def load_mapping(path: str | None, valid_keys: tuple[str, ...], source: str) -> dict[str, Any]:
    """The mapping at `path` ({} when None), its top-level keys checked against `valid_keys`."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(storage.read_text(path)) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"mapping_path={path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"mapping_path={path}: expected a mapping with keys {', '.join(valid_keys)}")
    for key in data:
        if key not in valid_keys:
            close = closest_names(str(key), valid_keys, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"mapping_path={path}: unknown key {key!r}{hint}; a {source} mapping has {', '.join(valid_keys)}"
            )
    for key in ("cameras", "lowdim"):
        value = data.get(key)
        if value is not None and not (isinstance(value, dict) and value):
            raise ConfigError(f"mapping_path={path}: {key} must be a non-empty mapping {{stored name: source}}")
    return data


def instruction_words(name: str) -> str:
    """`sim_transfer_cube` -> `sim transfer cube`: the fallback instruction taken from a folder name."""
    return " ".join(name.replace("-", "_").split("_")).strip()


def find_episode_files(roots: list[str], suffixes: tuple[str, ...], source: str) -> list[tuple[str, str]]:
    """(root, file) for every file ending in one of `suffixes` under each root (a root may be a file), sorted.

    A root holding none is a `ConfigError` naming it and the suffixes looked for.
    """
    found: list[tuple[str, str]] = []
    for root in roots:
        root = root.rstrip("/")
        if root.endswith(suffixes) and storage.exists(root):
            found.append((storage.dirname(root), root))
            continue
        files = [f for f in storage.list_files(root) if f.endswith(suffixes)]
        if not files:
            raise ConfigError(f"no {source} files under {root}: nothing ends in {', '.join(suffixes)}")
        found.extend((root, f) for f in files)
    return found


def episode_name(root: str, path: str, suffixes: tuple[str, ...]) -> str:
    """`<root folder>_<path below root without suffix>` with `/` as `_`: unique across roots with distinct names."""
    rel = path[len(root) :].strip("/")
    for suffix in suffixes:
        if rel.endswith(suffix):
            rel = rel[: -len(suffix)]
            break
    return "_".join(p for p in [storage.basename(root), *rel.split("/")] if p)
