"""VLA Foundry's preprocessing keys (its robotics_preprocessing_params_1past_14future.yaml) read as this project's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.data.preprocessing.conftest import load_npz, preprocess_robotics, read_dataset
from vla_foundry.params import ConfigError
from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams, parse_preprocessing_params

# VLA Foundry's published preset, without fail_on_nan, filter_still_samples and still_threshold (fields of their own).
VLA_FOUNDRY_1PAST_14FUTURE = """\
past_lowdim_steps: 1
future_lowdim_steps: 14
image_indices: [-1, 0]
stride: 1
max_padding_left: 3
max_padding_right: 15
padding_strategy: copy
jpeg_quality: 95
max_episodes_to_process: -1
skip_git_tagging: False
image_resizing_method: center_crop
resize_images_size: [384, 384]
"""


@pytest.fixture
def vla_foundry_yaml(tmp_path: Path) -> str:
    path = tmp_path / "robotics_preprocessing_params_1past_14future.yaml"
    path.write_text(VLA_FOUNDRY_1PAST_14FUTURE)
    return str(path)


def test_the_vla_foundry_preset_parses_to_the_same_settings(vla_foundry_yaml, tmp_path, capsys):
    params = parse_preprocessing_params(
        RoboticsPreprocessingParams,
        ["--config_path", vla_foundry_yaml, "--source_episodes", "[/data/eps]", "--output_dir", str(tmp_path)],
    )
    assert (params.past_lowdim_steps, params.future_lowdim_steps, params.image_indices) == (1, 14, [-1, 0])
    assert (params.max_past_padding, params.max_future_padding) == (3, 15)
    assert (params.image_size, params.resize_mode, params.jpeg_quality) == ([384, 384], "center_crop", 95)
    assert params.padding_strategy == "edge"
    assert params.max_episodes_to_process is None
    assert params.record_git_commit is True
    notes = capsys.readouterr().err.strip().splitlines()
    old_keys = ["resize_images_size", "image_resizing_method", "max_padding_left", "max_padding_right"]
    old_keys += ["skip_git_tagging", "padding_strategy: 'copy'", "max_episodes_to_process: -1"]
    assert len(notes) == len(old_keys)
    assert all(any(note.startswith(f"note: {key}") for note in notes) for key in old_keys)


def test_old_keys_work_on_the_command_line():
    params = parse_preprocessing_params(
        RoboticsPreprocessingParams,
        ["--source_episodes", "[/d]", "--output_dir", "/o", "--resize_images_size", "[64, 48]",
         "--skip_git_tagging", "True", "--padding_strategy", "copy"],
    )  # fmt: skip
    assert params.image_size == [64, 48] and params.record_git_commit is False and params.padding_strategy == "edge"


def test_an_old_and_a_new_name_for_one_field_is_an_error():
    with pytest.raises(ConfigError, match="max_padding_left .* and max_past_padding are both given"):
        parse_preprocessing_params(
            RoboticsPreprocessingParams,
            ["--source_episodes", "[/d]", "--output_dir", "/o", "--max_padding_left", "2", "--max_past_padding", "1"],
        )


@pytest.mark.usefixtures("ray_cluster")
def test_a_job_runs_from_the_vla_foundry_preset(vla_foundry_yaml, lerobot_v3, tmp_path):
    out = tmp_path / "out"
    argv = ["--config_path", vla_foundry_yaml, "--type", "lerobot", "--source_episodes", json.dumps([str(lerobot_v3)]),
            "--output_dir", str(out), "--resize_images_size", "[16, 16]", "--skip_git_tagging", "True",
            "--samples_per_shard", "50", "--show_progress", "False"]  # fmt: skip
    outcome = preprocess_robotics(argv)
    samples = read_dataset(out / "shards")
    assert len(samples) == sum(outcome.shard_counts) > 0
    metadata = json.loads((out / "shards" / "processing_metadata.json").read_text())
    assert metadata["git_commit"] is None  # skip_git_tagging: True
    windows = {load_npz(s["lowdim.npz"])["past_mask"].shape[0] for s in samples.values()}
    assert windows == {16}  # 1 past + anchor + 14 future
