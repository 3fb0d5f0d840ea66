"""A run dir on a real, small tmpfs that fills up during a checkpoint save; a metrics.jsonl whose last line was cut.

The disk is a real file system: a 40 MB tmpfs mounted for the test (mounting needs root; elsewhere the tests are
skipped with that reason). Nothing is simulated: the writes fail with the kernel's ENOSPC.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.training.conftest import lm_run_args
from vla_foundry.checkpoint import checkpoint_dir, latest_checkpoint
from vla_foundry.main import main
from vla_foundry.metrics import read_metrics

MB = 1 << 20


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Callable[[int], str]]:
    """mount(size_bytes) -> the path of a fresh tmpfs of that size; all are unmounted after the test."""
    mounted: list[str] = []

    def mount(size: int) -> str:
        path = str(tmp_path / f"tmpfs_{uuid.uuid4().hex[:6]}")
        os.makedirs(path)
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.decode().strip()}")
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", path], check=False)


def _args(datasets: dict[str, str], save_path: str, *extra: str) -> list[str]:
    # ~1.7M parameters: model, two Adam moments and EMA make a checkpoint of about 27 MB, so one fits in 40 MB and
    # the second does not.
    return lm_run_args(
        datasets, save_path, "full", "--model.hidden_dim", "256", "--total_train_samples", "32",
        "--num_checkpoints", "2", *extra,
    )  # fmt: skip


@pytest.mark.slow
def test_disk_full_during_a_checkpoint_is_one_line_and_the_previous_checkpoint_stays_whole(
    tmpfs, tiny_datasets, capsys
):
    save_path = tmpfs(40 * MB)
    run_dir = os.path.join(save_path, "full")
    assert main(_args(tiny_datasets, save_path)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "enforce fail" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: no space left on device in {run_dir} while writing checkpoint 2 (it needs about ")
    assert last.endswith(
        "checkpoint 1 is complete (the partial checkpoint 2 was removed); free space or move the run dir to a "
        f"larger disk, then resume with --model.resume_from_checkpoint {run_dir}"
    )
    # The stated size is the checkpoint's: within 10% of what checkpoint 1 takes on disk.
    needed_mb = float(last.split("it needs about ")[1].split(" MB")[0])
    ckpt1 = checkpoint_dir(run_dir, 1)
    on_disk = sum(os.path.getsize(os.path.join(ckpt1, n)) for n in os.listdir(ckpt1)) / 1e6
    assert abs(needed_mb - on_disk) < 0.1 * on_disk, (needed_mb, on_disk)
    assert latest_checkpoint(run_dir, verify=True).number == 1
    assert not os.path.exists(checkpoint_dir(run_dir, 2))


@pytest.mark.slow
def test_after_freeing_space_the_same_command_with_resume_finishes(tmpfs, tiny_datasets, capsys):
    save_path = tmpfs(40 * MB)
    run_dir = os.path.join(save_path, "full")
    assert main(_args(tiny_datasets, save_path)) == 2
    capsys.readouterr()
    # Free space: the same file system grows to 200 MB.
    subprocess.run(["mount", "-o", f"remount,size={200 * MB}", save_path], check=True)
    assert main(_args(tiny_datasets, save_path, "--model.resume_from_checkpoint", run_dir)) == 0
    assert latest_checkpoint(run_dir, verify=True).number == 2
    steps = [r["step"] for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "loss" in r]
    assert steps == [1, 2, 3, 4]


def test_a_torn_last_metrics_line_is_dropped_with_a_warning_and_the_run_resumes(
    llm_run, tmp_path, tiny_datasets, capsys
):
    from tests.checkpoint.test_recovery import _copy_run

    run_dir = str(tmp_path / "llm")
    _copy_run(llm_run.run_dir, run_dir, 1)
    metrics = os.path.join(run_dir, "metrics.jsonl")
    whole = read_metrics(metrics)
    with open(metrics, "a") as f:
        f.write('{"step": 13, "loss": 2.71')  # the disk filled in the middle of this record
    args = lm_run_args(tiny_datasets, str(tmp_path), "llm", "--model.resume_from_checkpoint", run_dir)
    assert main(args) == 0
    err = capsys.readouterr().err
    assert (
        f"warning: {metrics}: line {len(whole) + 1} is not a whole JSON record (cut by a full disk or a killed "
        f"process?); dropped, the {len(whole)} whole records are kept"
    ) in err
    resumed = read_metrics(metrics)
    assert [r["step"] for r in resumed if "loss" in r] == [r["step"] for r in whole if "loss" in r]


def test_a_torn_line_in_the_middle_is_dropped_and_named(tmp_path, capsys):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "lo\n{"step": 3, "loss": 2.0}\n')
    assert [r["step"] for r in read_metrics(str(metrics))] == [1, 3]
    assert f"warning: {metrics}: line 2 is not a whole JSON record" in capsys.readouterr().err
