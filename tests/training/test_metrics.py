"""metrics.jsonl records, truncation on resume, throughput and MFU figures."""

from __future__ import annotations

import math

import torch

from tests.training.conftest import SEQ_LEN, rank_micro_batches, tiny_experiment
from vla_foundry.metrics import MetricsLogger, model_flops_per_token, peak_flops, read_metrics, truncate_metrics
from vla_foundry.models.registry import create_model, get_batch_handler
from vla_foundry.optim import build_optimizer, build_scheduler
from vla_foundry.train import Trainer


def test_records_are_json_lines_with_plain_values(tmp_path):
    logger = MetricsLogger(str(tmp_path), enabled=True, total_steps=3, start_step=0, show_progress=False)
    logger.log(1, {"loss": torch.tensor(2.5), "lr": 1e-3})
    logger.log(2, {"loss": math.inf})
    logger.close()
    assert read_metrics(str(tmp_path / "metrics.jsonl")) == [
        {"step": 1, "loss": 2.5, "lr": 1e-3},
        {"step": 2, "loss": "inf"},
    ]


def test_other_ranks_write_nothing(tmp_path):
    logger = MetricsLogger(str(tmp_path), enabled=False, total_steps=3, start_step=0)
    logger.log(1, {"loss": 1.0})
    assert not (tmp_path / "metrics.jsonl").exists()


def test_truncate_drops_records_after_the_resumed_step(tmp_path):
    logger = MetricsLogger(str(tmp_path), enabled=True, total_steps=5, start_step=0, show_progress=False)
    for step in range(1, 6):
        logger.log(step, {"loss": float(step)})
    truncate_metrics(str(tmp_path / "metrics.jsonl"), 3)
    assert [r["step"] for r in read_metrics(str(tmp_path / "metrics.jsonl"))] == [1, 2, 3]


def test_peak_flops_unknown_on_cpu_unless_given(monkeypatch):
    monkeypatch.delenv("VLA_FOUNDRY_PEAK_FLOPS", raising=False)
    assert peak_flops(torch.device("cpu")) is None
    monkeypatch.setenv("VLA_FOUNDRY_PEAK_FLOPS", "1e12")
    assert peak_flops(torch.device("cpu")) == 1e12


def test_step_metrics_include_throughput_and_mfu(tmp_path, cpu_ctx, monkeypatch):
    monkeypatch.setenv("VLA_FOUNDRY_PEAK_FLOPS", "1e12")
    cfg = tiny_experiment(total_train_samples=16, per_gpu_batch_size=8)
    torch.manual_seed(0)
    model = create_model(cfg.model)
    optimizer = build_optimizer(model, cfg.hparams)
    scheduler = build_scheduler(optimizer, cfg.hparams, cfg.total_steps)
    logger = MetricsLogger(str(tmp_path), enabled=True, total_steps=2, start_step=0, show_progress=False)
    batches = rank_micro_batches(16, 8, 8, 0, 1)
    Trainer(
        cfg, cpu_ctx, model, get_batch_handler(cfg.model), optimizer, scheduler, logger,
        flops_per_token=lambda seq_len: model_flops_per_token(model, seq_len),
    ).train_interval(batches)  # fmt: skip
    last = read_metrics(str(tmp_path / "metrics.jsonl"))[-1]
    assert last["step"] == 2 and last["samples_seen"] == 16 and last["tokens_seen"] == 2 * 8 * SEQ_LEN
    assert math.isclose(last["tokens_per_sec"], last["samples_per_sec"] * SEQ_LEN, rel_tol=1e-9)
    expected_mfu = model.flops_per_token(SEQ_LEN) * last["tokens_per_sec"] / 1e12
    assert math.isclose(last["mfu"], expected_mfu, rel_tol=1e-9)
    assert 0.0 <= last["data_wait_fraction"] < 1.0 and last["peak_memory_gib"] > 0


def test_without_a_terminal_each_record_is_one_log_line(tmp_path, capsys):
    logger = MetricsLogger(str(tmp_path), enabled=True, total_steps=3, start_step=0)
    logger.log(1, {"loss": 2.5, "lr": 1e-3, "samples_per_sec": 12.0, "mfu": 0.25})
    logger.close()
    assert "step 1 | loss 2.5000 | lr 1.00e-03 | 12.0 samples/s | mfu 25.0%" in capsys.readouterr().err
