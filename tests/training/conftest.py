"""Fixtures for the training tests: a single-process context, tiny language-model configs, synthetic batches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from vla_foundry.distributed import DistributedContext
from vla_foundry.params import HyperParams, TextDataParams, TrainExperimentParams, TransformerParams
from vla_foundry.params.train_experiment_params import derive_params

VOCAB = 64
SEQ_LEN = 16


def tiny_lm_params(**overrides) -> TransformerParams:
    fields = {"hidden_dim": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "vocab_size": VOCAB, "max_seq_len": 64}
    return TransformerParams(**{**fields, **overrides})


def tiny_experiment(
    total_train_samples: int = 32,
    per_gpu_batch_size: int = 8,
    global_batch_size: int | None = None,
    num_checkpoints: int = 1,
    **hparams,
) -> TrainExperimentParams:
    """A text experiment with a tiny transformer, fp32, derived values filled (single process)."""
    hp = {"lr": 3e-3, "warmup": 0, "precision": "fp32", "weight_decay": 0.0, "lr_scheduler": "constant", **hparams}
    params = TrainExperimentParams(
        model=tiny_lm_params(),
        data=TextDataParams(seq_len=SEQ_LEN),
        hparams=HyperParams(per_gpu_batch_size=per_gpu_batch_size, global_batch_size=global_batch_size, **hp),
        total_train_samples=total_train_samples,
        num_checkpoints=num_checkpoints,
        log_every_n_steps=1,
    )
    return derive_params(params)


def synthetic_batches(num_samples: int, batch_size: int, seed: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Deterministic token batches (B, SEQ_LEN + 1) with a learnable pattern: token t+1 = token t + 1 mod VOCAB."""
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, VOCAB, (num_samples, 1), generator=gen)
    ids = (starts + torch.arange(SEQ_LEN + 1)) % VOCAB  # (N, T+1)
    for i in range(0, num_samples, batch_size):
        yield {"input_ids": ids[i : i + batch_size]}


@pytest.fixture
def cpu_ctx(monkeypatch: pytest.MonkeyPatch) -> DistributedContext:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    return DistributedContext(
        rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None, wrapping="none"
    )


def rank_micro_batches(
    num_samples: int, global_batch: int, per_gpu: int, rank: int, world_size: int, seed: int = 0
) -> Iterator[dict[str, torch.Tensor]]:
    """This rank's micro-batches when each global batch of the synthetic stream is split evenly over ranks."""
    per_rank = global_batch // world_size
    for batch in synthetic_batches(num_samples, global_batch, seed):
        ids = batch["input_ids"][rank * per_rank : (rank + 1) * per_rank]
        for i in range(0, per_rank, per_gpu):
            yield {"input_ids": ids[i : i + per_gpu]}


def train_single_process(
    num_samples: int, global_batch: int, per_gpu: int, ema_decay: float | None = None, **hparams
) -> tuple[list[float], torch.nn.Module, object]:
    """Train the tiny transformer in this process on the synthetic stream; returns (losses, model, ema)."""
    import dataclasses

    from vla_foundry.metrics import MetricsLogger
    from vla_foundry.models.ema import EMA
    from vla_foundry.models.registry import create_model, get_batch_handler
    from vla_foundry.optim import build_optimizer, build_scheduler
    from vla_foundry.train import Trainer

    ctx = DistributedContext(
        rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None, wrapping="none"
    )
    cfg = tiny_experiment(
        total_train_samples=num_samples, per_gpu_batch_size=per_gpu, global_batch_size=global_batch, **hparams
    )
    torch.manual_seed(0)
    model = create_model(cfg.model)
    optimizer = build_optimizer(model, cfg.hparams)
    scheduler = build_scheduler(optimizer, cfg.hparams, cfg.total_steps)
    ema = EMA(model, dataclasses.replace(cfg.ema, enabled=True, decay=ema_decay)) if ema_decay else None
    logger = MetricsLogger("unused", enabled=False, total_steps=cfg.total_steps, start_step=0)
    batches = rank_micro_batches(num_samples, global_batch, per_gpu, 0, 1)
    trainer = Trainer(cfg, ctx, model, get_batch_handler(cfg.model), optimizer, scheduler, logger, ema=ema)
    result = trainer.train_interval(batches)
    return result.losses, model, ema


