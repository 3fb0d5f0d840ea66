"""KV-cache decoding speed-up and training-step FLOP rate of the native transformer.

    uv run python benchmarks/model_generation.py --preset transformer_11m --prompt 64 --new 128

Reports (1) tokens/s of `generate` with the KV cache against recomputing the whole sequence each step (the
baseline, measured in the same run; the two produce identical tokens), and (2) the achieved FLOP rate of a
forward + backward step from `flops_per_token` (MFU when the device's peak is given with --peak_tflops).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

from vla_foundry.models import create_model, get_batch_handler
from vla_foundry.params import ModelParams, load_params_from_yaml


def timed(fn, repeats: int) -> float:
    """Best wall time of `repeats` calls (after one warm-up), in seconds."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="transformer_11m")
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--train_seq_len", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak_tflops", type=float, default=None, help="device peak, for MFU")
    args = parser.parse_args()

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    params = load_params_from_yaml(ModelParams, os.path.join(root, "config_presets", "models", f"{args.preset}.yaml"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = create_model(params).to(device).eval()
    prompt = torch.randint(0, params.vocab_size, (args.batch, args.prompt), device=device)

    cached = timed(lambda: model.generate(prompt, max_new_tokens=args.new), args.repeats)
    uncached = timed(lambda: model.generate(prompt, max_new_tokens=args.new, use_cache=False), args.repeats)
    same = torch.equal(model.generate(prompt, args.new), model.generate(prompt, args.new, use_cache=False))
    tokens = args.batch * args.new
    print(f"{args.preset} on {device.type}: batch {args.batch}, prompt {args.prompt}, {args.new} new tokens")
    print(f"  generate with KV cache:    {tokens / cached:10.1f} tokens/s")
    print(f"  generate without cache:    {tokens / uncached:10.1f} tokens/s (baseline)")
    print(f"  speed-up: {uncached / cached:.2f}x; identical tokens: {same}")

    model.train()
    handler = get_batch_handler(params)
    batch = {"input_ids": torch.randint(0, params.vocab_size, (args.batch, args.train_seq_len + 1), device=device)}

    def step() -> None:
        model.zero_grad(set_to_none=True)
        handler.compute_loss(model, batch).loss.backward()

    seconds = timed(step, args.repeats)
    flops = model.flops_per_token(args.train_seq_len) * args.batch * args.train_seq_len
    rate = flops / seconds / 1e12
    mfu = f", MFU {rate / args.peak_tflops:.1%}" if args.peak_tflops else ""
    print(f"  train step (fwd+bwd, seq {args.train_seq_len}): {seconds * 1e3:.1f} ms, {rate:.3f} TFLOP/s{mfu}")


if __name__ == "__main__":
    main()
