"""The scripted ALOHA transfer-cube expert, in the real gym-aloha physics (no rendering: only success matters)."""

from __future__ import annotations

import json

import numpy as np

from vla_foundry.eval.envs import get_sim_env
from vla_foundry.eval.sim import evaluate, make_env
from vla_foundry.params.eval_params import SimEvalParams


def test_transfer_cube_expert_succeeds_on_at_least_95_percent_of_seeds():
    env = make_env("aloha_transfer_cube", (), (24, 32), 300, expert=True)
    successes = []
    for seed in range(6):
        _, info = env.reset(seed=seed)
        success = False
        for _ in range(300):
            _, reward, terminated, truncated, info = env.step(info["expert_action"])
            success = success or (reward == 4 and info["is_success"])
            if terminated or truncated:
                break
        successes.append(success)
    assert np.mean(successes) >= 0.95, successes


def test_scripted_policy_through_the_evaluator_in_worker_processes(tmp_path):
    params = SimEvalParams(
        env="aloha_transfer_cube", episodes=2, output_dir=str(tmp_path), policy="scripted", num_envs=2, seed=3, videos=0
    )
    out = evaluate(params)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [e["seed"] for e in results["episodes"]] == [3, 4]
    assert all(e["success"] and e["max_reward"] == 4 for e in results["episodes"])
    assert results["summary"]["success_rate"] == 1.0 == out["summary"]["success_rate"]
    # gym-aloha ends an episode at its first success: the last reward is the success reward.
    assert all(e["rewards"][-1] == 4 and len(e["rewards"]) == e["steps"] < 300 for e in results["episodes"])
    assert get_sim_env("aloha_transfer_cube").expert is not None
