"""Checkpoint files: consolidated weights, full training state, resolution, errors and pruning."""

from __future__ import annotations

import os
import time

import pytest
import torch

from tests.training.conftest import synthetic_batches, tiny_lm_params
from vla_foundry.checkpoint import (
    CheckpointError,
    checkpoint_file,
    list_checkpoints,
    load_model_checkpoint,
    load_training_state,
    prune_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
)
from vla_foundry.models.ema import EMA
from vla_foundry.models.registry import create_model
from vla_foundry.optim import build_optimizer, build_scheduler
from vla_foundry.params import EMAParams, HyperParams


def _trained(seed: int = 0, steps: int = 2):
    torch.manual_seed(seed)
    model = create_model(tiny_lm_params())
    hp = HyperParams(lr=1e-2, precision="fp32")
    opt = build_optimizer(model, hp)
    sched = build_scheduler(opt, hp, total_steps=10)
    ema = EMA(model, EMAParams(enabled=True, decay=0.9))
    for batch in list(synthetic_batches(4 * steps, 4))[:steps]:
        ids = batch["input_ids"]
        logits = model(input_ids=ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        ema.update(1)
    return model, opt, sched, ema


def _save(run_dir, n, model, opt, sched, ema, ctx, **state):
    save_checkpoint(str(run_dir), n, model, opt, sched, ema, {"step": n, **state}, ctx)


def test_checkpoint_is_a_plain_state_dict_loadable_with_weights_only(tmp_path, cpu_ctx):
    model, opt, sched, ema = _trained()
    _save(tmp_path, 1, model, opt, sched, ema, cpu_ctx)
    state = torch.load(checkpoint_file(str(tmp_path), 1), weights_only=True)
    assert set(state) == set(model.state_dict())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    for kind in ("optimizer", "ema", "trainer_state"):
        assert os.path.exists(checkpoint_file(str(tmp_path), 1, kind))
    assert not [f for f in os.listdir(tmp_path / "checkpoints") if f.startswith(".tmp")]


def test_training_state_roundtrip_restores_optimizer_scheduler_ema_and_rng(tmp_path, cpu_ctx):
    model, opt, sched, ema = _trained()
    torch.manual_seed(123)
    _save(tmp_path, 1, model, opt, sched, ema, cpu_ctx, samples_seen=7)
    expected_draw = torch.rand(3)

    fresh, fresh_opt, fresh_sched, fresh_ema = _trained(seed=5, steps=1)
    state = load_training_state(resolve_checkpoint(str(tmp_path)), fresh, fresh_opt, fresh_sched, fresh_ema, cpu_ctx)
    assert state["samples_seen"] == 7 and state["checkpoint"] == 1
    assert torch.equal(torch.rand(3), expected_draw)
    assert fresh_sched.last_epoch == sched.last_epoch
    for (name, p), q in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), name
        assert torch.equal(opt.state[p]["exp_avg"], fresh_opt.state[q]["exp_avg"]), name
    assert all(torch.equal(a, b) for a, b in zip(ema.shadow, fresh_ema.shadow))


def test_resolve_run_dir_picks_latest_complete_checkpoint(tmp_path, cpu_ctx):
    model, opt, sched, ema = _trained()
    _save(tmp_path, 1, model, opt, sched, ema, cpu_ctx)
    _save(tmp_path, 2, model, opt, sched, ema, cpu_ctx)
    # A crash while writing checkpoint 3 leaves weights without trainer state: not resumable.
    torch.save(model.state_dict(), checkpoint_file(str(tmp_path), 3))
    assert list_checkpoints(str(tmp_path)) == [1, 2]
    assert resolve_checkpoint(str(tmp_path)).number == 2
    assert resolve_checkpoint(str(tmp_path / "checkpoints")).number == 2
    assert resolve_checkpoint(checkpoint_file(str(tmp_path), 1)).run_dir == str(tmp_path)


def test_missing_checkpoint_path_fails_fast_naming_the_path(tmp_path):
    missing = str(tmp_path / "nowhere" / "checkpoints" / "checkpoint_4.pt")
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="nowhere/checkpoints/checkpoint_4.pt"):
        resolve_checkpoint(missing)
    with pytest.raises(CheckpointError, match="nowhere"):
        resolve_checkpoint(str(tmp_path / "nowhere"))
    assert time.monotonic() - start < 5


def test_checkpoint_of_another_shape_names_mismatching_keys(tmp_path, cpu_ctx):
    model, opt, sched, ema = _trained()
    _save(tmp_path, 1, model, opt, sched, ema, cpu_ctx)
    wider = create_model(tiny_lm_params(hidden_dim=48, n_layers=3))
    with pytest.raises(CheckpointError) as info:
        load_model_checkpoint(wider, str(tmp_path))
    message = str(info.value)
    assert "layers.0.attention.wq.weight (checkpoint [32, 32] vs model [48, 48])" in message
    assert "missing from the checkpoint" in message and "layers.2.attention.wq.weight" in message


def test_load_model_checkpoint_with_ema_weights(tmp_path, cpu_ctx):
    model, opt, sched, ema = _trained()
    _save(tmp_path, 1, model, opt, sched, ema, cpu_ctx)
    plain = load_model_checkpoint(create_model(tiny_lm_params()), str(tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), model.parameters()))
    smoothed = load_model_checkpoint(create_model(tiny_lm_params()), str(tmp_path), use_ema=True)
    assert all(torch.equal(a, b) for a, b in zip(smoothed.parameters(), ema.shadow))


def test_prune_keeps_newest_checkpoints_with_all_their_files(tmp_path, cpu_ctx):
    model, opt, sched, ema = _trained()
    for n in (1, 2, 3):
        _save(tmp_path, n, model, opt, sched, ema, cpu_ctx)
    assert prune_checkpoints(str(tmp_path), 2) == [1]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == sorted(
        f"{k}_{n}.pt" for n in (2, 3) for k in ("checkpoint", "optimizer", "ema", "trainer_state")
    )
    assert prune_checkpoints(str(tmp_path), None) == []


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_exported_weights_load_into_a_plain_model(tmp_path, cpu_ctx, suffix):
    from vla_foundry.checkpoint import main as export_main

    model, opt, sched, ema = _trained()
    _save(tmp_path / "run", 1, model, opt, sched, ema, cpu_ctx)
    out = str(tmp_path / f"model{suffix}")
    assert export_main([str(tmp_path / "run"), "--output", out, "--ema"]) == 0
    loaded = load_model_checkpoint(create_model(tiny_lm_params()), out)
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), ema.shadow))


def test_export_without_ema_weights_names_the_missing_file(tmp_path, cpu_ctx, capsys):
    from vla_foundry.checkpoint import main as export_main

    model, opt, sched, _ = _trained()
    _save(tmp_path, 1, model, opt, sched, None, cpu_ctx)
    assert export_main([str(tmp_path), "--output", str(tmp_path / "m.safetensors"), "--ema"]) == 2
    assert "ema_1.pt does not exist" in capsys.readouterr().err
