"""The Ray Train launcher: 2 CPU workers (gloo) train the tiny VLA straight from a LeRobot stream; a worker killed
with SIGKILL mid-run is restarted from the latest complete checkpoint and the run completes (tiny LLM: resuming the
tiny VLA trips the strict optimizer-state load of checkpoint/dcp.py, whose unused LM head has no optimizer state)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import PRESETS, tiny_vla_stream_args
from vla_foundry.data.scripts.make_synthetic_lerobot import make_lerobot_v3
from vla_foundry.launch.ray_train import split_args
from vla_foundry.params.base_params import ConfigError

REPO = Path(__file__).resolve().parents[2]
INTERVALS = 3


def launcher_args(save_path: Path, name: str) -> list[str]:
    return [
        "--ray.num_workers", "2",
        "--ray.use_gpu", "False",
        "--ray.max_failures", "1",
        "--model", f"include {PRESETS / 'models' / 'transformer_tiny.yaml'}",
        "--hparams", f"include {PRESETS / 'hparams' / 'cpu_tiny.yaml'}",
        "--data", f"include {PRESETS / 'data' / 'tiny_text.yaml'}",
        "--data.dataset_manifest", f"[{REPO / 'examples' / 'data' / 'text'}]",
        "--hparams.per_gpu_batch_size", "8",
        "--hparams.global_batch_size", "16",
        "--total_train_samples", str(INTERVALS * 64),
        "--num_checkpoints", str(INTERVALS),
        "--log_every_n_steps", "1",
        "--wandb", "False",
        "--save_path", str(save_path),
        "--name", name,
    ]  # fmt: skip


def train_workers(root_pid: int) -> list[psutil.Process]:
    """Ray Train worker processes started under the launcher (its local Ray's raylet spawns them)."""
    out = []
    for proc in psutil.Process(root_pid).children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(proc.cmdline()):
                out.append(proc)
        except psutil.NoSuchProcess:
            continue
    return out


def test_a_killed_worker_is_restarted_from_the_last_checkpoint_and_the_run_completes(tmp_path):
    run_dir = tmp_path / "runs" / "ray_llm"
    env = {**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0", "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "launcher.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "vla_foundry.launch.ray_train", *launcher_args(tmp_path / "runs", "ray_llm")],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    killed = None
    try:
        first_state = run_dir / "checkpoints" / "checkpoint_1" / "index.json"
        deadline = time.time() + 400
        while killed is None and time.time() < deadline and proc.poll() is None:
            workers = train_workers(proc.pid)
            if first_state.exists() and len(workers) == 2:
                killed = workers[1]
                os.kill(killed.pid, signal.SIGKILL)  # a real fault: no cleanup in the worker
                break
            time.sleep(0.2)
        assert killed is not None, "the run ended or stalled before a worker could be killed after checkpoint 1"
        killed.wait(timeout=30)
        assert proc.wait(timeout=480) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    output = (tmp_path / "launcher.log").read_text()

    assert not psutil.pid_exists(killed.pid) or killed.status() == psutil.STATUS_ZOMBIE
    assert "resuming from the latest complete checkpoint" in output
    # The restarted attempt resumed from a checkpoint (>= 1), not from scratch, and finished every checkpoint interval.
    resumed = [line for line in output.splitlines() if "resumed from" in line]
    assert resumed and "step 0," not in resumed[0]
    assert (run_dir / "checkpoints" / f"checkpoint_{INTERVALS}" / "index.json").exists()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # Every step logged exactly once: the redone interval's records replaced, not duplicated.
    assert sorted(r["step"] for r in records if "loss" in r) == list(range(1, INTERVALS * 64 // 16 + 1))


def test_two_ray_train_workers_train_the_tiny_vla_from_a_lerobot_stream(tmp_path):
    root = make_lerobot_v3(tmp_path / "toy_v3", lengths=(8, 6, 9, 7, 8))
    args = [
        "--ray.num_workers", "2",
        "--ray.cpus_per_worker", "0.5",  # leaves a CPU of the 2 to the stream's Ray Data task
        *tiny_vla_stream_args(root, tmp_path / "runs", "vla_stream"),
    ]  # fmt: skip
    env = {**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    # A session of its own: on a timeout the whole group (Ray's processes hold the output pipes) is killed, so the
    # test fails instead of waiting on the pipes forever.
    proc = subprocess.Popen(
        [sys.executable, "-m", "vla_foundry.launch.ray_train", *args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=480)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=60)
        raise AssertionError("the Ray Train run did not finish in 480 s:\n" + stderr[-3000:]) from None
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    run_dir = tmp_path / "runs" / "vla_stream"
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss" in r]
    # 2 checkpoint intervals of 16 samples: 2 workers x batch 4 -> 2 steps per interval.
    assert [r["step"] for r in losses] == [1, 2, 3, 4]
    assert all(0.0 <= r["data_wait_fraction"] <= 1.0 and r["samples_per_sec"] > 0 for r in losses)
    assert [r["interval_samples_read"] for r in records if "interval_samples_read" in r] == [16, 16]
    assert (run_dir / "checkpoints" / "checkpoint_2" / "index.json").exists()
    # The run's processor carries the stream's layout (stored 32 px images, 1 past + 4 future rows).
    assert "stored_image_size:\n- 32\n- 32" in (run_dir / "config_processor.yaml").read_text()
    # Rank 0's lines reach the driver once each (Ray Train's print patch printed and logged them: twice), and
    # Ray Train's internal warnings about the state API and the preemption watcher are not shown.
    output = stdout + stderr
    step_lines = [line for line in output.splitlines() if " step " in line and " | loss " in line]
    assert len(step_lines) == 4, step_lines
    assert "Failed to query Ray Train Controller" not in output
    assert "PreemptionWatcher" not in output


def test_launcher_flags_are_checked_with_the_closest_names():
    params, rest = split_args(["--ray.num_workers", "3", "--ray.use_gpu=True", "--name", "x"])
    assert (params.ray.num_workers, params.ray.use_gpu, rest) == (3, True, ["--name", "x"])
    with pytest.raises(ConfigError, match="unknown key 'ray.max_failure'.*closest valid names under ray: max_failures"):
        split_args(["--ray.max_failure", "2"])


def test_the_ray_address_is_spelled_as_in_preprocessing_and_the_old_spelling_warns(capsys):
    params, rest = split_args(["--ray_address", "auto", "--name", "x"])
    assert (params.ray_address, rest) == ("auto", ["--name", "x"])
    assert capsys.readouterr().err == ""
    assert split_args(["--ray_address=10.0.0.1:6379"])[0].ray_address == "10.0.0.1:6379"
    params, _ = split_args(["--ray.address", "auto"])
    assert params.ray_address == "auto"
    assert "--ray.address is now --ray_address" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--ray_address needs a value"):
        split_args(["--ray_address"])
