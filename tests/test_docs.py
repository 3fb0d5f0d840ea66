"""The commands in the README and docs work as written. Every command in a fenced shell block is found and checked
by the first rule of COMMAND_RULES that matches it: cheap ones are run, expensive ones (training, preprocessing,
simulation, servers) are parsed by their own entry point's parser without running, and the few that are not this
project's commands (git, docker, aws, the test suite) are listed with the reason. A command no rule matches fails,
naming its file and line: a new command in the docs needs a rule here."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

DOC_FILES = sorted(
    [
        REPO_ROOT / "README.md",
        REPO_ROOT / "RELIABILITY.md",
        REPO_ROOT / "sagemaker" / "README.md",
        *(REPO_ROOT / "docs").glob("*.md"),
    ]
)
SHELL_FENCES = ("bash", "sh", "shell", "console")
# A stand-in for `...` and `job.yaml` in commands that show only the flags they are about.
EXAMPLE_JOB = "config_presets/training_jobs/vla_diffusion_tiny_quickstart.yaml"
# Words the docs use for "your value here" (whole words only), and what the parse check puts in their place.
PLACEHOLDERS = {"job.yaml": EXAMPLE_JOB, "ID": "0", "N": "1"}
# What a bare list of training flags is parsed with: a model block needs data, a data block a model.
FRAGMENT_BASE = {
    "--model.type": ["--data", "include config_presets/data/tiny_image_caption.yaml"],
    "": ["--config_path", EXAMPLE_JOB],
}
RUN_BUDGET_S = 120


@dataclasses.dataclass(frozen=True)
class DocCommand:
    file: str  # relative to the repository root
    line: int  # of the command's first line
    argv: tuple[str, ...]  # shell words, comments removed, `[--optional flags]` unbracketed
    env: tuple[tuple[str, str], ...]  # leading VAR=value assignments

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def text(self) -> str:
        return shlex.join(self.argv)


@dataclasses.dataclass(frozen=True)
class Rule:
    pattern: str  # regular expression searched in the command's text
    check: str  # "run", "parse", "dry_run" (run; the command must say --sagemaker.dry_run True) or "skip"
    why: str = ""  # for "skip": the reason (a skip needs one)


COMMAND_RULES: tuple[Rule, ...] = (
    Rule(r"^(git|docker|aws) ", "skip", "not this project's command (needs a network, Docker or an AWS account)"),
    Rule(r"^uv sync", "skip", "installs the environment the tests run in"),
    Rule(
        r"lerobot-venv-[0-9.]+/bin/python",
        "skip",
        "lerobot's own environment (tests/data/test_lerobot_roundtrip.py)",
    ),
    Rule(r"^bash benchmarks/gpu_", "skip", "the GPU suite and its wheel download (a GPU machine; PyPI)"),
    Rule(r"^curl ", "skip", "talks to a running policy server (tests/inference/test_policy_server_json.py runs curl)"),
    Rule(r"^cd ", "skip", "changes directory (part of the install steps)"),
    Rule(r"^uv run (pytest|ruff)", "skip", "the test suite and the linter themselves (run by .ci/run)"),
    Rule(r"^bash examples/", "skip", "the example scripts are checked by tests/training/test_example_scripts.py"),
    Rule(r"download_dataset\.py", "skip", "downloads a public dataset (no network in the tests)"),
    Rule(r"--plugins '?my_pkg\.", "skip", "names a placeholder package of the reader's own (tutorials cover plugins)"),
    Rule(r"vla_foundry/main\.py .*--help", "run"),
    Rule(r"vla_foundry/main\.py .*--resolve_configs True", "run"),
    Rule(r"-m vla_foundry\.data\.planner ", "run"),
    Rule(r"-m vla_foundry\.data\.validate examples/data/", "run"),
    # Documented as the dry run: without it the command submits a real (billed) job.
    Rule(r"sagemaker/launch_training\.py", "dry_run"),
    Rule(r".", "parse"),
)


def _unbracket(words: list[str]) -> list[str]:
    """`[--ema]` / `[--checkpoint N]` (optional flags shown in brackets) -> the flags themselves."""
    out, optional = [], False
    for word in words:
        if word.startswith("[--"):
            word, optional = word[1:], True
        if optional and word.endswith("]") and word.count("]") > word.count("["):
            word, optional = word[:-1], False
        out.append(word)
    return out


def doc_commands() -> list[DocCommand]:
    """Every command of every fenced shell block of DOC_FILES (continued lines joined; `a && b` is two commands)."""
    commands = []
    for path in DOC_FILES:
        lines = path.read_text().splitlines()
        fence, start, pending = None, 0, ""
        for number, line in enumerate(lines, 1):
            if line.startswith("```"):
                fence = None if fence is not None else line[3:].strip()
                continue
            if fence not in SHELL_FENCES:
                continue
            if not pending:
                start = number
            pending += line.rstrip()
            if pending.endswith("\\"):
                pending = pending[:-1] + " "
                continue
            text, pending = pending, ""
            words = shlex.split(text, comments=True)
            if words and words[-1] == "&":
                words = words[:-1]
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                part, words = words[:cut], words[cut + 1 :]
                env = []
                while part and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", part[0]):
                    env.append(tuple(part.pop(0).split("=", 1)))
                if part:
                    rel = str(path.relative_to(REPO_ROOT))
                    commands.append(DocCommand(rel, start, tuple(_unbracket(part)), tuple(env)))
    return commands


def rule_for(command: DocCommand) -> Rule | None:
    return next((r for r in COMMAND_RULES if re.search(r.pattern, command.text)), None)


def entry_point(argv: tuple[str, ...]) -> tuple[str, list[str]]:
    """(`module:NAME` or `script:PATH` or `flags:`, the arguments) of a command, past `uv run`, `python` and
    `torchrun` with their own options; placeholders (`...`, `job.yaml`) become EXAMPLE_JOB."""
    words = list(argv)
    if words[:2] == ["uv", "run"]:
        words = words[2:]
        while words and words[0].startswith("--"):
            words = words[2:] if words[0] in ("--group", "--with", "--extra") else words[1:]
    if words and words[0] == "torchrun":
        words = words[1:]
        while words and words[0].startswith("-"):
            takes_value = "=" not in words[0] and len(words) > 1 and not words[1].startswith("-")
            words = words[2:] if takes_value and not words[1].endswith(".py") else words[1:]
    if words and words[0] in ("python", "python3"):
        words = words[1:]
    if words and words[0] == "-m":
        kind, target, args = "module", words[1], words[2:]
    elif words and words[0].startswith("--"):
        kind, target, args = "flags", "", words
    else:
        kind, target, args = "script", words[0], words[1:]
    args = [a for a in args for a in (["--config_path", EXAMPLE_JOB] if a == "..." else [a])]
    args = [PLACEHOLDERS.get(a, a) for a in args]
    if kind == "flags":
        args = next(base for key, base in FRAGMENT_BASE.items() if key in args or not key) + args
    return f"{kind}:{target}", args


def _module_of(target: str) -> str:
    """`module:a.b` -> a.b; `script:vla_foundry/x/y.py` -> vla_foundry.x.y; benchmarks stay scripts."""
    kind, name = target.split(":", 1)
    return name if kind == "module" else name.removesuffix(".py").replace("/", ".")


class _Parsed(Exception):
    """Raised in place of running a tool once its parser accepted the command line."""


def parse_only(target: str, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse `args` with the entry point's own parser and stop before it does anything; a parse error fails the test
    with the tool's own message."""
    monkeypatch.chdir(REPO_ROOT)
    if target in ("script:vla_foundry/main.py", "flags:"):
        from vla_foundry.params.parsing import parse_train_params

        parse_train_params(args)
        return
    if target == "module:vla_foundry.launch.ray_train":
        from vla_foundry.launch.ray_train import split_args
        from vla_foundry.params.parsing import parse_train_params

        parse_train_params(split_args(args)[1])
        return
    if target == "module:vla_foundry.checkpoint":
        from vla_foundry.checkpoint.cli import parse_cli

        parse_cli(args)
        return
    if target.startswith("script:benchmarks/"):
        monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
        module = importlib.import_module(Path(target.split(":", 1)[1]).stem)
    else:
        module = importlib.import_module(_module_of(target))
    if hasattr(module, "run_preprocessing_command"):
        from vla_foundry.params.preprocessing_params import parse_preprocessing_params

        def parse_preprocessing(doc, params_class, run_job, inputs_name, argv=None):
            parse_preprocessing_params(params_class, argv)
            raise _Parsed

        monkeypatch.setattr(module, "run_preprocessing_command", parse_preprocessing)
    import vla_foundry.cli

    real_parse = vla_foundry.cli.parse_command

    def parse_then_stop(*parse_args, **kwargs):
        real_parse(*parse_args, **kwargs)
        raise _Parsed

    monkeypatch.setattr(vla_foundry.cli, "parse_command", parse_then_stop)
    import argparse  # the benchmark scripts keep argparse

    real_argparse = argparse.ArgumentParser.parse_args

    def argparse_then_stop(self, args=None, namespace=None):
        real_argparse(self, args, namespace)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", argparse_then_stop)
    monkeypatch.setattr(sys, "argv", [target, *args])
    takes_argv = bool(inspect.signature(module.main).parameters)
    try:
        module.main(args) if takes_argv else module.main()
    except _Parsed:
        return
    raise AssertionError("its parser was never reached, so this test cannot check it: give it a rule")


