"""The native ViT: token shapes, prefix tokens, position embeddings, patch locality."""

from __future__ import annotations

import pytest
import torch

from vla_foundry.models import create_model
from vla_foundry.models.vit import sincos_2d
from vla_foundry.params import ViTParams


def vit_params(**overrides) -> ViTParams:
    values = dict(img_size=16, patch_size=4, hidden_dim=16, n_layers=2, n_heads=2)
    values.update(overrides)
    return ViTParams(**values)


def test_forward_returns_one_token_per_patch() -> None:
    model = create_model(vit_params())
    tokens = model(torch.randn(3, 3, 16, 16))
    assert tokens.shape == (3, 16, 16)
    assert tokens.dtype == torch.float32
    assert model.grid_size == 4


@pytest.mark.parametrize(("cls", "registers"), [(True, 0), (False, 2), (True, 3)])
def test_cls_and_register_tokens_are_dropped_from_the_output(cls: bool, registers: int) -> None:
    model = create_model(vit_params(use_cls_token=cls, n_register_tokens=registers))
    assert model.num_prefix_tokens == int(cls) + registers
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 16, 16)


def test_sincos_positions_are_fixed_and_distinct() -> None:
    model = create_model(vit_params(pos_embed="sincos"))
    assert "pos_embed" not in dict(model.named_parameters())
    table = sincos_2d(4, 16)
    assert table.shape == (16, 16)
    assert torch.unique(table, dim=0).shape[0] == 16
    torch.testing.assert_close(model.pos_embed[0], table)


def test_wrong_image_size_is_an_error() -> None:
    model = create_model(vit_params())
    with pytest.raises(ValueError, match=r"\(B, C, 16, 16\)"):
        model(torch.randn(1, 3, 32, 32))


def test_patch_order_is_row_major() -> None:
    """With no blocks (nothing mixes patches), changing the top-right patch changes output token 3 only."""
    model = create_model(vit_params(n_layers=0)).eval()
    images = torch.randn(1, 3, 16, 16)
    changed = images.clone()
    changed[..., 0:4, 12:16] += 1.0
    diff = (model(images) - model(changed)).abs().sum(-1)[0]  # (16,)
    assert diff[3] > 0
    assert torch.count_nonzero(diff) == 1
