"""VLA training samples/s on one GPU (bf16 FSDP2), and the robotics loader's data-wait at that pace.

    uv run python benchmarks/bench_gpu_vla.py [--backbones vla_100m smolvlm] [--per_gpu_batch_size 32] [--steps 10]
        [--warmup_steps 3] [--loader_workers 8] [--loader_steps 20] [--image_size 224] [--json results.json]

Writes a robotics dataset (2 cameras x image offsets -1, 0 of photo-like JPEGs stored at --image_size px; window 1
past + 14 future rows) in a temporary directory, then measures:
  (a) samples/s of training steps, bf16 FSDP2 in a one-process group (as bench_gpu_mfu), on one real loader batch
      kept on the GPU and reused (no data loading timed), for each backbone:
        vla_100m  config_presets/models/vla_diffusion_100m.yaml: native ViT at 128 px + transformer_100m (~124M);
        smolvlm   config_presets/models/vla_diffusion_smolvlm.yaml with an Idefics3 model of SmolVLM-256M's sizes
                  (SigLIP 12 x 768 at 512 px, Llama 30 x 576, vocabulary 49,280) built from a config with random
                  weights and a byte-level tokenizer: nothing is downloaded;
  (b) the data-wait fraction of vla_100m trained from the real loader (--loader_workers worker processes decoding,
      resizing and normalising): time blocked on the next batch / wall time, over --loader_steps steps after each
      worker delivered its first batch (`Trainer.train_interval`'s own data_wait figure).
`--tiny` swaps in tiny models (vla_diffusion_tiny, a 1-layer Idefics3) and `--device cpu` runs on the CPU (gloo):
together they dry-run every code path without a GPU (`--precision fp32` keeps that fast: CPU bf16 is slow). `--json PATH` also writes the results as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESETS = os.path.join(ROOT, "config_presets")
CAMERAS = ["front", "wrist"]
OFFSETS = [-1, 0]

# SmolVLM-256M's published architecture (Idefics3): SigLIP vision tower at 512 px with 16 px patches, pixel shuffle
# by 4 (64 tokens per image), Llama decoder 30 x 576 with 9 query and 3 key/value heads.
SMOLVLM_256M_VISION = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=512,
    patch_size=16,
)  # fmt: skip
SMOLVLM_256M_TEXT = dict(
    model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
    num_key_value_heads=3, vocab_size=49280, max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
)  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["vla_100m", "smolvlm"], choices=["vla_100m", "smolvlm"])
    parser.add_argument("--per_gpu_batch_size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps per backbone")
    parser.add_argument("--warmup_steps", type=int, default=3)
    parser.add_argument("--loader_workers", type=int, default=8)
    parser.add_argument("--loader_steps", type=int, default=20, help="timed steps fed by the loader; 0 skips (b)")
    parser.add_argument("--image_size", type=int, default=224, help="stored JPEG size")
    parser.add_argument("--tiny", action="store_true", help="tiny models (a dry run of the code paths)")
    parser.add_argument(
        "--precision",
        default="amp_bf16",
        choices=["amp_bf16", "fp32"],
        help="fp32: a fast CPU dry run (CPU bf16 is slow)",
    )
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    return parser.parse_args()


def save_smolvlm_sized(path: str, tiny: bool) -> str:
    """An Idefics3 (SmolVLM architecture) model + processor with random weights, built from a config."""
    from tests.hf_models import IDEFICS3_CHAT_TEMPLATE, byte_fallback_tokenizer, save_idefics3

    if tiny:
        return str(save_idefics3(__import__("pathlib").Path(path), with_processor=True))
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor

    tokenizer = byte_fallback_tokenizer()
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]}
    )
    config = Idefics3Config(
        vision_config=SMOLVLM_256M_VISION,
        text_config=SMOLVLM_256M_TEXT,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=4,
    )
    torch.manual_seed(0)
    Idefics3ForConditionalGeneration(config).save_pretrained(path)
    size = {"longest_edge": SMOLVLM_256M_VISION["image_size"]}
    image_processor = Idefics3ImageProcessor(do_image_splitting=False, size=size, max_image_size=size)
    tokens_per_image = (SMOLVLM_256M_VISION["image_size"] // SMOLVLM_256M_VISION["patch_size"]) ** 2 // 4**2
    Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=tokens_per_image,
        chat_template=IDEFICS3_CHAT_TEMPLATE,
    ).save_pretrained(path)  # fmt: skip
    return path


def experiment(args: argparse.Namespace, dataset: str, backbone: str, hf_dir: str | None, samples: int):
    """Training params of one backbone on the benchmark dataset (derived values filled from its stats)."""
    from vla_foundry.data.robotics.processor import derive_robotics_data
    from vla_foundry.params import derive_params
    from vla_foundry.params.parsing import parse_params
    from vla_foundry.params.train_experiment_params import TrainExperimentParams

    if backbone == "vla_100m":
        model = ["--model", f"include {PRESETS}/models/vla_diffusion_{'tiny' if args.tiny else '100m'}.yaml"]
        image = ["--data.image_size", "32" if args.tiny else "128"]
    else:
        model = [
            "--model", f"include {PRESETS}/models/vla_diffusion_smolvlm.yaml",
            "--model.backbone.hf_pretrained", hf_dir,
        ]  # fmt: skip
        image = ["--data.tokenizer", hf_dir]
    params = parse_params(
        TrainExperimentParams,
        [
            *model, *image,
            "--hparams", f"include {PRESETS}/hparams/gpu_bf16.yaml",
            "--hparams.per_gpu_batch_size", str(args.per_gpu_batch_size),
            "--hparams.warmup", "0",
            "--hparams.precision", args.precision,
            "--data.type", "robotics",
            "--data.dataset_manifest", f"[{dataset}]",
            "--data.dataset_weighting", "[1.0]",
            "--data.dataset_modality", "[robotics]",
            "--data.action_fields", "[action]",
            "--data.proprioception_fields", "[observation.state]",
            "--data.camera_names", f"[{', '.join(CAMERAS)}]",
            "--data.image_indices", f"[{', '.join(map(str, OFFSETS))}]",
            "--data.num_workers", str(args.loader_workers),
            "--total_train_samples", str(samples),
            "--log_every_n_steps", "1000000",
        ],
    )  # fmt: skip
    return derive_params(dataclasses.replace(params, data=derive_robotics_data(params.data)))


def loader(params, samples: int, workers: int, device: torch.device):
    """The robotics loader as training builds it (`training_run.build_batches`), with `workers` processes."""
    from vla_foundry.data.planner import plan_checkpoint
    from vla_foundry.distributed import DistributedContext
    from vla_foundry.training_run import build_batches

    plan = plan_checkpoint(params.data, 0, samples)
    data = dataclasses.replace(params.data, num_workers=workers)
    return build_batches(
        dataclasses.replace(params, data=data), plan, DistributedContext(0, 1, 0, device, None, "none")
    )


def build_training(params, ctx):
    from vla_foundry.distributed import mixed_precision_dtypes, parallelize_model, unwrap_model
    from vla_foundry.models.registry import create_model, get_batch_handler
    from vla_foundry.optim import build_optimizer, build_scheduler
    from vla_foundry.training_run import lr_multipliers

    torch.manual_seed(0)
    model = create_model(params.model)
    num_params = sum(p.numel() for p in model.parameters())
    model = parallelize_model(model, ctx, params.distributed, params.hparams)
    optimizer = build_optimizer(unwrap_model(model), params.hparams, lr_multipliers(unwrap_model(model)))
    scheduler = build_scheduler(optimizer, params.hparams, params.total_steps)
    fsdp_mp = mixed_precision_dtypes(params.hparams, ctx.device)[0] is not None
    return model, get_batch_handler(params.model), optimizer, scheduler, fsdp_mp, num_params


def train_window(training, params, ctx, batches, steps: int):
    """`steps` optimizer steps on `batches`; returns `Trainer.train_interval`'s IntervalResult (device synchronised)."""
    from vla_foundry.metrics import MetricsLogger
    from vla_foundry.train import Trainer

    model, handler, optimizer, scheduler, fsdp_mp, _ = training
    p = dataclasses.replace(params, samples_per_checkpoint=steps * params.hparams.per_gpu_batch_size)
    logger = MetricsLogger("unused", enabled=False, total_steps=steps, start_step=0)
    trainer = Trainer(p, ctx, model, handler, optimizer, scheduler, logger, fsdp_mixed_precision=fsdp_mp)
    result = trainer.train_interval(batches)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize()
    return result


