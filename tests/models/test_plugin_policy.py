"""A policy from a user's own package (tests/models/plugin_policy/toy_policies/act: one folder, plus one preset)
trains, saves, resumes, predicts through `Policy` and is served by the policy server, with no change to vla_foundry:
the recipe of docs/extending.md ("A new policy")."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest
import torch

from tests.conftest import PRESETS, REPO_ROOT
from tests.inference.conftest import observation

PLUGIN_ROOT = REPO_ROOT / "tests" / "models" / "plugin_policy"
TRAIN = [
    "--plugins", "toy_policies.act",
    "--model", f"include {PLUGIN_ROOT}/toy_act.yaml",
    "--data", f"include {PRESETS}/data/tiny_robotics_lerobot.yaml",
    "--hparams", f"include {PRESETS}/hparams/cpu_tiny.yaml",
    "--hparams.lr", "3e-3", "--hparams.warmup", "0", "--hparams.lr_scheduler", "constant",
    "--total_train_samples", "128", "--num_checkpoints", "2", "--log_every_n_steps", "1", "--wandb", "False",
]  # fmt: skip


def train(*args: str) -> None:
    from vla_foundry.main import main

    assert main([*TRAIN, *args]) == 0


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("plugin_policy"))
    sys.path.insert(0, str(PLUGIN_ROOT))
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)  # the data preset names examples/data relative to the repository root
    try:
        train("--save_path", root, "--name", "act")
    finally:
        os.chdir(cwd)
    return os.path.join(root, "act")


def losses(run_dir: str) -> list[float]:
    import json

    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        return [r["loss"] for r in map(json.loads, f) if "loss" in r]


def weights(run_dir: str, checkpoint: int) -> dict[str, torch.Tensor]:
    from vla_foundry.inference import load_run

    return load_run(run_dir, checkpoint, use_ema=False).model.state_dict()


def test_the_plugin_policy_trains_and_its_loss_falls(plugin_run):
    from vla_foundry.params import ModelParams, load_params_from_yaml

    params = load_params_from_yaml(ModelParams, os.path.join(plugin_run, "config_model.yaml"))
    assert (params.type, params.action_dim, params.proprioception_dim) == ("toy_act", 4, 4)  # shared from the data
    trace = losses(plugin_run)
    assert len(trace) == 16  # 128 samples in steps of 8
    assert np.mean(trace[-4:]) < 0.7 * np.mean(trace[:4])


def test_a_resumed_plugin_run_ends_with_the_same_weights(plugin_run, tmp_path):
    resumed = str(tmp_path / "act")
    shutil.copytree(plugin_run, resumed, ignore=shutil.ignore_patterns("checkpoint_2", "*.safetensors"))
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)
    try:
        train("--save_path", str(tmp_path), "--name", "ignored", "--model.resume_from_checkpoint", resumed)
    finally:
        os.chdir(cwd)
    assert losses(resumed)[-8:] == losses(plugin_run)[-8:]
    expected, got = weights(plugin_run, 2), weights(resumed, 2)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_policy_predicts_denormalised_actions_of_the_plugin_model(plugin_run):
    from vla_foundry.inference import Policy

    policy = Policy.from_run(plugin_run)
    obs = observation(np.random.default_rng(0))
    chunk = policy.predict(obs)
    assert chunk.shape == (5, 4)  # anchor + 4 future rows, action_dim 4
    # Computed independently: the model's normalised window, denormalised with the run's statistics.
    batch = policy.batch_handler.to_device(
        policy.processor.process_observation(obs["images"], obs["proprioception"], obs["instruction"]), policy.device
    )
    window = policy.model._predict(batch).detach().double().numpy()
    np.testing.assert_allclose(chunk, policy.normalizer.denormalize_actions(window)[0, 1:], rtol=1e-6)


def test_the_policy_server_serves_the_plugin_policy(plugin_run):
    from vla_foundry.inference import Policy, PolicyClient, PolicyServer

    policy = Policy.from_run(plugin_run)
    obs = observation(np.random.default_rng(1))
    with PolicyServer(policy, host="127.0.0.1", port=0) as server:
        client = PolicyClient(server.url)
        np.testing.assert_array_equal(client.predict(obs), policy.predict(obs))
        assert client.metadata()["chunk_length"] == 5
