"""Overhead of the framework's training step against a bare PyTorch loop, measured in the same run (CPU).

    uv run python benchmarks/bench_train_step.py [--steps 30] [--repeats 3] [--hidden_dim 128] [--seq_len 128]

Both loops train the same tiny native transformer on the same in-memory batches with the same AdamW settings and
gradient clipping:
  bare       forward -> cross-entropy -> backward -> clip -> step -> zero_grad -> lr step;
  framework  `Trainer.train_interval` (batch handler, token-weighted loss, accumulation bookkeeping, global loss
             reduction, metrics to metrics.jsonl every 10 steps, EMA off).
Each loop runs `--repeats` times, alternating, after one warm-up run each. The figure of merit is framework steps/s
divided by bare steps/s (target >= 0.9), reported for the best run of each and as the median of paired runs, both in
wall-clock time and in this process's CPU time (the latter is not disturbed by other processes on the machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch


def make_batches(steps: int, batch_size: int, seq_len: int, vocab: int) -> list[dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return [{"input_ids": torch.randint(0, vocab, (batch_size, seq_len + 1), generator=gen)} for _ in range(steps)]


def experiment(args: argparse.Namespace):
    from vla_foundry.params import HyperParams, TextDataParams, TrainExperimentParams, TransformerParams
    from vla_foundry.params.train_experiment_params import derive_params

    params = TrainExperimentParams(
        model=TransformerParams(
            hidden_dim=args.hidden_dim, n_layers=args.n_layers, n_heads=4, vocab_size=args.vocab, max_seq_len=512
        ),
        data=TextDataParams(seq_len=args.seq_len),
        hparams=HyperParams(
            lr=1e-3, precision="fp32", per_gpu_batch_size=args.batch_size, lr_scheduler="cosine", warmup=2
        ),
        total_train_samples=args.steps * args.batch_size,
        log_every_n_steps=10,
    )
    return derive_params(params)


def build(params):
    from vla_foundry.models.registry import create_model
    from vla_foundry.optim import build_optimizer, build_scheduler

    torch.manual_seed(0)
    model = create_model(params.model)
    optimizer = build_optimizer(model, params.hparams)
    scheduler = build_scheduler(optimizer, params.hparams, params.total_steps)
    return model, optimizer, scheduler


def run_bare(params, batches) -> tuple[float, float]:
    model, optimizer, scheduler = build(params)
    clip = params.hparams.grad_clip_norm
    start, cpu_start = time.perf_counter(), time.process_time()
    for batch in batches:
        ids = batch["input_ids"]
        logits = model(input_ids=ids[:, :-1])  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        loss.item()
    return len(batches) / (time.perf_counter() - start), len(batches) / (time.process_time() - cpu_start)


def run_framework(params, batches, run_dir: str) -> tuple[float, float]:
    from vla_foundry.distributed import DistributedContext
    from vla_foundry.metrics import MetricsLogger
    from vla_foundry.models.registry import get_batch_handler
    from vla_foundry.train import Trainer

    model, optimizer, scheduler = build(params)
    ctx = DistributedContext(0, 1, 0, torch.device("cpu"), None, "none")
    logger = MetricsLogger(run_dir, enabled=True, total_steps=params.total_steps, start_step=0, show_progress=False)
    handler = get_batch_handler(params.model)
    start, cpu_start = time.perf_counter(), time.process_time()
    Trainer(params, ctx, model, handler, optimizer, scheduler, logger).train_interval(iter(batches))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    logger.close()
    return len(batches) / elapsed, len(batches) / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--hidden_dim", type=int, default=128)
    parser.add_argument("--n_layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    params = experiment(args)
    batches = make_batches(args.steps, args.batch_size, args.seq_len, args.vocab)
    bare, framework = [], []
    with tempfile.TemporaryDirectory() as tmp:
        run_bare(params, batches)
        run_framework(params, batches, os.path.join(tmp, "warmup"))
        for i in range(args.repeats):
            bare.append(run_bare(params, batches))
            framework.append(run_framework(params, batches, os.path.join(tmp, f"run{i}")))
    print(
        f"model: transformer hidden {args.hidden_dim} x {args.n_layers} layers, batch {args.batch_size} x seq "
        f"{args.seq_len}, {args.steps} steps, {torch.get_num_threads()} thread(s)"
    )
    # Wall-clock steps/s, and steps per second of this process's CPU time (robust to other processes on a shared
    # machine). Paired ratios compare each framework run with the bare run just before it.
    for column, label in ((0, "wall"), (1, "cpu")):
        b = [r[column] for r in bare]
        f = [r[column] for r in framework]
        paired = sorted(x / y for x, y in zip(f, b))
        print(f"[{label}] bare PyTorch loop : {max(b):8.2f} steps/s  (runs: {', '.join(f'{x:.2f}' for x in b)})")
        print(f"[{label}] framework         : {max(f):8.2f} steps/s  (runs: {', '.join(f'{x:.2f}' for x in f)})")
        print(
            f"[{label}] ratio framework / bare: best {max(f) / max(b):.3f}, "
            f"median of paired runs {paired[len(paired) // 2]:.3f}  (target >= 0.9)"
        )


if __name__ == "__main__":
    main()
