"""Loading a policy run (local and s3, latest / chosen checkpoint, EMA when present) and predicting from raw
observations, with clear errors for bad observations and incomplete run directories."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from tests.inference.conftest import observation, write_policy_run
from vla_foundry.inference import Policy, load_run

CHUNK = 5  # anchor + 4 future rows
ACTION_DIM = 4


def test_load_run_takes_the_latest_checkpoint_or_a_chosen_one(policy_run):
    latest = load_run(policy_run)
    assert latest.checkpoint.endswith("checkpoint_2.pt") and not latest.used_ema
    first = load_run(policy_run, checkpoint=1)
    assert first.checkpoint.endswith("checkpoint_1.pt")
    w1 = first.model.head.action_out.weight
    w2 = latest.model.head.action_out.weight
    assert not torch.equal(w1, w2)
    from_file = load_run(os.path.join(policy_run, "checkpoints", "checkpoint_1.pt"))
    assert torch.equal(from_file.model.head.action_out.weight, w1)


def test_ema_weights_are_used_at_inference_when_present(tmp_path, tiny_robotics_dir):
    run_dir = str(tmp_path / "run")
    states = write_policy_run(run_dir, tiny_robotics_dir, checkpoints=(1,), ema=True)
    run = load_run(run_dir)
    assert run.used_ema
    ema = states["ema_1"]["head.action_out.weight"]
    assert torch.equal(run.model.head.action_out.weight, ema)
    raw = load_run(run_dir, use_ema=False)
    assert not raw.used_ema
    assert torch.equal(raw.model.head.action_out.weight, states[1]["head.action_out.weight"])
    obs = observation(np.random.default_rng(0))
    with_ema = Policy.from_run(run_dir).predict(obs, seed=0)
    without = Policy.from_run(run_dir, use_ema=False).predict(obs, seed=0)
    assert not np.allclose(with_ema, without)


def test_predict_takes_raw_images_of_any_size_and_returns_a_denormalised_chunk(policy_run):
    policy = Policy.from_run(policy_run)
    rng = np.random.default_rng(0)
    small = policy.predict(observation(rng, size=(40, 40)), seed=3)
    large = policy.predict(observation(rng, size=(120, 90)), seed=3)
    assert small.shape == large.shape == (CHUNK, ACTION_DIM)
    # Denormalised: the same normalised sample maps through the dataset statistics.
    obs = observation(rng)
    normalised = policy.model.generate_actions(policy._batch([obs])[0], generator=torch.Generator().manual_seed(5))
    expected = policy.normalizer.denormalize_actions(normalised.double().numpy())[0, 1:]
    np.testing.assert_allclose(policy.predict(obs, seed=5), expected, rtol=1e-5, atol=1e-6)


def test_predict_is_batched_and_deterministic_with_a_seed(policy_run):
    policy = Policy.from_run(policy_run)
    rng = np.random.default_rng(1)
    obs = [observation(rng, instruction="move up"), observation(rng, instruction="move down")]
    batch = policy.predict(obs, seed=11)
    assert batch.shape == (2, CHUNK, ACTION_DIM)
    np.testing.assert_array_equal(batch, policy.predict(obs, seed=11))
    assert not np.allclose(batch, policy.predict(obs, seed=12))


def test_given_past_actions_are_kept(policy_run):
    policy = Policy.from_run(policy_run)
    obs = observation(np.random.default_rng(2))
    obs["past_actions"] = np.full((1, ACTION_DIM), 0.3)
    chunk = policy.predict(obs, seed=0)
    assert chunk.shape == (CHUNK, ACTION_DIM)
    assert not np.allclose(chunk, policy.predict(observation(np.random.default_rng(2)), seed=0))


def test_a_batch_may_mix_observations_with_and_without_past_actions(policy_run):
    policy = Policy.from_run(policy_run)
    given, free = observation(np.random.default_rng(2)), observation(np.random.default_rng(3))
    given["past_actions"] = np.full((1, ACTION_DIM), 0.3)
    batch, known, known_mask = policy._batch([given, free])
    window = policy.model.generate_actions(
        batch, known_actions=known, known_mask=known_mask, generator=torch.Generator().manual_seed(0)
    )
    physical = policy.normalizer.denormalize_actions(window.double().numpy())  # (2, T, A)
    # The first observation's past row is the given action; the second's is sampled (as at an episode's start).
    np.testing.assert_allclose(physical[0, 0], np.full(ACTION_DIM, 0.3), atol=1e-5)
    assert not np.allclose(physical[1, 0], 0.3, atol=1e-3)
    # Mixed, each chunk still depends on what its own observation gave.
    mixed = policy.predict([given, free], seed=0)
    assert mixed.shape == (2, CHUNK, ACTION_DIM)
    bare = {k: v for k, v in given.items() if k != "past_actions"}
    assert not np.allclose(mixed[0], policy.predict([bare, free], seed=0)[0])


def test_observation_missing_a_camera_names_it_and_the_expected_frames(policy_run):
    policy = Policy.from_run(policy_run)
    obs = observation(np.random.default_rng(0))
    del obs["images"]["wrist"]
    with pytest.raises(
        ValueError, match=r"lacks camera 'wrist': expected uint8 \(H, W, 3\) frames .*\['front', 'wrist'\]"
    ):
        policy.predict(obs)


def test_wrong_proprioception_size_names_the_field_and_expected_shape(policy_run):
    policy = Policy.from_run(policy_run)
    obs = observation(np.random.default_rng(0))
    obs["proprioception"]["observation.state"] = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"\['observation.state'\] has shape \(2, 3\); expected \(2, 4\)"):
        policy.predict(obs)
    obs["proprioception"] = {}
    with pytest.raises(ValueError, match=r"lacks field 'observation.state': expected shape \(2, 4\)"):
        policy.predict(obs)


def test_a_run_without_normaliser_config_is_refused_clearly(tmp_path, policy_run):
    run_dir = tmp_path / "copy"
    shutil.copytree(policy_run, run_dir)
    os.remove(run_dir / "config_normalizer.yaml")
    with pytest.raises(FileNotFoundError, match=r"has no config_normalizer.yaml: a policy needs the processor"):
        Policy.from_run(str(run_dir))


def test_a_directory_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a run directory: .*config_model.yaml does not exist"):
        load_run(str(tmp_path))


def test_policy_loads_from_an_s3_run_directory(s3_bucket, policy_run):
    from vla_foundry import storage

    for root, _, files in os.walk(policy_run):
        for name in files:
            local = os.path.join(root, name)
            storage.upload_file(local, f"{s3_bucket}/runs/vla/{os.path.relpath(local, policy_run)}")
    remote = Policy.from_run(f"{s3_bucket}/runs/vla")
    local = Policy.from_run(policy_run)
    assert remote.run.checkpoint == f"{s3_bucket}/runs/vla/checkpoints/checkpoint_2.pt"
    obs = observation(np.random.default_rng(4))
    np.testing.assert_array_equal(remote.predict(obs, seed=1), local.predict(obs, seed=1))


def test_camera_frames_must_be_uint8_rgb(policy_run):
    policy = Policy.from_run(policy_run)
    obs = observation(np.random.default_rng(0))
    obs["images"]["front"] = [np.zeros((32, 32, 3), dtype=np.float32)] * 2
    with pytest.raises(ValueError, match=r"\['front'\] is float32 of shape \(32, 32, 3\); expected uint8 \(H, W, 3\)"):
        policy.predict(obs)
