"""`python -m vla_foundry.checkpoint export --run_dir RUN [--checkpoint N] [--output F.safetensors] [--ema]`

Writes a checkpoint's consolidated weights as one .safetensors file (streaming). Flags are parsed like
`vla_foundry/main.py`'s: `--config_path job.yaml`, `--field VALUE` or `--field=VALUE`, booleans also alone, one-line
errors naming the flag and the closest valid names, `--help` listing every field.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from vla_foundry.params.base_params import ConfigError

COMMANDS = {"export": "write consolidated weights as one .safetensors file (streaming)"}


@dataclass(frozen=True)
class ExportParams:
    """What `python -m vla_foundry.checkpoint export` writes."""

    # Run dir (its latest complete checkpoint), a checkpoints/checkpoint_<n> dir or a weights file; local, s3:// or hf://.
    run_dir: str | None = None
    # Checkpoint number n of the run (default: the latest complete one).
    checkpoint: int | None = None
    # A .safetensors file (default <run>/model.safetensors, or <run>/ema.safetensors with --ema).
    output: str | None = None
    # Export the EMA weights in place of the trained ones (`--ema` alone means True).
    ema: bool = False
    # Modules to import first: they register checkpoint backends (`--plugins my_pkg.module,other`).
    plugins: list[str] = field(default_factory=list)


def usage() -> str:
    lines = ["usage: python -m vla_foundry.checkpoint COMMAND [--config_path F.yaml] [--field VALUE ...]", ""]
    lines += [f"  {name}  {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


def command_help(name: str, cls: type) -> str:
    from vla_foundry.params.help_text import field_lines

    head = f"usage: python -m vla_foundry.checkpoint {name} [--config_path F.yaml] [--field VALUE ...]"
    return "\n".join([head, "", COMMANDS[name], "", *field_lines(cls)])


def parse_command_params(cls: type, args: Sequence[str]) -> object:
    """`cls` from `--config_path` and flags, as main.py parses a training job; a boolean field may be given alone
    (`--ema`), a bare path in place of `--run_dir` still works (with a warning), `--plugins a,b` is imported."""
    from vla_foundry.cli import pop_bool_flag
    from vla_foundry.params.parsing import parse_params
    from vla_foundry.params.preprocessing_params import plugin_list_flag
    from vla_foundry.plugins import load_plugins

    args = list(args)
    if args and not args[0].startswith("-"):
        print(f"warning: give the run dir as --run_dir {args[0]} (a bare path will be removed)", file=sys.stderr)
        if "--run_dir" in args or any(a.startswith("--run_dir=") for a in args):
            raise ConfigError(f"the run dir is given twice ({args[0]!r} and --run_dir); keep --run_dir")
        args = ["--run_dir", *args]
    for f in dataclasses.fields(cls):
        if f.type in (bool, "bool") and any(a == f"--{f.name}" or a.startswith(f"--{f.name}=") for a in args):
            value, args = pop_bool_flag(args, f"--{f.name}")
            args += [f"--{f.name}", str(value)]
    params = parse_params(cls, plugin_list_flag(args))
    load_plugins(getattr(params, "plugins", None) or [])
    return params


def export(params: ExportParams) -> str:
    from vla_foundry.checkpoint.export import export_weights

    if not params.run_dir:
        raise ConfigError("--run_dir is required (a run dir, a checkpoints/checkpoint_<n> dir or a weights file)")
    return export_weights(params.run_dir, params.output, use_ema=params.ema, checkpoint=params.checkpoint)


def parse_cli(args: Sequence[str]) -> tuple[str, ExportParams]:
    """(command, its params) of a command line (without `--debug` / `--help`); a ConfigError names what is wrong."""
    if not args:
        raise ConfigError(f"give a command: {', '.join(COMMANDS)} (--help lists them)")
    name, rest = args[0], list(args[1:])
    if name not in COMMANDS:
        from vla_foundry.params.parsing import _closest

        raise ConfigError(f"unknown command {name!r}; closest: {_closest(name, list(COMMANDS))}")
    return name, parse_command_params(ExportParams, rest)


def main(argv: Sequence[str] | None = None) -> int:
    from vla_foundry import storage
    from vla_foundry.checkpoint.layout import CheckpointError
    from vla_foundry.cli import pop_bool_flag, report_error

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        debug, args = pop_bool_flag(args, "--debug")
    except ConfigError as e:
        return report_error(e, False)
    if args[:1] in (["-h"], ["--help"]):
        print(usage())
        return 0
    if args[:1] and args[0] in COMMANDS and ("--help" in args or "-h" in args):
        print(command_help(args[0], ExportParams))
        return 0
    try:
        _, params = parse_cli(args)
        out = export(params)
    except (ConfigError, CheckpointError, storage.StorageError) as e:
        return report_error(e, debug)
    print(f"wrote {out}")
    return 0
