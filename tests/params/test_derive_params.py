"""Shared attributes flow from their owner; derived batch and budget values are computed once."""

from __future__ import annotations

import pytest

from tests.conftest import PRESETS
from vla_foundry.params import ConfigError, parse_train_params
from vla_foundry.params.train_experiment_params import derive_params

BASE = ["--model.type", "transformer", "--data.type", "text"]


def test_seed_is_shared_from_hparams_to_data():
    params = parse_train_params([*BASE, "--hparams.seed", "7"])
    assert params.data.seed == 7


def test_contradicting_a_shared_value_is_an_error():
    with pytest.raises(ConfigError, match=r"data\.seed=3 contradicts hparams\.seed=7"):
        parse_train_params([*BASE, "--hparams.seed", "7", "--data.seed", "3"])


def test_repeating_the_owner_value_is_accepted():
    params = parse_train_params([*BASE, "--hparams.seed", "7", "--data.seed", "7"])
    assert params.data.seed == 7


def test_world_size_is_shared_from_the_torchrun_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    params = parse_train_params([*BASE, "--hparams.per_gpu_batch_size", "2", "--hparams.global_batch_size", "32"])
    assert params.distributed.world_size == 4
    assert params.distributed.rank == 2
    assert params.hparams.world_size == 4
    assert params.hparams.accumulation_steps == 4  # 32 / (2 x 4)


def test_accumulation_defaults_to_one_without_a_global_batch_size():
    params = parse_train_params([*BASE, "--hparams.per_gpu_batch_size", "6"])
    assert params.hparams.accumulation_steps == 1
    assert params.global_batch_size == 6


def test_window_and_total_steps_are_derived():
    params = parse_train_params(
        [
            *BASE,
            "--total_train_samples",
            "1200",
            "--num_checkpoints",
            "3",
            "--hparams.per_gpu_batch_size",
            "4",
            "--hparams.global_batch_size",
            "40",
        ]
    )
    assert params.samples_per_checkpoint == 400
    assert params.steps_per_checkpoint == 10
    assert params.total_steps == 30
    assert params.hparams.accumulation_steps == 10


def test_num_epochs_budget_uses_the_dataset_size():
    from vla_foundry.params import derive_params, parse_params
    from vla_foundry.params.train_experiment_params import TrainExperimentParams

    params = parse_params(TrainExperimentParams, [*BASE, "--num_epochs", "3", "--hparams.per_gpu_batch_size", "10"])
    params = derive_params(params, dataset_num_samples=200)
    assert params.total_train_samples == 600
    assert params.samples_per_checkpoint == 600


def test_vlm_image_tokens_and_size_are_shared_to_image_caption_data():
    params = parse_train_params(["--model", f"include {PRESETS}/models/vlm_tiny.yaml", "--data.type", "image_caption"])
    # 32px / 8px patches = 4x4 = 16 patches; pixel shuffle 2 -> 4 tokens.
    assert params.model.img_num_tokens == 4
    assert params.data.img_num_tokens == 4
    assert params.data.image_size == 32


def test_contradicting_image_token_count_is_an_error():
    with pytest.raises(ConfigError, match="data.img_num_tokens=256 contradicts model.img_num_tokens=4"):
        parse_train_params(
            [
                "--model",
                f"include {PRESETS}/models/vlm_tiny.yaml",
                "--data.type",
                "image_caption",
                "--data.img_num_tokens",
                "256",
            ]
        )


def test_robotics_dims_flow_from_data_to_the_policy():
    import dataclasses

    from vla_foundry.params import derive_params, parse_params
    from vla_foundry.params.train_experiment_params import TrainExperimentParams

    params = parse_params(
        TrainExperimentParams,
        ["--model.type", "diffusion_policy", "--data.type", "robotics", "--data.action_fields", "[action]"],
    )
    # Dims are derived from dataset stats by the data side (the resolve step) before the shared pass.
    params = dataclasses.replace(params, data=dataclasses.replace(params.data, action_dim=7, proprioception_dim=9))
    shared = derive_params(params)
    assert (shared.model.action_dim, shared.model.proprioception_dim) == (7, 9)
    assert params.model.action_dim is None  # the input params are left as they were


def test_the_shared_pass_returns_new_params_and_leaves_its_input_alone():
    from vla_foundry.params import derive_params, parse_params
    from vla_foundry.params.train_experiment_params import TrainExperimentParams

    params = parse_params(TrainExperimentParams, [*BASE, "--total_train_samples", "64", "--hparams.seed", "5"])
    derived = derive_params(params)
    assert (derived.data.seed, derived.total_steps, derived.hparams.accumulation_steps) == (5, 8, 1)
    assert (params.data.seed, params.total_steps, params.hparams.accumulation_steps) == (None, None, None)


def test_distributed_params_read_the_environment_once(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    params = parse_train_params([*BASE, "--hparams.global_batch_size", "16"])
    monkeypatch.setenv("WORLD_SIZE", "8")  # a later change of the environment does not change the params
    assert (params.distributed.world_size, params.distributed.rank) == (2, 1)


def test_a_global_batch_that_is_not_stated_cannot_be_kept_on_several_processes(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="global_batch_size is unset and 2 processes run.*global_batch_size 16"):
        parse_train_params([*BASE, "--hparams.per_gpu_batch_size", "8"])


def test_a_global_batch_the_world_cannot_divide_suggests_a_per_gpu_batch(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match=r"global_batch_size=24 is not divisible by .* 5 x 4 = 20; e.g. .*size 3"):
        parse_train_params([*BASE, "--hparams.per_gpu_batch_size", "5", "--hparams.global_batch_size", "24"])


def test_a_global_batch_smaller_than_one_micro_batch_per_process_lowers_the_micro_batch(monkeypatch, capsys):
    # The quickstart's global batch of 16 (per-GPU 16) on 8 GPUs: 2 samples per process, no accumulation.
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "0")
    params = parse_train_params([*BASE, "--hparams.per_gpu_batch_size", "16", "--hparams.global_batch_size", "16"])
    assert (params.hparams.per_gpu_batch_size, params.hparams.accumulation_steps) == (2, 1)
    assert params.global_batch_size == 16
    # One plain line (no warning source line under it), printed once however often the values are derived again.
    derive_params(params)
    assert capsys.readouterr().err.splitlines() == [
        "warning: hparams.per_gpu_batch_size=16 lowered to 2 so that 8 processes keep hparams.global_batch_size=16 "
        "(no accumulation)"
    ]


def test_only_rank_zero_says_the_micro_batch_was_lowered(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "3")
    parse_train_params([*BASE, "--hparams.per_gpu_batch_size", "16", "--hparams.global_batch_size", "16"])
    assert "lowered" not in capsys.readouterr().err


def test_a_global_batch_the_processes_cannot_share_is_an_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match=r"global_batch_size=18 is not divisible by .* x 4"):
        parse_train_params([*BASE, "--hparams.per_gpu_batch_size", "8", "--hparams.global_batch_size", "18"])
