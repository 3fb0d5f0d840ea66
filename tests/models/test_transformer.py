"""The native decoder-only transformer: shapes, masking, GQA, tying, initialisation, generation."""

from __future__ import annotations

import math

import pytest
import torch

from tests.models.conftest import tiny_lm_params
from vla_foundry.models import create_model
from vla_foundry.models.sampling import sample_next_token
from vla_foundry.models.transformer import TransformerLM


def test_logits_shape_and_dtype() -> None:
    model = create_model(tiny_lm_params())
    ids = torch.randint(0, 64, (3, 11))
    logits = model(input_ids=ids)
    assert logits.shape == (3, 11, 64)
    assert logits.dtype == torch.float32


def test_bf16_model_gives_bf16_logits() -> None:
    model = create_model(tiny_lm_params()).to(torch.bfloat16)
    logits = model(input_ids=torch.randint(0, 64, (2, 5)))
    assert logits.dtype == torch.bfloat16
    assert torch.isfinite(logits.float()).all()


def test_future_tokens_do_not_change_past_logits() -> None:
    model = create_model(tiny_lm_params()).eval()
    ids = torch.randint(0, 64, (2, 12))
    changed = ids.clone()
    changed[:, 7:] = torch.randint(0, 64, (2, 5))
    a, b = model(input_ids=ids), model(input_ids=changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_non_causal_model_lets_future_tokens_change_past_logits() -> None:
    model = create_model(tiny_lm_params(is_causal=False)).eval()
    ids = torch.randint(0, 64, (1, 8))
    changed = ids.clone()
    changed[:, -1] = (ids[:, -1] + 1) % 64
    assert not torch.allclose(model(input_ids=ids)[:, 0], model(input_ids=changed)[:, 0])
    with pytest.raises(ValueError, match="causal"):
        model.generate(ids, max_new_tokens=1)


def test_inputs_embeds_path_equals_input_ids_path() -> None:
    model = create_model(tiny_lm_params()).eval()
    ids = torch.randint(0, 64, (2, 9))
    torch.testing.assert_close(model(inputs_embeds=model.embed(ids)), model(input_ids=ids))


def test_padding_keys_are_hidden_from_real_tokens() -> None:
    """With left padding masked out, what the padding holds does not change the real tokens' logits."""
    model = create_model(tiny_lm_params()).eval()
    ids = torch.randint(0, 64, (1, 6))
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    other_padding = padded.clone()
    other_padding[:, :3] = 17
    mask = torch.tensor([[False] * 3 + [True] * 6])
    out = model(input_ids=padded, attention_mask=mask)
    torch.testing.assert_close(out[:, 3:], model(input_ids=other_padding, attention_mask=mask)[:, 3:])
    assert torch.isfinite(out).all()  # padding rows attend to themselves: no NaN from fully masked rows


def test_grouped_query_attention_uses_fewer_key_value_weights() -> None:
    mha = create_model(tiny_lm_params(n_kv_heads=None))
    gqa = create_model(tiny_lm_params(n_heads=4, n_kv_heads=1))
    assert mha.layers[0].attention.wk.weight.shape == (32, 32)
    assert gqa.layers[0].attention.wk.weight.shape == (8, 32)  # one head of dim 8
    assert gqa(input_ids=torch.randint(0, 64, (2, 7))).shape == (2, 7, 64)


def test_gqa_equals_mha_with_repeated_key_value_heads() -> None:
    """GQA is MHA whose key/value heads are shared: copying each kv head into its query group gives equal logits."""
    gqa = create_model(tiny_lm_params(n_heads=4, n_kv_heads=2)).eval()
    mha = create_model(tiny_lm_params(n_heads=4, n_kv_heads=None)).eval()
    state = gqa.state_dict()
    for key in list(state):
        if key.endswith(("attention.wk.weight", "attention.wv.weight")):
            heads = state[key].view(2, 8, 32)  # (kv heads, head dim, hidden)
            state[key] = heads.repeat_interleave(2, dim=0).reshape(32, 32)
    mha.load_state_dict(state)
    ids = torch.randint(0, 64, (2, 10))
    torch.testing.assert_close(mha(input_ids=ids), gqa(input_ids=ids))


def test_tied_embeddings_share_one_tensor() -> None:
    tied = create_model(tiny_lm_params(tie_embeddings=True))
    untied = create_model(tiny_lm_params(tie_embeddings=False))
    assert tied.output.weight is tied.tok_embeddings.weight
    assert untied.output.weight is not untied.tok_embeddings.weight
    n_tied = sum(p.numel() for p in tied.parameters())
    n_untied = sum(p.numel() for p in untied.parameters())
    assert n_untied - n_tied == 64 * 32


def test_residual_projections_are_initialised_smaller() -> None:
    model = create_model(tiny_lm_params(hidden_dim=128, n_heads=4, n_kv_heads=4, n_layers=8, init_std=0.02))
    block = model.layers[0]
    assert block.attention.wq.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert block.attention.wo.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.1)
    assert block.feed_forward.w2.weight.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.1)
    assert torch.equal(block.attention_norm.weight, torch.ones(128))


