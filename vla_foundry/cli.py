"""One command line for every tool: each command parses a frozen params dataclass with the parser of
`vla_foundry/main.py` (`vla_foundry.params.parsing`), so every tool has

- `--help` listing each field with its type, default and the description written above it in the dataclass;
- `--config_path job.yaml` (repeatable; YAML with `!include`), then flags `--field VALUE` over it;
- unknown flags and wrong values as one `error: ...` line naming the closest valid names (exit status 2);
  `--debug` shows the full traceback instead.

Flag spellings, the same in every tool:

- booleans: `--flag` alone, `--flag True|False` or `--flag=VALUE`;
- lists: one YAML value, `--image_size "[96, 128]"`; the space-separated form (`--image_size 96 128`) and a
  repeated flag (`--task a --task b`) still work and warn;
- the run directory: `--run_dir PATH`; where a tool took a bare path it still does (with a warning);
- a renamed flag keeps working under its old name for a while, with a one-line warning.

    from vla_foundry.cli import run_command
    return run_command(MyToolParams, my_tool, argv, prog="python -m my.tool", doc=__doc__)

(`Spelling` adds bare words, aliases and renamed flags; `run_subcommands` picks the params by a verb.)
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from vla_foundry.params.base_params import ConfigError

T = TypeVar("T")
BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
# Flags every command takes besides its fields (shown by --help).
COMMON_FLAGS = (
    "  --config_path PATH   a YAML file of these fields (may `!include` others); repeatable, flags override it",
    "  --debug [BOOL]       full tracebacks instead of one-line errors (`--debug` alone means True)",
    "  --help, -h           this text",
)


@dataclasses.dataclass(frozen=True)
class Spelling:
    """How a command's flags may be written besides `--field VALUE`."""

    # Fields a bare word fills, in order (`hub push RUN REPO`).
    positional: tuple[str, ...] = ()
    # Of those, the ones whose bare form is on its way out: accepted with a warning naming the flag.
    positional_deprecated: tuple[str, ...] = ()
    # Other names of a field, accepted silently (`--episodes_per_task` for `--episodes`).
    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # Old names of a renamed field: accepted with a one-line warning.
    renamed: Mapping[str, str] = dataclasses.field(default_factory=dict)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def pop_bool_flag(args: Sequence[str], flag: str) -> tuple[bool, list[str]]:
    """(value, the other args) of a boolean flag taken out before the rest is parsed (e.g. `--debug`), given as
    `--flag`, `--flag True|False` or `--flag=VALUE`; a value that is not a boolean is a ConfigError."""
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


# ---------------------------------------------------------------------------------------------------------------
# Field kinds


def _field_type(cls: type, dotted: str) -> Any:
    """The annotation of `--a.b` in `cls` (None when no such field: the parser names the closest one)."""
    tp: Any = cls
    for part in dotted.split("."):
        tp = _strip_optional(tp)
        if not dataclasses.is_dataclass(tp):
            return None
        hints = typing.get_type_hints(tp)
        if part not in hints:
            return None
        tp = hints[part]
    return tp


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _is_bool(tp: Any) -> bool:
    return _strip_optional(tp) is bool


def _is_list(tp: Any) -> bool:
    return typing.get_origin(_strip_optional(tp)) in (list, tuple)


def _is_str(tp: Any) -> bool:
    return _strip_optional(tp) is str


def _is_flag(word: str) -> bool:
    return word.startswith("--") and len(word) > 2


# ---------------------------------------------------------------------------------------------------------------
# Parsing


def normalise_args(cls: type, argv: Sequence[str], spelling: Spelling = Spelling()) -> list[str]:
    """`argv` in the one spelling the params parser reads (`--field VALUE` pairs): bare words to their positional
    fields, old and alias names to the field's, a lone bool flag to `True`, a space-separated or repeated list to
    one YAML list, a string field's value kept as typed (`--revision 1.0` stays the text "1.0")."""
    args = list(argv)
    pairs: list[tuple[str, list[str]]] = []  # (field, its value words), in order
    bare: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if not _is_flag(word):
            bare.append(word)
            i += 1
            continue
        name, has_value, value = word[2:].partition("=")
        if name in spelling.renamed:
            new = spelling.renamed[name]
            warn(f"--{name} is now --{new}; the old name will be removed")
            name = new
        name = spelling.aliases.get(name, name)
        tp = _field_type(cls, name)
        i += 1
        if has_value:
            pairs.append((name, [value]))
            continue
        values: list[str] = []
        while i < len(args) and not _is_flag(args[i]):
            values.append(args[i])
            i += 1
            if not _is_list(tp):
                break
        if _is_bool(tp) and values and values[0].lower() not in BOOL_WORDS:
            # `--ema RUN`: the bool flag alone, then a bare word.
            if len(bare) + 1 > len(spelling.positional) - sum(1 for f, _ in pairs if f in spelling.positional):
                raise ConfigError(f"--{name} {values[0]!r}: not a boolean; valid: True, False (or --{name} alone)")
            bare.append(values.pop())
        if _is_bool(tp) and not values:
            values = ["True"]
        pairs.append((name, values))
    given = {name for name, _ in pairs}
    free = [f for f in spelling.positional if f not in given]
    if len(bare) > len(free):
        extra = bare[len(free)]
        hint = f" (this tool takes {', '.join(spelling.positional)} as bare words)" if spelling.positional else ""
        raise ConfigError(f"unexpected argument {extra!r}{hint}: flags look like --field VALUE; see --help")
    for name, word in zip(free, bare):
        if name in spelling.positional_deprecated:
            warn(f"give it as --{name} {word} (a bare {name} will be removed)")
        pairs.append((name, [word]))
    return _joined(cls, pairs)


