"""The one command line every tool shares with vla_foundry/main.py (vla_foundry.cli): a params dataclass parsed by the
training parser, a bool flag alone or with a value, a list as one YAML value (the old spellings still work, with a
warning), bare words where a tool took them, renamed flags with a warning, --help from the field comments,
--config_path with includes, and one-line errors naming the closest valid names."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from vla_foundry.cli import Spelling, Subcommand, params_to_args, parse_command, run_command, run_subcommands
from vla_foundry.params.base_params import ConfigError


@dataclasses.dataclass(frozen=True)
class ToolParams:
    """A tool's settings."""

    # The run directory to read.
    run_dir: str = ""
    # Use the EMA weights.
    ema: bool = False
    # Render size [H, W].
    image_size: tuple[int, int] = (240, 320)
    # Names to keep.
    names: list[str] | None = None
    # Episodes to run.
    episodes: int = 50
    # Branch to commit to.
    revision: str | None = None

    def validate(self) -> None:
        if self.episodes < 1:
            raise ConfigError(f"episodes={self.episodes} must be >= 1")


SPELLING = Spelling(
    positional=("run_dir",),
    positional_deprecated=("run_dir",),
    aliases={"episodes_per_task": "episodes"},
    renamed={"n_episodes": "episodes"},
)


def parse(*args: str, spelling: Spelling = SPELLING) -> ToolParams:
    return parse_command(ToolParams, list(args), spelling)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [([], False), (["--ema"], True), (["--ema", "True"], True), (["--ema=false"], False), (["--ema", "no"], False)],
)
def test_a_bool_flag_is_a_switch_or_takes_a_value(flags, expected):
    assert parse("--run_dir", "r", *flags).ema is expected


def test_a_lone_bool_flag_before_a_bare_word_leaves_the_word_to_its_field():
    assert parse("--ema", "runs/a") == ToolParams(run_dir="runs/a", ema=True)


def test_a_bool_flag_with_a_non_boolean_value_is_one_line():
    with pytest.raises(ConfigError, match=r"--ema 'maybe': not a boolean; valid: True, False \(or --ema alone\)"):
        parse("--run_dir", "r", "--ema", "maybe")


def test_a_list_flag_reads_one_yaml_list_and_keeps_its_default():
    assert parse("--run_dir", "r", "--image_size", "[96, 128]").image_size == (96, 128)
    assert parse("--run_dir", "r").image_size == (240, 320)


def test_the_space_separated_list_still_works_and_says_how_to_write_it(capsys):
    assert parse("--run_dir", "r", "--image_size", "96", "128").image_size == (96, 128)
    assert 'write lists as --image_size "[96, 128]"' in capsys.readouterr().err


def test_a_repeated_list_flag_collects_every_value_with_a_warning(capsys):
    assert parse("--run_dir", "r", "--names", "a", "--names", "[b, c]").names == ["a", "b", "c"]
    assert 'write lists as --names "[a, b, c]"' in capsys.readouterr().err


def test_a_whole_list_given_again_overrides_the_earlier_one(capsys):
    assert parse("--run_dir", "r", "--image_size", "[96, 128]", "--image_size", "[64, 64]").image_size == (64, 64)
    assert "write lists" not in capsys.readouterr().err


def test_one_word_for_a_list_is_a_list_of_that_word():
    assert parse("--run_dir", "r", "--names", "none").names == ["none"]


def test_a_list_with_a_wrong_item_is_one_line_naming_the_flag():
    with pytest.raises(ConfigError, match=r"^image_size=\[96, 'wide'\] \(on the command line\) is not a valid"):
        parse("--run_dir", "r", "--image_size", "[96, wide]")


def test_a_string_field_keeps_the_text_as_typed():
    # YAML alone would read 1.0 as a float and `no` as False.
    assert parse("--run_dir", "no", "--revision", "1.0").revision == "1.0"
    assert parse("--run_dir", "no").run_dir == "no"


def test_the_run_dir_is_a_flag_and_a_bare_path_still_works_with_a_warning(capsys):
    assert parse("--run_dir", "runs/a").run_dir == "runs/a"
    assert capsys.readouterr().err == ""
    assert parse("runs/b").run_dir == "runs/b"
    assert capsys.readouterr().err == "warning: give it as --run_dir runs/b (a bare run_dir will be removed)\n"


def test_a_bare_word_where_none_is_taken_is_one_line():
    with pytest.raises(ConfigError, match=r"unexpected argument 'extra' \(this tool takes run_dir as bare words\)"):
        parse("--run_dir", "r", "extra")


