"""Sharded checkpoint cost under `torchrun --nproc_per_node 2` (gloo, CPU; NCCL on GPUs), measured in one launch.

    uv run python benchmarks/bench_checkpoint.py [--hidden_dim 768] [--n_layers 10] [--vocab 16000] [--repeats 3]
        [--nproc 2] [--json results.json]

(Launches itself under torchrun when started as a plain process.) A ~100M-parameter transformer under FSDP2 with
AdamW and an EMA takes one training step (so the optimizer state exists), then:
  (a) training time blocked per asynchronous save / wall time of a synchronous save of the same state
      (target <= 0.2 on CPU, <= 0.05 on GPU);
  (b) peak host memory of rank 0 during a save, above its level before the save, / size of the full state
      (model + AdamW moments + EMA; target <= 0.6 with 2 ranks), and the same for the consolidated save this
      replaced (gathering the full model and optimizer state onto rank 0), measured in the same run;
  (c) save and load wall times.
The last line is `checkpoint blocked/sync ratio X`; `--json PATH` also writes the figures as JSON. On a GPU machine
each rank's model lives on its GPU, so the asynchronous save blocks for the device-to-host staging copy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
# A fixed mmap threshold: every tensor above 128 KiB is mapped and unmapped on free, so memory freed by one
# measurement is returned to the OS and does not hide the next one's growth (glibc's default threshold rises).
os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples this process's resident memory every 2 ms while active; `peak - start` is the growth."""

    def __enter__(self) -> PeakRss:
        import ctypes
        import gc

        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        self.start = rss_bytes()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.start


def build(args: argparse.Namespace, ctx):
    from vla_foundry.distributed import parallelize_model, unwrap_model
    from vla_foundry.models.ema import EMA
    from vla_foundry.models.registry import create_model
    from vla_foundry.optim import build_optimizer, build_scheduler
    from vla_foundry.params import DistributedParams, EMAParams, HyperParams, TransformerParams

    torch.manual_seed(0)
    model_params = TransformerParams(
        hidden_dim=args.hidden_dim, n_layers=args.n_layers, n_heads=12, n_kv_heads=12, vocab_size=args.vocab,
        max_seq_len=64,
    )  # fmt: skip
    hp = HyperParams(lr=1e-4, precision="fp32", per_gpu_batch_size=1)
    model = parallelize_model(create_model(model_params), ctx, DistributedParams(), hp)
    optimizer = build_optimizer(unwrap_model(model), hp)
    scheduler = build_scheduler(optimizer, hp, 10)
    ema = EMA(unwrap_model(model), EMAParams(enabled=True, decay=0.99))
    ids = torch.randint(0, args.vocab, (1, 17), device=ctx.device)
    logits = model(input_ids=ids[:, :-1])
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten()).backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()
    ema.update(1)
    return model, optimizer, scheduler, ema


def full_state_bytes(model, optimizer, ema) -> int:
    """Bytes of the whole (global) state: every parameter, AdamW moment and EMA tensor."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    for state in optimizer.state.values():
        total += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v) and v.dim() > 0)
    total += sum(t.numel() * t.element_size() for t in ema.shards().values())
    return total


def consolidated_save(model, optimizer, path: str, is_main: bool) -> None:
    """What checkpoints did before: gather the full model and optimizer state onto rank 0, torch.save them."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_state = get_model_state_dict(model, options=options)
    optim_state = get_optimizer_state_dict(model, optimizer, options=options)
    if is_main:
        torch.save({"model": model_state, "optimizer": optim_state}, path)


MODES = ("sync", "async")


