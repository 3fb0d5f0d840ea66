"""`vit_hf`: a pretrained vision tower from timm (e.g. `vit_base_patch16_siglip_224`) or transformers (a SigLIP /
CLIP vision model), by name or local directory.

Same interface as the native `ViT`: `forward(images) -> (B, num_patches, hidden_dim)` patch tokens only,
row-major, plus `hidden_dim`, `grid_size` and `num_prefix_tokens`.

Local directories: a timm model saved with `timm.models.save_for_hf` (config.json has an `architecture` key) or
a transformers model saved with `save_pretrained`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import nn

from vla_foundry.models.flops import approx_forward_flops_per_token
from vla_foundry.models.hf_loading import hub_offline, load_hf_model, looks_like_path, no_split_block_types
from vla_foundry.models.registry import register_model
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.model_params import ViTHFParams


def resolve_source(params: ViTHFParams) -> str:
    """ "timm" or "transformers" for `params.source="auto"`: a local directory by its config.json, a name by
    whether timm knows it."""
    if params.source != "auto":
        return params.source
    name = params.hf_pretrained
    config_path = os.path.join(name, "config.json")
    if os.path.isdir(name):
        if not os.path.isfile(config_path):
            raise OSError(f"vision tower directory {name!r} has no config.json")
        with open(config_path, encoding="utf-8") as f:
            return "timm" if "architecture" in json.load(f) else "transformers"
    import timm

    if name.startswith(("timm/", "hf-hub:")) or timm.is_model(name.split(".")[0]):
        return "timm"
    return "transformers"


def _create_timm(params: ViTHFParams, load_pretrained: bool) -> nn.Module:
    import timm

    name = params.hf_pretrained
    if os.path.isdir(name):
        name = f"local-dir:{os.path.abspath(name)}"
        load_pretrained = True  # a local directory is its own config; its weights are what was asked for
    elif looks_like_path(name):
        raise OSError(f"vision tower: local directory {name!r} does not exist")
    elif not timm.is_model(name.split(".")[0]) and not name.startswith(("timm/", "hf-hub:")):
        raise ConfigError(f"vit.hf_pretrained={name!r} is not a timm model name (see timm.list_models()) or directory")
    kwargs: dict[str, Any] = {"num_classes": 0, "img_size": params.img_size}
    try:
        return timm.create_model(name, pretrained=load_pretrained, **kwargs)
    except Exception as e:
        offline = " (HF_HUB_OFFLINE is set)" if hub_offline() else ""
        raise OSError(
            f"could not create timm vision tower {params.hf_pretrained!r}{offline}: {e.__class__.__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}. Give a local directory, or make the hub reachable."
        ) from None


def _create_transformers(params: ViTHFParams, load_pretrained: bool) -> nn.Module:
    from transformers import AutoModel

    model = load_hf_model(AutoModel, params.hf_pretrained, "vision tower", load_pretrained)
    # A full image-text model (SiglipModel, CLIPModel): keep its vision tower only.
    return model.vision_model if hasattr(model, "vision_model") and hasattr(model, "text_model") else model


class HFVisionTower(nn.Module):
    def __init__(self, params: ViTHFParams, load_pretrained: bool = True) -> None:
        super().__init__()
        params.validate()
        self.params = params
        self.source = resolve_source(params)
        if self.source == "timm":
            self.model = _create_timm(params, load_pretrained)
            self.hidden_dim = self.model.num_features
            self.num_prefix_tokens = int(getattr(self.model, "num_prefix_tokens", 0))
            grid = tuple(self.model.patch_embed.grid_size)
        else:
            self.model = _create_transformers(params, load_pretrained)
            config = self.model.config
            self.hidden_dim = config.hidden_size
            side = config.image_size // config.patch_size
            grid = (side, side)
            # CLIP-style towers prepend a class token; SigLIP has none. Measured once from the embeddings.
            self.num_prefix_tokens = int(getattr(self.model.embeddings, "num_positions", side * side) - side * side)
        expected = params.img_size // params.patch_size
        if grid != (expected, expected):
            raise ConfigError(
                f"vision tower {params.hf_pretrained!r} has a {grid[0]}x{grid[1]} patch grid, but vit.img_size="
                f"{params.img_size} / vit.patch_size={params.patch_size} gives {expected}x{expected}: set them to "
                "the tower's input size and patch size"
            )
        self.grid_size = expected

    def fsdp_block_types(self) -> tuple[type, ...]:
        if self.source == "timm":
            blocks = getattr(self.model, "blocks", None)
            return tuple(sorted({type(b) for b in blocks}, key=lambda t: t.__name__)) if blocks is not None else ()
        return no_split_block_types(self.model)

    def forward_flops_per_image(self) -> float:
        """Approximate forward FLOPs for one image: 2 x parameters per patch (see `vla_foundry/models/flops.py`)."""
        return approx_forward_flops_per_token(self) * self.grid_size**2

    def flops_per_sample(self, seq_len: int = 0, num_images: int = 1) -> float:
        """Approximate training FLOPs for a sample of `num_images` images (`seq_len` is not read)."""
        return 3.0 * self.forward_flops_per_image() * num_images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) -> patch tokens (B, grid_size**2, hidden_dim)."""
        if self.source == "timm":
            tokens = self.model.forward_features(images)  # (B, prefix + N, D), final norm applied
        else:
            tokens = self.model(pixel_values=images).last_hidden_state  # (B, prefix + N, D)
        return tokens[:, self.num_prefix_tokens :]


@register_model("vit_hf")
def build_vit_hf(params: ViTHFParams, load_pretrained: bool = True) -> HFVisionTower:
    return HFVisionTower(params, load_pretrained)
