"""argparse flag helpers of the benchmark scripts: a list flag written as one YAML list (`--workers "[1, 2]"`), the
space-separated form still read with a warning (the package's own commands use `vla_foundry.cli`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


def add_list_flag(
    parser: argparse.ArgumentParser, name: str, item: Callable[[str], Any], help: str, default: Any = None
) -> None:
    """A list flag written as one YAML list (`--name "[1, 2]"`); read with `list_value` after parsing."""
    parser.add_argument(name, nargs="+", default=default, metavar="[A, B, ...]", help=help)
    parser.set_defaults(**{f"_list_item_{name.lstrip('-')}": item})


def list_value(parser: argparse.ArgumentParser, args: argparse.Namespace, name: str) -> list | None:
    """The list given to `--name` (None when not given and no default): `["[96, 128]"]` (the documented form) or
    `["96", "128"]` (the old space-separated form, with a warning) -> [96, 128], items converted by the flag's type;
    a malformed value ends the tool with one line naming the flag."""
    import yaml

    key = name.lstrip("-")
    tokens = getattr(args, key)
    if tokens is None or not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        return tokens  # the default, already a value
    item = getattr(args, f"_list_item_{key}")
    if len(tokens) == 1 and tokens[0].lstrip().startswith("["):
        try:
            values = yaml.safe_load(tokens[0])
        except yaml.YAMLError:
            values = None
        if not isinstance(values, list):
            parser.error(f'{name} {tokens[0]!r} is not a YAML list; write it like {name} "[1, 2]"')
    else:
        values = tokens
        if len(tokens) > 1:
            print(
                f'warning: {name} {" ".join(tokens)}: write lists as {name} "[{", ".join(tokens)}]", as every '
                "vla_foundry tool does; the space-separated form will be removed",
                file=sys.stderr,
            )
    try:
        return [item(str(v)) for v in values]
    except (TypeError, ValueError):
        parser.error(f"{name} {tokens}: every item must be a {getattr(item, '__name__', 'value')}")
