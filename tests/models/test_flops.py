"""FLOP counts per sample, checked against PyTorch's own FLOP counter on tiny native models."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tests.models.conftest import tiny_lm_params, tiny_vlm_params
from vla_foundry.models import create_model
from vla_foundry.models.flops import flops_per_sample


def measured_forward_flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def test_transformer_flops_match_pytorch_flop_counter() -> None:
    params = tiny_lm_params(n_kv_heads=4)  # no GQA repeat: SDPA is counted on full-size keys either way
    model = create_model(params)
    seq_len = 16
    measured = measured_forward_flops(lambda: model(input_ids=torch.zeros(1, seq_len, dtype=torch.long)))
    assert flops_per_sample(model, seq_len) == pytest.approx(3 * measured, rel=0.01)
    assert model.flops_per_token(seq_len) * seq_len == pytest.approx(3 * measured, rel=0.01)


def test_vit_flops_match_pytorch_flop_counter() -> None:
    vit = create_model(tiny_vlm_params().vit)
    measured = measured_forward_flops(lambda: vit(torch.zeros(2, 3, 16, 16)))
    assert flops_per_sample(vit, num_images=2) == pytest.approx(3 * measured, rel=0.01)


def test_vlm_flops_match_pytorch_flop_counter() -> None:
    model = create_model(tiny_vlm_params())
    ids = torch.zeros(1, 12, dtype=torch.long)
    ids[:, 1:9] = 63  # two images of 4 tokens
    measured = measured_forward_flops(lambda: model(input_ids=ids, images=torch.zeros(1, 2, 3, 16, 16)))
    assert model.flops_per_sample(12, num_images=2) == pytest.approx(3 * measured, rel=0.01)
    assert model.flops_per_token(12) * 12 == model.flops_per_sample(12, num_images=1)


def test_attention_term_grows_with_sequence_length() -> None:
    model = create_model(tiny_lm_params())
    per_token_short = model.flops_per_token(16)
    per_token_long = model.flops_per_token(32)
    # 3 x 4 x n_layers x d x (32 - 16) more per token.
    assert per_token_long - per_token_short == 3 * 4 * 2 * 32 * 16
