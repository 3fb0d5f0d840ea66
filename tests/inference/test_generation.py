"""Captioning with a `vlm_hf` run goes through the model's own processor (a tiny PaliGemma-class model)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tests.models.diffusion_policy.conftest import tiny_paligemma_dir  # noqa: F401  (a session fixture shared with tests/models/diffusion_policy)
from vla_foundry.inference import caption_image, load_run


@pytest.fixture(scope="module")
def hf_vlm_run(tmp_path_factory, tiny_paligemma_dir) -> str:  # noqa: F811
    from vla_foundry.checkpoint import checkpoint_file, save_file
    from vla_foundry.models import create_model
    from vla_foundry.params.model_params import VLMHFParams
    from vla_foundry.params.parsing import save_params

    run_dir = str(tmp_path_factory.mktemp("runs") / "vlm_hf")
    params = VLMHFParams(hf_pretrained=tiny_paligemma_dir)
    os.makedirs(run_dir)
    save_params(params, os.path.join(run_dir, "config_model.yaml"))
    save_file(create_model(params).state_dict(), checkpoint_file(run_dir, 1))
    save_file({"step": 1}, checkpoint_file(run_dir, 1, "trainer_state"))
    return run_dir


def test_hf_vlm_run_captions_raw_images_through_its_processor(hf_vlm_run):
    run = load_run(hf_vlm_run)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(2)]
    captions = caption_image(run, images, max_new_tokens=5, prompt="caption en")
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    assert captions == caption_image(run, images, max_new_tokens=5, prompt="caption en")  # greedy: deterministic


def test_caption_rejects_an_image_of_the_wrong_shape(hf_vlm_run):
    with pytest.raises(ValueError, match=r"images must be uint8 \(H, W, 3\); got shape \(8, 8\)"):
        caption_image(load_run(hf_vlm_run), [np.zeros((8, 8), dtype=np.uint8)])
