"""Batch handlers: next-token cross-entropy and z-loss against hand-computed values on toy batches."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.models.conftest import tiny_lm_params, tiny_vlm_params
from vla_foundry.models import create_model, get_batch_handler
from vla_foundry.models.language_modeling import next_token_loss


class FixedLogits(nn.Module):
    """A 'model' returning given logits: isolates the handler's shifting and masking."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.seen: dict = {}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        self.seen = {"input_ids": input_ids, "attention_mask": attention_mask, **kwargs}
        return self.logits


def test_cross_entropy_matches_hand_computation() -> None:
    # Vocabulary of 2, logits [0, ln 3] -> p(token 1) = 3/4. Targets: 1 (loss ln 4/3), 0 (loss ln 4), masked.
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, math.log(3)], [5.0, 0.0]]])
    out = next_token_loss(logits, torch.tensor([[1, 0, 1]]), torch.tensor([[True, True, False]]))
    expected = (math.log(4 / 3) + math.log(4)) / 2
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.num_tokens == 2


def test_z_loss_adds_weighted_mean_squared_log_partition() -> None:
    logits = torch.tensor([[[0.0, math.log(3)], [1.0, 1.0]]])
    targets, mask = torch.tensor([[1, 0]]), torch.tensor([[True, True]])
    out = next_token_loss(logits, targets, mask, z_loss_weight=0.1)
    log_z = [math.log(4), math.log(2 * math.e)]
    ce = (math.log(4 / 3) + math.log(2)) / 2
    z = (log_z[0] ** 2 + log_z[1] ** 2) / 2
    assert out.metrics["z_loss"].item() == pytest.approx(z, rel=1e-6)
    assert out.loss.item() == pytest.approx(ce + 0.1 * z, rel=1e-6)


def test_language_model_handler_shifts_inputs_and_targets() -> None:
    handler = get_batch_handler(tiny_lm_params())
    ids = torch.tensor([[5, 1, 0, 1]])
    # Logits for the 3 input positions, predicting ids[1:] = [1, 0, 1]; the last target is masked out.
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, math.log(3)], [9.0, 0.0]]])
    model = FixedLogits(logits)
    out = handler.compute_loss(model, {"input_ids": ids, "loss_mask": torch.tensor([[True, True, True, False]])})
    assert torch.equal(model.seen["input_ids"], ids[:, :-1])
    assert model.seen["attention_mask"] is None
    assert out.loss.item() == pytest.approx((math.log(4 / 3) + math.log(4)) / 2, rel=1e-6)
    assert out.num_tokens == 2


def test_missing_loss_mask_means_every_target_counts() -> None:
    handler = get_batch_handler(tiny_lm_params())
    logits = torch.zeros(1, 3, 4)  # uniform: loss ln 4 everywhere
    out = handler.compute_loss(FixedLogits(logits), {"input_ids": torch.tensor([[0, 1, 2, 3]])})
    assert out.num_tokens == 3
    assert out.loss.item() == pytest.approx(math.log(4))


def test_attention_mask_is_shifted_with_the_inputs() -> None:
    handler = get_batch_handler(tiny_lm_params())
    model = FixedLogits(torch.zeros(1, 3, 4))
    attention = torch.tensor([[True, True, True, False]])
    handler.compute_loss(model, {"input_ids": torch.tensor([[0, 1, 2, 3]]), "attention_mask": attention})
    assert torch.equal(model.seen["attention_mask"], attention[:, :-1])


def test_real_model_loss_equals_manual_cross_entropy() -> None:
    params = tiny_lm_params()
    model = create_model(params)
    ids = torch.randint(0, 64, (2, 9))
    loss_mask = torch.ones_like(ids, dtype=torch.bool)
    loss_mask[1, 6:] = False
    out = get_batch_handler(params).compute_loss(model, {"input_ids": ids, "loss_mask": loss_mask})
    logits = model(input_ids=ids[:, :-1])
    per_token = nn.functional.cross_entropy(logits.reshape(-1, 64), ids[:, 1:].reshape(-1), reduction="none")
    keep = loss_mask[:, 1:].reshape(-1)
    torch.testing.assert_close(out.loss, per_token[keep].mean())
    assert out.num_tokens == 8 + 5


def test_vlm_handler_ignores_image_placeholders_even_if_mask_says_otherwise() -> None:
    params = tiny_vlm_params()
    model = create_model(params)
    ids = torch.randint(0, 63, (2, 10))
    ids[:, 1:5] = 63
    batch = {
        "input_ids": ids,
        "loss_mask": torch.ones_like(ids, dtype=torch.bool),
        "images": torch.randn(2, 1, 3, 16, 16),
    }
    out = get_batch_handler(params).compute_loss(model, batch)
    # Targets are ids[1:]: 4 placeholders per row are dropped, 5 text tokens remain per row.
    assert out.num_tokens == 2 * 5
    logits = model(input_ids=ids[:, :-1], images=batch["images"])
    targets = ids[:, 1:]
    keep = targets != 63
    manual = nn.functional.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(out.loss, manual)


def test_vlm_handler_requires_images() -> None:
    params = tiny_vlm_params()
    with pytest.raises(KeyError, match="images"):
        get_batch_handler(params).compute_loss(create_model(params), {"input_ids": torch.zeros(1, 4, dtype=torch.long)})


def test_batch_without_input_ids_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="input_ids"):
        get_batch_handler(tiny_lm_params()).compute_loss(FixedLogits(torch.zeros(1, 1, 2)), {"tokens": 1})
