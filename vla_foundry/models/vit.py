"""`vit`: a Vision Transformer in pure PyTorch.

Patch embedding (a strided convolution) -> optional CLS and register tokens -> learned or fixed 2-D sin-cos
position embeddings -> pre-norm blocks (LayerNorm, multi-head self-attention through
`scaled_dot_product_attention`, GELU MLP) -> final LayerNorm.

Interface shared with `vit_hf` (the VLM and the VLA rely on it):
  - `forward(images) -> (B, num_patches, hidden_dim)` patch tokens only (CLS / register tokens dropped), in
    row-major patch order, so a VLM can fold them spatially;
  - `hidden_dim`, `grid_size` (patches per side) and `num_prefix_tokens`.
A vision tower is trained inside a `vlm` or `diffusion_policy`; it has no batch handler of its own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vla_foundry.models.registry import FSDPBlock, register_model
from vla_foundry.params.model_params import ViTParams


def sincos_2d(grid_size: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings (MAE): (grid_size**2, dim), row-major; half the channels encode
    the row, half the column."""
    if dim % 4 != 0:
        raise ValueError(f"sincos position embeddings need vit.hidden_dim divisible by 4; got {dim}")
    omega = 1.0 / (10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4)))  # (D/4,)
    coords = torch.arange(grid_size, dtype=torch.float32)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    out = []
    for pos in (rows.reshape(-1), cols.reshape(-1)):
        angles = torch.outer(pos, omega)  # (N, D/4)
        out += [angles.sin(), angles.cos()]
    return torch.cat(out, dim=1)  # (N, D)


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention with a fused qkv projection (the ViT's and the action head's)."""

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, D) -> (B, N, D); `key_mask` (B, N), True = a real token that may be attended to."""
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # 3 x (B,H,N,hd)
        mask = key_mask[:, None, None, :] if key_mask is not None else None  # (B, 1, 1, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class ViTBlock(FSDPBlock):
    def __init__(self, p: ViTParams) -> None:
        super().__init__()
        hidden = int(p.hidden_dim * p.mlp_ratio)
        self.norm1 = nn.LayerNorm(p.hidden_dim, eps=p.norm_eps)
        self.attn = SelfAttention(p.hidden_dim, p.n_heads, p.dropout)
        self.norm2 = nn.LayerNorm(p.hidden_dim, eps=p.norm_eps)
        self.mlp = nn.Sequential(nn.Linear(p.hidden_dim, hidden), nn.GELU(), nn.Linear(hidden, p.hidden_dim))
        self.dropout = nn.Dropout(p.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x)))
        return x + self.dropout(self.mlp(self.norm2(x)))


class ViT(nn.Module):
    def __init__(self, params: ViTParams) -> None:
        super().__init__()
        params.validate()
        self.params = params
        self.hidden_dim = params.hidden_dim
        self.grid_size = params.img_size // params.patch_size
        self.num_prefix_tokens = int(params.use_cls_token) + params.n_register_tokens
        self.patch_embed = nn.Conv2d(params.in_channels, params.hidden_dim, params.patch_size, params.patch_size)
        self.prefix_tokens = (
            nn.Parameter(torch.zeros(1, self.num_prefix_tokens, params.hidden_dim)) if self.num_prefix_tokens else None
        )
        if params.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, params.num_patches, params.hidden_dim))
        else:
            self.register_buffer("pos_embed", sincos_2d(self.grid_size, params.hidden_dim)[None], persistent=False)
        self.blocks = nn.ModuleList(ViTBlock(params) for _ in range(params.n_layers))
        self.norm = nn.LayerNorm(params.hidden_dim, eps=params.norm_eps)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Truncated-normal(0.02) linear weights, zero biases, unit norms (timm / MAE convention)."""
        p = self.params
        fan_in = p.in_channels * p.patch_size**2
        nn.init.trunc_normal_(self.patch_embed.weight, std=math.sqrt(1.0 / fan_in))
        nn.init.zeros_(self.patch_embed.bias)
        if self.prefix_tokens is not None:
            nn.init.trunc_normal_(self.prefix_tokens, std=0.02)
        if p.pos_embed == "learned":
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        else:
            self.pos_embed = sincos_2d(self.grid_size, p.hidden_dim)[None].to(self.pos_embed.device)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) at `img_size` -> patch tokens (B, num_patches, hidden_dim)."""
        size = self.params.img_size
        if images.dim() != 4 or images.shape[-2:] != (size, size):
            raise ValueError(f"ViT expects images (B, C, {size}, {size}); got shape {tuple(images.shape)}")
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, N, D), row-major patches
        x = x + self.pos_embed.to(x.dtype)
        if self.prefix_tokens is not None:
            x = torch.cat([self.prefix_tokens.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)  # (B, P+N, D)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, self.num_prefix_tokens :]  # (B, N, D)

    def forward_flops_per_image(self) -> float:
        """Forward FLOPs for one image, exact from the shapes (see `vla_foundry/models/flops.py`)."""
        return vit_forward_flops_per_image(self.params)

    def flops_per_image(self) -> float:
        """Training FLOPs (forward + backward = 3 x forward) for one image."""
        return 3 * self.forward_flops_per_image()

    def flops_per_sample(self, seq_len: int = 0, num_images: int = 1) -> float:
        """Training FLOPs for a sample of `num_images` images (`seq_len` is not read: a vision tower)."""
        return self.flops_per_image() * num_images


@register_model("vit")
def build_vit(params: ViTParams, load_pretrained: bool = True) -> ViT:
    return ViT(params)


def count_vit_parameters(p: ViTParams) -> int:
    """Exact parameter count from params alone."""
    d, hidden = p.hidden_dim, int(p.hidden_dim * p.mlp_ratio)
    per_block = (3 * d * d + 3 * d) + (d * d + d) + (d * hidden + hidden) + (hidden * d + d) + 4 * d
    patch = p.in_channels * p.patch_size**2 * d + d
    prefix = (int(p.use_cls_token) + p.n_register_tokens) * d
    pos = p.num_patches * d if p.pos_embed == "learned" else 0
    return p.n_layers * per_block + patch + prefix + pos + 2 * d


def vit_forward_flops_per_image(p: ViTParams) -> float:
    """Forward FLOPs for one image: 2 x weights x tokens for the matmuls (patch embedding included) plus
    attention scores and values, 2 x 2 x n_layers x tokens^2 x hidden_dim."""
    d, hidden = p.hidden_dim, int(p.hidden_dim * p.mlp_ratio)
    tokens = p.num_patches + int(p.use_cls_token) + p.n_register_tokens
    block_weights = 4 * d * d + 2 * d * hidden
    patch = 2 * p.num_patches * p.in_channels * p.patch_size**2 * d
    return float(2 * p.n_layers * block_weights * tokens + 4 * p.n_layers * tokens**2 * d + patch)
