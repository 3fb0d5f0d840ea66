"""Parameter counts from params alone, and training FLOPs per sample for MFU.

Each model counts its own FLOPs (`flops_per_sample(seq_len, num_images)`, and `forward_flops_per_token` /
`forward_flops_per_image` for the parts a VLM is built from); this module holds the formulas they share.
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

from vla_foundry.models.transformer import count_transformer_parameters
from vla_foundry.models.vit import count_vit_parameters
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


def approx_forward_flops_per_token(module: nn.Module) -> float:
    """2 x parameters outside input embeddings (lookups, not matmuls); tied output heads still count once. The
    estimate Hugging Face wrappers give for their own forward FLOPs."""
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


def flops_per_sample(model: nn.Module, seq_len: int = 0, num_images: int = 1) -> float:
    """Training FLOPs (forward + backward) for one sample: the model's own `flops_per_sample(seq_len, num_images)`.

    Language models count a sequence of `seq_len` tokens, vision towers `num_images` images, VLMs `seq_len` tokens
    (image placeholders included) holding `num_images` images. A model without the method has no FLOP count.
    """
    own = getattr(model, "flops_per_sample", None)
    if not callable(own):
        raise TypeError(f"{type(model).__name__} does not count its FLOPs (it defines no flops_per_sample)")
    return float(own(seq_len, num_images))
