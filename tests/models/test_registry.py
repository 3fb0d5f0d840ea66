"""The model registry: every type registered, clear errors, FSDP block declarations, CLI hand-off flag."""

from __future__ import annotations

import pytest
import torch

from tests.models.conftest import tiny_lm_params, tiny_vlm_params
from vla_foundry.models import create_model, fsdp_block_types, get_batch_handler, list_registered_models
from vla_foundry.models.transformer import TransformerBlock
from vla_foundry.models.vit import ViTBlock
from vla_foundry.params import ConfigError, ModelParams, TrainExperimentParams, parse_params


def test_every_model_type_of_the_design_is_registered() -> None:
    assert {"transformer", "transformer_hf", "vit", "vit_hf", "vlm", "vlm_hf"} <= set(list_registered_models())


def test_unknown_type_lists_registered_types() -> None:
    class Unregistered:
        type = "mamba"
        freeze = False

    with pytest.raises(ConfigError, match=r"'mamba' has no registered model; registered: .*transformer.*vlm"):
        create_model(Unregistered())


def test_unknown_type_on_the_command_line_lists_registered_types() -> None:
    with pytest.raises(ConfigError, match=r"model.type='transfomer'.*closest: transformer"):
        parse_params(TrainExperimentParams, ["--model.type", "transfomer"])


def _masked_next_token_ce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean of -log softmax(logits)[target] over the masked positions, from the definition."""
    log_probs = torch.log_softmax(logits.double(), dim=-1).gather(-1, targets[..., None])[..., 0]  # (B, T)
    return float(-(log_probs * mask).sum() / mask.sum())


def test_the_language_model_handler_gives_the_masked_next_token_cross_entropy() -> None:
    torch.manual_seed(0)
    model = create_model(tiny_lm_params())
    ids = torch.randint(0, 62, (2, 9))
    loss_mask = torch.ones_like(ids, dtype=torch.bool)
    loss_mask[1, 5:] = False  # padding: not a target
    out = get_batch_handler(tiny_lm_params()).compute_loss(model, {"input_ids": ids, "loss_mask": loss_mask})
    with torch.no_grad():
        logits = model(input_ids=ids[:, :-1])  # (B, T, V): position t predicts token t + 1
    assert out.num_tokens == 8 + 4
    assert float(out.loss.detach()) == pytest.approx(
        _masked_next_token_ce(logits, ids[:, 1:], loss_mask[:, 1:]), rel=1e-5
    )


def test_the_vlm_handler_never_scores_image_placeholders() -> None:
    torch.manual_seed(0)
    params = tiny_vlm_params()
    model = create_model(params)
    ids = torch.randint(0, 62, (1, 10))
    ids[0, 1:5] = params.image_token_id  # one image: 4 placeholder tokens
    images = torch.rand(1, 1, 3, 16, 16)
    out = get_batch_handler(params).compute_loss(model, {"input_ids": ids, "images": images})
    with torch.no_grad():
        logits = model(input_ids=ids[:, :-1], images=images)
    targets = ids[:, 1:]
    assert out.num_tokens == 9 - 4  # 9 targets (tokens 1..9), 4 of them placeholders
    expected = _masked_next_token_ce(logits, targets, targets != params.image_token_id)
    assert float(out.loss.detach()) == pytest.approx(expected, rel=1e-5)


def test_native_blocks_are_the_fsdp_units() -> None:
    assert fsdp_block_types(create_model(tiny_lm_params())) == (TransformerBlock,)
    assert set(fsdp_block_types(create_model(tiny_vlm_params()))) == {TransformerBlock, ViTBlock}


def test_model_freeze_flag_freezes_a_transformer() -> None:
    from vla_foundry.params import TransformerParams

    params = TransformerParams(**{**tiny_lm_params().__dict__, "freeze": True})
    assert not any(p.requires_grad for p in create_model(params).parameters())


def test_vlm_transformer_resume_flag_parses_from_the_cli(tmp_path) -> None:
    params = parse_params(
        ModelParams,
        [
            "--type",
            "vlm",
            "--transformer.hidden_dim",
            "32",
            "--transformer.resume_from_checkpoint",
            str(tmp_path / "llm_run"),
            "--image_token_id",
            "300",
        ],
    )
    assert params.transformer.resume_from_checkpoint == str(tmp_path / "llm_run")
    assert params.transformer.hidden_dim == 32
    assert params.image_token_id == 300


def test_native_types_build_and_run_from_defaults() -> None:
    """Shapes for every native registered type built from its params defaults (tiny overrides for speed)."""
    lm = create_model(tiny_lm_params())
    assert lm(input_ids=torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, 64)
    vit = create_model(tiny_vlm_params().vit)
    assert vit(torch.zeros(1, 3, 16, 16)).shape == (1, 16, 16)