def test_meta_device_model_materialises_with_init_weights() -> None:
    with torch.device("meta"):
        model = TransformerLM(tiny_lm_params())
    model.to_empty(device="cpu")
    model.init_weights()
    reference = TransformerLM(tiny_lm_params())
    torch.testing.assert_close(model.rope, reference.rope)
    assert torch.isfinite(model(input_ids=torch.randint(0, 64, (1, 4)))).all()


def test_hidden_states_returns_last_layers_and_matches_logits() -> None:
    model = create_model(tiny_lm_params(n_layers=3)).eval()
    ids = torch.randint(0, 64, (2, 6))
    states = model.hidden_states(input_ids=ids, num_layers=2)
    assert [s.shape for s in states] == [(2, 6, 32), (2, 6, 32)]
    torch.testing.assert_close(model.output(states[-1]), model(input_ids=ids))
    with pytest.raises(ValueError, match="num_layers=4"):
        model.hidden_states(input_ids=ids, num_layers=4)


def test_sequence_longer_than_max_seq_len_is_an_error() -> None:
    model = create_model(tiny_lm_params(max_seq_len=8))
    with pytest.raises(ValueError, match="max_seq_len=8"):
        model(input_ids=torch.zeros(1, 9, dtype=torch.long))


def test_kv_cache_generation_equals_no_cache_generation() -> None:
    model = create_model(tiny_lm_params()).eval()
    prompt = torch.randint(0, 64, (3, 5))
    cached = model.generate(prompt, max_new_tokens=12)
    uncached = model.generate(prompt, max_new_tokens=12, use_cache=False)
    assert cached.shape == (3, 12)
    assert torch.equal(cached, uncached)


def test_kv_cache_sampling_equals_no_cache_sampling_with_same_seed() -> None:
    model = create_model(tiny_lm_params()).eval()
    prompt = torch.randint(0, 64, (2, 4))
    kwargs = dict(max_new_tokens=10, temperature=0.8, top_k=20, top_p=0.9)
    a = model.generate(prompt, generator=torch.Generator().manual_seed(3), **kwargs)
    b = model.generate(prompt, use_cache=False, generator=torch.Generator().manual_seed(3), **kwargs)
    assert torch.equal(a, b)


def test_greedy_generation_follows_argmax_of_full_forward() -> None:
    model = create_model(tiny_lm_params()).eval()
    prompt = torch.randint(0, 64, (1, 4))
    new = model.generate(prompt, max_new_tokens=3)
    seq = prompt
    for i in range(3):
        nxt = model(input_ids=seq)[:, -1].argmax(-1)
        assert int(nxt) == int(new[0, i])
        seq = torch.cat([seq, nxt[:, None]], dim=1)


def test_generation_stops_rows_at_eos() -> None:
    model = create_model(tiny_lm_params()).eval()
    prompt = torch.randint(0, 64, (2, 3))
    first = model.generate(prompt, max_new_tokens=1)[:, 0]
    eos = int(first[0])
    out = model.generate(prompt, max_new_tokens=6, eos_token_id=eos)
    assert (out[0] == eos).all()  # row 0 emitted eos first and keeps emitting it
    if int(first[1]) == eos:
        assert out.shape[1] == 1  # every row finished at once


def test_top_k_one_is_greedy() -> None:
    logits = torch.randn(4, 50)
    sampled = sample_next_token(logits, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled, logits.argmax(-1))


def test_top_p_keeps_only_the_nucleus() -> None:
    # Probabilities 0.5, 0.3, 0.15, 0.05: top_p=0.7 keeps the first two tokens only.
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().repeat(2000, 1)
    sampled = sample_next_token(logits, temperature=1.0, top_p=0.7, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(sampled, minlength=4)
    assert counts[2] == 0 and counts[3] == 0
    assert counts[0] / 2000 == pytest.approx(0.5 / 0.8, abs=0.05)


def test_qk_norm_adds_per_head_norms() -> None:
    model = create_model(tiny_lm_params(qk_norm=True))
    assert model.layers[0].attention.q_norm.weight.shape == (8,)
    assert model(input_ids=torch.randint(0, 64, (1, 3))).shape == (1, 3, 64)
