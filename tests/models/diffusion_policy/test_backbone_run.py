"""The VLM -> VLA hand-off in the resolve step: the backbone comes from a run's config_model.yaml (never read while
parsing), clear errors otherwise."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from tests.models.diffusion_policy.conftest import TINY_LM, TINY_VLM, policy_params
from vla_foundry.params import ConfigError
from vla_foundry.params.parsing import save_params

ROBOTICS = ["--data.type", "robotics", "--data.action_fields", "[action]"]


def write_run(run_dir, model_params) -> str:
    os.makedirs(os.path.join(run_dir, "checkpoints"), exist_ok=True)
    save_params(model_params, os.path.join(run_dir, "config_model.yaml"))
    return str(run_dir)


def resolve_backbone(params):
    """The model part of the resolve step (the data part needs datasets these tests do not have)."""
    from vla_foundry.params import derive_params

    return derive_params(dataclasses.replace(params, model=params.model.resolve_files()), resolved=True)


def test_parsing_does_not_read_the_backbone_run():
    from vla_foundry.params import VLMParams, parse_train_params

    args = ["--model.type", "diffusion_policy", "--model.backbone_run", "s3://no-such-bucket/vlm_run", *ROBOTICS]
    params = parse_train_params(args)
    assert params.model.backbone == VLMParams()  # a placeholder until the resolve step
    assert params.data.image_size is None  # nothing shared from the placeholder


def test_backbone_is_taken_from_the_run_without_its_own_weight_sources(tmp_path):
    from vla_foundry.params import parse_train_params

    vlm = dataclasses.replace(TINY_VLM, transformer=dataclasses.replace(TINY_LM, resume_from_checkpoint="/llm/run"))
    run = write_run(tmp_path / "vlm", vlm)
    params = resolve_backbone(
        parse_train_params(["--model.type", "diffusion_policy", "--model.backbone_run", run, *ROBOTICS])
    )
    assert params.model.backbone.transformer.hidden_dim == TINY_LM.hidden_dim
    assert params.model.backbone.vit.img_size == TINY_VLM.vit.img_size
    assert params.model.backbone.transformer.resume_from_checkpoint is None  # the VLM run's weights supersede it
    assert params.data.image_size == TINY_VLM.vit.img_size  # shared on to the data side


def test_a_checkpoint_file_names_its_run(tmp_path):
    from vla_foundry.params import parse_train_params

    run = write_run(tmp_path / "vlm", TINY_VLM)
    ckpt = os.path.join(run, "checkpoints", "checkpoint_3.pt")
    params = resolve_backbone(
        parse_train_params(["--model.type", "diffusion_policy", "--model.backbone_run", ckpt, *ROBOTICS])
    )
    assert params.model.backbone == TINY_VLM


def test_an_explicit_backbone_of_another_architecture_is_a_contradiction(tmp_path):
    run = write_run(tmp_path / "vlm", TINY_VLM)
    params = policy_params(dataclasses.replace(TINY_VLM, pixel_shuffle_factor=1), backbone_run=run)
    with pytest.raises(
        ConfigError, match="model.backbone .vlm. differs from the backbone run's .*leave model.backbone"
    ):
        params.resolve_files()


def test_a_run_that_is_not_a_backbone_is_refused(tmp_path):
    # An LLM run is a backbone (policies without a camera); a policy run is not.
    run = write_run(tmp_path / "policy", policy_params(TINY_VLM))
    with pytest.raises(ConfigError, match="holds a 'diffusion_policy' model; a backbone run must hold one of: vlm,"):
        policy_params(TINY_VLM, backbone_run=run).resolve_files()


def test_a_missing_backbone_run_names_the_config_file(tmp_path):
    with pytest.raises(ConfigError, match=r"params file not found: .*nowhere/config_model.yaml"):
        policy_params(TINY_VLM, backbone_run=str(tmp_path / "nowhere")).resolve_files()


def test_building_for_training_loads_the_run_weights_and_inference_does_not(tmp_path):
    from vla_foundry.checkpoint import checkpoint_file, save_file
    from vla_foundry.models import create_model

    run = write_run(tmp_path / "vlm", TINY_VLM)
    torch.manual_seed(5)
    vlm = create_model(TINY_VLM)
    save_file(vlm.state_dict(), checkpoint_file(run, 1))
    save_file({"step": 1}, checkpoint_file(run, 1, "trainer_state"))  # complete: weights and trainer state
    params = policy_params(TINY_VLM, backbone_run=run)
    trained = create_model(params, load_pretrained=True)
    for name, value in vlm.state_dict().items():
        assert torch.equal(trained.backbone.model.state_dict()[name], value), name
    fresh = create_model(params, load_pretrained=False)
    weight = "language_model.tok_embeddings.weight"
    assert not torch.equal(fresh.backbone.model.state_dict()[weight], vlm.state_dict()[weight])
