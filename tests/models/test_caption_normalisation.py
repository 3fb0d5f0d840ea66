"""Captioning with a native VLM run normalises images with the statistics the run was trained with, and refuses a
run that records none (instead of silently using 0.5 / 0.5)."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from tests.models.diffusion_policy.conftest import TINY_VLM
from vla_foundry.inference import caption_image, load_run
from vla_foundry.inference.generation import training_image_stats
from vla_foundry.params import ConfigError


def write_vlm_run(run_dir: str, params) -> str:
    from vla_foundry.checkpoint import checkpoint_file, save_file
    from vla_foundry.models import create_model
    from vla_foundry.params.parsing import save_params

    os.makedirs(run_dir)
    save_params(params, os.path.join(run_dir, "config_model.yaml"))
    save_file(create_model(params).state_dict(), checkpoint_file(run_dir, 1))
    save_file({"step": 1}, checkpoint_file(run_dir, 1, "trainer_state"))
    return run_dir


def test_a_run_recording_its_statistics_captions_with_them(tmp_path):
    params = dataclasses.replace(TINY_VLM, image_mean=(0.1, 0.2, 0.3), image_std=(0.6, 0.7, 0.8))
    run = load_run(write_vlm_run(str(tmp_path / "vlm"), params))
    assert training_image_stats(run) == ((0.1, 0.2, 0.3), (0.6, 0.7, 0.8))
    image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    assert len(caption_image(run, image, max_new_tokens=3)) == 1


def test_a_run_recording_no_statistics_is_refused(tmp_path):
    run = load_run(write_vlm_run(str(tmp_path / "vlm_bare"), TINY_VLM))
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    with pytest.raises(ConfigError, match=r"vlm_bare records no image mean / std"):
        caption_image(run, image, max_new_tokens=3)