def measure_backbone(args, params, ctx, name: str) -> dict:
    """(a): samples/s on one resident batch."""
    from vla_foundry.distributed import peak_memory_gib

    training = build_training(params, ctx)
    handler = training[1]
    batch = handler.to_device(next(iter(loader(params, args.per_gpu_batch_size, 0, ctx.device))), ctx.device)
    train_window(training, params, ctx, itertools.repeat(batch), args.warmup_steps)
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    result = train_window(training, params, ctx, itertools.repeat(batch), args.steps)
    samples = args.steps * args.per_gpu_batch_size
    out = {
        "backbone": name,
        "params_m": training[5] / 1e6,
        "per_gpu_batch_size": args.per_gpu_batch_size,
        "samples_per_sec": samples / result.seconds,
        "step_s": result.seconds / args.steps,
        "peak_mem_gib": peak_memory_gib(ctx.device),
        "loss_last": result.losses[-1],
    }
    print(
        f"(a) {name:9s} {out['params_m']:.0f}M params: {out['samples_per_sec']:.1f} samples/s, "
        f"{out['step_s'] * 1000:.0f} ms/step, peak memory {out['peak_mem_gib']:.1f} GiB",
        flush=True,
    )
    del training
    if ctx.device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def measure_data_wait(args, params, ctx) -> dict:
    """(b): vla_100m trained from the real loader with worker processes."""
    training = build_training(params, ctx)
    workers = args.loader_workers
    warm = max(workers, 1)
    batches = iter(loader(params, (warm + args.loader_steps) * args.per_gpu_batch_size, workers, ctx.device))
    # One batch per worker first: worker start-up and the shuffle buffers' fill are not the steady state.
    train_window(training, params, ctx, batches, warm)
    result = train_window(training, params, ctx, batches, args.loader_steps)
    out = {
        "backbone": "vla_100m",
        "loader_workers": workers,
        "image_size_stored": args.image_size,
        "steps": args.loader_steps,
        "samples_per_sec": args.loader_steps * args.per_gpu_batch_size / result.seconds,
        "data_wait_fraction": result.data_wait_seconds / result.seconds,
    }
    print(
        f"(b) loader-fed vla_100m, {workers} workers: {out['samples_per_sec']:.1f} samples/s, data-wait fraction "
        f"{out['data_wait_fraction']:.3f}",
        flush=True,
    )
    return out


