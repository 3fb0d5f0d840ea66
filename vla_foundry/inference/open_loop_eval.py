"""Open-loop evaluation of a diffusion-policy run on a robotics dataset: predicted vs recorded action chunks.

    python -m vla_foundry.inference.open_loop_eval --run_dir experiments/my_vla \\
        --dataset examples/data/robotics_tiny --num_samples 128 --output_dir experiments/my_vla/open_loop

Without `--dataset` the run's validation datasets (config.yaml `data.val_dataset_manifest`, `--split val`) or its
training datasets (`--split train`) are read. Each sample is processed exactly as in training (no augmentation),
an action window is sampled (the recorded past actions kept fixed, as a robot would pass its executed ones), and
both are denormalised. Errors are counted only on valid rows (`future_mask`).

Writes `<output_dir>/open_loop_metrics.json` (MSE overall, per action field, per horizon step and per field per
step, in physical units and in normalised units) and `<output_dir>/open_loop_trajectories.png` (predicted vs
recorded trajectories of every action dimension for a few samples).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch

from vla_foundry import storage
from vla_foundry.inference.policy import Policy
from vla_foundry.params.base_params import ConfigError

METRICS_NAME = "open_loop_metrics.json"
PLOT_NAME = "open_loop_trajectories.png"


def iter_processed_samples(
    policy: Policy, dataset: str, limit: int
) -> Iterator[tuple[dict[str, Any], None] | tuple[None, str]]:
    """Processed samples (no augmentation) of a dataset's shards, in manifest order, at most `limit`; samples the
    processor rejects are counted and skipped (yields (sample, None) or (None, reason))."""
    from vla_foundry.data.manifest import dataset_paths
    from vla_foundry.data.robotics.processor import SampleError
    from vla_foundry.inference.sample_prediction import iter_raw_samples

    dataset_dir, _ = dataset_paths(dataset)
    seen = 0
    for raw in iter_raw_samples(dataset):
        if seen >= limit:
            return
        try:
            yield policy.processor.process_sample(raw, dataset_dir, None, training=False), None
            seen += 1
        except SampleError as e:
            yield None, f"{raw.get('__key__')}: {e}"


def evaluate_open_loop(
    policy: Policy,
    dataset: str,
    num_samples: int = 128,
    batch_size: int = 16,
    seed: int = 0,
    condition_on_past: bool = True,
) -> dict[str, Any]:
    """Metrics dict plus the arrays needed for plots (`_predicted`, `_recorded`, `_valid`, physical units)."""
    model, normalizer, past = policy.model, policy.normalizer, policy.config.past_lowdim_steps
    generator = torch.Generator(policy.device).manual_seed(seed)
    predicted, recorded, valid, pred_norm, rec_norm = [], [], [], [], []
    skipped: list[str] = []
    pending: list[dict] = []

    def flush() -> None:
        batch = policy.processor.collate(pending)
        batch = {k: v.to(policy.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        known = batch["actions"] if condition_on_past else None
        known_mask = batch["past_mask"] if condition_on_past else None
        window = model.generate_actions(batch, known_actions=known, known_mask=known_mask, generator=generator)
        truth = batch["actions"].double().cpu().numpy()
        pred = window.double().cpu().numpy()
        pred_norm.append(pred[:, past:])
        rec_norm.append(truth[:, past:])
        predicted.append(np.asarray(normalizer.denormalize_actions(pred))[:, past:])
        recorded.append(np.asarray(normalizer.denormalize_actions(truth))[:, past:])
        valid.append(batch["future_mask"].cpu().numpy()[:, past:])
        pending.clear()

    for sample, reason in iter_processed_samples(policy, dataset, num_samples):
        if sample is None:
            skipped.append(reason)
            continue
        pending.append(sample)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    if not predicted:
        raise ValueError(f"no usable samples in {dataset} ({len(skipped)} rejected: {skipped[:3]})")
    P, R, V = np.concatenate(predicted), np.concatenate(recorded), np.concatenate(valid)  # (N, H, A), (N, H)
    PN, RN = np.concatenate(pred_norm), np.concatenate(rec_norm)
    sq, sq_norm = (P - R) ** 2, (PN - RN) ** 2
    w = V[..., None].astype(np.float64)  # (N, H, 1)

    def masked_mean(x: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
        return (x * w).sum(axis=axis) / np.maximum((w * np.ones_like(x)).sum(axis=axis), 1)

    per_dim_step = masked_mean(sq, (0,))  # (H, A)
    fields: dict[str, Any] = {}
    start = 0
    for name, dim in policy.action_fields.items():
        part = sq[..., start : start + dim]
        fields[name] = {
            "mse": float(masked_mean(part, (0, 1, 2))),
            "mse_per_horizon": masked_mean(part, (0, 2)).tolist(),
        }
        start += dim
    metrics = {
        "dataset": dataset,
        "run_dir": policy.run.run_dir,
        "checkpoint": policy.run.checkpoint,
        "used_ema": policy.run.used_ema,
        "num_samples": int(P.shape[0]),
        "num_skipped": len(skipped),
        "skipped_examples": skipped[:10],
        "condition_on_past_actions": condition_on_past,
        "mse": float(masked_mean(sq, (0, 1, 2))),
        "normalized_mse": float(masked_mean(sq_norm, (0, 1, 2))),
        "mse_per_horizon": masked_mean(sq, (0, 2)).tolist(),
        "mse_per_field": {k: v["mse"] for k, v in fields.items()},
        "mse_per_field_per_horizon": {k: v["mse_per_horizon"] for k, v in fields.items()},
        "mse_per_dim_per_horizon": per_dim_step.tolist(),
    }
    return {**metrics, "_predicted": P, "_recorded": R, "_valid": V}


def plot_trajectories(
    result: dict[str, Any], path: str, num_plots: int = 4, dim_names: list[str] | None = None
) -> None:
    """One row per sample, one column per action dimension: recorded (solid) vs predicted (dashed) over the
    horizon; padded rows are not drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    P, R, V = result["_predicted"], result["_recorded"], result["_valid"]
    n = min(num_plots, P.shape[0])
    # The samples with the longest valid horizon (episode ends have few valid rows), in dataset order.
    chosen = sorted(np.argsort(-V.sum(axis=1), kind="stable")[:n].tolist())
    dims = P.shape[-1]
    fig, axes = plt.subplots(n, dims, figsize=(2.6 * dims, 2.0 * n), squeeze=False)
    steps = np.arange(P.shape[1])
    for row, i in enumerate(chosen):
        ok = V[i].astype(bool)
        for d in range(dims):
            ax = axes[row][d]
            ax.plot(steps[ok], R[i, ok, d], "o-", ms=3, color="tab:blue", label="recorded")
            ax.plot(steps[ok], P[i, ok, d], "x--", ms=3, color="tab:orange", label="predicted")
            ax.ticklabel_format(axis="y", useOffset=False, style="plain")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if row == 0:
                ax.set_title(dim_names[d] if dim_names else f"action[{d}]", fontsize=8)
            if d == 0:
                ax.set_ylabel(f"sample {i}", fontsize=8)
            ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=6)
    fig.supxlabel("horizon step (0 = current)", fontsize=8)
    fig.tight_layout()
    if not storage.is_s3(path):
        fig.savefig(path, dpi=100)
    else:
        with tempfile.TemporaryDirectory(prefix="vla_foundry_plot_") as tmp:
            local = os.path.join(tmp, PLOT_NAME)
            fig.savefig(local, dpi=100)
            storage.upload_file(local, path)
    plt.close(fig)


