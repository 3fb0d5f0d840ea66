"""Bad configuration ends in one message naming the field or file and what is valid."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from vla_foundry.params import ConfigError, HyperParams, parse_train_params

BASE = ["--model.type", "transformer", "--data.type", "text"]


def test_unknown_cli_key_names_key_source_and_closest_names():
    with pytest.raises(ConfigError) as err:
        parse_train_params([*BASE, "--hparams.precison", "fp32"])
    message = str(err.value)
    assert "hparams.precison" in message
    assert "command line" in message
    assert "precision" in message


def test_unknown_yaml_key_names_the_file(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("model:\n  type: transformer\n  hiden_dim: 64\ndata:\n  type: text\n")
    with pytest.raises(ConfigError) as err:
        parse_train_params(["--config_path", str(job)])
    assert "model.hiden_dim" in str(err.value)
    assert str(job) in str(err.value)
    assert "hidden_dim" in str(err.value)


def test_unknown_key_in_an_included_file_names_that_file(tmp_path):
    (tmp_path / "llm.yaml").write_text("type: transformer\nn_layerz: 3\n")
    job = tmp_path / "job.yaml"
    job.write_text("model: !include llm.yaml\ndata:\n  type: text\n")
    with pytest.raises(ConfigError) as err:
        parse_train_params(["--config_path", str(job)])
    assert str(tmp_path / "llm.yaml") in str(err.value)
    assert "n_layers" in str(err.value)


def test_wrong_type_names_the_field():
    with pytest.raises(ConfigError, match=r"hparams\.lr='abc'.*float"):
        parse_train_params([*BASE, "--hparams.lr", "abc"])


def test_bad_enum_value_lists_the_choices():
    with pytest.raises(ConfigError, match="hparams.precision='bf32'.*fp32, amp_bf16, pure_bf16, fp16"):
        parse_train_params([*BASE, "--hparams.precision", "bf32"])


def test_missing_model_type_lists_registered_types():
    with pytest.raises(ConfigError, match=r"model\.type is required.*transformer.*vlm"):
        parse_train_params(["--model.hidden_dim", "64", "--data.type", "text"])


def test_missing_data_block_is_an_error():
    with pytest.raises(ConfigError, match=r"^data is required"):
        parse_train_params(["--model.type", "transformer"])


def test_unknown_model_type_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"'transformr'.*closest: transformer"):
        parse_train_params(["--model.type", "transformr", "--data.type", "text"])


def test_non_divisible_batch_sizes_are_an_error():
    with pytest.raises(ConfigError, match="global_batch_size=10 is not divisible"):
        parse_train_params([*BASE, "--hparams.per_gpu_batch_size", "4", "--hparams.global_batch_size", "10"])


def test_total_samples_not_divisible_into_checkpoints_is_an_error():
    with pytest.raises(ConfigError, match="total_train_samples=100 is not divisible into num_checkpoints=3"):
        parse_train_params([*BASE, "--total_train_samples", "100", "--num_checkpoints", "3"])


def test_checkpoint_window_must_hold_whole_global_batches():
    with pytest.raises(ConfigError, match="not a whole number of global batches of 8"):
        parse_train_params([*BASE, "--total_train_samples", "20", "--hparams.per_gpu_batch_size", "8"])


def test_rank_and_world_size_cannot_be_typed():
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        parse_train_params([*BASE, "--distributed.world_size", "4"])


def test_mismatched_dataset_list_lengths_are_an_error():
    with pytest.raises(ConfigError, match="same length; got 2, 1 and 2"):
        parse_train_params(
            [
                *BASE,
                "--data.dataset_manifest",
                "[a, b]",
                "--data.dataset_weighting",
                "[1.0]",
                "--data.dataset_modality",
                "[text, text]",
            ]
        )


def test_mixing_fields_of_two_union_kinds_is_an_error():
    with pytest.raises(ConfigError, match="mixes fields of different kinds"):
        parse_train_params(
            [
                "--model.type",
                "vlm",
                "--model.vit.hf_pretrained",
                "x",
                "--model.vit.hidden_dim",
                "8",
                "--data.type",
                "text",
            ]
        )


def test_frozen_params_reject_assignment():
    hparams = HyperParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        hparams.lr = 1.0  # type: ignore[misc]


def test_cli_reports_config_errors_in_one_line_without_traceback():
    result = subprocess.run(
        [sys.executable, "vla_foundry/main.py", *BASE, "--hparams.precision", "bf32"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: hparams.precision='bf32' (on the command line) is not valid; choose one of: "
        "fp32, amp_bf16, pure_bf16, fp16"
    ]


def test_debug_flag_shows_the_traceback():
    result = subprocess.run(
        [sys.executable, "vla_foundry/main.py", *BASE, "--hparams.precision", "bf32", "--debug"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_robotics_run_without_a_dataset_names_the_missing_dataset_first():
    with pytest.raises(ConfigError) as err:
        parse_train_params(["--model.type", "diffusion_policy", "--data.type", "robotics"])
    assert str(err.value).startswith("data.dataset_manifest is empty: name at least one robotics dataset")


def test_robotics_run_with_a_dataset_but_no_action_fields_names_the_action_fields():
    with pytest.raises(ConfigError, match=r"^data.action_fields must name at least one low-dim field"):
        parse_train_params(
            ["--model.type", "diffusion_policy", "--data.type", "robotics", "--data.dataset_manifest", "[ds]",
             "--data.dataset_modality", "[robotics]", "--data.dataset_weighting", "[1.0]"]
        )  # fmt: skip


@pytest.mark.parametrize(("flag", "traceback"), [(["--debug", "True"], True), (["--debug=true"], True),
                                                 (["--debug", "False"], False)])  # fmt: skip
def test_debug_takes_a_value_like_every_bool_flag(flag, traceback):
    result = subprocess.run(
        [sys.executable, "vla_foundry/main.py", *BASE, "--hparams.precision", "bf32", *flag],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode != 0
    assert ("Traceback" in result.stderr) is traceback
    if not traceback:
        assert len(result.stderr.strip().splitlines()) == 1
