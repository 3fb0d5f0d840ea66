"""FSDP2 on one device: wrapping, training steps, a DCP checkpoint saved asynchronously and loaded, and a resumed run
that continues bitwise like the uninterrupted one (weights, optimizer state, losses; the loss draws its noise from
the device's RNG, so the RNG state must be restored too)."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from tests.gpu.conftest import build_trainer, local
from tests.models.diffusion_policy.conftest import TINY_VLM, policy_params, robotics_batch
from vla_foundry.params import HyperParams, TrainExperimentParams
from vla_foundry.params.data_params import RoboticsDataParams

pytestmark = pytest.mark.gpu

STEPS, SAVE_AT, BATCH = 6, 3, 4


def vla_experiment(precision: str) -> TrainExperimentParams:
    """The tiny diffusion policy, `STEPS` optimizer steps in one window."""
    return TrainExperimentParams(
        model=policy_params(TINY_VLM),
        data=RoboticsDataParams(),
        hparams=HyperParams(
            per_gpu_batch_size=BATCH, lr=1e-3, warmup=0, lr_scheduler="cosine", precision=precision, weight_decay=0.01
        ),
        total_train_samples=STEPS * BATCH,
        samples_per_checkpoint=STEPS * BATCH,
        total_steps=STEPS,
    )


@contextlib.contextmanager
def deterministic_kernels():
    """Run-to-run identical kernels: the comparison is about restored state, not about atomics in a backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    # warn_only: an op without a deterministic kernel warns instead of stopping the test; the repeat check below
    # then says that the device, not the resume, is the cause.
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def batches() -> list[dict]:
    return [robotics_batch(batch_size=BATCH, seed=i) for i in range(STEPS)]


def state_of(trainer) -> dict[str, torch.Tensor]:
    """Every parameter and AdamW moment of this rank, as plain tensors."""
    out = {f"param.{n}": local(p).detach().clone() for n, p in trainer.model.named_parameters()}
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    for p, s in trainer.optimizer.state.items():
        for key in ("exp_avg", "exp_avg_sq"):
            out[f"{key}.{names[id(p)]}"] = local(s[key]).detach().clone()
    return out


def test_fsdp2_shards_every_head_and_backbone_block_and_the_root(fsdp_ctx, device):
    from torch.distributed.fsdp import FSDPModule

    from vla_foundry.models.registry import fsdp_block_types

    cfg = vla_experiment("amp_bf16")
    trainer = build_trainer(cfg, fsdp_ctx)
    block_types = fsdp_block_types(trainer.model)
    blocks = [m for m in trainer.model.modules() if isinstance(m, block_types)]
    assert len(blocks) == cfg.model.head.n_layers + TINY_VLM.vit.n_layers + TINY_VLM.transformer.n_layers
    assert all(isinstance(m, FSDPModule) for m in [*blocks, trainer.model])
    params = list(trainer.model.parameters())
    assert all(type(p).__name__ == "DTensor" and p.device.type == device.type for p in params)


@pytest.mark.parametrize("async_save", [True, False], ids=["async", "sync"])
def test_fsdp2_resume_from_a_dcp_checkpoint_continues_bitwise(fsdp_ctx, tmp_path, async_save):
    from vla_foundry.checkpoint import DCPCheckpointer
    from vla_foundry.train import TrainState

    cfg = vla_experiment("amp_bf16")
    data = batches()
    with deterministic_kernels():
        straight = build_trainer(cfg, fsdp_ctx)
        torch.manual_seed(1)
        straight_losses = straight.train(data)
        expected = state_of(straight)
        again = build_trainer(cfg, fsdp_ctx)
        torch.manual_seed(1)
        assert again.train(data) == straight_losses, (
            "two identical runs differ: this device's kernels are not deterministic, so a resume cannot be compared"
        )

        first = build_trainer(cfg, fsdp_ctx)
        torch.manual_seed(1)
        state = TrainState()
        first_losses = first.train(data[:SAVE_AT], state)
        saver = DCPCheckpointer(
            str(tmp_path), fsdp_ctx, first.model, first.optimizer, first.scheduler, async_save=async_save
        )
        blocked = saver.save(1, state.to_dict())
        # Training goes on while an asynchronous save writes: it must have staged a copy, not the live tensors.
        first.train(data[SAVE_AT : SAVE_AT + 1])
        saver.close()
        assert blocked >= 0

        # Another initialisation and another RNG stream: everything that matters must come from the checkpoint.
        resumed = build_trainer(cfg, fsdp_ctx, init_seed=123)
        torch.manual_seed(999)
        if torch.cuda.is_available():
            torch.cuda.manual_seed(999)
        loader = DCPCheckpointer(str(tmp_path), fsdp_ctx, resumed.model, resumed.optimizer, resumed.scheduler)
        saved = loader.load(loader.latest(verify=True))
        loader.close()
        state = TrainState.from_dict(saved)
        assert state.step == SAVE_AT
        resumed_losses = resumed.train(data[SAVE_AT:], state)
        got = state_of(resumed)

    assert first_losses == straight_losses[:SAVE_AT]
    assert resumed_losses == straight_losses[SAVE_AT:]
    assert got.keys() == expected.keys()
    different = [k for k in expected if not torch.equal(got[k], expected[k])]
    assert not different, f"{len(different)} tensors differ after resume, e.g. {different[:3]}"


def test_fsdp2_checkpoint_weights_load_into_a_plain_model_on_the_cpu(fsdp_ctx, tmp_path):
    from vla_foundry.checkpoint import DCPCheckpointer, checkpoint_dir, read_checkpoint_weights

    cfg = vla_experiment("amp_bf16")
    trainer = build_trainer(cfg, fsdp_ctx)
    trainer.train(batches()[:1])
    saver = DCPCheckpointer(str(tmp_path), fsdp_ctx, trainer.model, trainer.optimizer, trainer.scheduler)
    saver.save(1, {"step": 1})
    saver.close()
    weights = read_checkpoint_weights(checkpoint_dir(str(tmp_path), 1))
    live = {n: local(p).detach().cpu() for n, p in trainer.model.named_parameters()}
    assert weights.keys() >= live.keys()
    assert all(weights[n].device.type == "cpu" and torch.equal(weights[n], live[n]) for n in live)


def test_vla_trains_under_fsdp2_bf16_with_falling_loss(fsdp_ctx):
    cfg = dataclasses.replace(vla_experiment("amp_bf16"))
    trainer = build_trainer(cfg, fsdp_ctx)
    fixed = [robotics_batch(batch_size=BATCH, seed=0)] * STEPS  # one batch again and again: the loss must fall
    losses = trainer.train(fixed)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert min(losses[-2:]) < losses[0]
