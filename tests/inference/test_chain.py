"""The LLM -> VLM -> VLA chain on tiny settings, trained through `vla_foundry/main.py` on the bundled data, then
text generation, captioning and a robot policy (in process and through the server) from the run directories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import PRESETS, REPO_ROOT
from tests.inference.conftest import observation
from vla_foundry.inference import Policy, PolicyClient, PolicyServer, caption_image, generate_text, load_run

EXAMPLES = REPO_ROOT / "examples" / "data"
CPU = ["--hparams", f"include {PRESETS}/hparams/cpu_tiny.yaml", "--wandb", "False"]


def train(*args: str) -> None:
    from vla_foundry.main import main

    assert main([*args, *CPU]) == 0


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, str]:
    root = str(tmp_path_factory.mktemp("chain"))
    cwd = os.getcwd()
    os.chdir(REPO_ROOT)  # the data presets name examples/data relative to the repository root
    try:
        train(
            "--model", f"include {PRESETS}/models/transformer_tiny.yaml",
            "--data", f"include {PRESETS}/data/tiny_text.yaml",
            "--total_train_samples", "64", "--save_path", root, "--name", "llm",
        )  # fmt: skip
        train(
            "--model", f"include {PRESETS}/models/vlm_tiny.yaml",
            "--model.transformer.resume_from_checkpoint", f"{root}/llm",
            "--data", f"include {PRESETS}/data/tiny_image_caption.yaml",
            "--total_train_samples", "64", "--save_path", root, "--name", "vlm",
        )  # fmt: skip
        train(
            "--config_path", f"{PRESETS}/training_jobs/vla_diffusion_tiny_quickstart.yaml",
            "--model.backbone_run", f"{root}/vlm",
            "--total_train_samples", "512", "--num_checkpoints", "1", "--save_path", root, "--name", "vla",
        )  # fmt: skip
    finally:
        os.chdir(cwd)
    return {name: os.path.join(root, name) for name in ("llm", "vlm", "vla")}


def test_the_vla_backbone_is_the_vlm_run(chain):
    vla_config = yaml.safe_load(Path(chain["vla"], "config_model.yaml").read_text())
    vlm_config = yaml.safe_load(Path(chain["vlm"], "config_model.yaml").read_text())
    assert vla_config["backbone_run"] == chain["vlm"]
    assert vla_config["backbone"]["type"] == "vlm"
    assert vla_config["backbone"]["transformer"]["hidden_dim"] == vlm_config["transformer"]["hidden_dim"]
    # Built for training, the backbone starts from the VLM run's weights.
    from vla_foundry.checkpoint import read_model_weights
    from vla_foundry.models import create_model
    from vla_foundry.params.model_params import ModelParams
    from vla_foundry.params.parsing import load_params_from_yaml

    policy = create_model(load_params_from_yaml(ModelParams, os.path.join(chain["vla"], "config_model.yaml")))
    vlm_weights = read_model_weights(chain["vlm"])
    for name, value in policy.backbone.model.state_dict().items():
        assert torch.equal(value, vlm_weights[name]), name


def test_generate_text_and_caption_from_the_llm_and_vlm_runs(chain):
    texts = generate_text(load_run(chain["llm"]), ["The ", "A "], max_new_tokens=8)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    again = generate_text(load_run(chain["llm"]), ["The ", "A "], max_new_tokens=8)
    assert texts == again  # greedy decoding is deterministic
    sampled = [generate_text(load_run(chain["llm"]), "The ", max_new_tokens=8, temperature=1.0, seed=3) for _ in "ab"]
    assert sampled[0] == sampled[1]  # sampling with a seed is reproducible
    image = np.full((50, 40, 3), 120, dtype=np.uint8)
    captions = caption_image(load_run(chain["vlm"]), [image, image], max_new_tokens=6)
    assert len(captions) == 2 and captions[0] == captions[1]


def test_generation_refuses_a_run_of_another_kind(chain):
    from vla_foundry.params import ConfigError

    with pytest.raises(ConfigError, match="generate_text needs a language-model run .* holds a 'diffusion_policy'"):
        generate_text(load_run(chain["vla"]), "hello")
    with pytest.raises(ConfigError, match="caption_image needs a vision-language run .* holds a 'transformer' model"):
        caption_image(load_run(chain["llm"]), np.zeros((8, 8, 3), dtype=np.uint8))


def test_policy_predicts_denormalised_actions_with_the_dataset_scale(chain):
    policy = Policy.from_run(chain["vla"])
    assert policy.run.used_ema  # the quickstart job keeps an EMA
    chunk = policy.predict(observation(np.random.default_rng(0), instruction="move right"), seed=0)
    assert chunk.shape == (5, 4)
    stats = json.loads(Path(chain["vla"], "stats.json").read_text())["action"]
    low = np.asarray(stats["min"]) - 3 * np.asarray(stats["std"])
    high = np.asarray(stats["max"]) + 3 * np.asarray(stats["std"])
    assert np.all((chunk >= low) & (chunk <= high)), (chunk, low, high)


def test_policy_server_answers_with_the_in_process_actions(chain):
    policy = Policy.from_run(chain["vla"])
    obs = observation(np.random.default_rng(1), size=(64, 80), instruction="move up")
    with PolicyServer(policy, port=0) as server:
        remote = PolicyClient(server.url).predict(obs, seed=123)
    np.testing.assert_array_equal(remote, policy.predict(obs, seed=123))


def test_a_vla_run_loads_without_the_vlm_and_llm_runs(chain, tmp_path):
    """With both the VLM and the LLM run moved away, the VLA run loads and predicts exactly as before."""
    import shutil

    moved = tmp_path / "vla"
    shutil.copytree(chain["vla"], moved)
    obs = observation(np.random.default_rng(0))
    expected = Policy.from_run(str(moved)).predict(obs, seed=0)
    gone = {name: tmp_path / f"{name}_gone" for name in ("vlm", "llm")}
    for name, dest in gone.items():
        shutil.move(chain[name], dest)
    try:
        assert not os.path.exists(chain["vlm"]) and not os.path.exists(chain["llm"])
        policy = Policy.from_run(str(moved))
        predicted = policy.predict(obs, seed=0)
    finally:
        for name, dest in gone.items():
            shutil.move(dest, chain[name])
    assert predicted.shape == (5, 4)
    np.testing.assert_array_equal(predicted, expected)
    assert policy.run.checkpoint.endswith("checkpoint_1")
