"""Parameter counts from params alone, and training FLOPs per sample for MFU.

Training FLOPs = 3 x forward FLOPs (the backward pass costs twice the forward). Native models are counted
exactly from their shapes: every matmul (2 FLOPs per multiply-add) including the LM head, plus attention
scores and values over the full sequence (the PaLM convention; causal masking is not halved). Element-wise
work (norms, activations, softmax) is left out. Hugging Face models are approximated as
6 x (parameters outside the input embeddings) per token, without the attention term.

    from vla_foundry.models.flops import flops_per_sample
    flops = flops_per_sample(model, seq_len)          # training FLOPs for one sample
    mfu = flops * samples_per_sec / peak_flops_per_sec
"""

from __future__ import annotations

from torch import nn

from vla_foundry.models.transformer import (
    TransformerLM,
    count_transformer_parameters,
    transformer_forward_flops_per_token,
)
from vla_foundry.models.vit import ViT, count_vit_parameters, vit_forward_flops_per_image
from vla_foundry.params.model_params import ModelParams, TransformerParams, ViTParams, VLMParams


def count_parameters(params: ModelParams) -> int:
    """Exact parameter count of a native `transformer`, `vit` or `vlm` (with native parts) from its params."""
    if isinstance(params, TransformerParams):
        return count_transformer_parameters(params)
    if isinstance(params, ViTParams):
        return count_vit_parameters(params)
    if isinstance(params, VLMParams):
        if not isinstance(params.vit, ViTParams) or not isinstance(params.transformer, TransformerParams):
            raise TypeError(
                f"count_parameters needs a VLM with a native vit and transformer; got {type(params.vit).__name__} and "
                f"{type(params.transformer).__name__} (count a built model's parameters instead)"
            )
        in_dim = params.vit.hidden_dim * params.pixel_shuffle_factor**2
        out_dim = params.transformer.hidden_dim
        hidden = params.projector_hidden_dim or out_dim
        projector = in_dim * hidden + hidden + hidden * out_dim + out_dim
        return count_vit_parameters(params.vit) + projector + count_transformer_parameters(params.transformer)
    raise TypeError(f"no parameter formula for model type {params.type!r}; formulas exist for transformer, vit, vlm")


def _approx_forward_flops_per_token(module: nn.Module) -> float:
    """2 x parameters outside input embeddings (lookups, not matmuls); tied output heads still count once."""
    embedding_weights = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}
    head = getattr(getattr(module, "model", None), "get_output_embeddings", lambda: None)()
    head_weight = id(head.weight) if head is not None else None
    seen: set[int] = set()
    total = 0
    for param in module.parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        if id(param) in embedding_weights and id(param) != head_weight:
            continue
        total += param.numel()
    return 2.0 * total


def language_model_forward_flops_per_token(module: nn.Module, seq_len: int) -> float:
    """Forward FLOPs per token: exact for a native `TransformerLM`, 2 x parameters for an HF model."""
    if isinstance(module, TransformerLM):
        return transformer_forward_flops_per_token(module.params, seq_len)
    return _approx_forward_flops_per_token(module)


def vision_forward_flops_per_image(module: nn.Module) -> float:
    """Forward FLOPs per image: exact for a native `ViT`, 2 x parameters x patches for an HF tower."""
    if isinstance(module, ViT):
        return vit_forward_flops_per_image(module.params)
    return _approx_forward_flops_per_token(module) * module.grid_size**2


def flops_per_sample(model: nn.Module, seq_len: int = 0, num_images: int = 1) -> float:
    """Training FLOPs (forward + backward) for one sample.

    Language models: a sequence of `seq_len` tokens. Vision towers: `num_images` images. VLMs: `seq_len` tokens
    (image placeholders included) holding `num_images` images. Other models may define their own
    `flops_per_sample(seq_len)`, which is used.
    """
    from vla_foundry.models.vlm import VLM

    if isinstance(model, VLM):
        vision = vision_forward_flops_per_image(model.vision) * num_images
        proj = model.projector
        projector = (
            2 * (proj.fc1.in_features * proj.fc1.out_features + proj.fc2.in_features * proj.fc2.out_features)
        ) * (model.img_num_tokens * num_images)
        language = language_model_forward_flops_per_token(model.language_model, seq_len) * seq_len
        return 3.0 * (vision + projector + language)
    if isinstance(model, ViT) or hasattr(model, "grid_size"):
        return 3.0 * vision_forward_flops_per_image(model) * num_images
    own = getattr(type(model), "flops_per_sample", None)
    if own is not None:
        return float(model.flops_per_sample(seq_len))
    return 3.0 * language_model_forward_flops_per_token(model, seq_len) * seq_len
