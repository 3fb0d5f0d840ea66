"""Tiny diffusion-policy params, synthetic robotics batches and tiny offline HF backbones (built from configs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.hf_models import IMAGE_SIZE, save_clip, save_idefics3, save_paligemma, save_timm_vit
from vla_foundry.models.diffusion_policy.params import ActionHeadParams, CLIPBackboneParams, DiffusionPolicyParams
from vla_foundry.params.model_params import (
    TransformerParams,
    ViTHFParams,
    ViTParams,
    VLMHFParams,
    VLMParams,
)

ACTION_DIM = 3
PROPRIO_DIM = 2
PAST = 1
FUTURE = 4
WINDOW = PAST + 1 + FUTURE
N_IMAGES = 2
IMG = IMAGE_SIZE

TINY_VIT = ViTParams(img_size=IMG, patch_size=8, hidden_dim=32, n_layers=2, n_heads=2)
TINY_LM = TransformerParams(hidden_dim=32, n_layers=2, n_heads=2, vocab_size=261, max_seq_len=128)
TINY_VLM = VLMParams(vit=TINY_VIT, transformer=TINY_LM, pixel_shuffle_factor=2)
TINY_HEAD = ActionHeadParams(hidden_dim=32, n_layers=2, n_heads=2, mlp_ratio=2.0)


def policy_params(backbone=TINY_VLM, **overrides) -> DiffusionPolicyParams:
    fields = dict(
        backbone=backbone,
        head=TINY_HEAD,
        action_dim=ACTION_DIM,
        proprioception_dim=PROPRIO_DIM,
        past_lowdim_steps=PAST,
        future_lowdim_steps=FUTURE,
        num_flow_steps=4,
        num_inference_steps=4,
        num_train_timesteps=20,
    )
    fields.update(overrides)
    return DiffusionPolicyParams(**fields)


def robotics_batch(batch_size: int = 3, seed: int = 0, instruction_len: int = 8) -> dict:
    """A batch shaped like the robotics processor's output (images in [0, 1], right-padded byte instructions)."""
    g = torch.Generator().manual_seed(seed)
    past_mask = torch.zeros(batch_size, WINDOW, dtype=torch.bool)
    past_mask[:, :PAST] = True
    future_mask = torch.zeros(batch_size, WINDOW, dtype=torch.bool)
    future_mask[:, PAST:] = True
    ids = torch.randint(97, 123, (batch_size, 12), generator=g)
    attention = torch.zeros(batch_size, 12, dtype=torch.bool)
    attention[:, :instruction_len] = True
    ids = ids.masked_fill(~attention, 256)
    return {
        "images": torch.rand(batch_size, N_IMAGES, 3, IMG, IMG, generator=g),
        "image_mask": torch.ones(batch_size, N_IMAGES, dtype=torch.bool),
        "input_ids": ids,
        "attention_mask": attention,
        "proprioception": torch.randn(batch_size, PAST + 1, PROPRIO_DIM, generator=g),
        "actions": torch.randn(batch_size, WINDOW, ACTION_DIM, generator=g),
        "past_mask": past_mask,
        "future_mask": future_mask,
        "metadata": [{"instruction": "pick the red cube"} for _ in range(batch_size)],
    }


@pytest.fixture(scope="session")
def tiny_paligemma_dir(tmp_path_factory) -> str:
    """A PaliGemma-class image-text-to-text model + processor (16 image tokens per 32 px image)."""
    return str(save_paligemma(tmp_path_factory.mktemp("tiny_paligemma"), with_processor=True))


@pytest.fixture(scope="session")
def tiny_idefics3_dir(tmp_path_factory) -> str:
    """A SmolVLM-class (Idefics3) model + processor with a chat template (4 image tokens per 32 px image)."""
    return str(save_idefics3(tmp_path_factory.mktemp("tiny_idefics3"), with_processor=True))


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> str:
    """A CLIP dual encoder + image processor + tokenizer for 32 px images."""
    return str(save_clip(tmp_path_factory.mktemp("tiny_clip")))


@pytest.fixture(scope="session")
def tiny_timm_dir(tmp_path_factory) -> str:
    """A timm ViT saved like a hub checkpoint (config.json with `architecture` + weights)."""
    return str(save_timm_vit(tmp_path_factory.mktemp("tiny_timm")))


def hf_backbones(paligemma: str, clip: str, timm_dir: str, idefics3: str | None = None) -> dict:
    return {
        "vlm_hf": VLMHFParams(hf_pretrained=paligemma),
        **({"vlm_hf_idefics3": VLMHFParams(hf_pretrained=idefics3)} if idefics3 else {}),
        "clip": CLIPBackboneParams(clip_pretrained=clip, img_size=IMG),
        "vit_hf": ViTHFParams(hf_pretrained=timm_dir, img_size=IMG, patch_size=8),
    }


def replace(params, **changes):
    return dataclasses.replace(params, **changes)


def numpy_observation(rng: np.random.Generator, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)
