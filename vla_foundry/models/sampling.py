"""Choosing the next token when generating: greedy, temperature, top-k and top-p (nucleus) sampling.

Native models sample with `sample_next_token`; `transformers` models get the same choices translated into their
`generate` options by `hf_generate_options`, so every language model type takes the same sampling arguments.
"""

from __future__ import annotations

from typing import Any

import torch


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row from logits (B, V) -> (B,): greedy at temperature 0, else sample from
    softmax(logits / temperature) restricted to the `top_k` most likely tokens and/or the smallest set whose
    probability reaches `top_p`."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)  # (B, V) each
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens ranked above it already reach top_p (the top token always stays).
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def hf_generate_options(
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments for a `transformers` model's `generate` that choose tokens as `sample_next_token` does.

    transformers samples from the global RNG (no generator argument); padding of finished rows uses the EOS id.
    """
    sampling = temperature > 0
    return {
        "max_new_tokens": max_new_tokens,
        "do_sample": sampling,
        "temperature": temperature if sampling else None,
        "top_k": top_k if sampling else None,
        "top_p": top_p if sampling else None,
        "eos_token_id": eos_token_id,
        "pad_token_id": eos_token_id if eos_token_id is not None else 0,
    }
