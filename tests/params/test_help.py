"""`--help` describes every field in one line from its source comment, marks derived fields read-only, groups a
union's fields by variant, and lists the global flags; misspelled flags are reported as CLI errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from vla_foundry.params import ConfigError, HyperParams, parse_train_params
from vla_foundry.params.help_text import field_description, group_help, train_help

BASE = ["--model.type", "transformer", "--data.type", "text"]


@pytest.fixture(scope="module")
def help_lines() -> list[str]:
    return train_help().splitlines()


def test_every_settable_field_has_a_one_line_description(help_lines):
    undescribed = []
    for i, line in enumerate(help_lines):
        is_field = line.startswith("  --") and ".*" not in line and "(derived" not in line and " = " in line
        if is_field and not help_lines[i + 1].startswith("      "):
            undescribed.append(line.split()[0])
    assert undescribed == []


def test_a_description_is_the_comment_above_the_field():
    # The comment above `global_batch_size` in hyper_params.py, read from the source.
    assert field_description(HyperParams, "global_batch_size").startswith("Samples per optimizer step, kept on any")
    assert field_description(HyperParams, "precision").startswith("fp32; amp_bf16: fp32 weights + bf16 autocast")


def test_derived_fields_are_marked_read_only_with_their_source(help_lines):
    assert (
        "  --hparams.accumulation_steps  (derived, read-only: from global_batch_size / (per_gpu_batch_size x "
        "world_size))" in help_lines
    )
    assert "  --distributed.world_size  (derived, read-only: from environment variable WORLD_SIZE)" in help_lines
    derived = {f.name for f in dataclasses.fields(HyperParams) if f.metadata.get("derived")}
    assert derived == {"world_size", "accumulation_steps"}


def test_union_fields_are_grouped_by_variant(help_lines):
    text = "\n".join(help_lines)
    vit = text.index("  [model.vit as ViTParams, type vit]")
    vit_hf = text.index("  [model.vit as ViTHFParams, type vit_hf]")
    assert vit < text.index("  --model.vit.pos_embed", vit) < vit_hf
    assert vit_hf < text.index("  --model.vit.source", vit_hf)


def test_global_flags_are_listed(help_lines):
    flags = {line.split()[0] for line in help_lines if line.startswith("  --") and "." not in line.split()[0]}
    assert {"--config_path", "--plugins", "--debug", "--help,"} <= flags


def test_a_misspelled_top_level_group_is_a_cli_error_with_the_closest_group():
    with pytest.raises(
        ConfigError, match=r"unknown key 'hparam' \(on the command line: --hparam.lr\).*closest.*hparams"
    ):
        parse_train_params([*BASE, "--hparam.lr", "0.1"])


def test_the_suggestion_for_learning_rate_includes_lr():
    with pytest.raises(ConfigError, match=r"unknown key 'hparams.learning_rate'.*closest valid names .*: lr\b"):
        parse_train_params([*BASE, "--hparams.learning_rate", "0.1"])


def test_no_description_is_cut(help_lines):
    text = " ".join(line.strip() for line in help_lines)
    # The whole comment above `torch_threads` in hyper_params.py (longer than the 150 characters once printed).
    source = (REPO_ROOT / "vla_foundry" / "params" / "hyper_params.py").read_text().split("torch_threads:")[0]
    comment = " ".join(comment_lines_at_end(source))
    assert len(comment) > 150
    assert comment in text
    assert not [line for line in help_lines if line.rstrip().endswith(("...", "…"))]
    assert max(len(line) for line in help_lines) <= 120


def comment_lines_at_end(source: str) -> list[str]:
    """The `#` lines right before the end of `source`, in file order, without the `#`."""
    lines = []
    for line in reversed(source.rstrip().splitlines()):
        if not line.strip().startswith("#"):
            break
        lines.append(line.strip().lstrip("#").strip())
    return lines[::-1]


def test_help_with_a_group_lists_only_that_groups_fields():
    lines = group_help("hparams").splitlines()
    flags = [line.split()[0] for line in lines if line.startswith("  --")]
    assert "--hparams.lr" in flags and "--hparams.per_gpu_batch_size" in flags
    assert all(flag.startswith("--hparams.") for flag in flags)
    assert {f"--hparams.{f.name}" for f in dataclasses.fields(HyperParams)} <= set(flags)


def test_help_for_the_command_line_takes_a_group_and_names_the_closest_for_a_typo():
    result = subprocess.run(
        [sys.executable, "vla_foundry/main.py", "--help", "distributed"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].startswith("  --distributed.*")
    assert "--hparams.lr" not in result.stdout
    result = subprocess.run(
        [sys.executable, "vla_foundry/main.py", "--help", "hparam"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --help hparam: no such group (did you mean hparams?); valid: run, hparams, distributed, ema, eval, "
        "model, data"
    ]
