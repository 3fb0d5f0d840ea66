"""Each native model can memorise one tiny batch: its loss goes to near zero in a few hundred CPU steps."""

from __future__ import annotations

import torch

from tests.models.conftest import tiny_lm_params, tiny_vlm_params
from vla_foundry.models import create_model, get_batch_handler


def train_on_one_batch(params, batch: dict, steps: int, lr: float) -> tuple[float, float]:
    model = create_model(params)
    handler = get_batch_handler(params)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    first = last = 0.0
    for step in range(steps):
        loss = handler.compute_loss(model, batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == 0:
            first = loss.item()
        last = loss.item()
    return first, last


def test_transformer_memorises_a_batch() -> None:
    params = tiny_lm_params(hidden_dim=64, n_heads=4, n_kv_heads=2)
    batch = {"input_ids": torch.randint(0, 64, (4, 17))}
    first, last = train_on_one_batch(params, batch, steps=150, lr=3e-3)
    assert first > 3.5  # ~ln 64 at initialisation
    assert last < 0.05


def test_vlm_memorises_captions_that_depend_on_the_image() -> None:
    """Two identical prompts with different images and different captions: only the image tells them apart."""
    params = tiny_vlm_params(transformer=tiny_lm_params(hidden_dim=64, n_heads=4, n_kv_heads=2))
    ids = torch.randint(0, 63, (2, 13))
    ids[:, 0] = 1
    ids[:, 1:5] = 63  # equal prompts (token 1 + placeholders); the random captions after them differ
    assert not torch.equal(ids[0, 5:], ids[1, 5:])
    loss_mask = torch.ones_like(ids, dtype=torch.bool)
    loss_mask[:, :5] = False
    batch = {"input_ids": ids, "loss_mask": loss_mask, "images": torch.randn(2, 1, 3, 16, 16)}
    first, last = train_on_one_batch(params, batch, steps=200, lr=3e-3)
    assert first > 3.5
    assert last < 0.05
