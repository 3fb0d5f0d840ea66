"""The training entry point on one device (no wrapping, bf16 autocast): loader batches arrive page-locked, and a run
resumed from its first checkpoint continues bitwise like the uninterrupted one (device RNG included)."""

from __future__ import annotations

import dataclasses
import os
import shutil

import pytest
import torch

from tests.conftest import PRESETS
from tests.gpu.conftest import plain_ctx
from tests.gpu.test_fsdp_resume import deterministic_kernels
from tests.inference.conftest import ROBOTICS_FIELDS, tiny_robotics_dir  # noqa: F401  (a session fixture)

pytestmark = pytest.mark.gpu


def vla_run_args(dataset: str, save_path: str, name: str, *extra: str) -> list[str]:
    return [
        "--model", f"include {PRESETS / 'models' / 'vla_diffusion_tiny.yaml'}",
        "--data.type", "robotics",
        "--data.dataset_manifest", f"[{dataset}]",
        "--data.dataset_weighting", "[1.0]",
        "--data.dataset_modality", "[robotics]",
        *ROBOTICS_FIELDS,
        "--data.num_workers", "0",
        "--hparams.precision", "amp_bf16",
        "--hparams.per_gpu_batch_size", "4",
        "--hparams.lr", "1e-3",
        "--ema.enabled", "True",
        "--total_train_samples", "16",
        "--num_checkpoints", "2",
        "--log_every_n_steps", "1",
        "--save_path", save_path,
        "--name", name,
        *extra,
    ]  # fmt: skip


def run(args: list[str]):
    from vla_foundry.params import parse_train_params
    from vla_foundry.training_run import run_training

    with deterministic_kernels():
        return run_training(parse_train_params(args))


def test_training_batches_are_page_locked_on_cuda(tiny_robotics_dir, tmp_path, device):  # noqa: F811
    from vla_foundry.data.planner import plan_checkpoint
    from vla_foundry.data.robotics.processor import derive_robotics_data
    from vla_foundry.params import parse_train_params
    from vla_foundry.params.train_experiment_params import derive_params
    from vla_foundry.training_run import build_batches

    params = parse_train_params(vla_run_args(tiny_robotics_dir, str(tmp_path), "pinned"))
    params = derive_params(dataclasses.replace(params, data=derive_robotics_data(params.data)))
    batch = next(iter(build_batches(params, plan_checkpoint(params.data, 0, 8), plain_ctx(device))))
    tensors = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
    assert "images" in tensors
    assert {k: v.is_pinned() for k, v in tensors.items()} == {k: device.type == "cuda" for k in tensors}


def test_a_run_resumed_from_its_first_checkpoint_continues_bitwise(tiny_robotics_dir, tmp_path, device):  # noqa: F811
    from vla_foundry.checkpoint import checkpoint_dir, read_checkpoint_weights

    straight = run(vla_run_args(tiny_robotics_dir, str(tmp_path), "straight"))
    assert len(straight.losses) == 4
    resumed_dir = str(tmp_path / "resumed")
    # The run dir as a job that died after checkpoint 1 leaves it.
    shutil.copytree(straight.run_dir, resumed_dir, ignore=shutil.ignore_patterns("checkpoint_2", "*.safetensors"))
    assert not os.path.exists(checkpoint_dir(resumed_dir, 2))
    resumed = run(
        vla_run_args(tiny_robotics_dir, str(tmp_path), "ignored", "--model.resume_from_checkpoint", resumed_dir)
    )
    assert resumed.losses == straight.losses[2:]
    for ema in (False, True):
        a = read_checkpoint_weights(checkpoint_dir(straight.run_dir, 2), use_ema=ema)
        b = read_checkpoint_weights(checkpoint_dir(resumed_dir, 2), use_ema=ema)
        assert a.keys() == b.keys()
        assert [k for k in a if not torch.equal(a[k], b[k])] == []