def main() -> int:
    args = parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "bench_gpu_vla: CUDA is not available here (--device cpu --tiny dry-runs the code paths)", file=sys.stderr
        )
        return 1
    import torch.distributed as dist

    from vla_foundry.data.scripts.make_tiny_datasets import make_robotics
    from vla_foundry.distributed import DistributedContext, destroy_distributed

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29518")
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    if args.device == "cuda":
        device = torch.device("cuda", 0)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
        name = torch.cuda.get_device_name(0)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
        name = "cpu (dry run)"
    ctx = DistributedContext(0, 1, 0, device, dist.get_backend(), "fsdp")
    print(f"device: {name}; batch {args.per_gpu_batch_size}; {args.precision} FSDP2", flush=True)

    results: dict = {"device": name, "torch": torch.__version__, "backbones": [], "data_wait": None}

    def dump() -> None:
        # After every measurement: a later one that fails or is stopped leaves the earlier figures.
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)

    samples_needed = (max(args.loader_workers, 1) + args.loader_steps + 1) * args.per_gpu_batch_size
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        episodes = max(4, -(-samples_needed // 32))
        dataset = make_robotics(
            os.path.join(tmp, "robotics"), "lerobot", num_episodes=episodes, episode_length=32,
            num_shards=max(4, args.loader_workers), past=1, future=14, image_indices=tuple(OFFSETS),
            image_size=args.image_size, jpeg_quality=90, textured=True,
        )  # fmt: skip
        print(f"dataset: {episodes * 32} samples in {time.perf_counter() - start:.0f} s", flush=True)
        for backbone in args.backbones:
            hf_dir = save_smolvlm_sized(os.path.join(tmp, "smolvlm"), args.tiny) if backbone == "smolvlm" else None
            params = experiment(args, dataset, backbone, hf_dir, samples_needed)
            try:
                results["backbones"].append(measure_backbone(args, params, ctx, backbone))
            except Exception as e:  # one backbone failing leaves the others' figures
                print(f"(a) {backbone}: FAILED {type(e).__name__}: {e}", flush=True)
                results["backbones"].append({"backbone": backbone, "error": f"{type(e).__name__}: {e}"})
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            dump()
        if args.loader_steps > 0:
            params = experiment(args, dataset, "vla_100m", None, samples_needed)
            results["data_wait"] = measure_data_wait(args, params, ctx)
            dump()
    destroy_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
