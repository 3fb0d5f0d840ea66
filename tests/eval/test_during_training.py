"""Evaluation during training: `--eval.*` is checked at parse time and the simulation metrics land in
metrics.jsonl at the checkpoints that were due (the `pusht_run` fixture trains 2 checkpoints, evaluating every 2nd)."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import PRESETS
from tests.eval.conftest import EVAL_EPISODES_DURING_TRAINING
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.parsing import parse_params
from vla_foundry.params.train_experiment_params import TrainExperimentParams


def _records(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_sim_metrics_are_logged_at_the_due_checkpoints_only(pusht_run):
    records = _records(pusht_run)
    sim = [r for r in records if any(k.startswith("sim/") for k in r)]
    assert [r["sim/checkpoint"] for r in sim] == [2]
    # Logged at the step of checkpoint 2: the last training step (2 windows of 16 samples, batch 8 -> step 4).
    last_step = max(r["step"] for r in records if "loss" in r)
    assert sim[0]["step"] == last_step == 4
    assert sim[0]["sim/episodes"] == EVAL_EPISODES_DURING_TRAINING
    with open(os.path.join(pusht_run, "sim_eval", "checkpoint_2", "results.json")) as f:
        results = json.load(f)
    assert sim[0]["sim/success_rate"] == results["summary"]["success_rate"]
    assert sim[0]["sim/mean_max_reward"] == pytest.approx(results["summary"]["mean_max_reward"])
    assert results["settings"]["checkpoint"].endswith("checkpoint_2")
    assert results["settings"]["max_steps"] == 6
    assert os.listdir(os.path.join(pusht_run, "sim_eval")) == ["checkpoint_2"]


def _params(*extra: str, model: str = "vla_diffusion_tiny") -> TrainExperimentParams:
    return parse_params(TrainExperimentParams, ["--model", f"include {PRESETS}/models/{model}.yaml", *extra])


def test_unknown_eval_env_is_a_config_error_naming_the_closest():
    params = _params("--data.type", "robotics", "--eval.sim_env", "push_t", "--eval.episodes", "3")
    assert params.eval.episodes == 3
    with pytest.raises(ConfigError, match="eval.sim_env='push_t'.*did you mean pusht"):
        params.eval.validate()


def test_eval_every_n_checkpoints_must_be_positive():
    params = _params("--data.type", "robotics", "--eval.sim_env", "pusht", "--eval.every_n_checkpoints", "0")
    with pytest.raises(ConfigError, match="eval.every_n_checkpoints=0 must be >= 1"):
        params.eval.validate()


def test_sim_evaluation_needs_a_policy_model():
    with pytest.raises(ConfigError, match="eval.sim_env needs an acting policy model.*policies: diffusion_policy"):
        _params("--data.type", "image_caption", "--eval.sim_env", "pusht", model="vlm_tiny").validate()
