"""The SageMaker launcher: flags split into the sagemaker group and training flags; the dry run touches no AWS."""

from __future__ import annotations

import datetime
import importlib.util
import json
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "sagemaker" / "launch_training.py"


def _launcher():
    spec = importlib.util.spec_from_file_location("launch_training", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _run(*args: str) -> subprocess.CompletedProcess:
    # The dry run must not import AWS libraries: make any such import fail loudly.
    guard = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('boto3', 'botocore', 'sagemaker'):\n"
        "            raise ImportError('AWS import during dry run: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.argv = [{str(SCRIPT)!r}] + sys.argv[1:]\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", guard, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_dry_run_prints_estimator_image_and_hyperparameters_without_aws():
    proc = _run(
        "--sagemaker.user", "alice", "--sagemaker.instance_count", "2", "--sagemaker.dry_run", "True",
        "--sagemaker.output_s3", "s3://bucket/runs", "--sagemaker.image", "123.dkr.ecr.us-east-1.amazonaws.com/vf:1",
        "--config_path", "config_presets/training_jobs/quickstart.yaml", "--hparams.per_gpu_batch_size", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    launch = json.loads(proc.stdout)
    assert launch["world_size"] == 16 and launch["processes_per_node"] == 8
    assert launch["image"] == "123.dkr.ecr.us-east-1.amazonaws.com/vf:1"
    est = launch["estimator"]
    assert (est["entry_point"], est["instance_count"], est["instance_type"]) == (
        "vla_foundry/main.py",
        2,
        "ml.p5.48xlarge",
    )
    assert est["distribution"] == {"torch_distributed": {"enabled": True}}
    assert launch["hyperparameters"] == {
        "config_path": "config_presets/training_jobs/quickstart.yaml",
        "hparams.per_gpu_batch_size": "1",
        "remote_sync": "s3://bucket/runs/alice",
        "save_path": "/opt/ml/checkpoints",
    }
    assert launch["job_name"].startswith("alice-quickstart-")


def test_batch_math_is_checked_for_the_jobs_world_size():
    proc = _run(
        "--sagemaker.user", "alice", "--sagemaker.dry_run", "True",
        "--config_path", "config_presets/training_jobs/quickstart.yaml", "--hparams.global_batch_size", "100",
    )  # fmt: skip
    assert proc.returncode == 2
    assert "global_batch_size=100 is not divisible by per_gpu_batch_size x world_size = 16 x 8" in proc.stderr


def test_missing_user_and_unknown_instance_type_are_config_errors():
    proc = _run("--sagemaker.dry_run", "True", "--config_path", "config_presets/training_jobs/quickstart.yaml")
    assert proc.returncode == 2 and "sagemaker.user is required" in proc.stderr
    proc = _run(
        "--sagemaker.user", "bob", "--sagemaker.instance_type", "ml.x1.mystery", "--sagemaker.dry_run", "True",
        "--config_path", "config_presets/training_jobs/quickstart.yaml",
    )  # fmt: skip
    assert proc.returncode == 2 and "--sagemaker.nproc_per_node" in proc.stderr


def test_the_readme_command_with_a_short_instance_name_and_a_dotted_user_runs():
    proc = _run(
        "--sagemaker.user", "your.user.name", "--sagemaker.instance_count", "1", "--sagemaker.instance_type", "p4de",
        "--sagemaker.dry_run", "True", "--config_path", "config_presets/training_jobs/quickstart.yaml",
        "--hparams.per_gpu_batch_size", "4",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    launch = json.loads(proc.stdout)
    assert launch["estimator"]["instance_type"] == "ml.p4de.24xlarge"
    assert launch["world_size"] == 8 and launch["processes_per_node"] == 8
    assert launch["job_name"].startswith("your-user-name-quickstart-")
    assert launch["estimator"]["tags"] == [{"Key": "user", "Value": "your.user.name"}]


@pytest.mark.parametrize(
    ("given", "ml_name", "gpus"),
    [
        ("p4d", "ml.p4d.24xlarge", 8),
        ("p5", "ml.p5.48xlarge", 8),
        ("p5e", "ml.p5e.48xlarge", 8),
        ("p5en", "ml.p5en.48xlarge", 8),
        ("g5", "ml.g5.48xlarge", 8),
        ("g6e", "ml.g6e.48xlarge", 8),
        ("g5.12xlarge", "ml.g5.12xlarge", 4),
        ("g6e.24xlarge", "ml.g6e.24xlarge", 4),
        ("ml.g6e.4xlarge", "ml.g6e.4xlarge", 1),
    ],
)
def test_instance_names_resolve_to_sagemaker_types_with_their_gpu_counts(given, ml_name, gpus):
    launcher = _launcher()
    sm = launcher.SageMakerParams(user="erin", instance_type=given, instance_count=2)
    sm.validate()
    assert (sm.ml_instance_type, sm.procs_per_node, sm.world_size) == (ml_name, gpus, 2 * gpus)


def test_an_unknown_instance_name_lists_the_closest_known_ones():
    launcher = _launcher()
    with pytest.raises(launcher.ConfigError, match=r"instance_type='p4dee' has no known GPU count \(closest: p4de"):
        launcher.SageMakerParams(user="erin", instance_type="p4dee").validate()


@pytest.mark.parametrize(
    ("user", "expected"), [("your.user.name", "your-user-name"), ("_a__b_", "a-b"), ("x@y.z", "x-y-z")]
)
def test_user_names_become_valid_job_names(user, expected):
    launcher = _launcher()
    name = launcher.job_name(user, "run", datetime.datetime(2026, 1, 2, 3, 4, 5))
    assert name == f"{expected}-run-20260102-030405"
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name)  # SageMaker's TrainingJobName pattern


def test_a_user_name_without_letters_or_digits_is_a_config_error():
    launcher = _launcher()
    with pytest.raises(launcher.ConfigError, match="no letter or digit"):
        launcher.SageMakerParams(user="...").validate()


def test_unnamed_runs_are_named_after_the_job():
    launcher = _launcher()
    sm = launcher.SageMakerParams(user="carol", instance_type="ml.g5.2xlarge")
    launch = launcher.build_launch(
        sm, ["--model", f"include {REPO_ROOT}/config_presets/models/transformer_tiny.yaml", "--data.type", "text",
             "--total_train_samples", "64"]
    )  # fmt: skip
    assert launch["hyperparameters"]["name"] == launch["job_name"]
    assert launch["world_size"] == 1


def test_job_name_fits_sagemaker_limits():
    launcher = _launcher()
    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    name = launcher.job_name("dave", "a_very_long_run_name/with.odd chars" * 3, now)
    assert len(name) <= 63 and name.endswith("-20260102-030405")
    assert all(c.isalnum() or c == "-" for c in name)


@pytest.mark.parametrize("flags", [["--model.n_layers"], ["stray"]])
def test_malformed_training_flags_are_rejected(flags):
    launcher = _launcher()
    with pytest.raises(launcher.ConfigError):
        launcher.train_flags_to_hyperparameters(flags)


def test_submitting_without_aws_credentials_is_one_line_naming_what_to_set(tmp_path):
    """No dry run and no credentials anywhere (no variables, no config files, no instance metadata): one line, exit 2,
    before anything is sent."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_REGION": "us-east-1",
    }
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--sagemaker.user", "alice", "--sagemaker.instance_type", "p4de",
         "--config_path", "config_presets/training_jobs/quickstart.yaml", "--hparams.per_gpu_batch_size", "2"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: no AWS credentials found") and "--sagemaker.dry_run True" in lines[0]
