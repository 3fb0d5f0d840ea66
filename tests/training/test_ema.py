"""Elementwise EMA of the weights."""

from __future__ import annotations

import pytest
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
    assert torch.allclose(ema.full_state_dict()["0.weight"], expected)


def test_before_start_step_the_ema_copies_the_weights():
    model = _model()
    ema = EMA(model, EMAParams(enabled=True, decay=0.99, start_step=5))
    with torch.no_grad():
        model[0].weight.mul_(3.0)
    ema.update(step=1)
    assert torch.equal(ema.full_state_dict()["0.weight"], model[0].weight.detach())


def test_update_every_skips_intermediate_steps():
    model = _model()
    ema = EMA(model, EMAParams(enabled=True, decay=0.5, update_every=2))
    ema.update(step=1)
    ema.update(step=2)
    ema.update(step=3)
    assert ema.num_updates == 1


def test_state_roundtrip_and_copy_to_model_state():
    model = _model()
    ema = EMA(model, EMAParams(enabled=True, decay=0.5))
    with torch.no_grad():
        model[0].bias.fill_(2.0)
    ema.update(step=1)
    other = EMA(_model(), EMAParams(enabled=True, decay=0.5))
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1
    merged = other.copy_to(model.state_dict())
    assert torch.allclose(merged["0.bias"], ema.full_state_dict()["0.bias"])


def test_loading_state_of_another_model_names_missing_parameters():
    ema = EMA(_model(), EMAParams(enabled=True))
    with pytest.raises(KeyError, match="0.weight"):
        ema.load_state_dict({"shadow": {}, "num_updates": 0})
