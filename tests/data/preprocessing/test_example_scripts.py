"""The copy-paste scripts in examples/preprocessing/: each one's commands, printed by its DRY_RUN mode, use flags
their entry points accept and presets that exist, so a user's first run does not fail on a typo."""

from __future__ import annotations

import importlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, dry_run_lines
from vla_foundry.params.preprocessing_params import (
    CaptionPreprocessingParams,
    RoboticsPreprocessingParams,
    TextPreprocessingParams,
    parse_preprocessing_params,
)

SCRIPTS_DIR = REPO_ROOT / "examples" / "preprocessing"
SCRIPTS = [
    "lerobot_to_shards.sh",
    "spartan_to_shards.sh",
    "text_to_shards.sh",
    "captions_to_shards.sh",
    "hdf5_to_shards.sh",
    "mcap_to_shards.sh",
    "robodm_to_shards.sh",
]
JOBS = {
    "vla_foundry/data/preprocessing/preprocess_robotics_to_tar.py": RoboticsPreprocessingParams,
    "vla_foundry/data/preprocessing/preprocess_text_to_tar.py": TextPreprocessingParams,
    "vla_foundry/data/preprocessing/preprocess_captions_to_tar.py": CaptionPreprocessingParams,
}
# Entry points parsed by vla_foundry.cli: path or module -> importable module with main(argv).
ARGPARSE_ENTRIES = {
    "vla_foundry/data/scripts/download_dataset.py": "vla_foundry.data.scripts.download_dataset",
    "vla_foundry.data.scripts.make_synthetic_lerobot": "vla_foundry.data.scripts.make_synthetic_lerobot",
    "vla_foundry.data.validate": "vla_foundry.data.validate",
}


def dry_run(script: str, *args: str, **env: str) -> list[list[str]]:
    """The commands the script would run, one argv each (entry point first, after `uv run python [-m]`)."""
    commands = []
    for argv in dry_run_lines(
        SCRIPTS_DIR / script,
        list(args),
        env,
        ("SOURCE", "TASKS", "RAW", "OUTPUT", "CAMERAS", "MAPPING", "FPS", "TRUST_PICKLE"),
    ):
        assert argv[:3] == ["uv", "run", "python"], argv
        commands.append(argv[4:] if argv[3] == "-m" else argv[3:])
    return commands


def preset_paths(args: list[str]) -> list[str]:
    """Values naming files under config_presets/ (also `include <path>` values)."""
    values = [a.removeprefix("include ") for a in args if not a.startswith("--")]
    return [v for v in values if v.startswith("config_presets/")]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_executable_bash_with_a_header(script: str):
    path = SCRIPTS_DIR / script
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    assert os.access(path, os.X_OK)
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash" and lines[1].startswith("# ")


@pytest.mark.parametrize(
    ("script", "env"),
    [
        ("lerobot_to_shards.sh", {"SOURCE": "/data/lerobot/aloha"}),
        ("spartan_to_shards.sh", {"TASKS": "BimanualPutRedBellPepperInBin OtherTask"}),
        ("spartan_to_shards.sh", {"CAMERAS": "2"}),
        ("text_to_shards.sh", {"SOURCE": "corpus/"}),
        ("text_to_shards.sh", {"SOURCE": "corpus/", "TOKENIZED": "1"}),
        ("captions_to_shards.sh", {"SOURCE": "captions.parquet"}),
        ("hdf5_to_shards.sh", {"SOURCE": "/data/aloha/sim_transfer_cube"}),
        (
            "hdf5_to_shards.sh",
            {"SOURCE": "/data/aloha", "MAPPING": "config_presets/preprocessing/mappings/hdf5_aloha.yaml"},
        ),
        ("mcap_to_shards.sh", {"SOURCE": "/data/raw-mcap", "FPS": "15"}),
        ("robodm_to_shards.sh", {"SOURCE": "/data/robodm-cache", "TRUST_PICKLE": "1"}),
    ],
)
def test_job_commands_parse_with_existing_presets(script: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(REPO_ROOT)  # the scripts run from the repository root; presets are named relative to it
    jobs = [c for c in dry_run(script, "--num_cpus", "2", **env) if c[0] in JOBS]
    assert len(jobs) == 1
    entry, *args = jobs[0]
    params = parse_preprocessing_params(JOBS[entry], args)
    assert params.num_cpus == 2  # extra flags reach the job
    assert params.output_dir.startswith("/tmp/preprocessed/")
    for path in preset_paths(args):
        assert (REPO_ROOT / path).is_file(), path


def test_every_other_command_uses_flags_its_entry_point_accepts(capsys: pytest.CaptureFixture, tmp_path: Path):
    # The LeRobot script without SOURCE also makes the synthetic dataset; text and captions need one.
    sources = {
        "text_to_shards.sh": "corpus/",
        "captions_to_shards.sh": "captions.parquet",
        "hdf5_to_shards.sh": "/data/aloha",
        "mcap_to_shards.sh": "/data/raw-mcap",
        "robodm_to_shards.sh": "/data/robodm-cache",
    }
    commands = [
        c
        for script in SCRIPTS
        for c in dry_run(script, RAW=str(tmp_path), **({"SOURCE": sources[script]} if script in sources else {}))
        if c[0] not in JOBS
    ]
    assert {c[0] for c in commands} == set(ARGPARSE_ENTRIES)
    for entry, *args in commands:
        module = importlib.import_module(ARGPARSE_ENTRIES[entry])
        assert module.main(["--help"]) == 0
        help_text = capsys.readouterr().out
        for flag in (a for a in args if a.startswith("--")):
            assert flag in help_text, f"{entry} has no {flag}"


def test_spartan_script_downloads_every_task_and_preprocesses_them_together(tmp_path: Path):
    commands = dry_run("spartan_to_shards.sh", TASKS="TaskA TaskB", RAW=str(tmp_path))
    download, job, validate = commands
    assert download[download.index("--local_path") + 1] == str(tmp_path) and "--raw" in download
    assert [download[i + 1] for i, a in enumerate(download) if a == "--task"] == ["[TaskA,TaskB]"]
    sources = job[job.index("--source_episodes") + 1]
    assert sources == f"[{tmp_path}/tasks/TaskA/,{tmp_path}/tasks/TaskB/]"
    assert validate == ["vla_foundry.data.validate", "/tmp/preprocessed/lbm/shards"]


def test_lerobot_script_without_a_source_makes_the_synthetic_dataset_first(tmp_path: Path):
    make, job, _ = dry_run("lerobot_to_shards.sh", RAW=str(tmp_path))
    assert make[:3] == ["vla_foundry.data.scripts.make_synthetic_lerobot", "--output_dir", f"{tmp_path}/toy_lerobot"]
    assert job[job.index("--source_episodes") + 1] == f"[{tmp_path}/toy_lerobot]"


@pytest.mark.parametrize(
    "script",
    ["text_to_shards.sh", "captions_to_shards.sh", "hdf5_to_shards.sh", "mcap_to_shards.sh", "robodm_to_shards.sh"],
)
def test_script_without_a_source_stops_naming_the_variable(script: str):
    env = {k: v for k, v in os.environ.items() if k != "SOURCE"}
    proc = subprocess.run(["bash", str(SCRIPTS_DIR / script)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and not proc.stdout
    assert "SOURCE: set SOURCE to" in proc.stderr
