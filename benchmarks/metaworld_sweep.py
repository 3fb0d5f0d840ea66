"""Meta-World training variants side by side: each variant of a training job trained on the same shards, then
evaluated closed loop on the same episode seeds; one table of success rates.

    uv run python benchmarks/metaworld_sweep.py --shards DIR/shards --variants benchmarks/metaworld_variants.json \
        [--suite mt10] [--parallel 2] [--eval_episodes_per_task 10] [--device cpu] [--workdir /tmp/mw_sweep] \
        [--train_timeout_s S] [--eval_timeout_s S]

The variants file maps a name to {"samples": N, "flags": [...training flags...], "n_action_steps": [8]}; every
variant starts from config_presets/training_jobs/metaworld_mt10_state.yaml (or --job). Runs go to
WORKDIR/runs/<name>, evaluations to WORKDIR/eval/<name>_n<steps>; WORKDIR/sweep.json holds every figure. Variants
train --parallel at a time (on a GPU they share it), then evaluate --parallel at a time with --num_envs env
processes each. A variant whose run already holds a model is not trained again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_all(cmds: list[tuple[str, list[str], Path]], parallel: int, timeout_s: float) -> dict[str, float]:
    """Run (name, command, log) triples, `parallel` at a time, each stopped after `timeout_s`; each one's wall time
    (-1: failed or stopped). Failures are reported, not fatal: the other variants still count."""
    pending, running, times = list(cmds), {}, {}
    while pending or running:
        while pending and len(running) < parallel:
            name, cmd, log = pending.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            f = open(log, "w")  # noqa: SIM115 - closed when the process ends
            running[name] = (subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT), f, time.time(), log)
        time.sleep(1.0)
        for name, (proc, f, start, log) in list(running.items()):
            if proc.poll() is None and time.time() - start > timeout_s:
                proc.kill()
                proc.wait()
            if proc.poll() is None:
                continue
            f.close()
            times[name] = time.time() - start
            del running[name]
            status = "ok" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
            print(f"  {name}: {status} in {times[name]:.0f} s", flush=True)
            if proc.returncode != 0:
                print("    " + "\n    ".join(log.read_text().strip().splitlines()[-8:]), flush=True)
                times[name] = -1.0
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--shards", required=True, help="the shards folder (holds manifest.jsonl)")
    parser.add_argument("--variants", required=True, help="JSON file: name -> {samples, flags, n_action_steps}")
    parser.add_argument("--job", default="config_presets/training_jobs/metaworld_mt10_state.yaml")
    parser.add_argument("--suite", default="mt10")
    parser.add_argument("--parallel", type=int, default=1, help="variants trained / evaluated at once")
    parser.add_argument("--num_envs", type=int, default=2, help="env processes per evaluation")
    parser.add_argument("--eval_episodes_per_task", type=int, default=10)
    parser.add_argument("--device", default="cpu", help="where evaluation runs the policy (cpu, cuda)")
    parser.add_argument("--workdir", default="/tmp/mw_sweep")
    parser.add_argument("--train_timeout_s", type=float, default=3600.0, help="stop a training run after this")
    parser.add_argument("--eval_timeout_s", type=float, default=3600.0, help="stop an evaluation after this")
    args = parser.parse_args()

    variants = json.loads(Path(args.variants).read_text())
    work = Path(args.workdir)
    py = sys.executable
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {len(variants)} variants", flush=True)

    train = []
    for name, v in variants.items():
        if _trained(work / "runs" / name):
            continue
        cmd = [py, "vla_foundry/main.py", "--config_path", args.job, "--data.dataset_manifest", f"[{args.shards}]"]
        cmd += ["--save_path", str(work / "runs"), "--name", name, "--total_train_samples", str(v["samples"])]
        # Several checkpoints: a run stopped by --train_timeout_s is still evaluated from its latest one.
        cmd += ["--num_checkpoints", "4", *v.get("flags", [])]
        train.append((name, cmd, work / "logs" / f"train_{name}.log"))
    print(f"training {len(train)} variants, {args.parallel} at a time", flush=True)
    train_s = run_all(train, args.parallel, args.train_timeout_s)

    evals = []
    for name, v in variants.items():
        if not _trained(work / "runs" / name):
            continue
        for n in v.get("n_action_steps", [8]):
            out = work / "eval" / f"{name}_n{n}"
            run = work / "runs" / name
            # A run copied without its checkpoints is evaluated from its exported EMA weights.
            weights = run / "ema.safetensors"
            source = weights if weights.exists() and not (run / "model.safetensors").exists() else run
            cmd = [py, "-m", "vla_foundry.eval.sim", "--run_dir", str(source)]
            cmd += ["--env", f"metaworld_{args.suite}", "--episodes_per_task", str(args.eval_episodes_per_task)]
            cmd += ["--num_envs", str(args.num_envs), "--seed", "0", "--n_action_steps", str(n), "--videos", "0"]
            cmd += ["--device", args.device, "--output_dir", str(out), "--no_progress"]
            evals.append((f"{name}_n{n}", cmd, work / "logs" / f"eval_{name}_n{n}.log"))
    print(f"evaluating {len(evals)} (variant, n_action_steps) pairs", flush=True)
    eval_s = run_all(evals, args.parallel, args.eval_timeout_s)

    table = {}
    for key in eval_s:
        res = work / "eval" / key / "results.json"
        if res.exists():
            r = json.loads(res.read_text())
            table[key] = {
                "success_rate": r["summary"]["success_rate"],
                "tasks": {t: x["success_rate"] for t, x in r["tasks"].items()},
                "eval_s": eval_s[key],
            }
    print(
        "| variant | samples | train s | success | " + " | ".join(t.split("/")[-1][:-3] for t in _tasks(table)) + " |"
    )
    for key, row in table.items():
        name = key.rsplit("_n", 1)[0]
        cells = " | ".join(f"{row['tasks'][t]:.1f}" for t in _tasks(table))
        print(
            f"| {key} | {variants[name]['samples']} | {train_s.get(name, 0):.0f} | {row['success_rate']:.3f} | {cells} |"
        )
    summary = {"variants": variants, "train_s": train_s, "eval": table, "load_end": os.getloadavg()[0]}
    (work / "sweep.json").write_text(json.dumps(summary, indent=1))


def _trained(run: Path) -> bool:
    """The run exported its model, or saved at least one checkpoint before it was stopped."""
    return any((run / f).exists() for f in ("model.safetensors", "ema.safetensors")) or any(
        (run / "checkpoints").glob("*")
    )


def _tasks(table: dict) -> list[str]:
    return list(next(iter(table.values()))["tasks"]) if table else []


if __name__ == "__main__":
    main()
