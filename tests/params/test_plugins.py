"""A model type defined in a user's own module is named by `--plugins`, by `plugins:` in a job YAML, or by an
installed entry point (group `vla_foundry.plugins`), and is imported before the config is parsed."""

from __future__ import annotations

import textwrap

import pytest

from vla_foundry.params import ConfigError, parse_train_params

DATA = ["--data.type", "text", "--data.seq_len", "48"]


def write_plugin(folder, module: str, type_name: str) -> None:
    """A module registering params of model type `type_name` that take seq_len from the data params."""
    (folder / f"{module}.py").write_text(
        textwrap.dedent(f"""
        from dataclasses import dataclass
        from typing import ClassVar

        from vla_foundry.params import ModelParams, register_model_params


        @register_model_params("{type_name}")
        @dataclass(frozen=True)
        class Params(ModelParams):
            # Width.
            width: int = 8
            # Shared from data.seq_len.
            context: int | None = None

            SHARED_FROM_DATA: ClassVar[dict[str, str]] = {{"context": "seq_len"}}
        """)
    )


def test_a_plugin_named_on_the_command_line_registers_its_model_type(tmp_path, monkeypatch):
    write_plugin(tmp_path, "cli_plugin_model", "cli_plugin_type")
    monkeypatch.syspath_prepend(str(tmp_path))
    params = parse_train_params(["--plugins", "cli_plugin_model", "--model.type", "cli_plugin_type", *DATA])
    assert params.model.type == "cli_plugin_type"
    assert params.model.context == 48  # declared on its params class, shared from data.seq_len


def test_a_plugin_named_in_the_job_yaml_registers_its_model_type(tmp_path, monkeypatch):
    write_plugin(tmp_path, "yaml_plugin_model", "yaml_plugin_type")
    monkeypatch.syspath_prepend(str(tmp_path))
    job = tmp_path / "job.yaml"
    job.write_text("plugins: [yaml_plugin_model]\nmodel:\n  type: yaml_plugin_type\n  width: 3\n")
    params = parse_train_params(["--config_path", str(job), *DATA])
    assert (params.model.type, params.model.width, params.plugins) == ("yaml_plugin_type", 3, ["yaml_plugin_model"])


def test_an_installed_entry_point_registers_its_model_type_without_a_flag(tmp_path, monkeypatch):
    write_plugin(tmp_path, "entry_point_model", "entry_point_type")
    # An installed distribution as importlib.metadata finds it: a .dist-info folder with entry_points.txt.
    dist = tmp_path / "toy_plugin_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[vla_foundry.plugins]\ntoy = entry_point_model\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    params = parse_train_params(["--model.type", "entry_point_type", *DATA])
    assert params.model.type == "entry_point_type"


def test_an_unknown_model_type_points_at_plugins():
    with pytest.raises(ConfigError, match=r"model.type='toy_never_loaded' .*--plugins my_pkg.module"):
        parse_train_params(["--model.type", "toy_never_loaded", *DATA])


def test_a_plugin_that_cannot_be_imported_is_one_config_error():
    with pytest.raises(ConfigError, match=r"plugin 'no_such_pkg.toy' cannot be imported"):
        parse_train_params(["--plugins", "no_such_pkg.toy", "--model.type", "transformer", *DATA])


def test_a_saved_run_config_imports_the_plugins_it_records(tmp_path, monkeypatch):
    from vla_foundry.params import TrainExperimentParams, load_params_from_yaml
    from vla_foundry.params.parsing import save_params

    write_plugin(tmp_path, "saved_plugin_model", "saved_plugin_type")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / "config.yaml"
    config.write_text(
        "plugins: [saved_plugin_model]\nmodel:\n  type: saved_plugin_type\n  width: 5\ndata:\n  type: text\n"
    )
    loaded = load_params_from_yaml(TrainExperimentParams, config)
    assert (loaded.model.type, loaded.model.width) == ("saved_plugin_type", 5)
    save_params(loaded, tmp_path / "again.yaml")
    assert load_params_from_yaml(TrainExperimentParams, tmp_path / "again.yaml") == loaded


def test_a_model_type_in_its_own_folder_is_known_to_every_parser_in_a_fresh_process():
    """`diffusion_policy` keeps its params in vla_foundry/models/diffusion_policy/params.py; the generic parser, the
    training parser and saved-config loading all know it without anything imported first."""
    import subprocess
    import sys

    code = (
        "from vla_foundry.params import ModelParams, parse_params\n"
        "import sys\n"
        "params = parse_params(ModelParams, ['--type', 'diffusion_policy'])\n"
        "print(type(params).__module__, 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    # Registered by the folder's params module alone: parsing imports no torch.
    assert out == ["vla_foundry.models.diffusion_policy.params", "False"]
