"""Reading the small YAML / JSON files a user hands over (configs, stats.json, a run's processor and normaliser
configs, a dataset's preprocessing_config.yaml), local or s3://.

A missing, truncated, corrupt (binary) or wrongly shaped file becomes ONE line naming the file, what is wrong and
what to do, raised as the caller's own user-facing error class. YAML is read with the safe loader: tags that would
build Python objects (`!!python/object/apply:...`) are refused, never run, and a document whose aliases would expand
to more than `MAX_YAML_NODES` values (a "billion laughs" file) is refused before anything is built from it.
"""

from __future__ import annotations

import json
from typing import Any

from vla_foundry import storage

# A config is a few hundred values; the largest preset expands to well under a thousand. Aliases (`*a`) are
# references, so nested ones can name 10^9 values in a few hundred bytes: anything past this bound is refused.
MAX_YAML_NODES = 100_000


def yaml_expanded_size(node: Any) -> int | None:
    """How many values the composed YAML `node` stands for once every alias is expanded (memoised per node, so
    the count is linear in the file); None when an alias refers to a node that contains it (a recursive value)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(n: Any) -> int | None:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in on_path:
            return None
        children: list[Any] = []
        if isinstance(n.value, list):
            for child in n.value:
                children.extend(child if isinstance(child, tuple) else (child,))  # mapping items are (key, value)
        on_path.add(key)
        total = 1
        for child in children:
            sub = size(child)
            if sub is None:
                return None
            total += sub
            if total > MAX_YAML_NODES:
                break  # already too large: counting further only costs time
        on_path.discard(key)
        sizes[key] = total
        return total

    return size(node)


def load_yaml_document(loader: Any, path: str, error: type[Exception]) -> Any:
    """The data of the single document `loader` reads, refusing alias bombs and recursive aliases with one
    `error` line naming `path` before any value is built (`yaml.YAMLError` propagates to the caller)."""
    node = loader.get_single_node()
    if node is None:
        return None
    size = yaml_expanded_size(node)
    if size is None:
        raise error(f"{path}: a YAML alias (*name) refers to a value that contains it; a config cannot be recursive")
    if size > MAX_YAML_NODES:
        raise error(
            f"{path}: its YAML aliases (*name) expand to more than {MAX_YAML_NODES:,} values (nested anchors "
            "repeated, a 'billion laughs' file?); a config holds a few hundred: write the values out"
        )
    return loader.construct_document(node)


def yaml_problem(error: Exception) -> str:
    """A YAML error in one line: what is wrong and where ("found unexpected end of stream at line 3, column 1")."""
    problem = getattr(error, "problem", None) or (str(error).strip().splitlines() or ["unreadable"])[0]
    mark = getattr(error, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def read_structured_file(
    path: str, error: type[Exception], fix: str, missing: str | None = None, expect: type | None = dict
) -> Any:
    """The parsed content of a `.json` or YAML file at `path`; `error(one line)` when it cannot be used.

    `fix` says what to do about a corrupt file ("re-run preprocessing", "restore it from the run's remote copy");
    `missing` is the whole message for a file that does not exist. `expect` is the type the top level must have."""
    kind = "JSON" if path.endswith((".json", ".jsonl")) else "YAML"
    try:
        text = storage.read_text(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise error(missing or f"{path} does not exist: {fix}") from None
    except UnicodeDecodeError as e:
        raise error(f"{path} is not a text file (undecodable byte at offset {e.start}; corrupt?): {fix}") from None
    if kind == "JSON":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise error(
                f"{path} is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}; truncated?): {fix}"
            ) from None
    else:
        import yaml

        loader = yaml.SafeLoader(text)
        try:
            data = load_yaml_document(loader, path, error)
        except RecursionError:
            raise error(f"{path} is nested too deeply to be a config (corrupt or generated?): {fix}") from None
        except yaml.YAMLError as e:
            raise error(f"{path} is not valid YAML ({yaml_problem(e)}; truncated or corrupt?): {fix}") from None
        finally:
            loader.dispose()
    if expect is not None and not isinstance(data, expect):
        raise error(f"{path} holds a {type(data).__name__} at the top level, expected a {expect.__name__}: {fix}")
    return data
