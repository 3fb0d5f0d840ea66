"""Whole runs meeting broken checkpoints: a process killed during its first save, a truncated latest checkpoint, a
corrupt checkpoint named on the command line, a restarted run dir without a complete checkpoint."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import torch

from tests.conftest import REPO_ROOT
from tests.training.conftest import lm_run_args, run_main
from vla_foundry.checkpoint import INDEX_FILE, checkpoint_dir, latest_checkpoint
from vla_foundry.main import main
from vla_foundry.metrics import read_metrics


def _step_losses(run_dir: str) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "loss" in r}


def _copy_run(src: str, dst: str, upto: int) -> None:
    later = [f"checkpoint_{k}" for k in range(upto + 1, 10)]
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*later, "*.safetensors"))


def _flip_a_byte(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(64)
        byte = f.read(1)
        f.seek(64)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_kill_9_during_the_first_save_then_the_same_command_completes(tmp_path, tiny_datasets):
    # ~13M parameters: writing the state takes long enough to be killed in the middle of it.
    args = lm_run_args(
        tiny_datasets, str(tmp_path), "killed", "--model.hidden_dim", "512", "--model.n_layers", "4",
        "--total_train_samples", "16", "--num_checkpoints", "1",
    )  # fmt: skip
    cmd = [sys.executable, "vla_foundry/main.py", *args]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    first_save = checkpoint_dir(str(tmp_path / "killed"), 1)
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while not os.path.isdir(first_save) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        proc.kill()
    finally:
        proc.wait()
    assert os.path.isdir(first_save) and not os.path.exists(os.path.join(first_save, INDEX_FILE))

    rerun = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # The interrupted checkpoint directory is removed and named (temporary files of the same save may join it).
    assert re.search(rf"removed \d+ leftovers of interrupted saves: (.*, )?{re.escape(first_save)}", rerun.stderr)
    assert latest_checkpoint(str(tmp_path / "killed"), verify=True).number == 1
    assert sorted(_step_losses(str(tmp_path / "killed"))) == [1, 2]


def test_truncated_latest_checkpoint_resumes_from_the_previous_one(llm_run, tmp_path, tiny_datasets, capsys):
    run_dir = str(tmp_path / "llm")
    _copy_run(llm_run.run_dir, run_dir, 2)
    shard = os.path.join(checkpoint_dir(run_dir, 2), "__0_0.distcp")
    with open(shard, "r+b") as f:
        f.truncate(100)
    resumed = run_main(lm_run_args(tiny_datasets, str(tmp_path), "llm", "--model.resume_from_checkpoint", run_dir))
    err = capsys.readouterr().err
    assert f"warning: skipping checkpoint {checkpoint_dir(run_dir, 2)}" in err and shard in err
    assert resumed.losses == llm_run.losses[12:]
    assert latest_checkpoint(run_dir, verify=True).number == 2


def test_resume_from_a_corrupt_checkpoint_ends_in_one_line_naming_the_file(llm_run, tmp_path, tiny_datasets, capsys):
    run_dir = str(tmp_path / "llm")
    _copy_run(llm_run.run_dir, run_dir, 2)
    shard = os.path.join(checkpoint_dir(run_dir, 2), "__0_0.distcp")
    _flip_a_byte(shard)
    code = main(
        lm_run_args(tiny_datasets, str(tmp_path), "llm", "--model.resume_from_checkpoint", checkpoint_dir(run_dir, 2))
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err == [f"error: {shard} is corrupt (its sha256 differs from index.json); delete {checkpoint_dir(run_dir, 2)} "
                   "to use the previous checkpoint"]  # fmt: skip


def test_resume_flag_on_a_run_dir_without_a_complete_checkpoint_starts_it_over(llm_run, tmp_path, tiny_datasets):
    """What a launcher that restarts failed workers does after a crash before the first checkpoint was complete."""
    run_dir = str(tmp_path / "llm")
    _copy_run(llm_run.run_dir, run_dir, 1)
    os.unlink(os.path.join(checkpoint_dir(run_dir, 1), INDEX_FILE))
    restarted = run_main(lm_run_args(tiny_datasets, str(tmp_path), "llm", "--model.resume_from_checkpoint", run_dir))
    assert restarted.run_dir == run_dir
    assert restarted.losses == llm_run.losses
    assert _step_losses(run_dir) == _step_losses(llm_run.run_dir)


def test_time_blocked_by_each_save_is_in_the_metrics(llm_run):
    records = [r for r in read_metrics(os.path.join(llm_run.run_dir, "metrics.jsonl")) if "checkpoint_blocked_s" in r]
    assert [(r["step"], r["checkpoint"]) for r in records] == [(12, 1), (24, 2)]
    assert all(isinstance(r["checkpoint_blocked_s"], float) and r["checkpoint_blocked_s"] >= 0 for r in records)


def test_end_of_run_export_equals_the_last_checkpoint_weights(llm_run):
    from safetensors.torch import load_file

    from tests.training.conftest import checkpoint_weights

    for name, ema in (("model.safetensors", False), ("ema.safetensors", True)):
        exported = load_file(os.path.join(llm_run.run_dir, name))
        expected = checkpoint_weights(llm_run.run_dir, 2, ema=ema)
        assert exported.keys() == expected.keys()
        assert all(torch.equal(exported[k], v) for k, v in expected.items()), name
