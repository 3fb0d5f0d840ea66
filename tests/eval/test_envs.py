"""Registered sim environments: their observation and action sizes, and the policy adapter's checks."""

from __future__ import annotations

import numpy as np
import pytest

from vla_foundry.eval.envs import SimAdapter, get_sim_env, sim_env_names
from vla_foundry.params.base_params import ConfigError


def pusht_metadata(**changes) -> dict:
    """Policy metadata as Policy.metadata() gives it for a PushT policy (1 past row, image offsets -1 and 0)."""
    meta = {
        "camera_names": ["observation_image"],
        "image_indices": [-1, 0],
        "proprioception_fields": {"observation.state": 2},
        "proprioception_rows": 2,
        "action_fields": {"action": 2},
        "chunk_length": 15,
    }
    return {**meta, **changes}


def test_builtin_envs_are_registered():
    assert {"aloha_transfer_cube", "aloha_insertion", "pusht"} <= set(sim_env_names())


def test_unknown_env_name_suggests_the_closest():
    with pytest.raises(ConfigError, match="did you mean aloha_transfer_cube"):
        get_sim_env("aloha_transfer_cub")


def test_aloha_env_gives_14_joint_state_and_only_the_asked_camera():
    spec = get_sim_env("aloha_transfer_cube")
    env = spec.make(("top",), (24, 32), 5)
    obs, _ = env.reset(seed=0)
    assert list(obs["pixels"]) == ["top"]
    assert obs["pixels"]["top"].shape == (24, 32, 3) and obs["pixels"]["top"].dtype == np.uint8
    assert obs["pixels"]["top"].std() > 0  # a rendered scene, not a blank frame
    assert obs["agent_pos"].shape == (spec.state_dim,) == (14,)
    assert env.action_space.shape == (spec.action_dim,)
    # The cube's pose (privileged state) is the one gym-aloha samples for the seed.
    from gym_aloha.utils import sample_box_pose

    np.testing.assert_allclose(obs["env_state"][:3], sample_box_pose(0)[:3], atol=1e-2)


def test_aloha_env_rejects_unknown_camera():
    with pytest.raises(ValueError, match="unknown ALOHA camera"):
        get_sim_env("aloha_insertion").make(("wrist_cam",), (24, 32), 5)


def test_pusht_env_dims():
    spec = get_sim_env("pusht")
    env = spec.make(spec.cameras, (64, 64), 5)
    obs, _ = env.reset(seed=0)
    assert obs["pixels"]["observation_image"].shape == (64, 64, 3)
    assert obs["agent_pos"].shape == (2,)
    assert env.action_space.shape == (2,)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"camera_names": ["front"]}, r"camera\(s\) \['front'\] that env pusht does not have"),
        ({"proprioception_fields": {"observation.state": 4}}, "takes proprioception"),
        ({"proprioception_fields": {"joints": 2}}, "takes proprioception"),
        ({"action_fields": {"action": 14}}, "predicts 14 action values"),
        ({"image_indices": [0, 1]}, "future image offsets"),
    ],
)
def test_adapter_rejects_a_policy_that_does_not_fit_the_env(change, message):
    with pytest.raises(ConfigError, match=message):
        SimAdapter(get_sim_env("pusht"), pusht_metadata(**change))


def test_adapter_builds_the_policy_observation_from_history():
    adapter = SimAdapter(get_sim_env("pusht"), pusht_metadata())
    frames = [{"observation_image": np.full((8, 8, 3), k, np.uint8)} for k in range(3)]
    states = [np.array([k, 10.0 * k]) for k in range(3)]
    obs = adapter.policy_observation(frames, states)
    assert [f[0, 0, 0] for f in obs["images"]["observation_image"]] == [1, 2]  # offsets -1, 0
    np.testing.assert_array_equal(obs["proprioception"]["observation.state"], [[1, 10], [2, 20]])
    assert obs["instruction"] == get_sim_env("pusht").instruction
    # At an episode's first step the past is the first observation repeated.
    first = adapter.policy_observation(frames[:1], states[:1])
    assert [f[0, 0, 0] for f in first["images"]["observation_image"]] == [0, 0]
    np.testing.assert_array_equal(first["proprioception"]["observation.state"], [[0, 0], [0, 0]])