def worker(args: argparse.Namespace) -> None:
    from vla_foundry.checkpoint import DCPCheckpointer
    from vla_foundry.distributed import barrier, destroy_distributed, init_distributed
    from vla_foundry.params import DistributedParams

    ctx = init_distributed(DistributedParams())
    model, optimizer, scheduler, ema = build(args, ctx)
    state_bytes = full_state_bytes(model, optimizer, ema)
    root = tempfile.mkdtemp(prefix="bench_ckpt_") if ctx.is_main else None
    from vla_foundry.distributed import broadcast_object

    root = broadcast_object(root)
    results: dict[str, list[float]] = {k: [] for k in ("sync", "blocked", "async_total", "sync_mem", "async_mem")}
    n = 0
    # One saver per mode for all repeats, as in a run (the asynchronous one reuses its host staging copy).
    savers = {
        mode: DCPCheckpointer(
            os.path.join(root, mode), ctx, model, optimizer, scheduler, ema, async_save=mode == "async"
        )
        for mode in MODES
    }
    for _ in range(args.repeats):
        for mode in MODES:
            n += 1
            saver = savers[mode]
            barrier()
            with PeakRss() as mem:
                start = time.perf_counter()
                blocked = saver.save(n, {"step": 1})
                saver.wait()
                total = time.perf_counter() - start
            barrier()
            if mode == "sync":
                results["sync"].append(total)
                results["sync_mem"].append(mem.growth / state_bytes)
            else:
                results["blocked"].append(blocked)
                results["async_total"].append(total)
                results["async_mem"].append(mem.growth / state_bytes)
    for saver in savers.values():
        saver.close()
    barrier()
    with PeakRss() as mem:
        start = time.perf_counter()
        consolidated_save(model, optimizer, os.path.join(root, "consolidated.pt"), ctx.is_main)
        consolidated_time = time.perf_counter() - start
    barrier()
    consolidated_mem = mem.growth / state_bytes
    fresh = build(args, ctx)
    barrier()
    start = time.perf_counter()
    loader = DCPCheckpointer(os.path.join(root, "sync"), ctx, *fresh, warn=lambda m: None)
    loader.load(loader.latest())
    loader.close()
    barrier()
    load_time = time.perf_counter() - start
    if ctx.is_main:
        med = {k: statistics.median(v) for k, v in results.items()}
        # Memory: the largest growth of any save (the first asynchronous one allocates the staging copy, which the
        # later ones reuse: it stays resident, 1/world_size of the state on each rank).
        worst = {k: max(v) for k, v in results.items()}
        params = sum(p.numel() for p in model.parameters())
        print(f"model {params / 1e6:.1f}M parameters; full state {state_bytes / 2**30:.2f} GiB; {ctx.world_size} ranks")
        print(f"(c) sync save {med['sync']:.2f} s | async save: blocked {med['blocked']:.2f} s, written after "
              f"{med['async_total']:.2f} s | consolidated save (before) {consolidated_time:.2f} s | load "
              f"{load_time:.2f} s")  # fmt: skip
        print(f"(b) rank-0 peak host memory growth during a save / full state (worst save): sync "
              f"{worst['sync_mem']:.2f}, async {worst['async_mem']:.2f}, consolidated (before, model + optimizer "
              f"only) {consolidated_mem:.2f}")  # fmt: skip
        per_save = [round(b / s, 3) for b, s in zip(results["blocked"], results["sync"])]
        print(f"(a) blocked / sync per save (the first allocates the staging copy): {per_save}")
        print(f"checkpoint blocked/sync ratio {med['blocked'] / med['sync']:.3f}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(
                    {
                        "device": torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else "cpu",
                        "ranks": ctx.world_size,
                        "params_m": params / 1e6,
                        "state_gib": state_bytes / 2**30,
                        "sync_save_s": med["sync"],
                        "async_blocked_s": med["blocked"],
                        "async_written_s": med["async_total"],
                        "blocked_over_sync": med["blocked"] / med["sync"],
                        "blocked_over_sync_per_save": per_save,
                        "load_s": load_time,
                        "consolidated_save_s": consolidated_time,
                        "peak_host_mem_growth_over_state": {
                            "sync": worst["sync_mem"],
                            "async": worst["async_mem"],
                            "consolidated": consolidated_mem,
                        },
                    },
                    f,
                    indent=1,
                )
        shutil.rmtree(root, ignore_errors=True)
    destroy_distributed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden_dim", type=int, default=768)
    parser.add_argument("--n_layers", type=int, default=10)
    parser.add_argument("--vocab", type=int, default=16000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file (rank 0)")
    args = parser.parse_args()
    if "RANK" not in os.environ:
        # --nproc is the launcher's business; forwarded, torchrun's own parser would take it for --nproc_per_node.
        forwarded, skip = [], False
        for arg in sys.argv[1:]:
            if skip or arg.startswith("--nproc="):
                skip = False
                continue
            skip = arg == "--nproc"
            if not skip:
                forwarded.append(arg)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc),
               os.path.abspath(__file__), *forwarded]  # fmt: skip
        raise SystemExit(subprocess.call(cmd))
    worker(args)


if __name__ == "__main__":
    main()
