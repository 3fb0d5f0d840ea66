"""Closed-loop evaluation after training checkpoints (`--eval.sim_env NAME --eval.episodes N
--eval.every_n_checkpoints K`).

Rank 0 runs `python -m vla_foundry.eval.sim` in a separate process on the checkpoint just saved, through the same
loading path as inference (`Policy.from_run`: the saved processor and normaliser, EMA weights when kept), so
the simulator's processes and GL contexts never live in the training process. The results go to
`<run dir>/sim_eval/checkpoint_<n>/` and `sim/success_rate`, its 95% interval, `sim/mean_max_reward` and
`sim/mean_steps` (a suite: `sim/<task>/success_rate` for each task too, and `sim/success_rate` their mean) are
logged at the checkpoint's step (metrics.jsonl and wandb). The other ranks go on to the next
checkpoint interval and wait for rank 0 at its first collective.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vla_foundry.params.eval_params import EvalParams, SimEpisodesParams, SimEvalParams


class SimEvalDuringTraining:
    def __init__(self, params: EvalParams, run_dir: str, device: str = "cpu") -> None:
        assert params.sim_env is not None
        self.params, self.run_dir, self.device = params, run_dir, device

    def due(self, checkpoint: int) -> bool:
        return checkpoint % self.params.every_n_checkpoints == 0

    def command(self, checkpoint: int, output_dir: str) -> list[str]:
        """`python -m vla_foundry.eval.sim` with this run's episodes settings on checkpoint `checkpoint`."""
        from vla_foundry.cli import params_to_args

        p = self.params
        episodes = {f.name: getattr(p, f.name) for f in dataclasses.fields(SimEpisodesParams)}
        sim = SimEvalParams(
            **episodes,
            env=str(p.sim_env),
            run_dir=self.run_dir,
            checkpoint=checkpoint,
            device=self.device,
            output_dir=output_dir,
            no_progress=True,
        )
        return [sys.executable, "-m", "vla_foundry.eval.sim", *params_to_args(sim)]

    def after_checkpoint(self, checkpoint: int, step: int, logger: Any) -> dict[str, Any] | None:
        """Evaluate checkpoint `checkpoint` when due; log and return its metrics (None when not due)."""
        if not self.due(checkpoint):
            return None
        output_dir = os.path.join(self.run_dir, "sim_eval", f"checkpoint_{checkpoint}")
        start = time.perf_counter()
        proc = subprocess.run(self.command(checkpoint, output_dir), capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            print(
                f"sim evaluation of checkpoint {checkpoint} failed (exit {proc.returncode}); training goes on:\n  "
                + "\n  ".join(tail),
                file=sys.stderr,
                flush=True,
            )
            metrics = {"sim/failed": 1, "sim/checkpoint": checkpoint}
            logger.log(step, metrics)
            return metrics
        results = json.loads(Path(output_dir, "results.json").read_text())
        summary = results["summary"]
        low, high = summary["success_rate_ci95"]
        metrics = {
            "sim/success_rate": summary["success_rate"],
            "sim/success_rate_ci95_low": low,
            "sim/success_rate_ci95_high": high,
            "sim/mean_max_reward": summary["mean_max_reward"],
            "sim/mean_steps": summary["mean_steps"],
            "sim/episodes": summary["episodes"],
            "sim/checkpoint": checkpoint,
            "sim/eval_seconds": time.perf_counter() - start,
        }
        # A suite (e.g. metaworld_mt10): each task's success too, as sim/<task>/success_rate.
        for task, task_summary in results.get("tasks", {}).items():
            metrics[f"sim/{task.split('/')[-1]}/success_rate"] = task_summary["success_rate"]
        logger.log(step, metrics)
        print(
            f"sim evaluation of checkpoint {checkpoint} on {self.params.sim_env}: success "
            f"{summary['successes']}/{summary['episodes']} ({summary['success_rate']:.1%}, 95% CI {low:.1%}-{high:.1%})",
            flush=True,
        )
        return metrics