def test_an_alias_is_silent_and_a_renamed_flag_warns_once(capsys):
    assert parse("--run_dir", "r", "--episodes_per_task", "3").episodes == 3
    assert capsys.readouterr().err == ""
    assert parse("--run_dir", "r", "--n_episodes", "4").episodes == 4
    assert capsys.readouterr().err == "warning: --n_episodes is now --episodes; the old name will be removed\n"


def test_an_unknown_flag_names_the_closest_field():
    with pytest.raises(ConfigError) as error:
        parse("--run_dir", "r", "--epsiodes", "3")
    assert str(error.value).startswith(
        "unknown key 'epsiodes' (on the command line); closest valid names under the top level: episodes"
    )


def test_the_params_check_themselves_after_parsing():
    with pytest.raises(ConfigError, match=r"^episodes=0 must be >= 1$"):
        parse("--run_dir", "r", "--episodes", "0")


def test_config_path_with_an_include_then_flags_over_it(tmp_path: Path):
    (tmp_path / "base.yaml").write_text("episodes: 7\nimage_size: [64, 64]\n")
    (tmp_path / "tool.yaml").write_text("<<: !include base.yaml\nrun_dir: runs/x\nepisodes: 9\n")
    params = parse("--config_path", str(tmp_path / "tool.yaml"), "--ema")
    assert params == ToolParams(run_dir="runs/x", ema=True, image_size=(64, 64), episodes=9)
    assert parse("--config_path", str(tmp_path / "tool.yaml"), "--episodes", "2").episodes == 2


def test_params_to_args_parses_back_to_the_same_params():
    params = ToolParams(run_dir="runs/a", ema=True, image_size=(8, 16), names=["x", "y"], revision="1.0")
    assert params_to_args(params)[:2] == ["--run_dir", "runs/a"]
    assert parse_command(ToolParams, params_to_args(params)) == params


def test_help_lists_every_field_with_its_description_and_exits_0(capsys):
    assert run_command(ToolParams, print, ["--help"], prog="tool", doc="Does a thing.", spelling=SPELLING) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: tool [RUN_DIR] [--config_path FILE.yaml]")
    assert "Does a thing." in out
    for field in dataclasses.fields(ToolParams):
        assert f"--{field.name}  " in out
    assert "Render size [H, W]." in out and "--config_path PATH" in out and "--n_episodes (now --episodes)" in out


def test_run_command_reports_a_bad_flag_and_a_failure_in_one_line(capsys):
    assert run_command(ToolParams, print, ["--episodes", "many"], prog="tool") == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: episodes='many' (on the command line) is not a valid int")

    def fails(params: ToolParams) -> None:
        raise FileNotFoundError(f"no run at {params.run_dir}")

    assert run_command(ToolParams, fails, ["--run_dir", "gone"], prog="tool", errors=(FileNotFoundError,)) == 2
    assert capsys.readouterr().err == "error: no run at gone\n"
    with pytest.raises(FileNotFoundError):
        run_command(ToolParams, fails, ["--run_dir", "gone", "--debug"], prog="tool", errors=(FileNotFoundError,))


def test_subcommands_pick_the_params_and_name_the_closest_verb(capsys):
    seen = []
    commands = {"push": Subcommand(ToolParams, seen.append, "push it", Spelling(positional=("run_dir", "revision")))}
    assert run_subcommands(commands, ["push", "runs/a", "main", "--ema"], prog="tool") == 0
    assert seen == [ToolParams(run_dir="runs/a", revision="main", ema=True)]
    assert run_subcommands(commands, ["psuh"], prog="tool") == 2
    assert capsys.readouterr().err == "error: 'psuh' is not a command of tool (did you mean push?); valid: push\n"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


# Until its command moves to run_command (the checkpoint package's CLI), with the helpers it uses.
ARGPARSE_PENDING: set[str] = set()


def test_no_command_of_the_package_uses_argparse_or_its_own_difflib():
    files = sorted((REPO_ROOT / "vla_foundry").rglob("*.py"))
    argparse_users = {str(p.relative_to(REPO_ROOT)) for p in files if "argparse" in _imports(p)}
    assert argparse_users <= ARGPARSE_PENDING
    difflib_users = {str(p.relative_to(REPO_ROOT)) for p in files if "difflib" in _imports(p)}
    assert difflib_users == {"vla_foundry/names.py"}
