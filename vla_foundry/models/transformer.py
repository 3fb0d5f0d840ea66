"""`transformer`: a decoder-only LLM in pure PyTorch.

Token embedding -> n_layers pre-norm blocks (RMSNorm, grouped-query attention with rotary position embeddings
through `scaled_dot_product_attention`, SwiGLU MLP) -> final RMSNorm -> LM head (optionally tied to the
embedding). The model knows nothing of distribution, precision or files.

Interface shared with the `transformer_hf` wrapper (the VLM and the VLA backbone rely on it):
  - `forward(input_ids=None, inputs_embeds=None, attention_mask=None) -> logits (B, T, vocab_size)`;
  - `embed(input_ids) -> (B, T, hidden_dim)`;
  - `hidden_states(..., num_layers=k) -> list of k tensors (B, T, hidden_dim)`;
  - `generate(...)`: KV-cache decoding with greedy / temperature / top-k / top-p sampling.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vla_foundry.models.language_modeling import LanguageModelBatchHandler
from vla_foundry.models.registry import FSDPBlock, register_batch_handler, register_model
from vla_foundry.models.sampling import sample_next_token
from vla_foundry.params.model_params import TransformerParams


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32: the mean of squares overflows / loses precision in bf16.
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return normed.type_as(x) * self.weight

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)


def rope_tables(head_dim: int, max_seq_len: int, theta: float, device: torch.device | None = None) -> torch.Tensor:
    """cos/sin of the rotary angles, stacked: (2, max_seq_len, head_dim) in the rotate-half layout."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(max_seq_len, device=device, dtype=torch.float32), inv_freq)  # (S, hd/2)
    angles = torch.cat([angles, angles], dim=-1)  # (S, hd)
    return torch.stack([angles.cos(), angles.sin()])


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, hd) queries or keys by position; cos/sin are (T, hd)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x.float() * cos + rotated.float() * sin).type_as(x)


