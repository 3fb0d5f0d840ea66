"""The flag conventions every argparse tool shares with vla_foundry/main.py: a bool flag alone or with a value, a
list as one YAML value, the run dir as --run_dir (the old spellings still work, with a warning)."""

from __future__ import annotations

import argparse

import pytest

from vla_foundry.cli import add_bool_flag, add_list_flag, add_run_dir_flag, list_value, run_dir_value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tool")
    add_run_dir_flag(parser, "run dir")
    add_bool_flag(parser, "--ema", "EMA weights")
    add_list_flag(parser, "--image_size", int, "height and width", default=[240, 320])
    return parser


@pytest.mark.parametrize(
    ("flags", "expected"),
    [([], False), (["--ema"], True), (["--ema", "True"], True), (["--ema=false"], False), (["--ema", "no"], False)],
)
def test_a_bool_flag_is_a_switch_or_takes_a_value(flags, expected):
    assert _parser().parse_args(["--run_dir", "r", *flags]).ema is expected


def test_a_bool_flag_with_a_non_boolean_value_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["--run_dir", "r", "--ema", "maybe"])
    assert exit_info.value.code == 2
    assert "'maybe' is not a boolean; valid: True, False" in capsys.readouterr().err.splitlines()[-1]


def test_a_list_flag_reads_one_yaml_list():
    parser = _parser()
    args = parser.parse_args(["--run_dir", "r", "--image_size", "[96, 128]"])
    assert list_value(parser, args, "--image_size") == [96, 128]
    assert list_value(parser, parser.parse_args(["--run_dir", "r"]), "--image_size") == [240, 320]


def test_the_space_separated_list_still_works_and_says_how_to_write_it(capsys):
    parser = _parser()
    args = parser.parse_args(["--run_dir", "r", "--image_size", "96", "128"])
    assert list_value(parser, args, "--image_size") == [96, 128]
    assert 'write lists as --image_size "[96, 128]"' in capsys.readouterr().err


def test_a_list_with_a_wrong_item_is_one_line_naming_the_flag(capsys):
    parser = _parser()
    args = parser.parse_args(["--run_dir", "r", "--image_size", "[96, wide]"])
    with pytest.raises(SystemExit):
        list_value(parser, args, "--image_size")
    assert "--image_size" in capsys.readouterr().err.splitlines()[-1]


def test_the_run_dir_is_a_flag_and_a_bare_path_still_works_with_a_warning(capsys):
    parser = _parser()
    assert run_dir_value(parser, parser.parse_args(["--run_dir", "runs/a"])) == "runs/a"
    assert capsys.readouterr().err == ""
    assert run_dir_value(parser, parser.parse_args(["runs/b"])) == "runs/b"
    assert "give the run dir as --run_dir runs/b" in capsys.readouterr().err


def test_a_missing_run_dir_is_one_line(capsys):
    parser = _parser()
    with pytest.raises(SystemExit):
        run_dir_value(parser, parser.parse_args([]))
    assert (
        capsys.readouterr().err.splitlines()[-1]
        == "tool: error: --run_dir is required (a run directory, local or s3://)"
    )
