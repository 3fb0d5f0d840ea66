"""The copy-paste scripts in examples/vla/ and examples/training/: DRY_RUN=1 prints their commands without running
anything, extra arguments reach the command they are documented for, and every printed command parses (training
flags against the params classes, other entry points against their --help)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, dry_run_lines
from vla_foundry.params import TrainExperimentParams, parse_params

SCRIPTS = sorted(
    str(p.relative_to(REPO_ROOT)) for d in ("examples/vla", "examples/training") for p in (REPO_ROOT / d).glob("*.sh")
)
# Positional arguments a script needs before the extra flags.
POSITIONAL = {"examples/training/resume.sh": ["experiments/llm_tiny"]}
EXTRA = ["--seed_extra_flag_check", "7"]
# The commands of each script that extra flags go to (matched on how the command starts).
TRAIN = ["vla_foundry/main.py"]
EXTRA_GOES_TO = {
    "examples/training/resume.sh": TRAIN,
    "examples/training/train_llm.sh": TRAIN,
    "examples/training/train_vlm_from_llm.sh": TRAIN,
    "examples/vla/finetune_hf_vlm.sh": TRAIN,
    "examples/vla/llm_vlm_vla_chain.sh": TRAIN,
    "examples/vla/quickstart.sh": TRAIN,
    "examples/vla/open_loop_eval.sh": ["vla_foundry.inference.open_loop_eval"],
    "examples/vla/serve_policy.sh": ["vla_foundry.inference.policy_server", "serve"],
}
MODULES = (
    "vla_foundry.inference.sample_prediction",
    "vla_foundry.inference.open_loop_eval",
    "vla_foundry.plot_metrics",
)


def dry_run(script: str, *args: str, **env: str) -> list[list[str]]:
    """The commands the script prints under DRY_RUN=1, each from its entry point on (after `uv run [python [-m]]`)."""
    commands = []
    unset = ("RUN", "RUNS", "NAME", "DATASET", "NPROC", "GPUS")
    for argv in dry_run_lines(REPO_ROOT / script, [*POSITIONAL.get(script, []), *args], env, unset):
        assert argv[:2] == ["uv", "run"], argv
        argv = argv[2:]
        if argv[0] == "torchrun":
            argv = argv[argv.index("vla_foundry/main.py") :]
        elif argv[0] == "python":
            argv = argv[2:] if argv[1] == "-m" else argv[1:]
        commands.append(argv)
    return commands


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_dry_run_prints_commands_and_runs_nothing(script: str, tmp_path: Path):
    assert os.access(REPO_ROOT / script, os.X_OK)
    runs = tmp_path / "runs"
    commands = dry_run(script, RUNS=str(runs), RUN=str(runs / "vla"), NAME="dry_run_check")
    assert commands
    assert not runs.exists() and not (REPO_ROOT / "experiments" / "dry_run_check").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_extra_arguments_reach_the_documented_command(script: str):
    commands = dry_run(script, *EXTRA)
    prefix = EXTRA_GOES_TO[script]
    target = [c for c in commands if c[: len(prefix)] == prefix]
    assert target and all(c[-2:] == EXTRA for c in target)
    assert all(c[-2:] != EXTRA for c in commands if c[: len(prefix)] != prefix)


@pytest.mark.parametrize("script", SCRIPTS)
def test_training_commands_parse_and_other_flags_exist(script: str, monkeypatch, capsys):
    monkeypatch.chdir(REPO_ROOT)  # presets are named relative to the repository root
    for entry, *args in dry_run(script):
        if entry == "vla_foundry/main.py":
            if "--config_path" in args and not Path(args[args.index("--config_path") + 1]).exists():
                continue  # resume.sh reads the run's saved config.yaml, which a dry run does not fetch
            params = parse_params(TrainExperimentParams, args)
            assert params.name
        elif entry in MODULES or entry == "vla_foundry.inference.policy_server":
            module = importlib.import_module(entry)
            subcommand = [args[0]] if entry == "vla_foundry.inference.policy_server" else []
            assert module.main([*subcommand, "--help"]) == 0
            help_text = capsys.readouterr().out
            assert all(flag in help_text for flag in args if flag.startswith("--")), (entry, args)


def test_the_script_quickstart_and_the_readme_quickstart_use_different_run_dirs():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "config_presets/training_jobs/vla_diffusion_tiny_quickstart.yaml" in readme
    preset = parse_params(
        TrainExperimentParams,
        ["--config_path", str(REPO_ROOT / "config_presets/training_jobs/vla_diffusion_tiny_quickstart.yaml")],
    )
    train, predict = dry_run("examples/vla/quickstart.sh")
    script = parse_params(
        TrainExperimentParams, [a if not a.startswith("config_presets/") else str(REPO_ROOT / a) for a in train[1:]]
    )
    assert (script.save_path, script.name) != (preset.save_path, preset.name)
    assert predict[predict.index("--run_dir") + 1] == f"{script.save_path}/{script.name}"


def test_tiny_cpu_presets_set_one_torch_thread():
    params = parse_params(
        TrainExperimentParams,
        ["--config_path", str(REPO_ROOT / "config_presets/training_jobs/vla_diffusion_tiny_quickstart.yaml")],
    )
    assert params.hparams.torch_threads == 1