@pytest.fixture(scope="session")
def tiny_datasets(tmp_path_factory) -> dict[str, str]:
    """Two text datasets (shards of 16 samples, so checkpoint intervals end mid-epoch) and an image-caption dataset."""
    from vla_foundry.data.scripts.make_tiny_datasets import make_image_caption, make_text

    root = tmp_path_factory.mktemp("datasets")
    return {
        "text_a": make_text(str(root / "text_a"), num_shards=4, samples_per_shard=16, seed=0),
        "text_b": make_text(str(root / "text_b"), num_shards=3, samples_per_shard=16, seed=1),
        "image_caption": make_image_caption(str(root / "image_caption"), num_shards=2, samples_per_shard=16),
    }


def lm_run_args(datasets: dict[str, str], save_path: str, name: str, *extra: str) -> list[str]:
    """CLI flags of a small LLM run on two mixed text datasets (in-process loader, fp32, EMA on)."""
    from tests.conftest import PRESETS

    return [
        "--model", f"include {PRESETS / 'models' / 'transformer_tiny.yaml'}",
        "--hparams", f"include {PRESETS / 'hparams' / 'cpu_tiny.yaml'}",
        "--data.type", "text",
        "--data.seq_len", "32",
        "--data.dataset_manifest", f"[{datasets['text_a']}, {datasets['text_b']}]",
        "--data.dataset_weighting", "[0.6, 0.4]",
        "--data.dataset_modality", "[text, text]",
        "--data.num_workers", "0",
        "--data.shuffle_buffer_size", "8",
        "--hparams.per_gpu_batch_size", "8",
        "--hparams.lr", "3e-3",
        "--ema.enabled", "True",
        "--ema.decay", "0.9",
        "--total_train_samples", "192",
        "--num_checkpoints", "2",
        "--log_every_n_steps", "1",
        "--save_path", save_path,
        "--name", name,
        *extra,
    ]  # fmt: skip


def run_main(args: list[str]):
    """Parse and run a training job in this process; returns the RunResult."""
    from vla_foundry.params import parse_train_params
    from vla_foundry.training_run import run_training

    return run_training(parse_train_params(args))


@pytest.fixture(scope="session")
def llm_run(tiny_datasets, tmp_path_factory):
    """An uninterrupted 2-checkpoint LLM run shared by the tests that compare against it."""
    save_path = str(tmp_path_factory.mktemp("runs"))
    return run_main(lm_run_args(tiny_datasets, save_path, "llm"))


def checkpoint_weights(run_dir: str, n: int, ema: bool = False) -> dict[str, torch.Tensor]:
    """The consolidated model (or EMA) weights of checkpoint n of a run, read in this process."""
    from vla_foundry.checkpoint import checkpoint_dir, read_checkpoint_weights

    return read_checkpoint_weights(checkpoint_dir(run_dir, n), use_ema=ema)


def checkpoint_contents(run_dir: str, n: int, tmp_dir: str) -> dict:
    """Everything checkpoint n saved (model, optimizer, EMA; consolidated) and its trainer state."""
    import os

    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    from vla_foundry.checkpoint import TRAINER_STATE_FILE, checkpoint_dir

    out = os.path.join(tmp_dir, f"checkpoint_{n}_{abs(hash(run_dir))}.pt")
    dcp_to_torch_save(checkpoint_dir(run_dir, n), out)
    state = torch.load(out, weights_only=True)
    state["trainer_state"] = torch.load(os.path.join(checkpoint_dir(run_dir, n), TRAINER_STATE_FILE), weights_only=True)
    return state
