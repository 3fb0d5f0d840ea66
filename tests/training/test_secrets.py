"""Secrets are never printed or stored: the SageMaker dry run and the resolved config show `***`, while the job
still receives WANDB_API_KEY / HF_TOKEN through its environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT
from tests.training.test_sagemaker_launcher import SCRIPT, _launcher

FAKE = {
    "WANDB_API_KEY": "wandb-fake-0123456789abcdef",
    "HF_TOKEN": "hf_fakeTOKEN9876543210",
    "AWS_ACCESS_KEY_ID": "AKIAFAKEACCESSKEY123",
    "AWS_SECRET_ACCESS_KEY": "fakeSecretAccessKey/abcdefghijklmnop",
    "AWS_SESSION_TOKEN": "FakeSessionToken+0123456789",
}
QUICKSTART = "config_presets/training_jobs/quickstart.yaml"


def test_the_dry_run_prints_no_secret_of_the_environment_or_the_flags():
    extra_secret = "my-db-password-xyz"
    env = {**os.environ, **FAKE}
    proc = subprocess.run(
        [
            sys.executable, str(SCRIPT), "--sagemaker.user", "alice", "--sagemaker.dry_run", "True",
            "--sagemaker.environment", f"{{DB_PASSWORD: {extra_secret}, LOG_LEVEL: debug}}",
            "--config_path", QUICKSTART,
        ],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for value in [*FAKE.values(), extra_secret]:
        assert value not in proc.stdout and value not in proc.stderr, value
    environment = json.loads(proc.stdout)["estimator"]["environment"]
    assert environment == {
        "OMP_NUM_THREADS": "1",
        "WANDB_API_KEY": "***",
        "HF_TOKEN": "***",
        "DB_PASSWORD": "***",
        "LOG_LEVEL": "debug",
    }


def test_an_error_line_masks_a_secret_pasted_into_a_flag():
    env = {**os.environ, **FAKE}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--sagemaker.user", "alice", "--sagemaker.dry_run", "True",
         "--config_path", QUICKSTART, "--hparams.lr", FAKE["WANDB_API_KEY"]],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "hparams.lr" in proc.stderr and "***" in proc.stderr
    assert FAKE["WANDB_API_KEY"] not in proc.stderr


def test_the_job_receives_wandb_and_hf_secrets_but_not_aws_credentials(monkeypatch):
    for name, value in FAKE.items():
        monkeypatch.setenv(name, value)
    launcher = _launcher()
    sm = launcher.SageMakerParams(user="carol")
    environment = launcher.build_launch(sm, ["--config_path", str(REPO_ROOT / QUICKSTART)])["estimator"]["environment"]
    assert environment["WANDB_API_KEY"] == FAKE["WANDB_API_KEY"] and environment["HF_TOKEN"] == FAKE["HF_TOKEN"]
    assert not any(name.startswith("AWS_") for name in environment)


def test_the_resolved_config_masks_a_secret_pasted_into_a_field(monkeypatch, capsys, tmp_path):
    from vla_foundry.main import main

    monkeypatch.setenv("WANDB_API_KEY", FAKE["WANDB_API_KEY"])
    args = ["--config_path", str(REPO_ROOT / QUICKSTART), "--wandb_entity", FAKE["WANDB_API_KEY"]]
    assert main([*args, "--resolve_configs_path", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "wandb_entity: '***'" in printed or "wandb_entity: ***" in printed
    assert FAKE["WANDB_API_KEY"] not in printed
    assert FAKE["WANDB_API_KEY"] not in (tmp_path / "resolved_config.yaml").read_text()
