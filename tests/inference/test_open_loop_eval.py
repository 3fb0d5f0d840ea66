"""Open-loop evaluation: per-field and per-horizon MSE in physical units, and a PNG of predicted vs recorded."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from vla_foundry.inference import Policy
from vla_foundry.inference.open_loop_eval import evaluate_open_loop, main, run_open_loop_eval


def test_metrics_cover_every_field_and_horizon_step(policy_run, tiny_robotics_dir, tmp_path):
    metrics = run_open_loop_eval(policy_run, str(tmp_path), dataset=tiny_robotics_dir, num_samples=10, batch_size=4)
    assert metrics["num_samples"] == 10 and metrics["num_skipped"] == 0
    assert len(metrics["mse_per_horizon"]) == 5  # anchor + 4 future steps
    assert set(metrics["mse_per_field"]) == {"action"}
    assert len(metrics["mse_per_field_per_horizon"]["action"]) == 5
    assert metrics["mse"] > 0 and metrics["normalized_mse"] > 0
    written = json.loads((tmp_path / "open_loop_metrics.json").read_text())
    assert written == metrics
    png = (tmp_path / "open_loop_trajectories.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_mse_is_measured_in_physical_units_on_valid_rows_only(policy_run, tiny_robotics_dir):
    policy = Policy.from_run(policy_run)
    result = evaluate_open_loop(policy, tiny_robotics_dir, num_samples=24, batch_size=8)
    P, R, V = result["_predicted"], result["_recorded"], result["_valid"]
    assert not V.all()  # windows at episode ends have padded rows
    expected = ((P - R) ** 2)[V].mean()
    assert result["mse"] == pytest.approx(float(expected))
    # Recorded actions are the dataset's raw values (positions in [-1, 1] and velocities of 0.1).
    assert np.abs(R[V]).max() < 1.5


def test_command_line_writes_into_the_run_directory_by_default(policy_run, tiny_robotics_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(
        ["--run_dir", policy_run, "--dataset", tiny_robotics_dir, "--num_samples", "6", "--output_dir", str(out)]
    )
    assert code == 0
    assert "open-loop MSE" in capsys.readouterr().out
    assert os.path.exists(out / "open_loop_trajectories.png")


def test_without_a_dataset_the_runs_validation_split_must_exist(policy_run, tmp_path, capsys):
    code = main(["--run_dir", policy_run, "--output_dir", str(tmp_path), "--split", "val"])
    assert code == 2
    assert "has no data.val_dataset_manifest in config.yaml; give --dataset" in capsys.readouterr().out
