"""Reading the small YAML / JSON files a user hands over (configs, stats.json, a run's processor and normaliser
configs, a dataset's preprocessing_config.yaml), local or s3://.

A missing, truncated, corrupt (binary) or wrongly shaped file becomes ONE line naming the file, what is wrong and
what to do, raised as the caller's own user-facing error class. YAML is read with the safe loader: tags that would
build Python objects (`!!python/object/apply:...`) are refused, never run.
"""

from __future__ import annotations

import json
from typing import Any

from vla_foundry import storage


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

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise error(f"{path} is not valid YAML ({yaml_problem(e)}; truncated or corrupt?): {fix}") from None
    if expect is not None and not isinstance(data, expect):
        raise error(f"{path} holds a {type(data).__name__} at the top level, expected a {expect.__name__}: {fix}")
    return data