def _joined(cls: type, pairs: list[tuple[str, list[str]]]) -> list[str]:
    """One `--field VALUE` per field: a list given as several words or several times becomes one YAML list."""
    merged: dict[str, list[list[str]]] = {}
    for name, values in pairs:
        merged.setdefault(name, []).append(values)
    out: list[str] = []
    for name, occurrences in merged.items():
        tp = _field_type(cls, name)
        if name == "config_path":
            for values in occurrences:
                out += [f"--{name}", *values]
            continue
        if _is_list(tp):
            whole = [len(v) == 1 and v[0].lstrip().startswith(("[", "include ")) for v in occurrences]
            if len(occurrences) > 1 and all(whole):
                # `--image_indices "[-1, 0]" ... --image_indices "[0]"`: a later whole list overrides, as a flag
                # overrides the config file.
                occurrences = occurrences[-1:]
            words = [w for values in occurrences for w in values]
            if len(words) == 1:
                word = words[0]
                one_item = not word.lstrip().startswith(("[", "include ")) and word not in ("null", "None", "~")
                out += [f"--{name}", _yaml_list(tp, [word]) if one_item else word]
                continue
            if len(occurrences) > 1:
                # Repeated `--task a --task [b, c]`: every value's items, in order.
                words = [item for w in words for item in _list_items(w)]
            listed = "[" + ", ".join(words) + "]"
            how = "given several times" if len(occurrences) > 1 else "space-separated"
            warn(f'--{name} {how}: write lists as --{name} "{listed}", as every vla_foundry tool does')
            out += [f"--{name}", _yaml_list(tp, words)]
            continue
        values = occurrences[-1]
        if len(values) != 1:
            raise ConfigError(f"flag --{name} needs a value")
        value = values[0]
        if _is_str(tp) and not value.startswith("include ") and value not in ("null", "None", "~"):
            value = json.dumps(value)  # YAML reads a JSON string as that string: `1.0`, `yes` stay text
        out += [f"--{name}", value]
    return out


def _yaml_list(tp: Any, words: list[str]) -> str:
    """Words -> one YAML flow list; items of a `list[str]` stay text, others are read as YAML scalars."""
    import yaml

    item_types = typing.get_args(_strip_optional(tp))
    as_text = bool(item_types) and item_types[0] is str
    items = [w if as_text else _scalar(w) for w in words]
    return yaml.safe_dump(items, default_flow_style=True, width=2**31).strip()


def _scalar(word: str) -> Any:
    import yaml

    try:
        value = yaml.safe_load(word)
    except yaml.YAMLError:
        return word
    return value if isinstance(value, (int, float, bool, str)) else word


def _list_items(word: str) -> list[str]:
    import yaml

    if word.lstrip().startswith("["):
        try:
            value = yaml.safe_load(word)
        except yaml.YAMLError:
            value = None
        if isinstance(value, list):
            return [str(v) for v in value]
    return [word]


def parse_command(cls: type[T], argv: Sequence[str], spelling: Spelling = Spelling()) -> T:
    """`argv` (flags, `--config_path` files, bare words per `spelling`) -> validated `cls`; a ConfigError with one
    line naming the flag and the closest valid names for anything wrong."""
    from vla_foundry.params.parsing import parse_params

    params = parse_params(cls, normalise_args(cls, argv, spelling))
    validate = getattr(params, "validate", None)
    if callable(validate):
        validate()
    return params


# ---------------------------------------------------------------------------------------------------------------
# Running


