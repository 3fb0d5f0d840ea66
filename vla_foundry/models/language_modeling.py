"""Next-token language-modelling loss and the batch handler shared by every language model type.

Batch contract (text, text_untokenized and image_caption pipelines):
  - `input_ids`  LongTensor (B, T+1): the model reads positions [0, T) and predicts positions [1, T+1).
  - `loss_mask`  BoolTensor (B, T+1): True where the token is a valid target (contributes to the loss);
                 False on padding and `<image>` placeholders. Absent means every token is a target.
  - `attention_mask` (optional) (B, T+1): True on real tokens; padding keys are hidden from attention.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vla_foundry.models.registry import BatchHandler, LossOutput


def next_token_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, z_loss_weight: float = 0.0
) -> LossOutput:
    """Mean cross-entropy over the positions where `mask` is True, plus `z_loss_weight * mean(logsumexp^2)`.

    logits (B, T, V), targets (B, T), mask (B, T) bool. The z-loss keeps the softmax normaliser near 1 (PaLM),
    which stabilises large-vocabulary training in low precision.
    """
    if logits.shape[:2] != targets.shape or targets.shape != mask.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)}, targets {tuple(targets.shape)} and mask {tuple(mask.shape)} "
            "must agree on (batch, sequence)"
        )
    mask = mask.bool()
    num_tokens = int(mask.sum())
    flat_logits = logits.float().reshape(-1, logits.shape[-1])  # (B*T, V), fp32 for a stable softmax
    flat_mask = mask.reshape(-1)
    ce = F.cross_entropy(flat_logits, targets.reshape(-1), reduction="none")  # (B*T,)
    denom = max(num_tokens, 1)
    ce_loss = (ce * flat_mask).sum() / denom
    loss = ce_loss
    metrics = {"ce_loss": ce_loss.detach()}
    if z_loss_weight > 0:
        log_z = torch.logsumexp(flat_logits, dim=-1)  # (B*T,)
        z_loss = (log_z.square() * flat_mask).sum() / denom
        loss = loss + z_loss_weight * z_loss
        metrics["z_loss"] = z_loss.detach()
    return LossOutput(loss=loss, num_tokens=num_tokens, metrics=metrics)


def shift_for_next_token(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Split a (B, T+1) batch into model inputs (B, T), targets (B, T), target mask (B, T) and attention mask."""
    if "input_ids" not in batch:
        raise KeyError(f"a language-model batch needs 'input_ids'; got keys {sorted(batch)}")
    ids = batch["input_ids"]
    if ids.dim() != 2 or ids.shape[1] < 2:
        raise ValueError(f"input_ids must be (batch, seq_len + 1) with seq_len >= 1; got shape {tuple(ids.shape)}")
    loss_mask = batch.get("loss_mask")
    if loss_mask is None:
        loss_mask = torch.ones_like(ids, dtype=torch.bool)
    elif loss_mask.shape != ids.shape:
        raise ValueError(f"loss_mask shape {tuple(loss_mask.shape)} differs from input_ids shape {tuple(ids.shape)}")
    attention_mask = batch.get("attention_mask")
    if attention_mask is not None:
        attention_mask = attention_mask[:, :-1].bool()
    return ids[:, :-1], ids[:, 1:], loss_mask[:, 1:].bool(), attention_mask


class LanguageModelBatchHandler(BatchHandler):
    """Text batches -> `model(input_ids=..., attention_mask=...)` logits -> next-token cross-entropy."""

    def compute_loss(self, model: nn.Module, batch: dict[str, Any]) -> LossOutput:
        inputs, targets, mask, attention_mask = shift_for_next_token(batch)
        logits = model(input_ids=inputs, attention_mask=attention_mask)  # (B, T, V)
        return next_token_loss(logits, targets, mask, getattr(self.model_params, "z_loss_weight", 0.0))