def run_command(command: DocCommand, target: str, args: list[str]) -> None:
    kind, name = target.split(":", 1)
    program = ["-m", name] if kind == "module" else [name]
    env = {**os.environ, **dict(command.env), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, *program, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=RUN_BUDGET_S
    )
    assert proc.returncode == 0, f"{command.where}: `{command.text}` exited {proc.returncode}:\n{proc.stderr[-2000:]}"


COMMANDS = doc_commands()
CHECKED = [c for c in COMMANDS if (rule_for(c) or Rule("", "parse")).check != "skip"]


def test_every_documented_command_has_a_rule():
    missing = [f"{c.where}: {c.text}" for c in COMMANDS if rule_for(c) is None]
    assert missing == [], "add a rule to COMMAND_RULES in tests/test_docs.py for:\n" + "\n".join(missing)
    assert len(COMMANDS) > 50  # the extraction found the docs' commands
    assert [r.pattern for r in COMMAND_RULES if r.check == "skip" and not r.why] == []  # a skip says why


@pytest.mark.parametrize("command", CHECKED, ids=[c.where for c in CHECKED])
def test_documented_command_works_as_written(command: DocCommand, monkeypatch: pytest.MonkeyPatch, capsys):
    target, args = entry_point(command.argv)
    check = rule_for(command).check
    if check == "dry_run":
        assert "--sagemaker.dry_run True" in command.text, (
            f"{command.where}: `{command.text}` submits a real SageMaker job: document it with --sagemaker.dry_run True"
        )
    if check in ("run", "dry_run"):
        run_command(command, target, args)
        return
    for name, value in command.env:
        monkeypatch.setenv(name, value)
        if name == "PYTHONPATH":  # read by the interpreter at start only: this process gets it on sys.path
            for folder in value.split(os.pathsep):
                monkeypatch.syspath_prepend(str(REPO_ROOT / folder))
    try:
        parse_only(target, args, monkeypatch)
    except SystemExit as e:
        error = capsys.readouterr().err.strip().splitlines()[-1:] or [f"exit status {e.code}"]
        pytest.fail(f"{command.where}: `{command.text}` does not parse: {error[0]}", pytrace=False)
    except Exception as e:  # any error is reported with the command's place in the docs
        pytest.fail(f"{command.where}: `{command.text}` does not parse: {type(e).__name__}: {e}", pytrace=False)


