"""Hugging Face wrappers on tiny local models: forward, loss, `load_pretrained=False`, FSDP units, fast failure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.hf_models import HF_IMAGE_TOKEN, HF_VOCAB
from tests.models.conftest import tiny_lm_params
from vla_foundry.models import create_model, fsdp_block_types, get_batch_handler
from vla_foundry.params import ConfigError, TransformerHFParams, ViTHFParams, VLMHFParams, VLMParams


@pytest.fixture(params=["hf_llama_dir", "hf_qwen2_dir"])
def causal_lm_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(request.param)


def test_causal_lm_logits_and_loss(causal_lm_dir: Path) -> None:
    params = TransformerHFParams(hf_pretrained=str(causal_lm_dir))
    model = create_model(params)
    ids = torch.randint(0, HF_VOCAB, (2, 9))
    logits = model(input_ids=ids)
    assert logits.shape == (2, 9, HF_VOCAB)
    out = get_batch_handler(params).compute_loss(model, {"input_ids": ids})
    manual = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, HF_VOCAB), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, manual)
    assert out.num_tokens == 16


def test_causal_lm_pretrained_weights_are_loaded(hf_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(hf_llama_dir)
    model = create_model(TransformerHFParams(hf_pretrained=str(hf_llama_dir)))
    for key, value in reference.state_dict().items():
        assert torch.equal(model.model.state_dict()[key], value), key


def test_causal_lm_without_pretrained_weights_has_fresh_weights(hf_llama_dir: Path) -> None:
    pretrained = create_model(TransformerHFParams(hf_pretrained=str(hf_llama_dir)))
    torch.manual_seed(1)  # the saved model was initialised from seed 0
    fresh = create_model(TransformerHFParams(hf_pretrained=str(hf_llama_dir)), load_pretrained=False)
    a, b = pretrained.model.state_dict(), fresh.model.state_dict()
    assert sorted(a) == sorted(b)
    assert not torch.equal(a["model.layers.0.mlp.up_proj.weight"], b["model.layers.0.mlp.up_proj.weight"])


def test_causal_lm_declares_decoder_layers_as_fsdp_units(hf_llama_dir: Path) -> None:
    model = create_model(TransformerHFParams(hf_pretrained=str(hf_llama_dir)))
    assert [t.__name__ for t in fsdp_block_types(model)] == ["LlamaDecoderLayer"]


def test_causal_lm_hidden_states_and_generation(hf_llama_dir: Path) -> None:
    model = create_model(TransformerHFParams(hf_pretrained=str(hf_llama_dir))).eval()
    ids = torch.randint(0, HF_VOCAB, (2, 5))
    states = model.hidden_states(input_ids=ids, num_layers=2)
    assert [s.shape for s in states] == [(2, 5, 32)] * 2
    new = model.generate(ids, max_new_tokens=4)
    assert new.shape == (2, 4)
    greedy = model(input_ids=ids)[:, -1].argmax(-1)
    assert torch.equal(new[:, 0], greedy)


def test_causal_lm_flops_are_six_times_non_embedding_parameters(hf_llama_dir: Path) -> None:
    model = create_model(TransformerHFParams(hf_pretrained=str(hf_llama_dir)))
    non_embedding = sum(p.numel() for p in model.parameters()) - HF_VOCAB * 32  # untied: the LM head counts
    assert model.flops_per_token(16) == 6 * non_embedding


def test_unreachable_hub_name_fails_fast_with_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match=r"'no-such-org/no-such-model' is not a local directory .* hub is offline") as e:
        create_model(TransformerHFParams(hf_pretrained="no-such-org/no-such-model"))
    assert "Traceback" not in str(e.value)


def test_missing_local_path_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="does not exist"):
        create_model(TransformerHFParams(hf_pretrained=str(tmp_path / "absent" / "model")), load_pretrained=False)


def test_timm_vision_tower_from_local_directory(timm_vit_dir: Path) -> None:
    model = create_model(ViTHFParams(hf_pretrained=str(timm_vit_dir), img_size=32, patch_size=8))
    assert model.source == "timm"
    assert model.num_prefix_tokens == 1
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 16, 32)
    assert [t.__name__ for t in fsdp_block_types(model)] == ["Block"]


def test_timm_vision_tower_by_name_without_weights() -> None:
    model = create_model(ViTHFParams(hf_pretrained="vit_tiny_patch16_224", img_size=32, patch_size=16), False)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 4, 192)


def test_vision_tower_grid_mismatch_is_a_config_error(timm_vit_dir: Path) -> None:
    with pytest.raises(ConfigError, match="4x4 patch grid"):
        create_model(ViTHFParams(hf_pretrained=str(timm_vit_dir), img_size=32, patch_size=16))


def test_transformers_vision_tower_from_local_directory(hf_siglip_vision_dir: Path) -> None:
    model = create_model(ViTHFParams(hf_pretrained=str(hf_siglip_vision_dir), img_size=32, patch_size=8))
    assert model.source == "transformers"
    assert model.num_prefix_tokens == 0
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 16, 32)


def test_native_vlm_with_hf_vision_tower_and_hf_language_model(timm_vit_dir: Path, hf_llama_dir: Path) -> None:
    params = VLMParams(
        vit=ViTHFParams(hf_pretrained=str(timm_vit_dir), img_size=32, patch_size=8),
        transformer=TransformerHFParams(hf_pretrained=str(hf_llama_dir)),
        pixel_shuffle_factor=2,
        image_token_id=HF_IMAGE_TOKEN,
    )
    model = create_model(params)
    ids = torch.randint(0, 200, (2, 10))
    ids[:, 1:5] = HF_IMAGE_TOKEN
    batch = {"input_ids": ids, "images": torch.randn(2, 1, 3, 32, 32)}
    out = get_batch_handler(params).compute_loss(model, batch)
    assert out.num_tokens == 2 * 5
    assert torch.isfinite(out.loss)
    assert [t.__name__ for t in fsdp_block_types(model)] == ["Block", "LlamaDecoderLayer"]


def test_native_vlm_with_hf_tokenizer_image_id_outside_embedding_table() -> None:
    """An HF tokenizer's added `<image>` id may exceed the LLM's vocabulary: placeholders are never embedded."""
    from tests.models.conftest import tiny_vlm_params

    model = create_model(tiny_vlm_params(image_token_id=1000, transformer=tiny_lm_params()))
    ids = torch.randint(0, 60, (1, 8))
    ids[:, 1:5] = 1000
    assert model(input_ids=ids, images=torch.randn(1, 1, 3, 16, 16)).shape == (1, 8, 64)


@pytest.mark.parametrize(("fixture", "n_tokens"), [("hf_idefics3_dir", 4), ("hf_paligemma_dir", 16)])
def test_image_text_to_text_forward_and_loss(request: pytest.FixtureRequest, fixture: str, n_tokens: int) -> None:
    path = request.getfixturevalue(fixture)
    params = VLMHFParams(hf_pretrained=str(path))
    model = create_model(params)
    assert model.image_token_id == HF_IMAGE_TOKEN
    ids = torch.randint(0, 200, (2, n_tokens + 7))
    ids[:, 1 : 1 + n_tokens] = HF_IMAGE_TOKEN
    images = torch.randn(2, 1, 3, 32, 32)
    logits = model(input_ids=ids, images=images)
    assert logits.shape == (2, n_tokens + 7, HF_VOCAB)
    out = get_batch_handler(params).compute_loss(model, {"input_ids": ids, "images": images})
    assert out.num_tokens == 2 * 6  # targets ids[1:]: n placeholders (ignored) and 6 text tokens per row
    assert torch.isfinite(out.loss)
    assert len(fsdp_block_types(model)) >= 2


def test_image_text_to_text_without_pretrained_weights(hf_idefics3_dir: Path) -> None:
    pretrained = create_model(VLMHFParams(hf_pretrained=str(hf_idefics3_dir)))
    torch.manual_seed(1)  # the saved model was initialised from seed 0
    fresh = create_model(VLMHFParams(hf_pretrained=str(hf_idefics3_dir)), load_pretrained=False)
    key = next(k for k in pretrained.model.state_dict() if k.endswith("mlp.up_proj.weight"))
    assert not torch.equal(pretrained.model.state_dict()[key], fresh.model.state_dict()[key])


def test_image_text_to_text_freeze_vision(hf_paligemma_dir: Path) -> None:
    model = create_model(VLMHFParams(hf_pretrained=str(hf_paligemma_dir), freeze_vision=True))
    assert not any(p.requires_grad for p in model.vision_tower().parameters())
    assert any(p.requires_grad for p in model.parameters())


def test_image_text_to_text_hidden_states_and_generation(hf_idefics3_dir: Path) -> None:
    model = create_model(VLMHFParams(hf_pretrained=str(hf_idefics3_dir))).eval()
    ids = torch.randint(0, 200, (2, 9))
    ids[:, 1:5] = HF_IMAGE_TOKEN
    images = torch.randn(2, 1, 3, 32, 32)
    states = model.hidden_states(ids, images, num_layers=2)
    assert [s.shape for s in states] == [(2, 9, 32)] * 2
    new = model.generate(ids, images, max_new_tokens=3)
    assert new.shape == (2, 3)
    assert torch.equal(new[:, 0], model(input_ids=ids, images=images)[:, -1].argmax(-1))


def test_native_vlm_with_hf_language_model_generates(hf_llama_dir: Path) -> None:
    from tests.models.conftest import tiny_vlm_params

    params = tiny_vlm_params(transformer=TransformerHFParams(hf_pretrained=str(hf_llama_dir)), image_token_id=299)
    model = create_model(params).eval()
    ids = torch.randint(0, 200, (1, 6))
    ids[:, 1:5] = 299
    images = torch.randn(1, 1, 3, 16, 16)
    new = model.generate(ids, images, max_new_tokens=3)
    assert new.shape == (1, 3)
    assert int(new[0, 0]) == int(model(input_ids=ids, images=images)[0, -1].argmax())


def test_hf_preset_without_the_weights_fails_with_one_message() -> None:
    from tests.models.conftest import load_model_preset

    with pytest.raises(OSError, match="'Qwen/Qwen2.5-0.5B' is not a local directory"):
        create_model(load_model_preset("transformer_qwen2_5_0_5b"))