class KVCache:
    """Preallocated keys/values for every layer: (n_layers, B, n_kv_heads, max_len, head_dim) each."""

    def __init__(
        self,
        n_layers: int,
        batch_size: int,
        n_kv_heads: int,
        max_len: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        shape = (n_layers, batch_size, n_kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.length = 0  # positions filled so far (same for every layer once a forward pass completes)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write (B, Hkv, L, hd) new keys/values at the current position; return all keys/values so far."""
        start, end = self.length, self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(
                f"KV cache of length {self.max_len} cannot hold {end} positions: size it for prompt + new tokens"
            )
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


def attention_bias(
    q_len: int, k_len: int, offset: int, attention_mask: torch.Tensor | None, device: torch.device
) -> torch.Tensor | None:
    """Boolean (B or 1, 1, q_len, k_len) mask, True = may attend; None when plain causal attention suffices.

    Query i sits at absolute position offset + i and sees keys at positions <= its own. Padding keys
    (attention_mask False) are hidden, except a query's own position, so that no row is fully masked (which
    would give NaN) — the outputs at padding positions are ignored by the loss anyway.
    """
    if attention_mask is None and offset == 0 and q_len == k_len:
        return None
    q_pos = torch.arange(offset, offset + q_len, device=device)[:, None]
    k_pos = torch.arange(k_len, device=device)[None, :]
    allowed = (k_pos <= q_pos)[None, None]  # (1, 1, q, k)
    if attention_mask is not None:
        if attention_mask.shape[1] != k_len:
            raise ValueError(f"attention_mask covers {attention_mask.shape[1]} positions, expected {k_len}")
        keys_ok = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, k)
        allowed = allowed & (keys_ok | (k_pos == q_pos)[None, None])
    return allowed


class Attention(nn.Module):
    """Grouped-query self-attention with rotary positions and optional per-head RMSNorm of queries and keys."""

    def __init__(self, p: TransformerParams) -> None:
        super().__init__()
        self.n_heads = p.n_heads
        self.n_kv_heads = p.n_kv_heads or p.n_heads
        self.head_dim = p.hidden_dim // p.n_heads
        self.wq = nn.Linear(p.hidden_dim, self.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(p.hidden_dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(p.hidden_dim, self.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(self.n_heads * self.head_dim, p.hidden_dim, bias=False)
        self.q_norm = RMSNorm(self.head_dim, p.norm_eps) if p.qk_norm else None
        self.k_norm = RMSNorm(self.head_dim, p.norm_eps) if p.qk_norm else None
        self.dropout = p.dropout
        self.is_causal = p.is_causal

    def forward(
        self,
        x: torch.Tensor,
        rope: torch.Tensor,
        mask: torch.Tensor | None,
        cache: KVCache | None = None,
        layer: int = 0,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, hd)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, Hkv, T, hd)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, rope[0], rope[1]), apply_rope(k, rope[0], rope[1])
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, Hkv, S, hd), S = positions so far
        # Grouped-query attention: each key/value head serves n_heads / n_kv_heads query heads; SDPA shares them
        # without materialising repeated keys/values.
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None and self.is_causal,
            dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.n_kv_heads != self.n_heads,
        )  # (B, H, T, hd)
        return self.wo(out.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def ffn_hidden_dim(p: TransformerParams) -> int:
    """The SwiGLU width: `ffn_hidden_dim`, or 8/3 * hidden_dim rounded up to a multiple of `ffn_multiple_of`."""
    if p.ffn_hidden_dim is not None:
        return p.ffn_hidden_dim
    hidden = int(8 * p.hidden_dim / 3)
    return p.ffn_multiple_of * math.ceil(hidden / p.ffn_multiple_of)


class TransformerBlock(FSDPBlock):
    """Pre-norm residual block: x + attention(norm(x)), then + feed_forward(norm(x))."""

    def __init__(self, p: TransformerParams) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(p.hidden_dim, p.norm_eps)
        self.attention = Attention(p)
        self.ffn_norm = RMSNorm(p.hidden_dim, p.norm_eps)
        self.feed_forward = FeedForward(p.hidden_dim, ffn_hidden_dim(p))
        self.dropout = nn.Dropout(p.dropout)

    def forward(
        self, x: torch.Tensor, rope: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), rope, mask, cache, layer))
        return x + self.dropout(self.feed_forward(self.ffn_norm(x)))