def command_help(
    prog: str, doc: str | None, cls: type, spelling: Spelling = Spelling(), common_flags: bool = True
) -> str:
    """The tool's description, usage and one entry per field (type, default, description); `common_flags`: also
    --config_path, --debug and --help (a launcher whose other flags go to training leaves them to training's)."""
    from vla_foundry.params.help_text import field_lines

    bare = "".join(f" [{name.upper()}]" for name in spelling.positional)
    lines = [f"usage: {prog}{bare} [--config_path FILE.yaml] [--field VALUE ...]", ""]
    if doc:
        lines += [doc.strip(), ""]
    lines += ["Flags (field  type = default, then what it does):", *field_lines(cls)]
    lines += COMMON_FLAGS if common_flags else []
    others = [f"--{old} (now --{new})" for old, new in spelling.renamed.items()]
    others += [f"--{alias} (= --{name})" for alias, name in spelling.aliases.items()]
    if others:
        lines.append("  also accepted: " + ", ".join(others))
    lines += ["", 'Values are YAML (`"[a, b]"` lists, True/False, 1e-4); a bool flag alone means True.']
    return "\n".join(lines)


def report_error(error: BaseException, debug: bool) -> int:
    """One line for the user (the full traceback with --debug); exit status 2."""
    if debug:
        raise error
    print(f"error: {error}", file=sys.stderr)
    return 2


def run_command(
    cls: type[T],
    run: Callable[[T], int | None],
    argv: Sequence[str] | None = None,
    *,
    prog: str,
    doc: str | None = None,
    spelling: Spelling = Spelling(),
    errors: tuple[type[BaseException], ...] = (),
    parse: Callable[[type[T], Sequence[str]], T] | None = None,
) -> int:
    """Parse `argv` (default sys.argv[1:]) into `cls` and call `run(params)`; returns the exit status: `run`'s
    (0 when it returns None), 0 for --help, 2 with one `error:` line for a bad flag or one of `errors` raised.
    `parse` replaces `parse_command` for params with their own extra spellings (preprocessing's old key names)."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        debug, args = pop_bool_flag(args, "--debug")
    except ConfigError as e:
        return report_error(e, False)
    if "--help" in args or "-h" in args:
        print(command_help(prog, doc, cls, spelling))
        return 0
    try:
        params = parse(cls, args) if parse is not None else parse_command(cls, args, spelling)
    except (ConfigError, FileNotFoundError) as e:
        return report_error(e, debug)
    try:
        status = run(params)
    except (ConfigError, *errors) as e:
        return report_error(e, debug)
    return 0 if status is None else int(status)


@dataclasses.dataclass(frozen=True)
class Subcommand:
    """One verb of a tool with several (`hub push`, `hub pull`)."""

    params: type
    run: Callable[[Any], int | None]
    help: str
    spelling: Spelling = Spelling()


def run_subcommands(
    commands: Mapping[str, Subcommand],
    argv: Sequence[str] | None = None,
    *,
    prog: str,
    doc: str | None = None,
    errors: tuple[type[BaseException], ...] = (),
) -> int:
    """`prog VERB --flag ...`: the verb picks the params class, the rest is `run_command`'s; `prog --help` lists the
    verbs, `prog VERB --help` one verb's flags."""
    from vla_foundry.names import closest_names

    args = list(sys.argv[1:] if argv is None else argv)
    verbs = "\n".join(f"  {name:<14}{command.help}" for name, command in commands.items())
    usage = f"usage: {prog} {{{','.join(commands)}}} [--field VALUE ...]   ({prog} VERB --help: its flags)"
    if not args or args[0] in ("--help", "-h"):
        print(f"{usage}\n\n{(doc or '').strip()}\n\nCommands:\n{verbs}".replace("\n\n\n", "\n\n"))
        return 0 if args else 2
    verb, rest = args[0], args[1:]
    if verb not in commands:
        close = closest_names(verb, commands, n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        error = ConfigError(f"{verb!r} is not a command of {prog}{hint}; valid: {', '.join(commands)}")
        return report_error(error, False)
    command = commands[verb]
    return run_command(
        command.params,
        command.run,
        rest,
        prog=f"{prog} {verb}",
        doc=command.help,
        spelling=command.spelling,
        errors=errors,
    )


def params_to_args(params: Any) -> list[str]:
    """`--field VALUE` for every field of a flat params object that differs from its default: the command line
    that parses back to `params` (bools as True/False, lists as one YAML list)."""
    import yaml

    out: list[str] = []
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if f.default is not dataclasses.MISSING:
            if value == f.default:
                continue
        elif f.default_factory is not dataclasses.MISSING and value == f.default_factory():
            continue
        if value is None:
            text = "null"
        elif isinstance(value, (list, tuple)):
            text = yaml.safe_dump(list(value), default_flow_style=True).strip()
        else:
            text = str(value)
        out += [f"--{f.name}", text]
    return out
