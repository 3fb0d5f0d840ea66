"""Elementwise EMA of the weights."""

from __future__ import annotations

import torch
from torch import nn

from vla_foundry.models.ema import EMA
from vla_foundry.params import EMAParams


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))


def test_update_is_decay_weighted_average():
    model = _model()
    ema = EMA(model, EMAParams(enabled=True, decay=0.9))
    before = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(step=1)
    expected = 0.9 * before + 0.1 * (before + 1.0)
    assert torch.allclose(ema.shards()["0.weight"], expected)


def test_before_start_step_the_ema_copies_the_weights():
    model = _model()
    ema = EMA(model, EMAParams(enabled=True, decay=0.99, start_step=5))
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    ema.update(step=1)
    assert torch.equal(ema.shards()["0.weight"], model[0].weight.detach())


def test_update_every_skips_intermediate_steps():
    model = _model()
    ema = EMA(model, EMAParams(enabled=True, decay=0.5, update_every=2))
    ema.update(step=1)
    ema.update(step=2)
    ema.update(step=3)
    assert ema.num_updates == 1


def test_shards_are_the_shadow_tensors_themselves_not_copies():
    """Checkpoints save and load the EMA through these tensors in place; a copy would double its memory."""
    model = _model()
    ema = EMA(model, EMAParams(enabled=True, decay=0.5))
    shards = ema.shards()
    assert list(shards) == [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(shards[name] is shadow for (name, _), shadow in zip(ema.named, ema.shadow))
    shards["0.bias"].fill_(7.0)
    assert torch.equal(ema.shadow[1], torch.full((4,), 7.0))