def _section_commands(file: str, heading: str) -> list[DocCommand]:
    """The commands of `file` between the heading line and the next heading of the same level."""
    lines = (REPO_ROOT / file).read_text().splitlines()
    start = lines.index(heading) + 1
    level = heading.split(" ")[0] + " "
    end = next((i for i in range(start, len(lines)) if lines[i].startswith(level)), len(lines))
    return [c for c in COMMANDS if c.file == file and start < c.line <= end]


def test_the_chain_script_runs_exactly_the_readme_chain():
    from tests.conftest import dry_run_lines

    readme = [list(c.argv) for c in _section_commands("README.md", "## The chain: LLM → VLM → VLA")]
    script = dry_run_lines(REPO_ROOT / "examples" / "vla" / "llm_vlm_vla_chain.sh", [], {}, unset=("RUNS",))
    assert len(readme) == 4
    assert script == readme


def test_the_quickstart_duration_is_the_same_wherever_it_is_stated():
    """The comment right above each documented run of the LLM quickstart job states one duration."""
    stated = {}
    for command in COMMANDS:
        if command.argv[-2:] != ("--config_path", "config_presets/training_jobs/quickstart.yaml"):
            continue
        above = (REPO_ROOT / command.file).read_text().splitlines()[command.line - 2]
        match = re.search(r"about (\d+ s|a minute|\d+ minutes?)", above)
        if match:
            stated[command.where] = match.group(1)
    assert len(stated) >= 2, stated  # README and docs/training.md
    assert len(set(stated.values())) == 1, stated


def test_a_documented_ema_export_names_a_run_whose_job_trains_ema(monkeypatch: pytest.MonkeyPatch):
    """`checkpoint export --run_dir experiments/NAME --ema` needs EMA weights: the bundled job named NAME enables EMA."""
    from vla_foundry.params.parsing import parse_train_params

    monkeypatch.chdir(REPO_ROOT)
    jobs = {}
    for path in (REPO_ROOT / "config_presets" / "training_jobs").glob("*.yaml"):
        match = re.search(r"^name: (\S+)$", path.read_text(), re.MULTILINE)
        if match:
            jobs[match.group(1)] = path
    exports = [c for c in COMMANDS if "vla_foundry.checkpoint" in c.argv and "--ema" in c.argv]
    assert exports
    for command in exports:
        run_dir = command.argv[command.argv.index("--run_dir") + 1]
        name = run_dir.removeprefix("experiments/")
        assert name in jobs, f"{command.where}: {run_dir} is not the run of a bundled job; name one that trains EMA"
        params = parse_train_params(["--config_path", str(jobs[name])])
        assert params.ema.enabled, (
            f"{command.where}: {jobs[name].name} trains without EMA, so --ema has nothing to export"
        )


def test_the_readme_install_section_names_what_a_fresh_machine_needs():
    """The notebooks group (jupyter) and the system packages the simulator tests render with (as .ci/run installs)."""
    readme = (REPO_ROOT / "README.md").read_text()
    install = readme[readme.index("## Install") : readme.index("## Quickstart")]
    assert "uv sync --group notebooks" in install
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    packages = re.search(r"--no-install-recommends \\\s*\n\s*(.+)\n", ci).group(1).split()
    assert packages and all(p in install for p in packages), packages
