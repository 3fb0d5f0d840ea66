"""A policy normalises camera images with the statistics its backbone was trained with, never a silent default."""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch
import yaml

from tests.conftest import PRESETS
from tests.models.diffusion_policy.conftest import IMG, TINY_VLM, policy_params
from vla_foundry.params import ConfigError, ViTHFParams
from vla_foundry.params.parsing import save_params

TRAINED_MEAN = (0.1, 0.2, 0.3)
TRAINED_STD = (0.6, 0.7, 0.8)


def write_vlm_run(run_dir, model_params, data_block: dict | None = None) -> str:
    os.makedirs(run_dir, exist_ok=True)
    save_params(model_params, os.path.join(run_dir, "config_model.yaml"))
    if data_block is not None:
        with open(os.path.join(run_dir, "config.yaml"), "w") as f:
            yaml.safe_dump({"data": data_block}, f)
    return str(run_dir)


def built_stats(params) -> tuple[list[float], list[float]]:
    from vla_foundry.models import create_model

    backbone = create_model(params, load_pretrained=False).backbone
    return backbone.image_mean.flatten().tolist(), backbone.image_std.flatten().tolist()


def test_vlm_training_records_the_data_normalisation_in_the_model_params():
    from vla_foundry.params import parse_train_params

    model = ["--model", f"include {PRESETS}/models/vlm_tiny.yaml"]
    stats = ["--data.image_mean", "[0.1, 0.2, 0.3]", "--data.image_std", "[0.6, 0.7, 0.8]"]
    params = parse_train_params([*model, "--data.type", "image_caption", *stats])
    assert (params.model.image_mean, params.model.image_std) == (TRAINED_MEAN, TRAINED_STD)


def test_a_policy_on_a_vlm_run_normalises_with_the_runs_statistics(tmp_path):
    vlm = dataclasses.replace(TINY_VLM, image_mean=TRAINED_MEAN, image_std=TRAINED_STD)
    run = write_vlm_run(tmp_path / "vlm", vlm)
    params = policy_params(backbone_run=run).resolve_files()
    mean, std = built_stats(params)
    assert mean == pytest.approx(TRAINED_MEAN) and std == pytest.approx(TRAINED_STD)


def test_the_command_line_hand_off_carries_the_runs_statistics(tmp_path):
    from vla_foundry.params import parse_train_params

    vlm = dataclasses.replace(TINY_VLM, image_mean=TRAINED_MEAN, image_std=TRAINED_STD)
    run = write_vlm_run(tmp_path / "vlm", vlm)
    flags = ["--model.type", "diffusion_policy", "--model.backbone_run", run, "--data.type", "robotics"]
    params = parse_train_params([*flags, "--data.action_fields", "[action]"])
    assert params.model.resolve_files().backbone == vlm


def test_an_older_run_without_recorded_statistics_uses_its_config_data_block(tmp_path):
    run = write_vlm_run(tmp_path / "vlm", TINY_VLM, {"image_mean": list(TRAINED_MEAN), "image_std": list(TRAINED_STD)})
    params = policy_params(backbone_run=run).resolve_files()
    assert (params.backbone.image_mean, params.backbone.image_std) == (TRAINED_MEAN, TRAINED_STD)
    mean, _ = built_stats(params)
    assert mean == pytest.approx(TRAINED_MEAN)


def test_a_run_recording_no_statistics_warns_naming_it(tmp_path):
    run = write_vlm_run(tmp_path / "vlm_without_stats", TINY_VLM)
    with pytest.warns(UserWarning, match="vlm_without_stats.*image mean / std"):
        params = policy_params(backbone_run=run).resolve_files()
    with pytest.warns(UserWarning, match="vlm_without_stats.*mean \\(0.5, 0.5, 0.5\\)"):
        built_stats(params)


def test_a_transformers_vision_tower_uses_its_preprocessor_config(tmp_path):
    from transformers import SiglipImageProcessor

    from tests.hf_models import save_siglip_vision

    tower = save_siglip_vision(tmp_path / "siglip")
    SiglipImageProcessor(image_mean=list(TRAINED_MEAN), image_std=list(TRAINED_STD)).save_pretrained(tower)
    params = policy_params(ViTHFParams(hf_pretrained=str(tower), img_size=IMG, patch_size=8))
    mean, std = built_stats(params)
    assert mean == pytest.approx(TRAINED_MEAN) and std == pytest.approx(TRAINED_STD)


def test_a_transformers_vision_tower_without_its_normalisation_is_an_error(tmp_path):
    from tests.hf_models import save_siglip_vision

    tower = save_siglip_vision(tmp_path / "siglip_bare")
    params = policy_params(ViTHFParams(hf_pretrained=str(tower), img_size=IMG, patch_size=8))
    with pytest.raises(ConfigError, match="siglip_bare has no preprocessor_config.json: its image mean / std"):
        built_stats(params)


def test_images_are_normalised_with_the_carried_statistics():
    from vla_foundry.models import create_model

    vlm = dataclasses.replace(TINY_VLM, image_mean=TRAINED_MEAN, image_std=TRAINED_STD)
    backbone = create_model(policy_params(vlm), load_pretrained=False).backbone
    images = torch.rand(2, 1, 3, IMG, IMG)
    normalised, _ = backbone.images({"images": images})
    expected = (images[:, 0, 1] - TRAINED_MEAN[1]) / TRAINED_STD[1]  # green channel, computed here
    torch.testing.assert_close(normalised[:, 0, 1], expected)
