"""Open-loop evaluation: per-field and per-horizon MSE in physical units, and a PNG of predicted vs recorded."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vla_foundry.inference import Policy
from vla_foundry.inference.open_loop_eval import OpenLoopParams, evaluate_open_loop, main, run_open_loop_eval


def test_metrics_cover_every_field_and_horizon_step(policy_run, tiny_robotics_dir, tmp_path):
    params = OpenLoopParams(
        run_dir=policy_run, output_dir=str(tmp_path), dataset=tiny_robotics_dir, num_samples=10, batch_size=4
    )
    metrics = run_open_loop_eval(params)
    assert metrics["num_samples"] == 10 and metrics["num_skipped"] == 0
    assert len(metrics["mse_per_horizon"]) == 5  # anchor + 4 future steps
    assert set(metrics["mse_per_field"]) == {"action"}
    assert len(metrics["mse_per_field_per_horizon"]["action"]) == 5
    assert metrics["mse"] > 0 and metrics["normalized_mse"] > 0
    written = json.loads((tmp_path / "open_loop_metrics.json").read_text())
    assert written == metrics
    png = (tmp_path / "open_loop_trajectories.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def recorded_windows(dataset_dir: str, n: int) -> list[dict[str, np.ndarray]]:
    """The first `n` samples' `lowdim.npz` in manifest order, read straight from the shards (no processor)."""
    windows = []
    for line in Path(dataset_dir, "manifest.jsonl").read_text().splitlines():
        shard = json.loads(line)["shard"]
        with tarfile.open(os.path.join(dataset_dir, f"{shard}.tar")) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".lowdim.npz") and len(windows) < n:
                    windows.append(dict(np.load(io.BytesIO(tar.extractfile(member).read()))))
    return windows


def test_mse_is_measured_in_physical_units_on_valid_rows_only(policy_run, tiny_robotics_dir):
    """A model that predicts 0 in normalised units predicts the dataset mean in physical units (std normalisation),
    so the expected MSE follows from stats.json and the recorded actions in the shards alone."""
    policy = Policy.from_run(policy_run)
    policy.model.generate_actions = lambda batch, **kwargs: torch.zeros_like(batch["actions"])
    result = evaluate_open_loop(policy, tiny_robotics_dir, num_samples=24, batch_size=8)
    assert result["num_samples"] == 24 and result["num_skipped"] == 0

    mean = np.array(json.loads(Path(tiny_robotics_dir, "stats.json").read_text())["action"]["mean"])
    past = policy.config.past_lowdim_steps
    errors = [[] for _ in range(policy.config.future_lowdim_steps + 1)]  # squared errors per horizon step
    for window in recorded_windows(tiny_robotics_dir, 24):
        for h, (row, valid) in enumerate(zip(window["action"][past:], window["future_mask"][past:], strict=True)):
            if valid:
                errors[h].extend(((row - mean) ** 2).tolist())
    assert any(len(e) == 0 or len(e) < len(errors[0]) for e in errors[1:])  # episode ends padded some rows
    assert result["mse"] == pytest.approx(np.mean([x for e in errors for x in e]), rel=1e-6)
    assert result["mse_per_horizon"] == pytest.approx([np.mean(e) if e else 0.0 for e in errors], rel=1e-6)


def test_command_line_writes_into_the_run_directory_by_default(policy_run, tiny_robotics_dir, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(policy_run, run_dir)
    code = main(["--run_dir", str(run_dir), "--dataset", tiny_robotics_dir, "--num_samples", "6"])
    assert code == 0
    assert "open-loop MSE" in capsys.readouterr().out
    assert json.loads((run_dir / "open_loop" / "open_loop_metrics.json").read_text())["num_samples"] == 6
    assert (run_dir / "open_loop" / "open_loop_trajectories.png").read_bytes()[:4] == b"\x89PNG"


def test_zero_plots_writes_the_metrics_and_no_plot(policy_run, tiny_robotics_dir, tmp_path):
    out = tmp_path / "ol"
    code = main(["--run_dir", policy_run, "--dataset", tiny_robotics_dir, "--num_samples", "4", "--num_plots", "0",
                 "--output_dir", str(out)])  # fmt: skip
    assert code == 0
    assert json.loads((out / "open_loop_metrics.json").read_text())["num_samples"] == 4
    assert not (out / "open_loop_trajectories.png").exists()


def test_without_a_dataset_the_runs_validation_split_must_exist(policy_run, tmp_path, capsys):
    code = main(["--run_dir", policy_run, "--output_dir", str(tmp_path), "--split", "val"])
    assert code == 2
    assert "has no data.val_dataset_manifest in config.yaml; give --dataset" in capsys.readouterr().err
