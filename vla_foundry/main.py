"""Training entry point.

    python vla_foundry/main.py --config_path config_presets/training_jobs/quickstart.yaml
    torchrun --nproc_per_node=N vla_foundry/main.py --config_path job.yaml --hparams.lr 1e-4

Flags: `--help` lists every field; `--resolve_configs True` prints the resolved config and exits;
`--debug` shows full tracebacks for configuration errors.
"""

from __future__ import annotations

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

    # A secret pasted into a flag (or read from the environment) is never printed or written: shown as ***.
    text = mask_secrets(params_to_yaml(params))
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

        print(train_help())
        return 0

    from vla_foundry.params.parsing import parse_train_params

    try:
        params = parse_train_params(args)
    except (ConfigError, FileNotFoundError) as e:
        return report_error(e, debug)
    if params.resolve_configs or params.resolve_configs_path:
        print(resolve_configs(params), end="")
        return 0

    from vla_foundry.training_run import USER_FACING_ERRORS, run_training

    try:
        run_training(params)
    except USER_FACING_ERRORS as e:
        return report_error(e, debug)
    return 0


def report_error(error: Exception, debug: bool) -> int:
    """One line for the user (the full traceback with --debug); exit status 2."""
    if debug:
        raise error
    print(f"error: {error}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
