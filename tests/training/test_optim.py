"""Optimizer parameter groups and learning-rate schedules."""

from __future__ import annotations

import math

import pytest

from tests.training.conftest import tiny_lm_params
from vla_foundry.models.registry import create_model
from vla_foundry.optim import build_optimizer, build_param_groups, build_scheduler, lr_factor_fn, warmup_steps
from vla_foundry.params import HyperParams


def test_no_weight_decay_on_norms_biases_and_embeddings():
    model = create_model(tiny_lm_params())
    groups = build_param_groups(model, HyperParams(weight_decay=0.1))
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    decay = {names[id(p)] for g in groups if g["weight_decay"] == 0.1 for p in g["params"]}
    assert "tok_embeddings.weight" in no_decay
    assert all(n in no_decay for n in names.values() if "norm" in n)
    assert "layers.0.attention.wq.weight" in decay
    assert no_decay.isdisjoint(decay) and len(no_decay | decay) == len(names)


def test_weight_decay_everywhere_when_switched_off():
    model = create_model(tiny_lm_params())
    groups = build_param_groups(model, HyperParams(weight_decay=0.1, no_decay_norm_bias=False))
    assert [g["weight_decay"] for g in groups] == [0.1]


def test_lr_multiplier_prefix_and_frozen_parameters():
    model = create_model(tiny_lm_params())
    model.tok_embeddings.weight.requires_grad_(False)
    groups = build_param_groups(model, HyperParams(lr=1e-3), lr_multipliers={"layers.1.": 0.1})
    lrs = sorted({g["lr"] for g in groups})
    assert lrs == pytest.approx([1e-4, 1e-3])
    optimised = {id(p) for g in groups for p in g["params"]}
    assert id(model.tok_embeddings.weight) not in optimised


def test_warmup_as_steps_or_fraction():
    assert warmup_steps(HyperParams(warmup=5), 100) == 5
    assert warmup_steps(HyperParams(warmup=0.1), 100) == 10


def test_cosine_schedule_warms_up_then_decays_to_min_ratio():
    f = lr_factor_fn(HyperParams(lr_scheduler="cosine", warmup=4, lr_min_ratio=0.1), total_steps=20)
    assert [f(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f(4) == pytest.approx(1.0)
    assert f(12) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(20) == pytest.approx(0.1)


def test_wsd_schedule_is_flat_then_decays_linearly():
    f = lr_factor_fn(
        HyperParams(lr_scheduler="wsd", warmup=2, lr_min_ratio=0.0, lr_decay_fraction=0.25), total_steps=20
    )
    assert [f(s) for s in (2, 10, 14)] == [1.0, 1.0, 1.0]
    assert f(15) == pytest.approx(1.0)
    assert f(17) == pytest.approx(0.6)
    assert f(20) == pytest.approx(0.0)


def test_constant_schedule_after_warmup():
    f = lr_factor_fn(HyperParams(lr_scheduler="constant", warmup=0.5), total_steps=10)
    assert f(0) == pytest.approx(0.2) and f(5) == 1.0 and f(9) == 1.0


def test_scheduler_drives_each_group_from_its_own_base_lr():
    model = create_model(tiny_lm_params())
    hp = HyperParams(lr=1e-2, lr_scheduler="cosine", warmup=2, lr_min_ratio=0.0)
    opt = build_optimizer(model, hp, lr_multipliers={"layers.": 0.5})
    sched = build_scheduler(opt, hp, total_steps=10)
    assert sorted(g["lr"] for g in opt.param_groups)[0] == pytest.approx(0.25e-2)
    for _ in range(10):
        opt.step()
        sched.step()
    assert all(g["lr"] == pytest.approx(0.0, abs=1e-12) for g in opt.param_groups)
