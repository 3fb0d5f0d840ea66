"""A real PushT dataset and a tiny policy trained on it through the normal path: rollouts of gym-pusht written as
a LeRobot v3.0 dataset -> Ray preprocessing -> `vla_foundry/main.py` (2 checkpoints, simulation evaluation after
the second) -> a run directory the evaluator loads like inference does."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.conftest import PRESETS

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture(autouse=True)
def _renders_headless(headless_gl) -> None:
    """Every simulator test first checks that EGL rendering is installed (one line naming what is missing)."""


EVAL_EPISODES_DURING_TRAINING = 2


def record_pusht(root: str, episodes: int = 3, length: int = 24, seed: int = 0) -> str:
    """`episodes` PushT rollouts whose actions drift the agent towards random targets (real env frames/states)."""
    from vla_foundry.data.scripts.make_synthetic_lerobot import LeRobotV3Writer
    from vla_foundry.eval.envs import get_sim_env

    spec = get_sim_env("pusht")
    env = spec.make(spec.cameras, (96, 96), length)
    rng = np.random.default_rng(seed)
    writer = LeRobotV3Writer(root, spec.fps, ["observation.image"], ["x", "y"], ["x", "y"])
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        target = rng.uniform(100, 400, size=2)
        states, actions, frames = [], [], []
        for _ in range(length):
            action = (obs["agent_pos"] + 0.3 * (target - obs["agent_pos"])).astype(np.float32)
            states.append(obs["agent_pos"])
            actions.append(action)
            frames.append(obs["pixels"][spec.cameras[0]])
            obs, *_ = env.step(action)
        writer.add_episode(spec.instruction, np.stack(states), np.stack(actions), {"observation.image": frames})
    return str(writer.close())


@pytest.fixture(scope="session")
def pusht_run(tmp_path_factory) -> str:
    """Run dir of a tiny VLA trained on PushT rollouts for 2 checkpoints, evaluated in gym-pusht after the 2nd."""
    from vla_foundry.data.preprocessing.preprocess_robotics_to_tar import main as preprocess
    from vla_foundry.main import main as train

    work = tmp_path_factory.mktemp("pusht")
    raw = record_pusht(str(work / "lerobot"))
    assert (
        preprocess(
            [
                "--config_path",
                "config_presets/preprocessing/lerobot_1past_14future.yaml",
                "--source_episodes",
                f"[{raw}]",
                "--output_dir",
                str(work / "pre"),
                "--image_size",
                "[32, 32]",
                "--samples_per_shard",
                "32",
                "--num_cpus",
                "1",
                "--show_progress",
                "False",
            ]
        )
        == 0
    )
    args = [
        "--model", f"include {PRESETS}/models/vla_diffusion_tiny.yaml",
        "--data.type", "robotics", "--data.dataset_manifest", f"[{work / 'pre' / 'shards'}]",
        "--data.dataset_weighting", "[1.0]", "--data.dataset_modality", "[robotics]",
        "--data.action_fields", "[action]", "--data.proprioception_fields", "[observation.state]",
        "--data.num_workers", "0", "--hparams", f"include {PRESETS}/hparams/cpu_tiny.yaml",
        "--total_train_samples", "32", "--num_checkpoints", "2", "--save_path", str(work), "--name", "vla",
        "--eval.sim_env", "pusht", "--eval.episodes", str(EVAL_EPISODES_DURING_TRAINING),
        "--eval.every_n_checkpoints", "2", "--eval.max_steps", "6",
    ]  # fmt: skip
    assert train(args) == 0
    return str(work / "vla")
