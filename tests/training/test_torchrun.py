"""Real `torchrun --nproc_per_node 2` (gloo, CPU): FSDP2 and DDP match one process with the same global batch;
sharded checkpoints (async = sync, EMA never gathered) resume bitwise at the same world size and reshard 2 -> 1 and
1 -> 2."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.training.conftest import (
    checkpoint_contents,
    checkpoint_weights,
    lm_run_args,
    run_main,
    tiny_lm_params,
    train_single_process,
)
from tests.training.distributed_driver import GLOBAL_BATCH, NUM_SAMPLES
from vla_foundry.checkpoint import load_model_checkpoint
from vla_foundry.metrics import read_metrics
from vla_foundry.models.registry import create_model

pytestmark = pytest.mark.slow

# The job's global batch: 2 processes x per-GPU 8, no accumulation.
TWO_PROCESS_BATCH = ("--hparams.global_batch_size", "16")


def torchrun(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.fixture(scope="module")
def driver_output(tmp_path_factory, tiny_datasets, llm_run) -> str:
    """One launch: the FSDP2/DDP equivalence runs, then three training jobs: a whole 2-checkpoint FSDP2 run in
    `<out>/llm`, its resume after checkpoint 1 in `<out>/resumed/llm`, and the single-process `llm_run` resumed
    after its checkpoint 1 on two ranks in `<out>/grow/llm` (same global batch of 8)."""
    out = tmp_path_factory.mktemp("torchrun")
    full = str(out / "llm")
    jobs = [
        {"args": lm_run_args(tiny_datasets, str(out), "llm", *TWO_PROCESS_BATCH)},
        {
            "copy": [full, str(out / "resumed" / "llm"), 1],
            "args": lm_run_args(
                tiny_datasets, str(out / "resumed"), "llm", *TWO_PROCESS_BATCH,
                "--model.resume_from_checkpoint", str(out / "resumed/llm"),
            ),
        },
        {
            "copy": [llm_run.run_dir, str(out / "grow" / "llm"), 1],
            "args": lm_run_args(
                tiny_datasets, str(out / "grow"), "llm", "--hparams.per_gpu_batch_size", "4",
                "--hparams.global_batch_size", "8",
                "--model.resume_from_checkpoint", str(out / "grow" / "llm"),
            ),
        },
    ]  # fmt: skip
    args_file = out / "jobs.json"
    args_file.write_text(json.dumps(jobs))
    torchrun(["tests/training/distributed_driver.py", str(out), str(args_file)])
    return str(out)


@pytest.fixture(scope="module")
def reference():
    """One process, one micro-batch of the whole global batch per step."""
    return train_single_process(NUM_SAMPLES, GLOBAL_BATCH, GLOBAL_BATCH, ema_decay=0.5, grad_clip_norm=0.5)


def _step_losses(run_dir: str) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "loss" in r}


def _results(driver_output: str) -> dict:
    with open(os.path.join(driver_output, "results.json")) as f:
        return json.load(f)


def test_fsdp2_losses_match_single_process(driver_output, reference):
    assert _results(driver_output)["fsdp"]["losses"] == pytest.approx(reference[0], rel=1e-5)


def test_ddp_losses_match_single_process(driver_output, reference):
    assert _results(driver_output)["ddp"]["losses"] == pytest.approx(reference[0], rel=1e-5)


@pytest.mark.parametrize("mode", ["fsdp", "ddp"])
def test_checkpoint_saved_under_wrapping_loads_in_plain_model(driver_output, reference, mode):
    plain = load_model_checkpoint(create_model(tiny_lm_params()), os.path.join(driver_output, f"{mode}_run"))
    for (name, p), q in zip(plain.named_parameters(), reference[1].parameters()):
        assert torch.allclose(p, q, atol=1e-5), name


def test_fsdp2_ema_on_local_shards_matches_single_process(driver_output, reference):
    saved = checkpoint_weights(os.path.join(driver_output, "fsdp_run"), 1, ema=True)
    for name, value in reference[2].shards().items():
        assert torch.allclose(saved[name], value, atol=1e-5), name


def test_fsdp2_ema_is_kept_as_local_shards(driver_output):
    """Every shadow tensor is a DTensor sharded on dim 0 whose rank-0 part is a strict part of it (never a full copy)."""
    layout = _results(driver_output)["fsdp"]["ema"]
    assert layout
    for name, (kind, placements, local, full) in layout.items():
        assert kind == "DTensor" and "Shard(dim=0)" in placements, name
        assert 0 < local < full, name


def test_async_save_overlapped_with_steps_equals_sync_save(driver_output, tmp_path):
    assert _results(driver_output)["fsdp"]["steps_after_async_save"] == 4
    sync = checkpoint_contents(os.path.join(driver_output, "fsdp_run"), 1, str(tmp_path))
    overlapped = checkpoint_contents(os.path.join(driver_output, "fsdp_async_run"), 1, str(tmp_path))
    for group in ("model", "optimizer", "ema"):
        assert_equal_trees(sync[group], overlapped[group], group)


def test_fsdp2_resume_after_checkpoint_is_bitwise_identical(driver_output, tmp_path):
    """Interrupted after checkpoint 1 (a copy of the run dir without checkpoint 2), resumed under torchrun."""
    uninterrupted = os.path.join(driver_output, "llm")
    resumed = os.path.join(driver_output, "resumed", "llm")
    assert _step_losses(resumed) == _step_losses(uninterrupted)
    assert len(_step_losses(resumed)) == 12
    a = checkpoint_contents(uninterrupted, 2, str(tmp_path))
    b = checkpoint_contents(resumed, 2, str(tmp_path))
    for group in ("model", "optimizer", "ema"):
        assert_equal_trees(a[group], b[group], group)
    state = b["trainer_state"]
    assert state["world_size"] == 2 and len(state["rng"]) == 2


def _interval_reads(run_dir: str) -> dict[int, int]:
    """Samples read per checkpoint interval, summed over ranks (logged once per interval)."""
    records = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    return {r["checkpoint_interval"]: r["interval_samples_read"] for r in records if "interval_samples_read" in r}


def _assert_continues(resumed: dict[int, float], uninterrupted: dict[int, float], first_resumed_step: int) -> None:
    """Same steps; from the resumed step on, finite losses that continue the trained curve (another world size
    splits the interval's shards differently over ranks, so per-step batches differ: not bitwise)."""
    assert sorted(resumed) == sorted(uninterrupted)
    later = [s for s in sorted(resumed) if s >= first_resumed_step]
    assert all(math.isfinite(resumed[s]) for s in later)
    assert [resumed[s] for s in later] == pytest.approx([uninterrupted[s] for s in later], rel=0.05)
    assert resumed[first_resumed_step] < uninterrupted[1] - 1.0  # continued from the trained weights


def test_checkpoint_of_one_process_resumes_on_two(driver_output, llm_run):
    """1 -> 2 ranks with the same global batch of 8: the second checkpoint interval reads exactly its 96 samples."""
    grown_dir = os.path.join(driver_output, "grow", "llm")
    _assert_continues(_step_losses(grown_dir), _step_losses(llm_run.run_dir), 13)
    assert _interval_reads(grown_dir) == _interval_reads(llm_run.run_dir) == {0: 96, 1: 96}


def test_checkpoint_of_two_processes_resumes_on_one(driver_output, tiny_datasets, tmp_path, capsys):
    """2 -> 1 rank with the same global batch (16 = 8 x 2 accumulation steps)."""
    uninterrupted = os.path.join(driver_output, "llm")
    shrunk = str(tmp_path / "llm")
    shutil.copytree(uninterrupted, shrunk, ignore=shutil.ignore_patterns("checkpoint_2", "*.safetensors"))
    run_main(
        lm_run_args(
            tiny_datasets, str(tmp_path), "llm", "--hparams.global_batch_size", "16",
            "--model.resume_from_checkpoint", shrunk,
        )
    )  # fmt: skip
    _assert_continues(_step_losses(shrunk), _step_losses(uninterrupted), 7)
    assert _interval_reads(shrunk) == _interval_reads(uninterrupted) == {0: 96, 1: 96}
    assert "written by 2 processes, this run has 1" in capsys.readouterr().err


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
