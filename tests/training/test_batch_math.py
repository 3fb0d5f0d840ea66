"""A job file's global batch is kept on any world size: accumulation is derived, so one process and
`torchrun --nproc_per_node 2` (gloo, CPU) take the same optimizer steps over the same number of samples."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import PRESETS, REPO_ROOT
from vla_foundry.checkpoint import checkpoint_dir, load_trainer_state, resolve_checkpoint

pytestmark = pytest.mark.slow

# 48 samples in global batches of 8: 6 optimizer steps whatever the world size.
GLOBAL_BATCH, PER_GPU, TOTAL = 8, 2, 48


def job_args(dataset: str, save_path: str, name: str) -> list[str]:
    return [
        "--model", f"include {PRESETS / 'models' / 'transformer_tiny.yaml'}",
        "--hparams", f"include {PRESETS / 'hparams' / 'cpu_tiny.yaml'}",
        "--data.type", "text",
        "--data.seq_len", "16",
        "--data.dataset_manifest", f"[{dataset}]",
        "--data.dataset_weighting", "[1.0]",
        "--data.dataset_modality", "[text]",
        "--data.num_workers", "0",
        "--hparams.per_gpu_batch_size", str(PER_GPU),
        "--hparams.global_batch_size", str(GLOBAL_BATCH),
        "--total_train_samples", str(TOTAL),
        "--log_every_n_steps", "1",
        "--save_path", save_path,
        "--name", name,
    ]  # fmt: skip


def launch(args: list[str], processes: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    cmd = [sys.executable, *(launcher if processes > 1 else []), "vla_foundry/main.py", *args]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.fixture(scope="module")
def runs(tiny_datasets, tmp_path_factory) -> dict[int, tuple[str, str]]:
    """{world size: (run dir, stderr)} of the same job run by 1 and by 2 processes."""
    out = tmp_path_factory.mktemp("batch_math")
    result = {}
    for processes in (1, 2):
        name = f"world{processes}"
        proc = launch(job_args(tiny_datasets["text_a"], str(out), name), processes)
        result[processes] = (str(out / name), proc.stderr)
    return result


def trainer_state(run_dir: str) -> dict:
    return load_trainer_state(resolve_checkpoint(checkpoint_dir(run_dir, 1)))


def test_one_and_two_processes_take_the_same_steps_over_the_same_samples(runs):
    single, double = trainer_state(runs[1][0]), trainer_state(runs[2][0])
    assert (single["step"], single["samples_seen"]) == (TOTAL // GLOBAL_BATCH, TOTAL)
    assert (double["step"], double["samples_seen"]) == (TOTAL // GLOBAL_BATCH, TOTAL)


@pytest.mark.parametrize(("world", "accumulation"), [(1, 4), (2, 2)])
def test_the_derived_batch_values_are_printed_at_start(runs, world, accumulation):
    expected = f"global batch {GLOBAL_BATCH} = per-GPU {PER_GPU} x world size {world} x accumulation {accumulation}"
    assert expected in runs[world][1]
