"""Tiny diffusion-policy params, synthetic robotics batches and tiny offline HF backbones (built from configs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from vla_foundry.params.model_params import (
    ActionHeadParams,
    CLIPBackboneParams,
    DiffusionPolicyParams,
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
IMG = 32

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


def _byte_fallback_tokenizer(extra_special: dict[str, str] | None = None):
    """A tiny fast tokenizer (special tokens + 256 byte-fallback pieces) that needs no downloaded files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<image>": 4}
    for i in range(256):
        vocab[f"<0x{i:02X}>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.ByteFallback()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens=extra_special or {},
    )


@pytest.fixture(scope="session")
def tiny_paligemma_dir(tmp_path_factory) -> str:
    """A PaliGemma-class image-text-to-text model + processor, 32px images, saved to a local directory."""
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
    )

    tokenizer = _byte_fallback_tokenizer({"image_token": "<image>"})
    vocab = len(tokenizer)
    config = PaliGemmaConfig(
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMG,
            patch_size=8,
            projection_dim=32,
        ),
        text_config=dict(
            model_type="gemma",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            vocab_size=vocab,
        ),
        image_token_index=4,
        vocab_size=vocab,
        projection_dim=32,
        hidden_size=32,
    )
    config.vision_config.num_image_tokens = (IMG // 8) ** 2
    torch.manual_seed(0)
    model = PaliGemmaForConditionalGeneration(config)
    processor = PaliGemmaProcessor(
        image_processor=SiglipImageProcessor(size={"height": IMG, "width": IMG}, image_seq_length=(IMG // 8) ** 2),
        tokenizer=tokenizer,
    )
    path = tmp_path_factory.mktemp("tiny_paligemma")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_idefics3_dir(tmp_path_factory) -> str:
    """A SmolVLM-class (Idefics3) model + processor with a chat template, 32 px images (4 image tokens each)."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
    )

    tokenizer = _byte_fallback_tokenizer()
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]}
    )
    config = Idefics3Config(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=IMG,
            patch_size=8,
        ),
        text_config=dict(
            model_type="llama",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=len(tokenizer),
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=2,
    )
    template = (
        "{% for m in messages %}{{ m['role'] | capitalize }}:{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n"
        "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
    )
    image_processor = Idefics3ImageProcessor(
        do_image_splitting=False, size={"longest_edge": IMG}, max_image_size={"longest_edge": IMG}
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_idefics3")
    Idefics3ForConditionalGeneration(config).save_pretrained(path)
    Idefics3Processor(
        image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4, chat_template=template
    ).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> str:
    """A CLIP dual encoder + image processor + tokenizer, 32px images, saved to a local directory."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = _byte_fallback_tokenizer()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=32,
            eos_token_id=1,
            pad_token_id=0,
            bos_token_id=2,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=IMG,
            patch_size=8,
        ),
        projection_dim=24,
    )
    torch.manual_seed(0)
    model = CLIPModel(config)
    path = tmp_path_factory.mktemp("tiny_clip")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": IMG}, crop_size={"height": IMG, "width": IMG}).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_timm_dir(tmp_path_factory) -> str:
    """A timm ViT saved like a hub checkpoint (config.json with `architecture` + weights) in a local directory."""
    import timm

    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=0,
        img_size=IMG,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
    )
    path = Path(tmp_path_factory.mktemp("tiny_timm"))
    args = {"img_size": IMG, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
    from timm.models._hub import save_for_hf

    save_for_hf(model, str(path), model_args=args)
    return str(path)


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
