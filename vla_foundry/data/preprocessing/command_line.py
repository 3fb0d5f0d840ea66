"""What the preprocessing entry points (preprocess_{robotics,text,captions}_to_tar.py) share on the command line:
`--help` built from the params dataclass, draccus parsing, running the job, a one-line summary, and bad flags or
inputs reported as one `error: ...` line with exit status 2 (before Ray starts, for flags)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from vla_foundry.params.preprocessing_params import parse_preprocessing_params


def outcome_summary(outcome: Any, inputs_name: str) -> str:
    """One line: where the dataset is, shards, samples written / potential / dropped by reason, failed inputs."""
    samples = outcome.metadata.get("samples", {})
    dropped = samples.get("dropped") or {}
    dropped_text = ", ".join(f"{reason} {n}" for reason, n in sorted(dropped.items()) if n) or "none"
    line = (
        f"{outcome.dataset_dir}: {len(outcome.shard_counts)} shards, {sum(outcome.shard_counts)} samples "
        f"(potential {samples.get('potential')}, dropped: {dropped_text}), "
        f"{outcome.metadata.get('inputs_failed', 0)} failed {inputs_name}"
    )
    line += " (already complete)" if outcome.already_complete else ""
    quality = outcome.metadata.get("quality")
    if quality:
        from vla_foundry.data.preprocessing.episode_quality import summary_text

        line += "\n" + summary_text(quality["summary"])
    return line


def run_preprocessing_command(
    doc: str | None,
    params_class: type,
    run_job: Callable[[Any], Any],
    inputs_name: str,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse `argv` (default: sys.argv[1:]) into `params_class`, run `run_job(params)` and print its summary.

    Returns the exit status: 0 on success or --help, 2 on a bad flag or a failed job (message on stderr; `--debug`:
    the traceback).
    """
    from vla_foundry.cli import run_command
    from vla_foundry.data.preprocessing.job import JobError

    def run(params: Any) -> None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        print(outcome_summary(run_job(params), inputs_name))

    prog = f"python {sys.argv[0]}" if sys.argv and sys.argv[0].endswith(".py") else "preprocess"
    return run_command(
        params_class, run, argv, prog=prog, doc=doc, errors=(JobError,), parse=parse_preprocessing_params
    )
