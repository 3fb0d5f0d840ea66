"""Every precision mode trains on the device, plain and under FSDP2, with the dtypes each one promises."""

from __future__ import annotations

import pytest
import torch

from tests.gpu.conftest import build_trainer, lm_batches, lm_experiment, local, plain_ctx

pytestmark = pytest.mark.gpu

STEPS = 6
# Worst relative deviation of a first-step loss from the fp32 one: bf16 keeps 8 mantissa bits, fp16 11.
FIRST_LOSS_RTOL = {"fp32": 1e-5, "amp_bf16": 2e-2, "pure_bf16": 3e-2, "fp16": 5e-3}


def _ctx(wrapping: str, device: torch.device, request: pytest.FixtureRequest):
    return request.getfixturevalue("fsdp_ctx") if wrapping == "fsdp" else plain_ctx(device)


@pytest.fixture(scope="module")
def fp32_first_loss(device: torch.device) -> float:
    """The first-step loss of the tiny model in fp32 without wrapping: the reference for the other modes."""
    trainer = build_trainer(lm_experiment(1), plain_ctx(device))
    return trainer.train(lm_batches(1, 4))[0]


@pytest.mark.parametrize("wrapping", ["none", "fsdp"])
@pytest.mark.parametrize("precision", ["fp32", "amp_bf16", "pure_bf16", "fp16"])
def test_every_precision_trains_with_a_first_loss_close_to_fp32_and_a_falling_loss(
    precision, wrapping, device, fp32_first_loss, request
):
    trainer = build_trainer(lm_experiment(STEPS, precision=precision), _ctx(wrapping, device, request))
    losses = trainer.train(lm_batches(STEPS, 4))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert abs(losses[0] - fp32_first_loss) <= FIRST_LOSS_RTOL[precision] * fp32_first_loss
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("wrapping", ["none", "fsdp"])
@pytest.mark.parametrize("precision", ["amp_bf16", "pure_bf16"])
def test_bf16_modes_compute_matmuls_in_bf16_and_keep_the_promised_master_weights(precision, wrapping, device, request):
    trainer = build_trainer(lm_experiment(1, precision=precision), _ctx(wrapping, device, request))
    seen: list[torch.dtype] = []
    wq = trainer.model.layers[0].attention.wq
    handle = wq.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    try:
        trainer.train(lm_batches(1, 4))
    finally:
        handle.remove()
    assert seen == [torch.bfloat16]
    master = {local(p).dtype for p in trainer.model.parameters()}
    grads_or_state = {local(s["exp_avg"]).dtype for s in trainer.optimizer.state.values()}
    expected = torch.bfloat16 if precision == "pure_bf16" else torch.float32
    assert master == {expected}
    assert grads_or_state == {expected}
    assert {local(p).device.type for p in trainer.model.parameters()} == {device.type}


def test_fsdp_amp_bf16_on_cuda_gathers_parameters_in_bf16_without_autocast(fsdp_ctx, device):
    from vla_foundry.distributed import mixed_precision_dtypes

    trainer = build_trainer(lm_experiment(1, precision="amp_bf16"), fsdp_ctx)
    on_cuda = device.type == "cuda"
    assert mixed_precision_dtypes(trainer.cfg.hparams, device) == ((torch.bfloat16 if on_cuda else None), torch.float32)
    # Under the bf16 MixedPrecisionPolicy there is no autocast: the bf16 compute comes from FSDP2 itself, so the
    # weight a block sees in forward is the gathered bf16 copy (on CPU, autocast casts an fp32 weight instead).
    assert trainer.fsdp_mixed_precision is on_cuda
    weights: list[torch.dtype] = []
    wq = trainer.model.layers[0].attention.wq
    handle = wq.register_forward_pre_hook(lambda module, args: weights.append(local(module.weight).dtype))
    try:
        trainer.train(lm_batches(1, 4))
    finally:
        handle.remove()
    assert weights == [torch.bfloat16 if on_cuda else torch.float32]


def test_fp16_scales_the_loss_and_steps(device):
    trainer = build_trainer(lm_experiment(STEPS, precision="fp16"), plain_ctx(device))
    assert trainer.scaler is not None and trainer.scaler.is_enabled()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train(lm_batches(STEPS, 4))
    assert 0 < trainer.scaler.get_scale() < float("inf")
    assert all(not torch.equal(b, p) for b, p in zip(before, trainer.model.parameters()))
