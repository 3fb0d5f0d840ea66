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


def test_language_model_types_have_batch_handlers() -> None:
    for params in (tiny_lm_params(), tiny_vlm_params()):
        assert hasattr(get_batch_handler(params), "compute_loss")


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
