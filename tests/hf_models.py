"""Tiny Hugging Face and timm models (and a tokenizer) built from configs and saved to local directories.

Nothing is downloaded: every model is a fresh, seeded architecture small enough for a CPU test. The conftests of
tests/models and tests/models/diffusion_policy turn these builders into session fixtures.

Sizes shared by every builder: width 32, MLP width 64, 2 language-model layers, 1 vision layer (2 for timm),
images of 32 px in 8 px patches (a 4 x 4 grid).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

IMAGE_SIZE = 32
PATCH_SIZE = 8
# Vocabulary of the models saved without a tokenizer; their image placeholder is the last id.
HF_VOCAB = 300
HF_IMAGE_TOKEN = 299

# A chat template in the SmolVLM style: "User:<image>text<end_of_utterance>\nAssistant:".
IDEFICS3_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}:{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


def byte_fallback_tokenizer(extra_special: dict[str, str] | None = None) -> Any:
    """A fast tokenizer needing no files: `<pad>` 0, `<eos>` 1, `<bos>` 2, `<unk>` 3, `<image>` 4, then 256
    byte-fallback pieces (261 ids)."""
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


def vision_config(**overrides: Any) -> dict[str, Any]:
    """A one-layer vision tower config (SigLIP / CLIP / Idefics3 vision keys)."""
    config = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
    )
    config.update(overrides)
    return config


def text_config(vocab_size: int, **overrides: Any) -> dict[str, Any]:
    """A two-layer decoder config with grouped-query attention (4 query heads, 2 key/value heads)."""
    config = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab_size,
    )
    config.update(overrides)
    return config


def save_causal_lm(path: Path, family: str) -> Path:
    """A `llama` or `qwen2` (tied embeddings) causal LM of HF_VOCAB ids."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    classes = {"llama": (LlamaConfig, LlamaForCausalLM, False), "qwen2": (Qwen2Config, Qwen2ForCausalLM, True)}
    config_class, model_class, tied = classes[family]
    config = config_class(**text_config(HF_VOCAB), max_position_embeddings=128, tie_word_embeddings=tied)
    torch.manual_seed(0)
    model_class(config).save_pretrained(path)
    return path


def save_idefics3(path: Path, with_processor: bool = False) -> Path:
    """A SmolVLM-architecture model: 16 patches, scale factor 2 -> 4 image tokens per image.

    Without a processor its vocabulary is HF_VOCAB with HF_IMAGE_TOKEN as the placeholder; with one, the vocabulary
    is `byte_fallback_tokenizer`'s plus Idefics3's special tokens, and the processor carries a chat template.
    """
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3ImageProcessor, Idefics3Processor

    tokenizer = None
    vocab_size, image_token_id = HF_VOCAB, HF_IMAGE_TOKEN
    if with_processor:
        tokenizer = byte_fallback_tokenizer()
        tokenizer.add_special_tokens(
            {"additional_special_tokens": ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]}
        )
        vocab_size, image_token_id = len(tokenizer), tokenizer.convert_tokens_to_ids("<image>")
    config = Idefics3Config(
        vision_config=vision_config(),
        text_config=text_config(vocab_size, model_type="llama"),
        image_token_id=image_token_id,
        scale_factor=2,
    )
    torch.manual_seed(0)
    Idefics3ForConditionalGeneration(config).save_pretrained(path)
    if tokenizer is not None:
        image_processor = Idefics3ImageProcessor(
            do_image_splitting=False, size={"longest_edge": IMAGE_SIZE}, max_image_size={"longest_edge": IMAGE_SIZE}
        )
        Idefics3Processor(
            image_processor=image_processor, tokenizer=tokenizer, image_seq_len=4, chat_template=IDEFICS3_CHAT_TEMPLATE
        ).save_pretrained(path)
    return path


def save_paligemma(path: Path, with_processor: bool = False) -> Path:
    """A PaliGemma-architecture model: 16 image tokens per image (one per patch).

    Without a processor its vocabulary is HF_VOCAB with HF_IMAGE_TOKEN as the placeholder; with one, it is
    `byte_fallback_tokenizer`'s (`<image>` = 4).
    """
    from transformers import (
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
    )

    tokenizer = byte_fallback_tokenizer({"image_token": "<image>"}) if with_processor else None
    vocab_size, image_token_id = (len(tokenizer), 4) if tokenizer is not None else (HF_VOCAB, HF_IMAGE_TOKEN)
    num_image_tokens = (IMAGE_SIZE // PATCH_SIZE) ** 2
    config = PaliGemmaConfig(
        vision_config=vision_config(model_type="siglip_vision_model", projection_dim=32),
        text_config=text_config(vocab_size, model_type="gemma", num_key_value_heads=1, head_dim=8),
        image_token_index=image_token_id,
        vocab_size=vocab_size,
        projection_dim=32,
        hidden_size=32,
    )
    config.vision_config.num_image_tokens = num_image_tokens
    torch.manual_seed(0)
    PaliGemmaForConditionalGeneration(config).save_pretrained(path)
    if tokenizer is not None:
        image_processor = SiglipImageProcessor(
            size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_seq_length=num_image_tokens
        )
        PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(path)
    return path


def save_timm_vit(path: Path) -> Path:
    """A two-block timm ViT with one class token, in the layout `timm.models.save_for_hf` writes (config.json with
    an `architecture` key)."""
    import timm
    from timm.models import save_for_hf

    args = dict(img_size=IMAGE_SIZE, patch_size=PATCH_SIZE, embed_dim=32, depth=2, num_heads=2, num_classes=0)
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **args)
    save_for_hf(model, str(path), model_args=args)
    return path


def save_siglip_vision(path: Path) -> Path:
    """A transformers SigLIP vision tower (no class token)."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(0)
    SiglipVisionModel(SiglipVisionConfig(**vision_config())).save_pretrained(path)
    return path


def save_clip(path: Path) -> Path:
    """A CLIP dual encoder with its image processor and `byte_fallback_tokenizer` (projection width 24)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = byte_fallback_tokenizer()
    config = CLIPConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            vocab_size=len(tokenizer),
            max_position_embeddings=32,
            eos_token_id=1,
            pad_token_id=0,
            bos_token_id=2,
        ),
        vision_config=vision_config(),
        projection_dim=24,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    image_processor.save_pretrained(path)
    return path
