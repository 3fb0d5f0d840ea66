"""Preprocessed datasets pass the dataset validator and stream through the training loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.data.preprocessing.conftest import load_npz, preprocess_robotics, read_dataset, robotics_argv
from vla_foundry.data.validate import validate_dataset

pytestmark = pytest.mark.usefixtures("ray_cluster")


@pytest.fixture(scope="module")
def v3_dataset(lerobot_v3: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("v3_loader")
    preprocess_robotics(robotics_argv([lerobot_v3], out, "--image_size", "[24, 24]"))
    return out / "shards"


def test_robotics_shards_pass_the_validator(v3_dataset: Path):
    assert validate_dataset(str(v3_dataset), "robotics") == []


def test_robotics_shards_stream_through_the_training_loader_with_their_own_values(v3_dataset: Path):
    from vla_foundry.data.dataloader import build_dataloader
    from vla_foundry.data.planner import plan_checkpoint
    from vla_foundry.params.data_params import NormalizationParams, RoboticsDataParams

    params = RoboticsDataParams(
        dataset_manifest=[str(v3_dataset)],
        dataset_weighting=[1.0],
        dataset_modality=["robotics"],
        action_fields=["action"],
        proprioception_fields=["observation.state"],
        normalization=NormalizationParams(method="none"),
        num_workers=0,
        seed=0,
    )
    loader = build_dataloader(params, plan_checkpoint(params, 0, 16), batch_size=4)
    batches = list(loader)
    assert len(batches) == 4 and loader.stats.bad_samples == 0
    samples = read_dataset(v3_dataset)
    batch = batches[0]
    assert tuple(batch["actions"].shape) == (4, 5, 2)
    assert tuple(batch["images"].shape) == (4, 4, 3, 24, 24)  # 2 cameras x 2 offsets
    for i, meta in enumerate(batch["metadata"]):
        stored = load_npz(samples[meta["sample_id"]]["lowdim.npz"])
        np.testing.assert_allclose(batch["actions"][i].numpy(), stored["action"])
        assert batch["future_mask"][i].tolist() == stored["future_mask"].tolist()


def test_text_and_caption_shards_pass_the_validator(tmp_path: Path):
    from PIL import Image

    from vla_foundry.data.preprocessing.text_sources import run_caption_preprocessing, run_text_preprocessing
    from vla_foundry.data.scripts.make_synthetic_lerobot import make_frame
    from vla_foundry.params.preprocessing_params import (
        CaptionPreprocessingParams,
        TextPreprocessingParams,
        parse_preprocessing_params,
    )

    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps({"text": f"document {i}"}) for i in range(5)))
    for name, extra in (("untok", []), ("tok", ["--tokenizer", "byte"])):
        argv = ["--source", f"[{tmp_path / 'docs.jsonl'}]", "--output_dir", str(tmp_path / name), *extra]
        run_text_preprocessing(parse_preprocessing_params(TextPreprocessingParams, [*argv, "--show_progress", "False"]))
    assert validate_dataset(str(tmp_path / "untok" / "shards"), "text_untokenized") == []
    assert validate_dataset(str(tmp_path / "tok" / "shards"), "text") == []
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.fromarray(make_frame(i, 0, 0)).save(tmp_path / "imgs" / f"{i}.jpg")
        (tmp_path / "imgs" / f"{i}.txt").write_text(f"caption {i}")
    argv = ["--source", f"[{tmp_path / 'imgs'}]", "--output_dir", str(tmp_path / "cap"), "--show_progress", "False"]
    run_caption_preprocessing(parse_preprocessing_params(CaptionPreprocessingParams, argv))
    assert validate_dataset(str(tmp_path / "cap" / "shards"), "image_caption") == []