def dimension_names(policy: Policy) -> list[str]:
    names = []
    for field, dim in policy.action_fields.items():
        short = field.rsplit("__", 1)[-1]
        names.extend([short] if dim == 1 else [f"{short}[{j}]" for j in range(dim)])
    return names


@dataclasses.dataclass(frozen=True)
class OpenLoopParams:
    """`python -m vla_foundry.inference.open_loop_eval`: which run, on which data, how many samples."""

    # Run directory (local, s3:// or hf://) or a checkpoint file.
    run_dir: str = ""
    # Dataset directory or manifest.jsonl (None: the run's own, per split).
    dataset: str | None = None
    # Which of the run's datasets when no dataset is given.
    split: Literal["val", "train"] = "val"
    # Where the metrics and the plot go (None: <run_dir>/open_loop).
    output_dir: str | None = None
    # Samples evaluated.
    num_samples: int = 128
    # Samples per forward pass.
    batch_size: int = 16
    # Samples whose trajectories are plotted (0: no plot).
    num_plots: int = 4
    # Checkpoint number of run_dir (None: the latest).
    checkpoint: int | None = None
    # Use the plain weights even when the run has EMA weights.
    no_ema: bool = False
    # Do not give the recorded past actions (sample the whole window).
    no_past_actions: bool = False
    # Seed of the diffusion noise.
    seed: int = 0

    @property
    def output_path(self) -> str:
        return self.output_dir or storage.join(self.run_dir, "open_loop")

    def validate(self) -> None:
        if not self.run_dir:
            raise ConfigError("--run_dir is required: a run directory (local, s3:// or hf://) or a checkpoint file")
        for name in ("num_samples", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if self.num_plots < 0:
            raise ConfigError(f"num_plots={self.num_plots} must be >= 0 (0: no plot)")


def run_open_loop_eval(params: OpenLoopParams) -> dict[str, Any]:
    """Evaluate, write the metrics JSON and the plot; returns the metrics."""
    params.validate()
    policy = Policy.from_run(params.run_dir, params.checkpoint, use_ema=not params.no_ema, seed=params.seed)
    dataset = params.dataset
    if dataset is None:
        data = policy.run.experiment_config().get("data") or {}
        key = "val_dataset_manifest" if params.split == "val" else "dataset_manifest"
        names = data.get(key) or []
        if not names:
            raise ConfigError(
                f"run {policy.run.run_dir} has no data.{key} in config.yaml; give --dataset (a dataset directory or "
                "its manifest.jsonl)"
            )
        dataset = names[0]
    result = evaluate_open_loop(
        policy, dataset, params.num_samples, params.batch_size, params.seed, not params.no_past_actions
    )
    metrics = {k: v for k, v in result.items() if not k.startswith("_")}
    output_dir = params.output_path
    storage.makedirs(output_dir)
    storage.write_text(storage.join(output_dir, METRICS_NAME), json.dumps(metrics, indent=2))
    if params.num_plots > 0:
        plot_trajectories(result, storage.join(output_dir, PLOT_NAME), params.num_plots, dimension_names(policy))
    return metrics


def main(argv: list[str] | None = None) -> int:
    from vla_foundry.cli import run_command

    return run_command(
        OpenLoopParams,
        _run,
        argv,
        prog="python -m vla_foundry.inference.open_loop_eval",
        doc=__doc__,
        errors=(FileNotFoundError, ValueError),
    )


def _run(params: OpenLoopParams) -> None:
    metrics = run_open_loop_eval(params)
    output_dir = params.output_path
    print(
        f"open-loop MSE {metrics['mse']:.6g} (normalised {metrics['normalized_mse']:.4g}) over {metrics['num_samples']} samples"
    )
    for name, value in metrics["mse_per_field"].items():
        print(f"  {name}: {value:.6g}")
    print("  per horizon step: " + ", ".join(f"{v:.3g}" for v in metrics["mse_per_horizon"]))
    print(f"wrote {storage.join(output_dir, METRICS_NAME)} and {storage.join(output_dir, PLOT_NAME)}")


if __name__ == "__main__":
    raise SystemExit(main())
