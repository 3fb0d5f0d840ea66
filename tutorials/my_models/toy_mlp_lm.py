"""A toy model type defined outside the vla_foundry package, for tutorials/adding_new_models.ipynb.

`toy_mlp_lm` predicts the next token from the current token and its position only (a position-aware bigram model
made of residual MLP blocks): small enough to train in seconds on a CPU, complete enough to show every piece a model
type registers. Importing this module is all it takes (`--plugins toy_mlp_lm` with this folder on PYTHONPATH):

  - its params class, `@register_model_params("toy_mlp_lm")`: the fields `--model.*` accepts;
  - `SHARED_FROM_DATA`: the attributes it takes from the data params (here the sequence length);
  - its factory, `@register_model("toy_mlp_lm")`: params -> nn.Module;
  - its batch handler, `@register_batch_handler("toy_mlp_lm")`: batch -> loss;
  - its FSDP units: the blocks subclass `FSDPBlock` (one `fully_shard` unit each under torchrun).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vla_foundry.models.registry import (
    BatchHandler,
    FSDPBlock,
    LossOutput,
    register_batch_handler,
    register_model,
)
from vla_foundry.params import ModelParams, register_model_params
from vla_foundry.params.base_params import ConfigError, derived_field


@register_model_params("toy_mlp_lm")
@dataclass(frozen=True)
class ToyMLPLMParams(ModelParams):
    """A position-aware bigram language model made of residual MLP blocks (tutorial model)."""

    # Embedding rows: at least the tokenizer's vocabulary (the byte tokenizer uses 262 ids).
    vocab_size: int = 262
    # Width of the token + position embedding and of every block.
    hidden_dim: int = 64
    # Residual MLP blocks.
    n_layers: int = 2
    seq_len: int | None = derived_field(None, "data.seq_len")

    # The data side owns the sequence length; the shared-attribute pass copies it here (model field -> data field).
    SHARED_FROM_DATA: ClassVar[dict[str, str]] = {"seq_len": "seq_len"}

    def validate(self) -> None:
        if self.n_layers < 1:
            raise ConfigError(f"model.n_layers={self.n_layers} must be >= 1")


class ToyBlock(FSDPBlock):
    """x + MLP(norm(x)); (B, T, D) -> (B, T, D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


class ToyMLPLM(nn.Module):
    def __init__(self, params: ToyMLPLMParams) -> None:
        super().__init__()
        if params.seq_len is None:
            raise ConfigError("model.seq_len is unset: it is shared from data.seq_len (use a text data type)")
        self.tokens = nn.Embedding(params.vocab_size, params.hidden_dim)
        self.positions = nn.Embedding(params.seq_len, params.hidden_dim)
        self.blocks = nn.ModuleList(ToyBlock(params.hidden_dim) for _ in range(params.n_layers))
        self.out = nn.Linear(params.hidden_dim, params.vocab_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids (B, T) -> logits (B, T, vocab_size)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.tokens(input_ids) + self.positions(positions)[None]  # (B, T, D)
        for block in self.blocks:
            x = block(x)
        return self.out(x)


@register_model("toy_mlp_lm")
def build_toy_mlp_lm(params: ToyMLPLMParams, load_pretrained: bool = True) -> ToyMLPLM:
    return ToyMLPLM(params)


@register_batch_handler("toy_mlp_lm")
class ToyMLPLMBatchHandler(BatchHandler):
    """Text batches (input_ids (B, T+1), optional loss_mask) -> next-token cross-entropy."""

    def compute_loss(self, model: nn.Module, batch: dict[str, Any]) -> LossOutput:
        ids = batch["input_ids"]
        mask = batch.get("loss_mask", torch.ones_like(ids, dtype=torch.bool))[:, 1:]  # (B, T): targets that count
        logits = model(ids[:, :-1])  # (B, T, V)
        losses = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="none")  # (B*T,)
        num_tokens = int(mask.sum())
        loss = (losses * mask.flatten()).sum() / max(num_tokens, 1)
        return LossOutput(loss=loss, num_tokens=num_tokens)
