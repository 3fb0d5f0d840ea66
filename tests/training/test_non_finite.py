"""Non-finite values: a NaN action in a shard is named by the validator and stops training naming its sample, with
the last good checkpoint left as the latest; a NaN loss applies nothing; metrics and progress lines print NaN."""

from __future__ import annotations

import io
import json
import math
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import PRESETS
from tests.training.conftest import synthetic_batches, tiny_experiment
from vla_foundry.data.tar_stream import iter_tar_samples, write_tar_shard
from vla_foundry.metrics import MetricsLogger, read_metrics


def poison_action(dataset_dir: str, shard: str = "shard_000000", index: int = 3) -> str:
    """Set action[1, 0] (the anchor row) of one sample to NaN; returns that sample's key."""
    path = f"{dataset_dir}/{shard}.tar"
    samples = list(iter_tar_samples(path))
    out = []
    for i, sample in enumerate(samples):
        members = {k: v for k, v in sample.items() if not k.startswith("__")}
        if i == index:
            arrays = dict(np.load(io.BytesIO(members["lowdim.npz"]), allow_pickle=False))
            arrays["action"] = arrays["action"].copy()
            arrays["action"][1, 0] = np.nan
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            members["lowdim.npz"] = buf.getvalue()
        out.append((sample["__key__"], members))
    write_tar_shard(path, out)
    return samples[index]["__key__"]


@pytest.fixture(scope="module")
def poisoned_dataset(tmp_path_factory) -> tuple[str, str]:
    """A copy of the tiny robotics dataset (2 shards x 12 samples) with one NaN action value; (dir, sample key)."""
    from vla_foundry.data.scripts.make_tiny_datasets import make_robotics

    root = tmp_path_factory.mktemp("nan_data")
    clean = make_robotics(str(root / "clean"), "lerobot", seed=0)
    data = str(shutil.copytree(clean, root / "poisoned"))
    return data, poison_action(data)


def test_the_validator_names_the_shard_and_sample_of_a_nan_action(poisoned_dataset):
    from vla_foundry.data.validate import validate_dataset

    data, key = poisoned_dataset
    assert [str(p) for p in validate_dataset(data)] == [
        f"shard_000000.tar key {key}: lowdim.npz action holds 1 non-finite value(s) (NaN/Inf), first at index (1, 0)"
    ]


def test_training_stops_naming_the_sample_and_keeps_the_last_good_checkpoint(poisoned_dataset, tmp_path, capsys):
    from vla_foundry.checkpoint import list_checkpoints
    from vla_foundry.main import main

    data, key = poisoned_dataset
    # 24 samples in 3 checkpoint intervals of one step of 8: one epoch, so the poisoned sample is in exactly one.
    status = main(
        [
            "--model", f"include {PRESETS}/models/vla_diffusion_tiny.yaml",
            "--data", f"include {PRESETS}/data/tiny_robotics_lerobot.yaml",
            "--data.dataset_manifest", f"[{data}]",
            "--hparams", f"include {PRESETS}/hparams/cpu_tiny.yaml",
            "--total_train_samples", "24", "--num_checkpoints", "3",
            "--save_path", str(tmp_path), "--name", "nan_run",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: non-finite loss (nan) at optimizer step ")
    assert f"shard_000000.tar key {key}" in line
    interval = int(line.split("checkpoint interval ")[1].split(";")[0])
    assert f"at optimizer step {interval + 1}," in line  # one step per checkpoint interval
    # The intervals before the poisoned one were saved; nothing of the failed interval was.
    assert list_checkpoints(str(tmp_path / "nan_run"), complete_only=False) == list(range(1, interval + 1))


def test_a_nan_loss_raises_before_the_optimizer_step_applies_anything(cpu_ctx, tmp_path):
    from vla_foundry.models.registry import create_model, get_batch_handler
    from vla_foundry.optim import build_optimizer, build_scheduler
    from vla_foundry.train import NonFiniteLossError, Trainer, TrainState

    cfg = tiny_experiment(total_train_samples=16, per_gpu_batch_size=8)
    model = create_model(cfg.model)
    with torch.no_grad():
        next(p for p in model.parameters() if p.dim() == 2).view(-1)[0] = math.nan  # one poisoned weight
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(model, cfg.hparams)
    scheduler = build_scheduler(optimizer, cfg.hparams, cfg.total_steps)
    batches = ({**b, "sample_keys": [f"s{i}" for i in range(8)]} for b in synthetic_batches(16, 8))
    logger = MetricsLogger(str(tmp_path), enabled=True, total_steps=2, start_step=0, show_progress=False)
    state = TrainState()
    with pytest.raises(
        NonFiniteLossError,
        match=r"at optimizer step 1, checkpoint interval 0; .*non-finite loss: s0, s1, s2, s3, s4, s5, s6, s7\. Nothing",
    ):
        Trainer(
            cfg, cpu_ctx, model, get_batch_handler(cfg.model), optimizer, scheduler, logger, state=state
        ).train_interval(batches)
    assert state.step == 0
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0, equal_nan=True, msg=k)


def test_nan_metrics_are_written_and_printed_without_crashing(tmp_path, capsys):
    logger = MetricsLogger(str(tmp_path), enabled=True, total_steps=2, start_step=0)  # no terminal: log lines
    logger.log(1, {"loss": math.nan, "lr": 1e-3, "samples_per_sec": math.inf})
    logger.close()
    assert read_metrics(str(tmp_path / "metrics.jsonl")) == [
        {"step": 1, "loss": "nan", "lr": 1e-3, "samples_per_sec": "inf"}
    ]
    assert "step 1 | loss nan | lr 1.00e-03 | inf samples/s" in capsys.readouterr().err
    json.loads((tmp_path / "metrics.jsonl").read_text())  # standard JSON (no bare NaN)


def test_the_progress_bar_shows_nan(tmp_path, monkeypatch):
    import sys

    from tqdm import tqdm

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    logger = MetricsLogger(str(tmp_path), enabled=True, total_steps=2, start_step=0)
    assert isinstance(logger.bar, tqdm)
    logger.log(1, {"loss": math.nan, "lr": math.inf})
    assert logger.bar.postfix == "loss=nan, lr=inf"
    logger.close()


def test_nan_statistics_are_named_by_the_validator_and_refused_by_the_loader(poisoned_dataset, tmp_path):
    from vla_foundry.data.robotics.stats import StatsError, load_stats
    from vla_foundry.data.validate import validate_dataset

    data = shutil.copytree(poisoned_dataset[0], tmp_path / "d")
    stats = json.loads((data / "stats.json").read_text())
    stats["observation.state"]["std"][2] = math.inf
    (data / "stats.json").write_text(json.dumps(stats))  # Python writes the non-standard token Infinity
    assert "stats.json: observation.state: std holds non-finite values (NaN/Inf)" in [
        str(p) for p in validate_dataset(str(data))
    ]
    with pytest.raises(StatsError, match=r"stats.json holds NaN/Inf statistics \(observation.state: std\)"):
        load_stats(str(data / "stats.json"))
