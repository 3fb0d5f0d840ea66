"""A native VLM's image placeholder id is checked against the data tokenizer before the model is built."""

from __future__ import annotations

import os

import pytest

from tests.conftest import PRESETS
from tests.hf_models import byte_fallback_tokenizer
from vla_foundry.main import main
from vla_foundry.params import ConfigError, TrainExperimentParams
from vla_foundry.params.parsing import parse_params
from vla_foundry.training_run import derive_data_values


def vlm_caption_args(dataset: str, save_path: str, *extra: str) -> list[str]:
    return [
        "--model", f"include {PRESETS / 'models' / 'vlm_tiny.yaml'}",
        "--data.type", "image_caption",
        "--data.dataset_manifest", f"[{dataset}]",
        "--data.dataset_weighting", "[1.0]",
        "--data.dataset_modality", "[image_caption]",
        "--total_train_samples", "16",
        "--save_path", save_path,
        "--name", "vlm",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def hf_tokenizer_dir(tmp_path_factory) -> str:
    """An HF tokenizer whose `<image>` id is 4 (the byte tokenizer's is 259)."""
    path = tmp_path_factory.mktemp("tokenizer")
    byte_fallback_tokenizer().save_pretrained(path)
    return str(path)


def test_image_token_id_other_than_the_byte_tokenizers_fails_before_the_run_starts(tmp_path, tiny_datasets, capsys):
    args = vlm_caption_args(tiny_datasets["image_caption"], str(tmp_path), "--model.image_token_id", "258")
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert "model.image_token_id=258 but data.tokenizer 'byte' gives <image> the id 259" in err
    assert "set --model.image_token_id 259" in err
    assert not os.path.exists(tmp_path / "vlm")


def test_image_token_id_is_checked_against_an_hf_tokenizer(tmp_path, tiny_datasets, hf_tokenizer_dir):
    args = vlm_caption_args(tiny_datasets["image_caption"], str(tmp_path), "--data.tokenizer", hf_tokenizer_dir)
    params = parse_params(TrainExperimentParams, args)
    with pytest.raises(ConfigError, match=r"model.image_token_id=259 but data.tokenizer .* gives <image> the id 4"):
        derive_data_values(params)


def test_image_token_id_equal_to_the_hf_tokenizers_passes(tmp_path, tiny_datasets, hf_tokenizer_dir):
    extra = ("--data.tokenizer", hf_tokenizer_dir, "--model.image_token_id", "4")
    params = parse_params(
        TrainExperimentParams, vlm_caption_args(tiny_datasets["image_caption"], str(tmp_path), *extra)
    )
    params = derive_data_values(params)
    assert params.model.image_token_id == 4 and params.data.img_num_tokens == params.model.img_num_tokens
