"""Fixtures for the model tests: tiny params, presets by name, and tiny Hugging Face / timm models saved to
temporary directories (built from configs by `tests.hf_models`; nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import PRESETS
from tests.hf_models import (
    save_causal_lm,
    save_idefics3,
    save_paligemma,
    save_siglip_vision,
    save_timm_vit,
)
from vla_foundry.params import ModelParams, TransformerParams, ViTParams, VLMParams
from vla_foundry.params.parsing import _Sources, build_params, load_yaml


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
    return save_causal_lm(tmp_path_factory.mktemp("tiny_llama"), "llama")


@pytest.fixture(scope="session")
def hf_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_causal_lm(tmp_path_factory.mktemp("tiny_qwen2"), "qwen2")


@pytest.fixture(scope="session")
def hf_idefics3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolVLM-architecture model (4 image tokens per 32 px image), vocabulary HF_VOCAB, placeholder HF_IMAGE_TOKEN."""
    return save_idefics3(tmp_path_factory.mktemp("tiny_idefics3"))


@pytest.fixture(scope="session")
def hf_paligemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PaliGemma-architecture model (16 image tokens per 32 px image), vocabulary HF_VOCAB, placeholder
    HF_IMAGE_TOKEN."""
    return save_paligemma(tmp_path_factory.mktemp("tiny_paligemma"))


@pytest.fixture(scope="session")
def timm_vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_timm_vit(tmp_path_factory.mktemp("tiny_timm_vit"))


@pytest.fixture(scope="session")
def hf_siglip_vision_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_siglip_vision(tmp_path_factory.mktemp("tiny_siglip_vision"))
