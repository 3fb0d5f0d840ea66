"""Plot a run's metrics.jsonl to a PNG.

    python -m vla_foundry.plot_metrics --run_dir RUN_DIR [--output plot.png] [--metrics "[loss, lr, grad_norm]"]

RUN_DIR is a run directory (or a metrics.jsonl path); one panel per metric, against the optimizer step.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence

from vla_foundry.params.base_params import ConfigError

DEFAULT_METRICS = ("loss", "val_loss", "lr", "grad_norm", "samples_per_sec", "data_wait_fraction", "sim/success_rate")


def plot_metrics(path: str, output: str, metrics: Sequence[str] | None = None) -> list[str]:
    """Write the plot; returns the metric names drawn. Raises FileNotFoundError / ValueError naming the problem."""
    import matplotlib

    from vla_foundry.metrics import read_metrics  # imports torch: not needed by --help

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    file = os.path.join(path, "metrics.jsonl") if os.path.isdir(path) else path
    if not os.path.exists(file):
        raise FileNotFoundError(f"no metrics file at {file}")
    records = read_metrics(file)
    wanted = list(metrics) if metrics else list(DEFAULT_METRICS)
    present = [m for m in wanted if any(isinstance(r.get(m), int | float) for r in records)]
    if not present:
        found = sorted({k for r in records for k in r} - {"step"})
        raise ValueError(f"{file} has none of the metrics {wanted}; it has: {', '.join(found) or 'no records'}")
    fig, axes = plt.subplots(len(present), 1, figsize=(8, 2.6 * len(present)), sharex=True, squeeze=False)
    for ax, name in zip(axes[:, 0], present):
        points = [(r["step"], r[name]) for r in records if isinstance(r.get(name), int | float)]
        steps, values = zip(*points)
        ax.plot(
            steps,
            values,
            marker="." if len(points) < 50 else None,
            label="mean" if name == "sim/success_rate" else None,
        )
        if name == "sim/success_rate":
            # A suite's evaluation also logs sim/<task>/success_rate: one thin curve per task beside the mean.
            tasks = sorted(
                {k for r in records for k in r if k.startswith("sim/") and k.endswith("/success_rate")} - {name}
            )
            for task in tasks:
                pts = [(r["step"], r[task]) for r in records if isinstance(r.get(task), int | float)]
                ax.plot(*zip(*pts), linewidth=0.8, alpha=0.6, label=task.split("/")[-2])
            if tasks:
                ax.legend(fontsize=6, ncol=2)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.suptitle(os.path.basename(os.path.dirname(os.path.abspath(file))))
    fig.tight_layout()
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return present


@dataclasses.dataclass(frozen=True)
class PlotParams:
    """`python -m vla_foundry.plot_metrics`: whose metrics, which ones, to which file."""

    # Run directory or a metrics.jsonl path.
    run_dir: str = ""
    # PNG file to write.
    output: str = "metrics.png"
    # Metrics to plot, e.g. [loss, lr] (None: loss, val_loss, lr, grad_norm, samples_per_sec, data_wait_fraction
    # and sim/success_rate, those the run logged).
    metrics: list[str] | None = None

    def validate(self) -> None:
        if not self.run_dir:
            raise ConfigError("--run_dir is required (a run directory or its metrics.jsonl, local)")


def main(argv: Sequence[str] | None = None) -> int:
    from vla_foundry.cli import Spelling, run_command

    return run_command(
        PlotParams,
        _run,
        argv,
        prog="python -m vla_foundry.plot_metrics",
        doc=__doc__,
        spelling=Spelling(positional=("run_dir",), positional_deprecated=("run_dir",)),
        errors=(FileNotFoundError, ValueError),
    )


def _run(params: PlotParams) -> None:
    drawn = plot_metrics(params.run_dir, params.output, params.metrics)
    print(f"wrote {params.output} ({', '.join(drawn)})")


if __name__ == "__main__":
    sys.exit(main())
