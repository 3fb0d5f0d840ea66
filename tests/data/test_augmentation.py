"""Image augmentation draws and the random shift."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from vla_foundry.data.processors.images import draw_augmentation, shift_image
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.data_params import AugmentationParams


@pytest.mark.parametrize(("dy", "dx"), [(2, 0), (0, -3), (-1, 2), (3, 3)])
def test_a_shift_moves_every_pixel_and_repeats_the_edges(dy, dx):
    image = torch.rand(3, 6, 8)
    out = shift_image(image, dy, dx)
    assert out.shape == image.shape
    for y in range(6):
        for x in range(8):
            source = (min(max(y - dy, 0), 5), min(max(x - dx, 0), 7))
            assert torch.equal(out[:, y, x], image[:, source[0], source[1]]), (y, x)


def test_without_a_shift_the_draws_are_those_of_runs_made_before_it():
    params = AugmentationParams(enabled=True, hue=0.1)
    plain = draw_augmentation(np.random.default_rng(7), params)
    shifted = draw_augmentation(np.random.default_rng(7), dataclasses.replace(params, shift=4))
    assert (plain.shift_y, plain.shift_x) == (0, 0)
    # The shift is drawn after everything else, so the other values do not move.
    for name in ("crop_top", "crop_left", "brightness", "contrast", "saturation", "hue"):
        assert getattr(plain, name) == getattr(shifted, name), name


def test_shifts_cover_the_whole_range_and_no_more():
    rng = np.random.default_rng(0)
    params = AugmentationParams(enabled=True, shift=2)
    seen = {(d.shift_y, d.shift_x) for d in (draw_augmentation(rng, params) for _ in range(500))}
    assert seen == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}


@pytest.mark.parametrize(("field", "value"), [("shift", -1), ("crop_scale", 0.0), ("crop_scale", 1.5)])
def test_out_of_range_augmentation_values_are_config_errors(field, value):
    with pytest.raises(ConfigError, match=f"data.augmentation.{field}"):
        AugmentationParams(**{field: value})
