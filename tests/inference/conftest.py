"""Run directories for inference tests, written with the project's own save functions.

`policy_run` is laid out exactly as a robotics training run writes it (config.yaml, config_model.yaml, processor
and normaliser configs, stats.json, checkpoints/checkpoint_<n>.pt + trainer_state_<n>.pt, optionally ema_<n>.pt);
its weights are a fresh tiny model's. Tests that need trained weights train through `vla_foundry/main.py`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from tests.conftest import PRESETS
from vla_foundry.checkpoint import checkpoint_file, save_file
from vla_foundry.params.parsing import parse_params, save_params

ROBOTICS_FIELDS = ["--data.action_fields", "[action]", "--data.proprioception_fields", "[observation.state]"]


@pytest.fixture(scope="session")
def tiny_robotics_dir(tmp_path_factory) -> str:
    """The tiny LeRobot-style robotics dataset (2 cameras x offsets -1, 0; 32 px; past 1, future 4)."""
    from vla_foundry.data.scripts.make_tiny_datasets import make_robotics

    return make_robotics(str(tmp_path_factory.mktemp("robotics") / "robotics_lerobot"), "lerobot", seed=0)


def write_policy_run(run_dir: str, dataset_dir: str, checkpoints: tuple[int, ...] = (1,), ema: bool = False) -> dict:
    """A tiny diffusion-policy run dir for `dataset_dir`; returns {n: model state dict} (and {"ema_n": ...})."""
    from vla_foundry.data.robotics.processor import RoboticsProcessor, derive_robotics_data
    from vla_foundry.models import create_model
    from vla_foundry.params import derive_params
    from vla_foundry.params.train_experiment_params import TrainExperimentParams

    params = parse_params(
        TrainExperimentParams,
        [
            "--model",
            f"include {PRESETS}/models/vla_diffusion_tiny.yaml",
            "--data.type",
            "robotics",
            "--data.dataset_manifest",
            f"[{dataset_dir}]",
            "--data.dataset_weighting",
            "[1.0]",
            "--data.dataset_modality",
            "[robotics]",
            *ROBOTICS_FIELDS,
        ],
    )
    params = derive_params(dataclasses.replace(params, data=derive_robotics_data(params.data)))
    os.makedirs(run_dir, exist_ok=True)
    save_params(params, os.path.join(run_dir, "config.yaml"))
    save_params(params.model, os.path.join(run_dir, "config_model.yaml"))
    RoboticsProcessor.from_data_params(params.data).save(run_dir)
    states = {}
    for n in checkpoints:
        torch.manual_seed(n)
        model = create_model(params.model)
        # A non-zero output layer, so that different weights give different actions.
        torch.nn.init.normal_(model.head.action_out.weight, std=0.2)
        state = model.state_dict()
        save_file(state, checkpoint_file(run_dir, n))
        save_file({"step": n}, checkpoint_file(run_dir, n, "trainer_state"))
        states[n] = state
        if ema:
            shadow = {k: v + 0.05 * torch.randn_like(v) for k, v in state.items() if v.is_floating_point()}
            save_file({"shadow": shadow, "num_updates": 10}, checkpoint_file(run_dir, n, "ema"))
            states[f"ema_{n}"] = shadow
    return states


@pytest.fixture(scope="session")
def policy_run(tmp_path_factory, tiny_robotics_dir) -> str:
    run_dir = str(tmp_path_factory.mktemp("runs") / "vla_tiny")
    write_policy_run(run_dir, tiny_robotics_dir, checkpoints=(1, 2))
    return run_dir


def observation(rng: np.random.Generator, size: tuple[int, int] = (48, 64), instruction: str = "move left") -> dict:
    """A raw observation for the tiny robotics data: two cameras with two frames each, (past + 1, 4) state."""
    return {
        "images": {
            cam: [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(2)] for cam in ("front", "wrist")
        },
        "proprioception": {"observation.state": rng.normal(size=(2, 4))},
        "instruction": instruction,
    }


def replace(params, **changes):
    return dataclasses.replace(params, **changes)
