"""Preprocessing params parse like training: presets, includes of list files, CLI precedence, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PRESETS, REPO_ROOT
from vla_foundry.data.preprocessing.spartan_source import load_action_fields, load_language_annotations
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.preprocessing_params import (
    CaptionPreprocessingParams,
    RoboticsPreprocessingParams,
    TextPreprocessingParams,
    parse_preprocessing_params,
)

ROBOTICS = ["--source_episodes", "[/data/x]", "--output_dir", "/tmp/out"]


@pytest.fixture(autouse=True)
def at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # Presets name other presets relative to the repository root, as the documented commands run there.
    monkeypatch.chdir(REPO_ROOT)


def test_window_preset_sets_a_16_row_window_with_the_anchor_at_row_1():
    params = parse_preprocessing_params(
        RoboticsPreprocessingParams,
        ["--config_path", f"{PRESETS}/data/robotics_preprocessing_params_1past_14future.yaml", *ROBOTICS],
    )
    assert (params.window_length, params.past_lowdim_steps, params.image_indices) == (16, 1, [-1, 0])


def test_cli_flags_override_the_preset_and_list_files_include_on_the_cli():
    params = parse_preprocessing_params(
        RoboticsPreprocessingParams,
        [
            *("--config_path", f"{PRESETS}/preprocessing/lbm_spartan_4cameras.yaml", *ROBOTICS),
            *("--camera_names", f"include {PRESETS}/data/lbm/lbm_data_camera_names_2cameras.yaml"),
            *("--data_discard_keys", f"include {PRESETS}/data/lbm/lbm_data_discard_key.yaml"),
            *("--future_lowdim_steps", "7"),
        ],
    )
    assert params.type == "spartan"
    assert params.camera_names == ["scene_right_0", "scene_left_0"]
    assert "robot__actual__joint_torque__left::panda" in params.data_discard_keys
    assert (params.past_lowdim_steps, params.future_lowdim_steps) == (1, 7)


@pytest.mark.parametrize(
    "preset, cls",
    [
        ("lbm_spartan_4cameras", RoboticsPreprocessingParams),
        ("lerobot_1past_14future", RoboticsPreprocessingParams),
        ("text_byte_2048", TextPreprocessingParams),
        ("captions_224", CaptionPreprocessingParams),
    ],
)
def test_every_preprocessing_preset_parses(preset: str, cls: type):
    sources = ROBOTICS if cls is RoboticsPreprocessingParams else ["--source", "[x]", "--output_dir", "/tmp/o"]
    params = parse_preprocessing_params(cls, ["--config_path", f"{PRESETS}/preprocessing/{preset}.yaml", *sources])
    assert params.samples_per_shard > 0


def test_lbm_action_fields_slice_the_20_action_dims_in_order():
    fields = load_action_fields(f"{PRESETS}/data/lbm/lbm_action_fields.yaml")
    assert [end for _, _, end in fields] == [3, 9, 12, 18, 19, 20]
    assert fields[1] == ("robot__action__poses__right::panda__rot_6d", 3, 9)


def test_lbm_language_annotations_hold_every_instruction_type():
    annotations = load_language_annotations(f"{PRESETS}/data/lbm/lbm_language_annotations.yaml")
    assert set(annotations["BimanualPutRedBellPepperInBin"]) == {"original", "randomized", "verbose", "alternative"}


def test_an_unknown_flag_names_the_closest_field():
    with pytest.raises(ConfigError, match="unknown key 'samples_per_shards'.*samples_per_shard"):
        parse_preprocessing_params(RoboticsPreprocessingParams, [*ROBOTICS, "--samples_per_shards", "3"])


def test_an_invalid_choice_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="type='rlds'.*hdf5, lerobot, mcap, robodm, spartan"):
        parse_preprocessing_params(RoboticsPreprocessingParams, [*ROBOTICS, "--type", "rlds"])


def test_missing_sources_and_output_are_errors_before_any_work():
    with pytest.raises(ConfigError, match="output_dir is required"):
        parse_preprocessing_params(RoboticsPreprocessingParams, ["--source_episodes", "[x]"])
    with pytest.raises(ConfigError, match="source_episodes is empty"):
        parse_preprocessing_params(RoboticsPreprocessingParams, ["--output_dir", "/tmp/o"])


def test_a_missing_action_fields_file_is_named(tmp_path: Path):
    with pytest.raises(ConfigError, match="action_fields_config_path=.*nope.yaml.*not found"):
        parse_preprocessing_params(
            RoboticsPreprocessingParams, [*ROBOTICS, "--action_fields_config_path", str(tmp_path / "nope.yaml")]
        )


def test_an_included_list_file_holding_a_mapping_of_another_name_is_refused(tmp_path: Path):
    bad = tmp_path / "cams.yaml"
    bad.write_text("cameras: [a]\n")
    with pytest.raises(ConfigError, match="must hold a list"):
        parse_preprocessing_params(RoboticsPreprocessingParams, [*ROBOTICS, "--camera_names", f"include {bad}"])


def test_the_entry_point_prints_one_line_errors(capsys: pytest.CaptureFixture):
    from vla_foundry.data.preprocessing.preprocess_robotics_to_tar import main

    assert main([*ROBOTICS, "--stride", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: stride=0 must be >= 1"


@pytest.mark.parametrize(
    "script", ["preprocess_robotics_to_tar", "preprocess_text_to_tar", "preprocess_captions_to_tar"]
)
def test_help_lists_every_flag(script: str, capsys: pytest.CaptureFixture):
    import importlib

    module = importlib.import_module(f"vla_foundry.data.preprocessing.{script}")
    assert module.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--output_dir" in out and "--samples_per_shard" in out and "--seed" in out
