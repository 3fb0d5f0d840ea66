"""Fields that parsed but did nothing are gone: typing them is an error naming the field that acts, and configs saved
with them still load (the key is dropped with a warning)."""

from __future__ import annotations

import pytest
import yaml

from vla_foundry.params import ConfigError, TrainExperimentParams, load_params_from_yaml, parse_train_params
from vla_foundry.params.parsing import save_params

BASE = ["--model.type", "transformer", "--data.type", "text"]


@pytest.mark.parametrize("flag", ["--hparams.z_loss_coefficient", "--hparams.label_smoothing"])
def test_removed_hparams_are_unknown_keys(flag):
    with pytest.raises(ConfigError, match=f"unknown key '{flag[2:]}'"):
        parse_train_params([*BASE, flag, "0.1"])


def test_vlm_hf_num_image_tokens_is_an_unknown_key():
    with pytest.raises(ConfigError, match="unknown key 'model.num_image_tokens'"):
        parse_train_params(["--model.type", "vlm_hf", "--model.hf_pretrained", "x", "--data.type", "text",
                            "--model.num_image_tokens", "256"])  # fmt: skip


def test_a_saved_config_with_removed_knobs_loads_with_a_warning(tmp_path):
    path = tmp_path / "config.yaml"
    save_params(parse_train_params([*BASE, "--hparams.lr", "0.01"]), path)
    saved = yaml.safe_load(path.read_text())
    saved["hparams"].update(z_loss_coefficient=0.0, label_smoothing=0.1)
    path.write_text(yaml.safe_dump(saved))
    with pytest.warns(UserWarning, match="dropping key 'hparams.label_smoothing'"):
        loaded = load_params_from_yaml(TrainExperimentParams, path)
    assert loaded.hparams.lr == 0.01
