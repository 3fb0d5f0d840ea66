"""VLA presets parse to the intended backbone kinds and sizes; the training jobs resolve against the bundled data."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.conftest import PRESETS, REPO_ROOT
from vla_foundry.models.diffusion_policy.params import CLIPBackboneParams
from vla_foundry.params import parse_params
from vla_foundry.params.model_params import ModelParams, ViTParams, VLMHFParams, VLMParams

SIZES = {  # preset -> (backbone kind, parameters in millions: low, high)
    "vla_diffusion_tiny": (VLMParams, 0.2, 0.8),
    "vla_diffusion_11m": (VLMParams, 10, 20),
    "vla_diffusion_100m": (VLMParams, 100, 150),
    "vla_diffusion_vit": (ViTParams, 80, 110),
}
HF_PRESETS = {
    "vla_diffusion_smolvlm": VLMHFParams,
    "vla_diffusion_paligemma": VLMHFParams,
    "vla_diffusion_clip": CLIPBackboneParams,
}


def load_preset(name: str):
    return parse_params(ModelParams, ["--config_path", str(PRESETS / "models" / f"{name}.yaml")])


@pytest.mark.parametrize("name", sorted(SIZES))
def test_native_presets_have_their_stated_size(name):
    from vla_foundry.models import create_model

    kind, low, high = SIZES[name]
    params = load_preset(name)
    assert isinstance(params.backbone, kind)
    params = dataclasses.replace(
        params, action_dim=20, proprioception_dim=20, past_lowdim_steps=1, future_lowdim_steps=14
    )
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = create_model(params)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert low <= millions <= high, f"{name}: {millions:.1f}M parameters"


@pytest.mark.parametrize("name", sorted(HF_PRESETS))
def test_hf_presets_select_an_hf_backbone(name):
    params = load_preset(name)
    assert isinstance(params.backbone, HF_PRESETS[name])
    assert params.backbone_lr_multiplier == 0.1


@pytest.mark.parametrize("job", ["vla_diffusion_tiny_quickstart", "vla_diffusion_tiny_spartan"])
def test_training_jobs_resolve_dims_and_window_from_the_bundled_data(job, monkeypatch):
    from vla_foundry.params import parse_train_params
    from vla_foundry.params.resolve import resolve_params

    monkeypatch.chdir(REPO_ROOT)
    params = resolve_params(parse_train_params(["--config_path", str(PRESETS / "training_jobs" / f"{job}.yaml")]))
    expected_dim = 4 if job.endswith("quickstart") else 10
    assert params.model.action_dim == params.model.proprioception_dim == expected_dim
    assert (params.model.past_lowdim_steps, params.model.future_lowdim_steps) == (1, 4)
    assert params.data.image_size == params.model.backbone.vit.img_size == 32
    assert params.total_steps == 256 and params.ema.enabled
