"""The training-side data presets parse and stream the bundled examples/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from vla_foundry.data.dataloader import build_dataloader
from vla_foundry.data.planner import plan_checkpoint
from vla_foundry.data.robotics.processor import derive_robotics_data
from vla_foundry.params.data_params import DataParams
from vla_foundry.params.parsing import parse_params

REPO = Path(__file__).resolve().parents[2]
PRESETS = ["tiny_text", "tiny_text_untokenized", "tiny_image_caption", "tiny_robotics_lerobot", "tiny_robotics_spartan"]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_streams_the_bundled_data(name, monkeypatch):
    monkeypatch.chdir(REPO)
    args = ["--config_path", f"config_presets/data/{name}.yaml", "--seed", "0"]
    if name == "tiny_image_caption":
        args += ["--image_size", "32", "--img_num_tokens", "4"]
    params = parse_params(DataParams, args)
    assert params.type == name.removeprefix("tiny_").removesuffix("_lerobot").removesuffix("_spartan")
    if params.type == "robotics":
        derived = derive_robotics_data(params)
        action_dim, proprio_dim = derived.action_dim, derived.proprioception_dim
        assert (action_dim, proprio_dim) == ((4, 4) if "lerobot" in name else (10, 10))
    loader = build_dataloader(params, plan_checkpoint(params, 0, 8), batch_size=4)
    batches = list(loader)
    assert len(batches) == 2 and loader.stats.bad_samples == 0
