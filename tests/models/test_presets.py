"""Model presets: each parses, and native presets have the parameter count their name says (within 10%).

Counts come from `count_parameters` (a formula over params); the formula is checked against models instantiated
on the `meta` device (no memory, no initialisation cost), so even the 1B presets are checked exactly.
"""

from __future__ import annotations

import pytest
import torch

from tests.conftest import PRESETS
from tests.models.conftest import load_model_preset
from vla_foundry.models import create_model
from vla_foundry.models.flops import count_parameters

SIZED_PRESETS = {
    "transformer_11m": 11e6,
    "transformer_100m": 100e6,
    "transformer_410m": 410e6,
    "transformer_1b": 1e9,
    "vlm_11m": 11e6,
    "vlm_100m": 100e6,
    "vlm_1b": 1e9,
    "vit_base": 86e6,  # ViT-B/16
}
HF_PRESETS = [
    "transformer_qwen2_5_0_5b",
    "vlm_smolvlm_256m",
    "vlm_paligemma_3b",
    "vit_siglip_base",
    "vit_paligemma",
]


def unique_parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@pytest.mark.parametrize("name", sorted(SIZED_PRESETS))
def test_native_preset_parameter_count_is_within_10_percent_of_its_name(name: str) -> None:
    count = count_parameters(load_model_preset(name))
    assert abs(count - SIZED_PRESETS[name]) / SIZED_PRESETS[name] <= 0.10, f"{name}: {count / 1e6:.1f}M"


@pytest.mark.parametrize("name", [*sorted(SIZED_PRESETS), "transformer_tiny", "vit_tiny", "vlm_tiny"])
def test_parameter_formula_matches_the_instantiated_model(name: str) -> None:
    params = load_model_preset(name)
    with torch.device("meta"):
        model = create_model(params)
    assert unique_parameter_count(model) == count_parameters(params)


def test_parameter_formula_matches_a_real_small_model_with_all_options() -> None:
    from tests.models.conftest import tiny_lm_params

    params = tiny_lm_params(qk_norm=True, tie_embeddings=True, ffn_hidden_dim=48)
    assert unique_parameter_count(create_model(params)) == count_parameters(params)


def test_vlm_presets_reuse_the_llm_presets_so_llm_runs_load_into_them() -> None:
    for vlm, llm in (("vlm_11m", "transformer_11m"), ("vlm_100m", "transformer_100m"), ("vlm_1b", "transformer_1b")):
        assert load_model_preset(vlm).transformer == load_model_preset(llm)


@pytest.mark.parametrize("name", HF_PRESETS)
def test_hf_presets_parse_to_their_hf_types(name: str) -> None:
    params = load_model_preset(name)
    assert params.type in ("transformer_hf", "vlm_hf", "vit_hf")
    assert params.hf_pretrained


def test_every_model_preset_file_is_covered() -> None:
    names = {p.stem for p in (PRESETS / "models").glob("*.yaml") if not p.stem.startswith(("vla_", "diffusion"))}
    covered = set(SIZED_PRESETS) | set(HF_PRESETS) | {"transformer_tiny", "vit_tiny", "vlm_tiny"}
    assert names <= covered, names - covered
