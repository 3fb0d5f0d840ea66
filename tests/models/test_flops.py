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


def test_a_model_without_its_own_count_has_no_flops() -> None:
    """FLOPs come from the model's own `flops_per_sample`; there is no guess for a module that does not count."""
    with pytest.raises(TypeError, match="Linear does not count its FLOPs"):
        flops_per_sample(torch.nn.Linear(4, 4), seq_len=8)


def test_the_vlm_counts_its_hf_parts_by_their_own_estimates(hf_llama_dir, timm_vit_dir) -> None:
    from vla_foundry.params import TransformerHFParams, ViTHFParams

    params = tiny_vlm_params(
        vit=ViTHFParams(hf_pretrained=str(timm_vit_dir), img_size=32, patch_size=8),
        transformer=TransformerHFParams(hf_pretrained=str(hf_llama_dir)),
    )
    model = create_model(params)
    # Independently: 2 x non-embedding parameters per token / per patch, the projector's two matmuls per image token.
    lm, vit, proj = model.language_model, model.vision, model.projector
    lm_params = sum(p.numel() for n, p in lm.named_parameters() if "embed_tokens" not in n)
    vit_params = sum(p.numel() for p in vit.parameters())
    projector = 2 * sum(m.weight.numel() for m in (proj.fc1, proj.fc2)) * model.img_num_tokens
    expected = 3 * (2 * vit_params * vit.grid_size**2 + projector + 2 * lm_params * 12)
    assert model.flops_per_sample(12, num_images=1) == pytest.approx(expected, rel=1e-9)
