"""Parsing reads only config files; the resolve step reads the datasets, backbone runs and tokenizers, its errors
are one line, and `--resolve_configs True` prints the data-derived values a run would use."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from tests.conftest import PRESETS, REPO_ROOT
from vla_foundry.params import parse_train_params

VLA_JOB = ["--config_path", str(PRESETS / "training_jobs" / "vla_diffusion_tiny_quickstart.yaml")]


def run_main(*args: str) -> subprocess.CompletedProcess:
    # No hub: a tokenizer name that is not cached fails at once instead of retrying a download.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "vla_foundry/main.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_parsing_reads_neither_the_tokenizer_nor_the_datasets():
    params = parse_train_params(
        [*VLA_JOB, "--data.tokenizer", "no-such-org/no-such-tokenizer", "--data.dataset_manifest", "[/nowhere/ds]"]
    )
    assert params.data.tokenizer == "no-such-org/no-such-tokenizer"
    assert params.data.action_dim is None  # a data-derived value: filled by the resolve step


def test_resolve_configs_prints_the_data_derived_values():
    result = run_main(*VLA_JOB, "--resolve_configs", "True")
    assert result.returncode == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    # examples/data/robotics_lerobot: action and observation.state are 4 wide; cameras front, wrist; window 1 + 4.
    assert (printed["data"]["action_dim"], printed["data"]["proprioception_dim"]) == (4, 4)
    assert printed["data"]["camera_names"] == ["front", "wrist"]
    assert printed["data"]["image_indices"] == [-1, 0]
    model = printed["model"]
    assert (model["action_dim"], model["proprioception_dim"]) == (4, 4)
    assert (model["past_lowdim_steps"], model["future_lowdim_steps"]) == (1, 4)
    assert printed["data"]["image_size"] == model["backbone"]["vit"]["img_size"]
    assert "resolve_configs" not in printed  # the printed config trains as it is


def test_resolve_configs_shows_only_the_parallel_mode_that_applies():
    fsdp = yaml.safe_load(run_main(*VLA_JOB, "--resolve_configs", "True").stdout)
    assert fsdp["distributed"]["fsdp"] is True and "ddp" not in fsdp["distributed"]  # FSDP wins over ddp
    assert fsdp["distributed"]["reshard_after_forward"] is True
    ddp = yaml.safe_load(run_main(*VLA_JOB, "--distributed.fsdp", "False", "--resolve_configs", "True").stdout)
    assert ddp["distributed"]["ddp"] is True
    assert "cpu_offload" not in ddp["distributed"] and "reshard_after_forward" not in ddp["distributed"]
    assert "resolve_configs_path" not in ddp


def one_error_line(capsys, *args: str) -> str:
    """main() in this process; the single stderr line it printed (exit status 2)."""
    from vla_foundry.main import main

    assert main(list(args)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_tokenizer_that_cannot_be_loaded_is_one_line_in_the_resolve_step(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    line = one_error_line(capsys, *VLA_JOB, "--resolve_configs", "True", "--data.tokenizer", "gpt2")
    assert line.startswith("error: data.tokenizer='gpt2' cannot be loaded")


def test_a_missing_dataset_in_the_resolve_step_is_one_line_naming_it(capsys):
    line = one_error_line(capsys, *VLA_JOB, "--resolve_configs", "True", "--data.dataset_manifest", "[/nowhere/rds]")
    assert line.startswith("error: ") and "/nowhere/rds" in line
