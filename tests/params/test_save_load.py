"""Saving params to YAML and loading them back, locally and on S3; --resolve_configs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.conftest import PRESETS, REPO_ROOT
from vla_foundry.params import (
    ConfigError,
    ModelParams,
    TrainExperimentParams,
    VLMParams,
    load_params_from_yaml,
    parse_train_params,
    save_params,
)


@pytest.fixture
def vlm_params():
    return parse_train_params(
        [
            "--model.type",
            "vlm",
            "--model.vit.hf_pretrained",
            "vit_tiny_patch16_224",
            "--model.vit.img_size",
            "32",
            "--model.transformer",
            f"include {PRESETS}/models/transformer_tiny.yaml",
            "--data.type",
            "image_caption",
            "--data.dataset_manifest",
            "[s3://nowhere/ds]",
            "--data.dataset_weighting",
            "[1.0]",
            "--data.dataset_modality",
            "[image_caption]",
            "--total_train_samples",
            "64",
            "--hparams.per_gpu_batch_size",
            "4",
        ]
    )


def test_experiment_round_trip_is_lossless(tmp_path, vlm_params):
    save_params(vlm_params, tmp_path / "config.yaml")
    assert load_params_from_yaml(TrainExperimentParams, tmp_path / "config.yaml") == vlm_params


def test_model_round_trip_is_lossless(tmp_path, vlm_params):
    save_params(vlm_params.model, tmp_path / "config_model.yaml")
    loaded = load_params_from_yaml(ModelParams, tmp_path / "config_model.yaml")
    assert isinstance(loaded, VLMParams)
    assert loaded == vlm_params.model


def test_model_params_can_be_read_from_a_whole_experiment_file(tmp_path, vlm_params):
    save_params(vlm_params, tmp_path / "config.yaml")
    assert load_params_from_yaml(ModelParams, tmp_path / "config.yaml") == vlm_params.model


def test_round_trip_through_s3(s3_bucket, vlm_params):
    url = f"{s3_bucket}/runs/r1/config_model.yaml"
    save_params(vlm_params.model, url)
    assert load_params_from_yaml(ModelParams, url) == vlm_params.model


def test_removed_key_in_an_old_saved_config_is_dropped_with_a_warning(tmp_path, vlm_params):
    save_params(vlm_params.model, tmp_path / "config_model.yaml")
    data = yaml.safe_load((tmp_path / "config_model.yaml").read_text())
    data["transformer"]["old_removed_option"] = 3
    (tmp_path / "config_model.yaml").write_text(yaml.safe_dump(data))
    with pytest.warns(UserWarning, match="old_removed_option"):
        loaded = load_params_from_yaml(ModelParams, tmp_path / "config_model.yaml")
    assert loaded == vlm_params.model


def test_strict_loading_rejects_a_removed_key(tmp_path, vlm_params):
    save_params(vlm_params.model, tmp_path / "config_model.yaml")
    data = yaml.safe_load((tmp_path / "config_model.yaml").read_text())
    data["old_removed_option"] = 3
    (tmp_path / "config_model.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="old_removed_option"):
        load_params_from_yaml(ModelParams, tmp_path / "config_model.yaml", strict=True)


def test_loading_a_missing_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match="nothing_here.yaml"):
        load_params_from_yaml(ModelParams, tmp_path / "nothing_here.yaml")


def run_main(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "vla_foundry/main.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_resolve_configs_prints_the_resolved_yaml_and_writes_it(tmp_path):
    result = run_main(
        "--config_path",
        f"{PRESETS}/training_jobs/quickstart.yaml",
        "--total_train_samples",
        "256",
        "--hparams.per_gpu_batch_size",
        "8",
        "--resolve_configs",
        "True",
        "--resolve_configs_path",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["model"]["hidden_dim"] == 64
    assert printed["samples_per_checkpoint"] == 128  # 256 samples / 2 checkpoints (quickstart.yaml)
    assert printed["data"]["seed"] == printed["hparams"]["seed"]
    written = yaml.safe_load((tmp_path / "resolved_config.yaml").read_text())
    assert written == printed


def test_help_lists_fields_and_registered_types():
    result = run_main("--help")
    assert result.returncode == 0
    assert "--hparams.lr" in result.stdout
    assert "--model.type: diffusion_policy, transformer" in result.stdout
