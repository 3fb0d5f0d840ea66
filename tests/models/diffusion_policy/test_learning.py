"""Learning: a tiny VLA fits a task where the action chunk is a deterministic function of proprioception and the
instruction; its open-loop MSE (sampled chunk vs truth, normalised units) drops below a stated threshold."""

from __future__ import annotations

import pytest
import torch

from tests.models.diffusion_policy.conftest import (
    ACTION_DIM,
    IMG,
    N_IMAGES,
    PAST,
    PROPRIO_DIM,
    TINY_VLM,
    WINDOW,
    policy_params,
)
from vla_foundry.data.processors.tokenizers import ByteTokenizer
from vla_foundry.models import create_model, get_batch_handler
from vla_foundry.optim import build_param_groups
from vla_foundry.params import HyperParams

# The targets have variance ~0.9 per element; predicting their mean would give an MSE of ~0.9.
MSE_THRESHOLD = 0.05
STEPS = 400
INSTRUCTIONS = ("move left", "move right")


def synthetic_task(batch_size: int, g: torch.Generator) -> dict:
    """Action row t = [s * p0, p1 + 0.2 * s * t, s] with s = -1 for "left", +1 for "right", p the anchor's
    proprioception: neither input alone determines the chunk."""
    tok = ByteTokenizer()
    side = torch.randint(0, 2, (batch_size,), generator=g)
    s = (2 * side - 1).float()  # (B,)
    proprio = torch.randn(batch_size, PAST + 1, PROPRIO_DIM, generator=g).clamp(-2, 2)
    p = proprio[:, -1]  # (B, 2) the anchor row
    t = torch.arange(WINDOW, dtype=torch.float32) - PAST  # row offsets from the anchor
    actions = torch.stack(
        [
            (s * p[:, 0])[:, None].expand(-1, WINDOW),
            p[:, 1:2] + 0.2 * s[:, None] * t[None],
            s[:, None].expand(-1, WINDOW),
        ],
        dim=-1,
    )  # (B, T, 3)
    L = 12
    ids = torch.full((batch_size, L), tok.pad_token_id)
    mask = torch.zeros(batch_size, L, dtype=torch.bool)
    for i, k in enumerate(side.tolist()):
        enc = tok.encode(INSTRUCTIONS[k])
        ids[i, : len(enc)] = torch.tensor(enc)
        mask[i, : len(enc)] = True
    past_mask = torch.zeros(batch_size, WINDOW, dtype=torch.bool)
    past_mask[:, :PAST] = True
    return {
        "images": torch.rand(batch_size, N_IMAGES, 3, IMG, IMG, generator=g),
        "image_mask": torch.ones(batch_size, N_IMAGES, dtype=torch.bool),
        "input_ids": ids,
        "attention_mask": mask,
        "proprioception": proprio,
        "actions": actions,
        "past_mask": past_mask,
        "future_mask": ~past_mask,
    }


@pytest.mark.parametrize(
    "objective",
    [
        {"objective": "flow_matching", "num_flow_steps": 10},
        # DDPM predicting the clean chunk, sampled with 10 deterministic DDIM steps.
        {"objective": "ddpm", "prediction_type": "sample", "num_train_timesteps": 100, "clip_sample": 3.0},
    ],
    ids=["flow_matching", "ddpm_ddim"],
)
def test_tiny_vla_open_loop_mse_drops_below_threshold(objective):
    torch.manual_seed(0)
    params = policy_params(TINY_VLM, num_inference_steps=10, num_action_head_repeats=2, **objective)
    assert ACTION_DIM == 3
    model = create_model(params)
    handler = get_batch_handler(params)
    groups = build_param_groups(model, HyperParams(lr=2e-3, weight_decay=0.0), model.lr_multipliers())
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        loss = handler.compute_loss(model, synthetic_task(32, g)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.eval()
    test = synthetic_task(64, torch.Generator().manual_seed(123))
    known = test["actions"]  # only the past rows are read (as a robot would pass its executed actions)
    chunk = model.generate_actions(test, known_actions=known, generator=torch.Generator().manual_seed(0))
    mse = float((chunk[:, PAST:] - test["actions"][:, PAST:]).square().mean())
    baseline = float((test["actions"][:, PAST:] - test["actions"][:, PAST:].mean(dim=(0, 1))).square().mean())
    assert baseline > 0.5
    assert mse < MSE_THRESHOLD, f"open-loop MSE {mse:.4f} (predicting the mean: {baseline:.3f})"
