"""Training entry point.

    python vla_foundry/main.py --config_path config_presets/training_jobs/quickstart.yaml
    torchrun --nproc_per_node=N vla_foundry/main.py --config_path job.yaml --hparams.lr 1e-4

Flags: `--help` lists every field (`--help hparams`: one group); `--resolve_configs True` prints the resolved
config (data-derived values included) and exits; `--plugins my_pkg.toy_model,...` imports modules that register model / data types;
`--debug` (or `--debug True`) shows full tracebacks for configuration errors.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence

if __package__ in (None, ""):
    # Run as a script (`python vla_foundry/main.py`): make the package importable from the checkout.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vla_foundry.params.base_params import ConfigError

# Keys of `distributed` that only matter for one of the two parallel modes.
FSDP_ONLY = ("cpu_offload", "reshard_after_forward")
DDP_ONLY = ("ddp",)


def applicable_config(params) -> dict:
    """The config as a dict without the keys that change nothing for this run: the resolve flags themselves, `ddp`
    when FSDP is on (FSDP wins), the FSDP options when it is off. Dropped keys keep their defaults when the YAML is
    trained from, which is what they were doing."""
    from vla_foundry.params.parsing import params_to_dict

    config = params_to_dict(dataclasses.replace(params, resolve_configs=False, resolve_configs_path=None))
    del config["resolve_configs"], config["resolve_configs_path"]
    distributed = config["distributed"]
    for key in DDP_ONLY if distributed["fsdp"] else FSDP_ONLY:
        del distributed[key]
    return config


def resolve_configs(params) -> str:
    """The fully resolved config as YAML (only what applies to this run); also written to
    `<resolve_configs_path>/resolved_config.yaml`."""
    import yaml

    from vla_foundry import storage
    from vla_foundry.secret_values import mask_secrets

    # The config the run would use, runnable as it is (`--config_path resolved_config.yaml` trains); a secret pasted
    # into a flag (or read from the environment) is never printed or written: shown as ***.
    config = applicable_config(params)
    text = mask_secrets(yaml.safe_dump(config, sort_keys=False, default_flow_style=False))
    if params.resolve_configs_path:
        storage.makedirs(params.resolve_configs_path)
        storage.write_text(storage.join(params.resolve_configs_path, "resolved_config.yaml"), text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from vla_foundry.cli import pop_bool_flag, report_error

    try:
        debug, args = pop_bool_flag(args, "--debug")
    except ConfigError as e:
        return report_error(e, False)
    if "--help" in args or "-h" in args:
        from vla_foundry.params.help_text import group_help, train_help

        at = args.index("--help") if "--help" in args else args.index("-h")
        group = args[at + 1] if at + 1 < len(args) and not args[at + 1].startswith("-") else None
        try:
            plugins = help_plugins(args)
            print(group_help(group) if group else train_help(plugins))
        except ConfigError as e:
            return report_error(e, debug)
        return 0

    from vla_foundry.params.parsing import parse_train_params

    try:
        params = parse_train_params(args)
    except (ConfigError, FileNotFoundError) as e:
        return report_error(e, debug)

    from vla_foundry.training_run import USER_FACING_ERRORS, run_training

    if params.resolve_configs or params.resolve_configs_path:
        from vla_foundry.params.resolve import resolve_params

        try:
            print(resolve_configs(resolve_params(params)), end="")
        except USER_FACING_ERRORS as e:
            return report_error(e, debug)
        return 0

    try:
        run_training(params)
    except USER_FACING_ERRORS as e:
        return report_error(e, debug)
    return 0


def help_plugins(args: Sequence[str]) -> list[str]:
    """Import the plugins named by `--plugins` (and entry points), so that `--help` lists their types; the built-in
    model types' params (`vla_foundry/models/<type>/params.py`) are listed in any case."""
    from vla_foundry.plugins import load_builtin_params, load_plugins, split_plugin_names

    load_builtin_params()
    if not any(arg == "--plugins" or arg.startswith("--plugins=") for arg in args):
        return []

    names: list[str] = []
    for i, arg in enumerate(args):
        if arg.startswith("--plugins="):
            names += split_plugin_names(arg.split("=", 1)[1])
        elif arg == "--plugins" and i + 1 < len(args):
            names += split_plugin_names(args[i + 1])
    # Installed entry points too (scanning them and importing importlib.metadata take a noticeable part of a
    # second, which is why a plain --help skips plugins).
    load_plugins(names)
    return names


if __name__ == "__main__":
    sys.exit(main())
