"""Config composition: YAML files, includes, CLI overrides and their precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PRESETS
from vla_foundry.params import (
    ConfigError,
    TransformerHFParams,
    TransformerParams,
    ViTHFParams,
    ViTParams,
    VLMParams,
    parse_train_params,
)

BASE = ["--data.type", "text"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_apply_when_nothing_is_given():
    params = parse_train_params(["--model.type", "transformer", *BASE])
    assert params.model == TransformerParams()
    assert params.hparams.lr == pytest.approx(3e-4)


def test_config_path_loads_a_job_file(tmp_path):
    job = write(tmp_path / "job.yaml", "model:\n  type: transformer\n  hidden_dim: 96\ndata:\n  type: text\n")
    params = parse_train_params(["--config_path", str(job)])
    assert params.model.hidden_dim == 96


def test_cli_include_loads_a_whole_block():
    params = parse_train_params(["--model", f"include {PRESETS}/models/transformer_tiny.yaml", *BASE])
    assert isinstance(params.model, TransformerParams)
    assert (params.model.hidden_dim, params.model.n_layers, params.model.n_kv_heads) == (64, 2, 2)


def test_cli_override_of_one_field_keeps_the_rest_of_an_included_block():
    params = parse_train_params(
        ["--model", f"include {PRESETS}/models/transformer_tiny.yaml", "--model.n_layers", "5", *BASE]
    )
    assert params.model.n_layers == 5
    assert params.model.hidden_dim == 64  # from the preset
    assert params.model.vocab_size == 261  # from the preset


def test_cli_override_of_a_nested_field_keeps_the_rest_of_a_nested_include():
    params = parse_train_params(
        ["--model", f"include {PRESETS}/models/vlm_tiny.yaml", "--model.transformer.n_layers", "3", *BASE]
    )
    assert params.model.transformer.n_layers == 3
    assert params.model.transformer.hidden_dim == 64
    assert params.model.vit.img_size == 32


def test_yaml_include_tag_is_relative_to_the_including_file(tmp_path):
    write(tmp_path / "presets" / "llm.yaml", "hidden_dim: 80\nn_heads: 4\n")
    job = write(tmp_path / "jobs" / "job.yaml", "model:\n  type: vlm\n  transformer: !include ../presets/llm.yaml\n")
    params = parse_train_params(["--config_path", str(job), *BASE])
    assert params.model.transformer.hidden_dim == 80


def test_merge_include_outer_keys_win_and_nested_blocks_merge_key_by_key(tmp_path):
    write(tmp_path / "base.yaml", "type: vlm\npixel_shuffle_factor: 2\ntransformer:\n  hidden_dim: 80\n  n_layers: 7\n")
    job = write(
        tmp_path / "job.yaml",
        "model:\n  <<: !include base.yaml\n  pixel_shuffle_factor: 7\n  transformer:\n    n_layers: 3\n",
    )
    params = parse_train_params(["--config_path", str(job), *BASE])
    assert params.model.pixel_shuffle_factor == 7  # outer file wins
    assert params.model.transformer.n_layers == 3  # outer file wins inside the block
    assert params.model.transformer.hidden_dim == 80  # rest of the included block kept


def test_precedence_cli_over_yaml_over_defaults(tmp_path):
    job = write(
        tmp_path / "job.yaml", "model:\n  type: transformer\n  n_layers: 6\n  hidden_dim: 96\ndata:\n  type: text\n"
    )
    params = parse_train_params(["--config_path", str(job), "--model.n_layers", "9"])
    assert params.model.n_layers == 9  # CLI
    assert params.model.hidden_dim == 96  # YAML
    assert params.model.rope_theta == 10000.0  # default


def test_equals_form_and_yaml_values_on_the_cli():
    params = parse_train_params(
        [
            "--model.type=transformer",
            "--data.type=text",
            "--data.dataset_manifest=[a, b]",
            "--data.dataset_weighting",
            "[0.25, 0.75]",
            "--data.dataset_modality",
            "[text, text]",
            "--total_train_samples",
            "14_000_000",
            "--num_checkpoints",
            "5",
            "--hparams.per_gpu_batch_size",
            "8",
            "--hparams.global_batch_size",
            "8",
        ]
    )
    assert params.data.dataset_manifest == ["a", "b"]
    assert params.data.dataset_weighting == [0.25, 0.75]
    assert params.total_train_samples == 14_000_000


def test_union_resolves_to_hf_variant_from_hf_pretrained():
    params = parse_train_params(
        ["--model.type", "vlm", "--model.vit.hf_pretrained", "vit_base_patch16_siglip_224", *BASE]
    )
    assert isinstance(params.model.vit, ViTHFParams)
    assert params.model.vit.hf_pretrained == "vit_base_patch16_siglip_224"


def test_union_resolves_to_native_variant_from_hidden_dim():
    params = parse_train_params(
        ["--model.type", "vlm", "--model.vit.hidden_dim", "1152", "--model.vit.n_heads", "16", *BASE]
    )
    assert isinstance(params.model.vit, ViTParams)
    assert params.model.vit.hidden_dim == 1152


def test_union_resolves_transformer_to_hf_variant():
    params = parse_train_params(["--model.type", "vlm", "--model.transformer.hf_pretrained", "/models/qwen", *BASE])
    assert isinstance(params.model.transformer, TransformerHFParams)
    assert isinstance(params.model, VLMParams)


def test_missing_include_file_names_the_file(tmp_path):
    job = write(tmp_path / "job.yaml", "model: !include nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml"):
        parse_train_params(["--config_path", str(job), *BASE])


def test_missing_cli_include_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="missing_preset.yaml"):
        parse_train_params(["--model", f"include {tmp_path}/missing_preset.yaml", *BASE])


def test_cli_include_of_a_block_replaces_that_block_of_the_yaml(tmp_path):
    hf_vit = write(tmp_path / "vit_hf.yaml", "hf_pretrained: vit_base_patch16_siglip_224\nimg_size: 224\n")
    job = write(tmp_path / "job.yaml", f"model: !include {PRESETS}/models/vlm_tiny.yaml\ndata:\n  type: text\n")
    params = parse_train_params(["--config_path", str(job), "--model.vit", f"include {hf_vit}"])
    assert isinstance(params.model.vit, ViTHFParams)
    assert params.model.transformer.hidden_dim == 64  # the rest of the job's model block is kept


def test_cli_include_of_a_sub_block_replaces_that_part_of_a_cli_included_block(tmp_path):
    hf_vit = write(tmp_path / "vit_hf.yaml", "hf_pretrained: vit_base_patch16_siglip_224\nimg_size: 224\n")
    params = parse_train_params(
        ["--model", f"include {PRESETS}/models/vlm_tiny.yaml", "--model.vit", f"include {hf_vit}", *BASE]
    )
    assert isinstance(params.model.vit, ViTHFParams)
    assert params.model.transformer.hidden_dim == 64