class TransformerLM(nn.Module):
    """The decoder-only language model (see the module docstring for its interface)."""

    def __init__(self, params: TransformerParams) -> None:
        super().__init__()
        params.validate()
        self.params = params
        self.hidden_dim = params.hidden_dim
        self.tok_embeddings = nn.Embedding(params.vocab_size, params.hidden_dim)
        self.layers = nn.ModuleList(TransformerBlock(params) for _ in range(params.n_layers))
        self.norm = RMSNorm(params.hidden_dim, params.norm_eps)
        self.output = nn.Linear(params.hidden_dim, params.vocab_size, bias=False)
        if params.tie_embeddings:
            self.output.weight = self.tok_embeddings.weight
        head_dim = params.hidden_dim // params.n_heads
        # Not saved in checkpoints: recomputed from params (also after materialising a meta-device model).
        self.register_buffer("rope", rope_tables(head_dim, params.max_seq_len, params.rope_theta), persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Normal(0, init_std) for weights; residual output projections scaled by 1/sqrt(2 n_layers) (GPT-2) so
        the residual stream's variance does not grow with depth. Safe to call after `to_empty` from meta."""
        p = self.params
        std = p.init_std
        residual_std = std / math.sqrt(2 * p.n_layers)
        nn.init.normal_(self.tok_embeddings.weight, std=std)
        for block in self.layers:
            attn, ffn = block.attention, block.feed_forward
            for lin in (attn.wq, attn.wk, attn.wv, ffn.w1, ffn.w3):
                nn.init.normal_(lin.weight, std=std)
            nn.init.normal_(attn.wo.weight, std=residual_std)
            nn.init.normal_(ffn.w2.weight, std=residual_std)
            for norm in (block.attention_norm, block.ffn_norm, attn.q_norm, attn.k_norm):
                if norm is not None:
                    norm.reset_parameters()
        self.norm.reset_parameters()
        if not p.tie_embeddings:
            nn.init.normal_(self.output.weight, std=std)
        head_dim = p.hidden_dim // p.n_heads
        self.rope = rope_tables(head_dim, p.max_seq_len, p.rope_theta, device=self.rope.device)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.tok_embeddings(input_ids)  # (B, T, D)

    def _run_blocks(
        self,
        input_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        cache: KVCache | None,
        keep_last: int,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns the final-normed hidden state (B, T, D) and the outputs of the last `keep_last` blocks."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("give exactly one of input_ids or inputs_embeds")
        h = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, D)
        T = h.shape[1]
        offset = cache.length if cache is not None else 0
        if offset + T > self.params.max_seq_len:
            raise ValueError(f"sequence of {offset + T} positions exceeds model.max_seq_len={self.params.max_seq_len}")
        rope = self.rope[:, offset : offset + T]  # (2, T, hd)
        if self.params.is_causal:
            mask = attention_bias(T, offset + T, offset, attention_mask, h.device)
        else:
            # Bidirectional: only padding keys are hidden.
            mask = attention_mask.bool()[:, None, None, :] if attention_mask is not None else None
        kept: list[torch.Tensor] = []
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            h = layer(h, rope, mask, cache, i)
            # The last block's output is kept after the final norm, below.
            if i >= n - keep_last and i < n - 1:
                kept.append(h)
        if cache is not None:
            cache.length += T
        h = self.norm(h)
        if keep_last > 0:
            kept.append(h)
        return h, kept

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, vocab_size). `attention_mask` (B, T_total) True on real tokens; `cache` for decoding."""
        h, _ = self._run_blocks(input_ids, inputs_embeds, attention_mask, cache, keep_last=0)
        return self.output(h)

    def hidden_states(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        num_layers: int = 1,
    ) -> list[torch.Tensor]:
        """Outputs of the last `num_layers` blocks, each (B, T, D), in layer order; the last one is after the
        final norm (what the LM head reads). The LM head is not computed."""
        if not 1 <= num_layers <= len(self.layers):
            raise ValueError(f"num_layers={num_layers} must be within [1, n_layers={len(self.layers)}]")
        _, kept = self._run_blocks(input_ids, inputs_embeds, attention_mask, None, keep_last=num_layers)
        return kept

    def forward_flops_per_token(self, seq_len: int) -> float:
        """Forward FLOPs per token at sequence length `seq_len`, exact from the shapes (see `vla_foundry/models/flops.py`)."""
        return transformer_forward_flops_per_token(self.params, seq_len)

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs (forward + backward = 3 x forward) per token at sequence length `seq_len`."""
        return 3 * self.forward_flops_per_token(seq_len)

    def flops_per_sample(self, seq_len: int, num_images: int = 0) -> float:
        """Training FLOPs for one sequence of `seq_len` tokens (`num_images` is not read: a language model)."""
        return self.flops_per_token(seq_len) * seq_len

    def new_cache(self, batch_size: int, max_len: int, dtype: torch.dtype, device: torch.device) -> KVCache:
        """An empty KV cache for `batch_size` sequences of up to `max_len` positions."""
        p = self.params
        return KVCache(
            p.n_layers, batch_size, p.n_kv_heads or p.n_heads, max_len, p.hidden_dim // p.n_heads, dtype, device
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        inputs_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_token_id: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Continue a prompt; returns the new tokens only, (B, <= max_new_tokens).

        The prompt is `input_ids` (B, T0) or `inputs_embeds` (B, T0, D) (e.g. a VLM prompt with image embeddings).
        `temperature=0` is greedy; otherwise sample from softmax(logits / temperature) restricted to the `top_k`
        most likely tokens and/or the smallest set whose probability reaches `top_p`. Rows that emitted
        `eos_token_id` keep emitting it; decoding stops when every row has. `use_cache=False` recomputes the whole
        sequence each step (a reference for testing the cache).
        """
        if not self.params.is_causal:
            raise ValueError("generate needs a causal model (model.is_causal=True)")
        prompt = self.embed(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T0, D)
        B, T0, _ = prompt.shape
        total = T0 + max_new_tokens
        if total > self.params.max_seq_len:
            raise ValueError(
                f"prompt ({T0}) + max_new_tokens ({max_new_tokens}) exceeds model.max_seq_len={self.params.max_seq_len}"
            )
        mask = attention_mask.bool() if attention_mask is not None else None
        cache = self.new_cache(B, total, prompt.dtype, prompt.device) if use_cache else None
        finished = torch.zeros(B, dtype=torch.bool, device=prompt.device)
        new_tokens: list[torch.Tensor] = []
        seq = prompt
        step_input = prompt
        for _ in range(max_new_tokens):
            logits = self(inputs_embeds=step_input if use_cache else seq, attention_mask=mask, cache=cache)[:, -1]
            token = sample_next_token(logits, temperature, top_k, top_p, generator)  # (B,)
            if eos_token_id is not None:
                token = torch.where(finished, torch.full_like(token, eos_token_id), token)
                finished |= token == eos_token_id
            new_tokens.append(token)
            step_input = self.embed(token[:, None])  # (B, 1, D)
            seq = torch.cat([seq, step_input], dim=1)
            if mask is not None:
                mask = torch.cat([mask, torch.ones(B, 1, dtype=torch.bool, device=mask.device)], dim=1)
            if eos_token_id is not None and bool(finished.all()):
                break
        return torch.stack(new_tokens, dim=1)


@register_model("transformer")
def build_transformer(params: TransformerParams, load_pretrained: bool = True) -> TransformerLM:
    """Native models have no pretrained hub weights: run weights are loaded by the training / VLM side."""
    return TransformerLM(params)


@register_batch_handler("transformer")
class TransformerBatchHandler(LanguageModelBatchHandler):
    """Next-token cross-entropy on text batches (see `language_modeling`)."""


def count_transformer_parameters(p: TransformerParams) -> int:
    """Exact parameter count from params alone (no model built): used for presets and FLOPs."""
    d, kv_dim = p.hidden_dim, (p.n_kv_heads or p.n_heads) * (p.hidden_dim // p.n_heads)
    head_dim = p.hidden_dim // p.n_heads
    attn = d * d * 2 + d * kv_dim * 2 + (2 * head_dim if p.qk_norm else 0)
    ffn = 3 * d * ffn_hidden_dim(p)
    per_layer = attn + ffn + 2 * d
    embeddings = p.vocab_size * d * (1 if p.tie_embeddings else 2)
    return p.n_layers * per_layer + d + embeddings


def transformer_forward_flops_per_token(p: TransformerParams, seq_len: int) -> float:
    """Forward FLOPs for one token in a sequence of `seq_len`: 2 x (matmul weights, LM head included) plus the
    attention score and value products, 2 x 2 x n_layers x seq_len x hidden_dim (full, not causal-halved,
    the PaLM convention)."""
    d, kv_dim = p.hidden_dim, (p.n_kv_heads or p.n_heads) * (p.hidden_dim // p.n_heads)
    matmul_weights = p.n_layers * (2 * d * d + 2 * d * kv_dim + 3 * d * ffn_hidden_dim(p)) + d * p.vocab_size
    attention = 4 * p.n_layers * seq_len * d
    return float(2 * matmul_weights + attention)
