"""Robotics sources are converter classes registered by name; plugins register their own."""

from __future__ import annotations

import sys
import textwrap

import pytest

from vla_foundry.data.preprocessing.episodes import converter_names, get_converter
from vla_foundry.params.base_params import ConfigError
from vla_foundry.plugins import load_plugins, split_plugin_names


def test_builtin_sources_are_found_by_name():
    assert get_converter("lerobot").__name__ == "LeRobotConverter"
    assert get_converter("spartan").__name__ == "SpartanConverter"


def test_unknown_source_suggests_the_closest_names():
    with pytest.raises(ConfigError, match=r"'lerobt'.*did you mean lerobot.*valid: .*spartan"):
        get_converter("lerobt")


def test_plugin_module_registers_a_converter(tmp_path, monkeypatch):
    (tmp_path / "toy_source_plugin.py").write_text(
        textwrap.dedent(
            """
            from vla_foundry.data.preprocessing.episodes import Converter, register_converter

            @register_converter("toy_npz")
            class ToyConverter(Converter):
                def plan_read_tasks(self):
                    return []

                def read_task(self, task):
                    return iter(())
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "toy_npz" not in converter_names()
    assert load_plugins(["toy_source_plugin"], entry_points=False) == ["toy_source_plugin"]
    assert get_converter("toy_npz").__name__ == "ToyConverter"
    assert "toy_npz" in converter_names()
    sys.modules.pop("toy_source_plugin")


def test_unimportable_plugin_is_one_config_error():
    with pytest.raises(ConfigError, match="plugin 'no_such_pkg.toy' cannot be imported"):
        load_plugins(["no_such_pkg.toy"], entry_points=False)


def test_plugin_names_split_from_cli_forms():
    assert split_plugin_names("a.b,c") == ["a.b", "c"]
    assert split_plugin_names("[a.b, 'c']") == ["a.b", "c"]
    assert split_plugin_names(["x"]) == ["x"]


def test_preprocessing_flag_plugins_loads_modules_before_the_type_is_checked(tmp_path, monkeypatch):
    from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams, parse_preprocessing_params

    for name in ("toy_cli_source", "toy_cli_extra"):
        (tmp_path / f"{name}.py").write_text(
            textwrap.dedent(
                f"""
                from vla_foundry.data.preprocessing.episodes import Converter, register_converter

                @register_converter("{name}")
                class Toy(Converter):
                    def plan_read_tasks(self):
                        return []

                    def read_task(self, task):
                        return iter(())
                """
            )
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    base = ["--source_episodes", "[/data/x]", "--output_dir", str(tmp_path / "out")]
    with pytest.raises(ConfigError, match="type='toy_cli_source' is not a known robotics source"):
        parse_preprocessing_params(RoboticsPreprocessingParams, [*base, "--type", "toy_cli_source"])
    params = parse_preprocessing_params(
        RoboticsPreprocessingParams, [*base, "--type", "toy_cli_source", "--plugins", "toy_cli_source,toy_cli_extra"]
    )
    # The list travels in the params (to the Ray workers, which load it before looking the type up).
    assert params.plugins == ["toy_cli_source", "toy_cli_extra"]
    assert get_converter("toy_cli_extra").__name__ == "Toy"
    for name in ("toy_cli_source", "toy_cli_extra"):
        sys.modules.pop(name)


@pytest.mark.parametrize(("flag", "value"), [("--trust_pickle", "True"), ("--mapping_path", "pyproject.toml")])
def test_a_source_specific_flag_given_to_a_source_that_ignores_it_is_refused(flag: str, value: str, tmp_path):
    from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams, parse_preprocessing_params

    argv = ["--type", "lerobot", "--source_episodes", "[/data/x]", "--output_dir", str(tmp_path), flag, value]
    with pytest.raises(ConfigError, match=f"{flag[2:]} is not read by type=lerobot"):
        parse_preprocessing_params(RoboticsPreprocessingParams, argv)
    argv[1] = "robodm" if flag == "--trust_pickle" else "hdf5"
    assert parse_preprocessing_params(RoboticsPreprocessingParams, argv).type == argv[1]
