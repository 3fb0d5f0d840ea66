"""Hostile or mistyped YAML configs end in one line naming the file, fast and in little memory."""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import pytest

from tests.conftest import PRESETS, REPO_ROOT
from vla_foundry.params import ConfigError, parse_train_params
from vla_foundry.params.parsing import load_params_from_yaml
from vla_foundry.params.train_experiment_params import TrainExperimentParams


def _billion_laughs(field: str) -> str:
    """Nine levels of anchors, each a list of nine aliases of the one before: 9^9 (387 million) strings once
    expanded, in about 400 bytes, all inside one list field."""
    levels = ["&a0 [" + ", ".join(["lol"] * 9) + "]"]
    levels += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return f"data:\n  type: text\n  {field}: [{', '.join(levels)}]\nmodel:\n  type: transformer\n"


def test_include_cycle_between_two_files_is_one_line_naming_the_cycle(tmp_path):
    (tmp_path / "a.yaml").write_text("model: !include b.yaml\n")
    (tmp_path / "b.yaml").write_text("<<: !include a.yaml\n")
    with pytest.raises(ConfigError) as err:
        parse_train_params(["--config_path", str(tmp_path / "a.yaml")])
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    assert str(err.value).startswith(f"include cycle: {a} -> {b} -> {a};")


def test_file_including_itself_is_one_line_naming_it(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("data:\n  type: text\n<<: !include ./job.yaml\n")
    with pytest.raises(ConfigError, match=rf"^include cycle: {job} -> {job};"):
        parse_train_params(["--config_path", str(job)])


def test_the_same_file_included_twice_without_a_cycle_still_loads(tmp_path):
    (tmp_path / "lr.yaml").write_text("lr: 0.002\n")
    job = tmp_path / "job.yaml"
    job.write_text(
        "model:\n  type: transformer\n  <<: !include lr.yaml\ndata:\n  type: text\nhparams: !include lr.yaml\n"
    )
    # Read twice (two siblings, not one inside the other): the model block has no `lr`, which proves both loaded.
    with pytest.raises(ConfigError, match=r"unknown key 'model\.lr'"):
        parse_train_params(["--config_path", str(job)])


def test_alias_bomb_in_one_field_is_refused_fast_and_small_naming_the_file(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(_billion_laughs("dataset_manifest"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        parse_train_params(["--config_path", str(job)])
    elapsed = time.perf_counter() - start
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    message = str(err.value)
    assert message.startswith(f"{job}: its YAML aliases (*name) expand to more than 100,000 values")
    assert "\n" not in message
    assert elapsed < 2.0, elapsed
    assert grown_mb < 50, grown_mb


def test_alias_bomb_in_a_saved_run_config_is_refused(tmp_path):
    saved = tmp_path / "config.yaml"
    saved.write_text(_billion_laughs("val_dataset_manifest"))
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"expand to more than 100,000 values"):
        load_params_from_yaml(TrainExperimentParams, saved)
    assert time.perf_counter() - start < 2.0


def test_recursive_alias_is_one_line(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("data:\n  type: text\n  dataset_manifest: &loop [a, *loop]\n")
    with pytest.raises(ConfigError, match=rf"^{job}: a YAML alias \(\*name\) refers to a value that contains it"):
        parse_train_params(["--config_path", str(job)])


def test_shared_anchors_of_a_normal_config_still_load(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text(
        "model:\n  type: transformer\ndata:\n  type: text\n  dataset_manifest: &m [a.jsonl, b.jsonl]\n"
        "  val_dataset_manifest: *m\n  dataset_modality: [text, text]\n  dataset_weighting: [1.0, 1.0]\n"
    )
    params = parse_train_params(["--config_path", str(job)])
    assert params.data.val_dataset_manifest == ["a.jsonl", "b.jsonl"]


def test_preset_path_typo_suggests_the_closest_preset():
    typo = str(PRESETS / "models" / "transformer_tiy.yaml")
    with pytest.raises(ConfigError) as err:
        parse_train_params(["--model", f"include {typo}", "--data.type", "text"])
    assert str(err.value).startswith(
        f"config file not found: {typo}; closest: {PRESETS / 'models' / 'transformer_tiny.yaml'}"
    )


def test_included_preset_typo_suggests_the_closest_preset_and_names_the_including_file(tmp_path):
    (tmp_path / "presets").mkdir()
    (tmp_path / "presets" / "vit_small.yaml").write_text("type: vit\n")
    job = tmp_path / "job.yaml"
    job.write_text("model: !include presets/vit_smal.yaml\n")
    with pytest.raises(ConfigError) as err:
        parse_train_params(["--config_path", str(job)])
    missing = tmp_path / "presets" / "vit_smal.yaml"
    assert str(err.value) == (
        f"config file not found: {missing} (included from {job}); closest: {tmp_path / 'presets' / 'vit_small.yaml'}"
    )


def test_preset_folder_typo_names_the_folder_and_the_closest_folder():
    wrong = PRESETS.parent / "config_presets" / "modls" / "transformer_tiny.yaml"
    with pytest.raises(ConfigError) as err:
        parse_train_params(["--model", f"include {wrong}", "--data.type", "text"])
    assert str(err.value).endswith(f"folder {wrong.parent} does not exist (closest: {PRESETS / 'models'})")


def test_block_given_a_preset_path_without_include_suggests_include():
    preset = "config_presets/models/transformer_tiny.yaml"
    with pytest.raises(ConfigError) as err:
        parse_train_params(["--model", preset, "--data.type", "text"])
    assert str(err.value).endswith(f'load it with --model "include {preset}"')


def test_block_given_a_preset_path_in_yaml_suggests_the_include_tag(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("model: models/vit_tiny.yaml\ndata:\n  type: text\n")
    with pytest.raises(ConfigError) as err:
        parse_train_params(["--config_path", str(job)])
    assert f"(in {job})" in str(err.value)
    assert str(err.value).endswith("load it with model: !include models/vit_tiny.yaml")


def test_include_cycle_from_the_cli_is_one_line_without_traceback(tmp_path):
    (tmp_path / "a.yaml").write_text("x: !include b.yaml\n")
    (tmp_path / "b.yaml").write_text("y: !include a.yaml\n")
    result = subprocess.run(
        [sys.executable, "vla_foundry/main.py", "--config_path", str(tmp_path / "a.yaml")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: include cycle: {tmp_path / 'a.yaml'} -> {tmp_path / 'b.yaml'} -> {tmp_path / 'a.yaml'}; "
        "a file cannot include itself, directly or not"
    ]
