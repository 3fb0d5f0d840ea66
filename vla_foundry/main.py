"""Training entry point.

    python vla_foundry/main.py --config_path config_presets/training_jobs/quickstart.yaml
    torchrun --nproc_per_node=N vla_foundry/main.py --config_path job.yaml --hparams.lr 1e-4

Flags: `--help` lists every field; `--resolve_configs True` prints the resolved config (data-derived values
included) and exits; `--plugins my_pkg.toy_model,...` imports modules that register model / data types;
`--debug` shows full tracebacks for configuration errors.
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


def resolve_configs(params) -> str:
    """The fully resolved config as YAML; also written to `<resolve_configs_path>/resolved_config.yaml`."""
    from vla_foundry import storage
    from vla_foundry.params.parsing import params_to_yaml
    from vla_foundry.secret_values import mask_secrets

    # The config the run would use, runnable as it is (`--config_path resolved_config.yaml` trains); a secret pasted
    # into a flag (or read from the environment) is never printed or written: shown as ***.
    text = mask_secrets(params_to_yaml(dataclasses.replace(params, resolve_configs=False, resolve_configs_path=None)))
    if params.resolve_configs_path:
        storage.makedirs(params.resolve_configs_path)
        storage.write_text(storage.join(params.resolve_configs_path, "resolved_config.yaml"), text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    if "--help" in args or "-h" in args:
        from vla_foundry.params.help_text import train_help

        try:
            plugins = help_plugins(args)
        except ConfigError as e:
            return report_error(e, debug)
        print(train_help(plugins))
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
    """Import the plugins named by `--plugins` (and entry points), so that `--help` lists their types."""
    if not any(arg == "--plugins" or arg.startswith("--plugins=") for arg in args):
        return []
    from vla_foundry.plugins import load_plugins, split_plugin_names

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


def report_error(error: Exception, debug: bool) -> int:
    """One line for the user (the full traceback with --debug); exit status 2."""
    if debug:
        raise error
    print(f"error: {error}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
