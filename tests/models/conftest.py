"""Fixtures for the model tests: tiny params, presets by name, and tiny Hugging Face / timm models saved to
temporary directories (built from configs; nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import PRESETS
from vla_foundry.params import ModelParams, TransformerParams, ViTParams, VLMParams
from vla_foundry.params.parsing import _Sources, build_params, load_yaml

HF_VOCAB = 300
HF_IMAGE_TOKEN = 299


def load_model_preset(name: str) -> ModelParams:
    """`config_presets/models/<name>.yaml` parsed into its params class."""
    data, files = load_yaml(PRESETS / "models" / f"{name}.yaml")
    return build_params(ModelParams, data, "model", _Sources(set(), files))


def tiny_lm_params(**overrides) -> TransformerParams:
    values = dict(hidden_dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=64, max_seq_len=64)
    values.update(overrides)
    return TransformerParams(**values)


def tiny_vlm_params(**overrides) -> VLMParams:
    """16 px images, 4 px patches -> 4x4 patches, shuffle 2 -> 4 image tokens per image; image token id 63."""
    values = dict(
        vit=ViTParams(img_size=16, patch_size=4, hidden_dim=16, n_layers=1, n_heads=2),
        transformer=tiny_lm_params(),
        pixel_shuffle_factor=2,
        image_token_id=63,
    )
    values.update(overrides)
    return VLMParams(**values)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def hf_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=HF_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    path = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def hf_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=HF_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    path = tmp_path_factory.mktemp("tiny_qwen2")
    Qwen2ForCausalLM(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def hf_idefics3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolVLM-architecture model: 32 px images, 8 px patches -> 16 patches, scale factor 2 -> 4 image tokens."""
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration

    config = Idefics3Config(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        text_config=dict(
            model_type="llama",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=HF_VOCAB,
        ),
        image_token_id=HF_IMAGE_TOKEN,
        scale_factor=2,
    )
    path = tmp_path_factory.mktemp("tiny_idefics3")
    Idefics3ForConditionalGeneration(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def hf_paligemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PaliGemma-architecture model: 32 px images, 8 px patches -> 16 image tokens per image."""
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

    config = PaliGemmaConfig(
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            projection_dim=32,
        ),
        text_config=dict(
            model_type="gemma",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=8,
            vocab_size=HF_VOCAB,
        ),
        image_token_index=HF_IMAGE_TOKEN,
        vocab_size=HF_VOCAB,
        projection_dim=32,
        hidden_size=32,
    )
    path = tmp_path_factory.mktemp("tiny_paligemma")
    PaliGemmaForConditionalGeneration(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def timm_vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny timm ViT (32 px, 8 px patches, one class token) saved in timm's hub layout."""
    import timm
    from timm.models import save_for_hf

    args = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **args)
    path = tmp_path_factory.mktemp("tiny_timm_vit")
    save_for_hf(model, str(path), model_args=args)
    return path


@pytest.fixture(scope="session")
def hf_siglip_vision_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny transformers SigLIP vision tower (32 px, 8 px patches, no class token)."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    config = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
    )
    path = tmp_path_factory.mktemp("tiny_siglip_vision")
    SiglipVisionModel(config).save_pretrained(path)
    return path
