"""Tokens/s and MFU of `transformer_1b` on one GPU: bf16, seq 2048, FSDP2, with and without torch.compile.

    uv run python benchmarks/bench_gpu_mfu.py [--per_gpu_batch_size 8] [--steps 20] [--warmup_steps 5]
        [--grad_checkpointing False] [--modes eager compile] [--json results.json]

The model is wrapped exactly as `vla_foundry/main.py` wraps it (`parallelize_model`: FSDP2 `fully_shard` per block
and root, MixedPrecisionPolicy bf16 params / fp32 reduce, fp32 master weights) in a one-process process group, and
trained with `Trainer.train_interval` on random tokens (no data loading). MFU = model training FLOPs per token x
tokens/s / the GPU's dense bf16 peak (H100/H200: 989 TFLOP/s; override with VLA_FOUNDRY_PEAK_FLOPS).
Target: MFU >= 45% on one H100/H200. Without CUDA it exits with a message and status 1, unless `--device cpu` asks
for a dry run of the same code path on the CPU (gloo; give a small --model_preset and --seq_len; MFU is reported only
when VLA_FOUNDRY_PEAK_FLOPS is set). `--json PATH` also writes the results as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

PRESET = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config_presets", "models")


def parse_args() -> argparse.Namespace:
    from flags import add_list_flag, list_value

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per_gpu_batch_size", type=int, default=8)
    parser.add_argument("--seq_len", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per mode")
    parser.add_argument("--warmup_steps", type=int, default=5, help="untimed steps first (compilation, allocator)")
    parser.add_argument("--grad_checkpointing", type=lambda s: s.lower() == "true", default=False)
    add_list_flag(parser, "--modes", str, '"[eager, compile]" or one of them', default=["eager", "compile"])
    parser.add_argument("--model_preset", default=os.path.join(PRESET, "transformer_1b.yaml"))
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run of the code path")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()
    args.modes = list_value(parser, args, "--modes")
    if unknown := sorted(set(args.modes) - {"eager", "compile"}):
        parser.error(f"--modes: unknown {unknown}; valid: eager, compile")
    return args


def build_params(args: argparse.Namespace, compile_model: bool, steps: int):
    from vla_foundry.params import TextDataParams, parse_params
    from vla_foundry.params.train_experiment_params import TrainExperimentParams, derive_params

    params = parse_params(
        TrainExperimentParams,
        [
            "--model", f"include {args.model_preset}",
            "--data.type", "text",
            "--data.seq_len", str(args.seq_len),
            "--hparams.precision", "amp_bf16",
            "--hparams.per_gpu_batch_size", str(args.per_gpu_batch_size),
            "--hparams.torch_compile", str(compile_model),
            "--hparams.grad_checkpointing", str(args.grad_checkpointing),
            "--hparams.warmup", "0",
            "--total_train_samples", str(steps * args.per_gpu_batch_size),
            "--log_every_n_steps", str(steps),
        ],
    )  # fmt: skip
    assert isinstance(params.data, TextDataParams)
    return derive_params(params)


def random_batches(n: int, batch_size: int, seq_len: int, vocab: int, device: torch.device):
    for _ in range(n):
        yield {"input_ids": torch.randint(0, vocab, (batch_size, seq_len + 1), device=device)}


def run_mode(args: argparse.Namespace, compile_model: bool, ctx) -> dict:
    from vla_foundry.distributed import mixed_precision_dtypes, parallelize_model, peak_memory_gib
    from vla_foundry.metrics import MetricsLogger, model_flops_per_token, peak_flops
    from vla_foundry.models.registry import create_model, get_batch_handler
    from vla_foundry.optim import build_optimizer, build_scheduler
    from vla_foundry.train import Trainer

    total_steps = args.warmup_steps + args.steps
    params = build_params(args, compile_model, total_steps)
    torch.manual_seed(0)
    with torch.device(ctx.device):
        model = create_model(params.model)
    flops_per_token = model_flops_per_token(model, args.seq_len)
    num_params = sum(p.numel() for p in model.parameters())
    model = parallelize_model(model, ctx, params.distributed, params.hparams)
    optimizer = build_optimizer(model, params.hparams)
    scheduler = build_scheduler(optimizer, params.hparams, total_steps)
    handler = get_batch_handler(params.model)
    logger = MetricsLogger("unused", enabled=False, total_steps=total_steps, start_step=0)
    vocab = params.model.vocab_size

    on_cuda = ctx.device.type == "cuda"
    fsdp_mp = mixed_precision_dtypes(params.hparams, ctx.device)[0] is not None

    def synchronize() -> None:
        if on_cuda:
            torch.cuda.synchronize()

    def window(steps: int) -> float:
        p = dataclasses.replace(params, samples_per_checkpoint=steps * args.per_gpu_batch_size)
        batches = random_batches(steps, args.per_gpu_batch_size, args.seq_len, vocab, ctx.device)
        synchronize()
        start = time.perf_counter()
        Trainer(p, ctx, model, handler, optimizer, scheduler, logger, fsdp_mixed_precision=fsdp_mp).train_interval(
            batches
        )
        synchronize()
        return time.perf_counter() - start

    warmup_s = window(args.warmup_steps)
    if on_cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds = window(args.steps)
    tokens_per_sec = args.steps * args.per_gpu_batch_size * args.seq_len / seconds
    peak = peak_flops(ctx.device)
    return {
        "mode": "compile" if compile_model else "eager",
        "params_m": num_params / 1e6,
        "per_gpu_batch_size": args.per_gpu_batch_size,
        "seq_len": args.seq_len,
        "tokens_per_sec": tokens_per_sec,
        "mfu": flops_per_token * tokens_per_sec / peak if peak else None,
        "step_s": seconds / args.steps,
        "warmup_s": warmup_s,
        "peak_mem_gib": peak_memory_gib(ctx.device),
    }


def main() -> int:
    args = parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "bench_gpu_mfu: CUDA is not available on this machine; this benchmark measures GPU throughput and "
            "reports nothing without a GPU (--device cpu dry-runs the code path).",
            file=sys.stderr,
        )
        return 1
    # A one-process group so that FSDP2 wraps the model exactly as in a multi-GPU run.
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    import torch.distributed as dist

    from vla_foundry.distributed import DistributedContext, destroy_distributed, init_distributed
    from vla_foundry.params import DistributedParams

    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        dist.init_process_group("nccl", device_id=torch.device("cuda", 0))
        ctx = dataclasses.replace(init_distributed(DistributedParams()), wrapping="fsdp")
        name = torch.cuda.get_device_name(0)
    else:
        dist.init_process_group("gloo")
        ctx = DistributedContext(0, 1, 0, torch.device("cpu"), "gloo", "fsdp")
        name = "cpu (dry run)"
    print(f"device: {name}; batch {args.per_gpu_batch_size} x seq {args.seq_len}; bf16 FSDP2", flush=True)
    results = []
    for mode in args.modes:
        result = run_mode(args, mode == "compile", ctx)
        results.append(result)
        mfu = f"{100 * result['mfu']:.1f}%" if result["mfu"] is not None else "n/a (unknown GPU peak)"
        print(
            f"{result['mode']:8s} {result['params_m']:.0f}M params: {result['tokens_per_sec']:,.0f} tokens/s, "
            f"MFU {mfu}, {result['step_s'] * 1000:.0f} ms/step, peak memory {result['peak_mem_gib']:.1f} GiB",
            flush=True,
        )
        if args.json:
            # Written after every mode: a later mode that fails or is stopped leaves the earlier figures.
            with open(args.json, "w") as f:
                json.dump({"device": name, "torch": torch.__version__, "results": results}, f, indent=1)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    destroy_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
