"""Training metrics: a rank-0 progress bar, `metrics.jsonl` in the run dir, and wandb when enabled.

Throughput figures: samples/s and tokens/s over the logging interval, `samples_per_sec_per_gpu`, MFU where the
model's FLOPs per token are known and the accelerator's peak is known (or given by VLA_FOUNDRY_PEAK_FLOPS),
data-wait fraction (time blocked on the loader / wall time), and peak memory.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import torch

from vla_foundry import storage

# Dense bf16 peak FLOP/s per accelerator, matched against torch.cuda.get_device_name().
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "L4": 121e12,
}


def peak_flops(device: torch.device) -> float | None:
    """Peak FLOP/s of one device, or None when unknown (then MFU is not reported)."""
    override = os.environ.get("VLA_FOUNDRY_PEAK_FLOPS")
    if override:
        return float(override)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS.items() if key in name), None)


def model_flops_per_token(model: torch.nn.Module, seq_len: int | None) -> float | None:
    """Training FLOPs per token (forward + backward) when the model can count them (`flops_per_token`), else None."""
    count = getattr(model, "flops_per_token", None)
    if not callable(count) or seq_len is None:
        return None
    return float(count(seq_len))


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def read_metrics(path: str, warn: Callable[[str], None] = _warn_stderr) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl file. A line that is not a whole JSON record (the last line cut by a full
    disk or a killed process) is dropped with one warning naming the file and the line numbers."""
    records: list[dict[str, Any]] = []
    torn: list[int] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                torn.append(number)
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                torn.append(number)
    if torn:
        lines = ", ".join(str(n) for n in torn[:5]) + (f" and {len(torn) - 5} more" if len(torn) > 5 else "")
        warn(
            f"{path}: line {lines} is not a whole JSON record (cut by a full disk or a killed process?); "
            f"dropped, the {len(records)} whole records are kept"
        )
    return records


def truncate_metrics(path: str, last_step: int, warn: Callable[[str], None] = _warn_stderr) -> None:
    """Drop records after `last_step` (a resumed run re-logs the steps after its checkpoint), and torn lines."""
    if not os.path.exists(path):
        return
    kept = [r for r in read_metrics(path, warn) if r.get("step", 0) <= last_step]
    with storage.atomic_local_path(path) as tmp, open(tmp, "w") as f:
        for record in kept:
            f.write(json.dumps(record) + "\n")


class MetricsLogger:
    """Rank 0 writes; other ranks hold a logger that does nothing, so callers need no rank checks."""

    def __init__(
        self,
        run_dir: str,
        enabled: bool,
        total_steps: int,
        start_step: int,
        use_wandb: bool = False,
        wandb_project: str = "vla_foundry",
        wandb_entity: str | None = None,
        wandb_run_id: str | None = None,
        run_name: str | None = None,
        config: dict | None = None,
        show_progress: bool = True,
    ) -> None:
        self.enabled = enabled
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.bar = None
        # Without a terminal (cluster logs) a bar redraw per step floods the log: print one line per record instead.
        self.print_records = False
        self.wandb_run = None
        self.wandb_run_id = wandb_run_id
        if not enabled:
            return
        os.makedirs(run_dir, exist_ok=True)
        if show_progress and not sys.stderr.isatty():
            self.print_records = True
        elif show_progress:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
        if use_wandb:
            import wandb

            # resume="allow" with a saved id continues the same wandb run after a restart; WANDB_MODE=offline is
            # honoured by wandb itself.
            self.wandb_run = wandb.init(
                project=wandb_project,
                entity=wandb_entity,
                name=run_name,
                id=wandb_run_id,
                resume="allow",
                dir=run_dir,
                config=config,
            )
            self.wandb_run_id = self.wandb_run.id

    def log(self, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **{k: _plain(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log({k: v for k, v in record.items() if k != "step" and v is not None}, step=step)
        if self.print_records and "loss" in record:
            parts = [f"step {step}", f"loss {_shown(record['loss'], '.4f')}"]
            if "lr" in record:
                parts.append(f"lr {_shown(record['lr'], '.2e')}")
            if "samples_per_sec" in record:
                parts.append(f"{_shown(record['samples_per_sec'], '.1f')} samples/s")
            if isinstance(record.get("mfu"), (int, float)):
                parts.append(f"mfu {100 * record['mfu']:.1f}%")
            print(" | ".join(parts), file=sys.stderr, flush=True)
        if self.bar is not None and "loss" in record:
            shown = {"loss": _shown(record["loss"], ".4f")}
            if "lr" in record:
                shown["lr"] = _shown(record["lr"], ".2e")
            if "samples_per_sec" in record:
                shown["samples/s"] = _shown(record["samples_per_sec"], ".1f")
            self.bar.set_postfix(shown, refresh=False)

    def advance(self, steps: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _shown(value: Any, spec: str) -> str:
    """A number formatted with `spec`; anything else (a non-finite value stored as "nan" / "inf", None) as text."""
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
