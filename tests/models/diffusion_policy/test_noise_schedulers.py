"""Flow matching and DDPM/DDIM: training targets, exact sampling with oracle networks, clipping, determinism."""

from __future__ import annotations

import pytest
import torch

from vla_foundry.models.diffusion_policy.noise_schedulers import DDPMScheduler, FlowMatchingScheduler

SHAPE = (2, 5, 3)


def test_flow_matching_interpolates_noise_to_data_with_a_velocity_target():
    scheduler = FlowMatchingScheduler(num_steps=4)
    actions = torch.randn(SHAPE)
    g = torch.Generator().manual_seed(3)
    x_t, t, target = scheduler.training_example(actions, g)
    g = torch.Generator().manual_seed(3)
    noise = torch.randn(SHAPE, generator=g)
    assert torch.allclose(target, actions - noise)
    assert torch.allclose(x_t, (1 - t)[:, None, None] * noise + t[:, None, None] * actions)


@pytest.mark.parametrize("solver", ["euler", "midpoint"])
def test_flow_sampling_with_the_exact_velocity_reaches_the_data_point(solver):
    # For a single data point a the marginal velocity is (a - x) / (1 - t): the ODE is a straight line.
    a = torch.randn(SHAPE)
    scheduler = FlowMatchingScheduler(num_steps=5, solver=solver)
    out = scheduler.sample(lambda x, t: (a - x) / (1 - t)[:, None, None], SHAPE, torch.Generator().manual_seed(0))
    assert torch.allclose(out, a, atol=1e-5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_ddim_with_an_oracle_network_returns_the_clean_chunk(prediction_type):
    x0 = torch.rand(SHAPE) * 1.6 - 0.8  # inside the clip range
    scheduler = DDPMScheduler(num_train_timesteps=50, num_inference_steps=6, prediction_type=prediction_type)

    def oracle(x, time):
        k = (time * (scheduler.num_train_timesteps - 1)).round().long()
        abar = scheduler.alphas_cumprod[k].float()[:, None, None]
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
        return eps if prediction_type == "epsilon" else x0

    out = scheduler.sample(oracle, SHAPE, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x0, atol=1e-4)


def test_ddpm_training_example_mixes_signal_and_noise_by_the_schedule():
    scheduler = DDPMScheduler(num_train_timesteps=20, prediction_type="epsilon")
    actions = torch.randn(SHAPE)
    x_k, k, target = scheduler.training_example(actions, torch.Generator().manual_seed(1))
    abar = scheduler.alphas_cumprod[k].float()[:, None, None]
    assert torch.allclose(x_k, abar.sqrt() * actions + (1 - abar).sqrt() * target, atol=1e-6)
    assert k.dtype == torch.long and int(k.min()) >= 0 and int(k.max()) < 20


def test_predicted_clean_chunk_is_clipped():
    scheduler = DDPMScheduler(num_train_timesteps=20, num_inference_steps=3, prediction_type="sample", clip_sample=1.0)
    out = scheduler.sample(lambda x, t: torch.full_like(x, 5.0), SHAPE, torch.Generator().manual_seed(0))
    assert torch.allclose(out, torch.ones(SHAPE))


def test_ddim_is_deterministic_and_ddpm_sampling_depends_on_the_seed():
    net = lambda x, t: 0.5 * x  # noqa: E731
    ddim = DDPMScheduler(num_train_timesteps=20, num_inference_steps=5, sampler="ddim")
    first = ddim.sample(net, SHAPE, torch.Generator().manual_seed(0))
    again = ddim.sample(net, SHAPE, torch.Generator().manual_seed(0))
    assert torch.equal(first, again)
    ddpm = DDPMScheduler(num_train_timesteps=20, num_inference_steps=5, sampler="ddpm")
    a = ddpm.sample(net, SHAPE, torch.Generator().manual_seed(0))
    b = ddpm.sample(net, SHAPE, torch.Generator().manual_seed(1))
    assert not torch.allclose(a, b)


def test_inference_timesteps_run_from_the_noisiest_step_down_to_zero():
    assert DDPMScheduler(num_train_timesteps=100, num_inference_steps=5).inference_timesteps() == [99, 74, 50, 25, 0]


def test_known_rows_are_written_back_after_every_step():
    known = torch.zeros(SHAPE, dtype=torch.bool)
    known[:, 0] = True
    values = torch.full(SHAPE, 0.25)
    seen = []

    def velocity(x, t):
        seen.append(x[:, 0].clone())
        return torch.ones_like(x)

    out = FlowMatchingScheduler(num_steps=3).sample(
        velocity, SHAPE, torch.Generator().manual_seed(0), clamp=lambda x: torch.where(known, values, x)
    )
    assert all(torch.equal(s, values[:, 0]) for s in seen)
    assert torch.equal(out[:, 0], values[:, 0])


def test_invalid_settings_are_rejected_with_the_valid_choices():
    with pytest.raises(ValueError, match="flow_solver='rk4' is not valid; valid: euler, midpoint"):
        FlowMatchingScheduler(4, "rk4")
    with pytest.raises(ValueError, match=r"num_inference_steps=30 must be in \[1, num_train_timesteps=20\]"):
        DDPMScheduler(num_train_timesteps=20, num_inference_steps=30)
