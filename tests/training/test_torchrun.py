"""Real `torchrun --nproc_per_node 2` (gloo, CPU): FSDP2 and DDP match one process with the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.training.conftest import lm_run_args, tiny_lm_params, train_single_process
from tests.training.distributed_driver import GLOBAL_BATCH, NUM_SAMPLES
from vla_foundry.checkpoint import checkpoint_file, load_model_checkpoint
from vla_foundry.metrics import read_metrics
from vla_foundry.models.registry import create_model

pytestmark = pytest.mark.slow

# The job's global batch: 2 processes x per-GPU 8, no accumulation.
TWO_PROCESS_BATCH = ("--hparams.global_batch_size", "16")


def torchrun(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.fixture(scope="module")
def driver_output(tmp_path_factory, tiny_datasets) -> str:
    """One launch: the FSDP2/DDP equivalence runs, then a whole 2-checkpoint FSDP2 training job in `<out>/llm`."""
    out = tmp_path_factory.mktemp("torchrun")
    args_file = out / "run_args.json"
    args_file.write_text(json.dumps(lm_run_args(tiny_datasets, str(out), "llm", *TWO_PROCESS_BATCH)))
    torchrun(["tests/training/distributed_driver.py", str(out), str(args_file)])
    return str(out)


@pytest.fixture(scope="module")
def reference():
    """One process, one micro-batch of the whole global batch per step."""
    return train_single_process(NUM_SAMPLES, GLOBAL_BATCH, GLOBAL_BATCH, ema_decay=0.5, grad_clip_norm=0.5)


def _step_losses(run_dir: str) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "loss" in r}


def _losses(driver_output: str) -> dict[str, list[float]]:
    with open(os.path.join(driver_output, "losses.json")) as f:
        return json.load(f)


def test_fsdp2_losses_match_single_process(driver_output, reference):
    assert _losses(driver_output)["fsdp"] == pytest.approx(reference[0], rel=1e-5)


def test_ddp_losses_match_single_process(driver_output, reference):
    assert _losses(driver_output)["ddp"] == pytest.approx(reference[0], rel=1e-5)


@pytest.mark.parametrize("mode", ["fsdp", "ddp"])
def test_checkpoint_saved_under_wrapping_loads_in_plain_model(driver_output, reference, mode):
    plain = load_model_checkpoint(create_model(tiny_lm_params()), os.path.join(driver_output, f"{mode}_run"))
    for (name, p), q in zip(plain.named_parameters(), reference[1].parameters()):
        assert torch.allclose(p, q, atol=1e-5), name


def test_fsdp2_ema_on_local_shards_matches_single_process(driver_output, reference):
    ema = torch.load(os.path.join(driver_output, "fsdp_run", "checkpoints", "ema_1.pt"), weights_only=True)
    expected = reference[2].full_state_dict()
    assert set(ema["shadow"]) == set(expected)
    for name, value in expected.items():
        assert torch.allclose(ema["shadow"][name], value, atol=1e-5), name


def test_fsdp2_resume_after_checkpoint_is_bitwise_identical(driver_output, tiny_datasets, tmp_path):
    """Interrupted after checkpoint 1 (a copy of the run dir without checkpoint 2), resumed with main.py under torchrun."""
    uninterrupted = os.path.join(driver_output, "llm")
    resumed = str(tmp_path / "llm")
    shutil.copytree(uninterrupted, resumed, ignore=shutil.ignore_patterns("*_2.pt"))
    torchrun(
        [
            "vla_foundry/main.py",
            *lm_run_args(
                tiny_datasets, str(tmp_path), "llm", *TWO_PROCESS_BATCH, "--model.resume_from_checkpoint", resumed
            ),
        ]
    )
    assert _step_losses(resumed) == _step_losses(uninterrupted)
    assert len(_step_losses(resumed)) == 12
    for kind in ("checkpoint", "optimizer"):
        a = torch.load(checkpoint_file(uninterrupted, 2, kind), weights_only=True)
        b = torch.load(checkpoint_file(resumed, 2, kind), weights_only=True)
        assert_equal_trees(a, b)
    ema_a = torch.load(checkpoint_file(uninterrupted, 2, "ema"), weights_only=True)["shadow"]
    ema_b = torch.load(checkpoint_file(resumed, 2, "ema"), weights_only=True)["shadow"]
    assert_equal_trees(ema_a, ema_b)
    state = torch.load(checkpoint_file(resumed, 2, "trainer_state"), weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2


def assert_equal_trees(a, b, path: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_equal_trees(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_equal_trees(x, y, f"{path}[{i}]")
    else:
        assert a == b, path
