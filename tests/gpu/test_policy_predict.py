"""`Policy.predict` on the device: a run loaded onto cuda gives physical action chunks, reproducible by seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.inference.conftest import observation, policy_run, tiny_robotics_dir  # noqa: F401  (session fixtures)

pytestmark = pytest.mark.gpu


def test_policy_on_the_device_returns_physical_action_chunks(policy_run, device):  # noqa: F811
    from vla_foundry.inference.policy import Policy

    policy = Policy.from_run(policy_run, device=device)
    assert {p.device.type for p in policy.model.parameters()} == {device.type}
    rng = np.random.default_rng(0)
    one = policy.predict(observation(rng), seed=5)
    assert one.shape == (policy.chunk_length, sum(policy.action_fields.values()))
    assert np.isfinite(one).all()
    batch = policy.predict([observation(rng), observation(rng)], seed=5)
    assert batch.shape == (2, *one.shape)


def test_the_same_seed_gives_the_same_actions_and_another_seed_others(policy_run, device):  # noqa: F811
    from vla_foundry.inference.policy import Policy

    policy = Policy.from_run(policy_run, device=device)
    obs = observation(np.random.default_rng(1))
    first, again, other = (policy.predict(obs, seed=s) for s in (7, 7, 8))
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)


def test_device_and_cpu_policies_compute_the_same_conditioning(policy_run, device):  # noqa: F811
    """Device and CPU generators draw different noise, so the deterministic part is compared: the observation as the
    processor prepares it and the backbone's conditioning of it."""
    from vla_foundry.inference.policy import Policy

    obs = observation(np.random.default_rng(2))
    encoded = []
    for policy in (Policy.from_run(policy_run, device=device), Policy.from_run(policy_run, device="cpu")):
        batch, _ = policy._batch([obs])
        with torch.no_grad():
            cond, mask = policy.model.encode(batch)  # (1, k, N, C), (1, N)
        encoded.append((cond.cpu(), mask.cpu()))
    assert encoded[0][0].abs().sum() > 0
    # fp32 on both, but the GPU's attention and matmul kernels sum in another order: agreement to ~1e-4.
    torch.testing.assert_close(encoded[0][0], encoded[1][0], rtol=1e-3, atol=2e-4)
    assert torch.equal(encoded[0][1], encoded[1][1])
