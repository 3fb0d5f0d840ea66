"""Flag conventions shared by the package's argparse tools, so that every tool reads a flag the way
`vla_foundry/main.py` does:

- booleans: `--flag`, `--flag True|False` or `--flag=VALUE` (as every bool field of the config);
- lists: one YAML value, `--image_size "[96, 128]"` (as `--data.dataset_manifest "[a, b]"`); the space-separated
  form (`--image_size 96 128`) still works for now and warns;
- the run directory: `--run_dir PATH`; a bare path in its place still works and warns.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def parse_bool(text: str) -> bool:
    """`True`/`False` (also yes/no, 1/0, any case); argparse reports anything else as one line."""
    try:
        return BOOL_WORDS[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; valid: True, False") from None


def pop_bool_flag(args: Sequence[str], flag: str) -> tuple[bool, list[str]]:
    """(value, the other args) of a boolean flag taken out before the rest is parsed (e.g. main.py's `--debug`),
    given as `--flag`, `--flag True|False` or `--flag=VALUE`; a value that is not a boolean is a ConfigError."""
    from vla_foundry.params.base_params import ConfigError

    value, rest, i = False, [], 0
    while i < len(args):
        arg = args[i]
        if arg == flag or arg.startswith(flag + "="):
            given = arg.partition("=")[2] if "=" in arg else None
            if given is None and i + 1 < len(args) and not args[i + 1].startswith("-"):
                given, i = args[i + 1], i + 1
            if given is not None and given.lower() not in BOOL_WORDS:
                raise ConfigError(f"{flag}={given!r} is not a boolean; valid: True, False (or {flag} alone)")
            value = True if given is None else BOOL_WORDS[given.lower()]
        else:
            rest.append(arg)
        i += 1
    return value, rest


def add_bool_flag(parser: argparse.ArgumentParser, name: str, help: str, default: bool = False) -> None:
    """`--name` alone means True; `--name True|False` sets it."""
    parser.add_argument(name, nargs="?", const=True, default=default, type=parse_bool, metavar="BOOL", help=help)


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


def add_run_dir_flag(parser: argparse.ArgumentParser, help: str) -> None:
    """`--run_dir PATH` (required), also accepted as a bare path for now (read with `run_dir_value`)."""
    parser.add_argument("--run_dir", default=None, help=help)
    parser.add_argument("_run_dir_positional", nargs="?", default=None, metavar="", help=argparse.SUPPRESS)


def run_dir_value(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """The run dir from `--run_dir`, or from a bare path with a warning; one line when neither or both are given."""
    flag, positional = args.run_dir, args._run_dir_positional
    if flag and positional:
        parser.error(f"the run dir is given twice ({positional!r} and --run_dir {flag!r}); keep --run_dir")
    if positional:
        print(f"warning: give the run dir as --run_dir {positional} (a bare path will be removed)", file=sys.stderr)
        return positional
    if not flag:
        parser.error("--run_dir is required (a run directory, local or s3://)")
    return flag
