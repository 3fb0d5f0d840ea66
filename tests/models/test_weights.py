"""Loading weights into modules (exact fit or one error) and the LLM -> VLM weight hand-off."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.models.conftest import tiny_lm_params, tiny_vlm_params
from vla_foundry.models import create_model
from vla_foundry.models.weights import load_weights_into
from vla_foundry.params import TransformerParams, ViTParams


def save_run_checkpoint(run: Path, n: int, model: torch.nn.Module) -> Path:
    """A complete checkpoint in the consolidated layout (weights + trainer state)."""
    path = run / "checkpoints" / f"checkpoint_{n}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    torch.save({"step": n}, run / "checkpoints" / f"trainer_state_{n}.pt")
    return path


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_load_error_lists_missing_unexpected_and_mismatched_keys() -> None:
    model = create_model(tiny_lm_params())
    state = model.state_dict()
    state.pop("norm.weight")
    state["extra.weight"] = torch.zeros(1)
    state["tok_embeddings.weight"] = torch.zeros(10, 32)
    before = model.tok_embeddings.weight.clone()
    with pytest.raises(ValueError) as error:
        load_weights_into(model, state, "checkpoint x.pt -> model.transformer")
    message = str(error.value)
    assert "checkpoint x.pt -> model.transformer" in message
    assert "1 missing keys: norm.weight" in message
    assert "1 unexpected keys: extra.weight" in message
    assert "tok_embeddings.weight: checkpoint (10, 32) vs model (64, 32)" in message
    assert torch.equal(model.tok_embeddings.weight, before)  # nothing was loaded


def test_llm_run_weights_load_into_vlm_language_model_bit_for_bit(tmp_path: Path) -> None:
    llm = create_model(tiny_lm_params())
    with torch.no_grad():
        for p in llm.parameters():
            p.add_(torch.randn_like(p))  # make them differ from any fresh initialisation
    save_run_checkpoint(tmp_path / "llm_run", 4, llm)
    lm_params = TransformerParams(**{**tiny_lm_params().__dict__, "resume_from_checkpoint": str(tmp_path / "llm_run")})
    vlm = create_model(tiny_vlm_params(transformer=lm_params))
    assert_same_weights(vlm.language_model.state_dict(), llm.state_dict())


def test_vlm_handoff_from_mismatched_llm_is_a_clear_error(tmp_path: Path) -> None:
    llm = create_model(tiny_lm_params(hidden_dim=48, n_heads=4))
    path = save_run_checkpoint(tmp_path, 1, llm)
    lm_params = TransformerParams(**{**tiny_lm_params().__dict__, "resume_from_checkpoint": str(path)})
    with pytest.raises(ValueError, match=r"checkpoint_1.pt -> model.transformer: .*shape-mismatched"):
        create_model(tiny_vlm_params(transformer=lm_params))


def test_vision_tower_weights_load_from_a_checkpoint(tmp_path: Path) -> None:
    vit_params = tiny_vlm_params().vit
    vit = create_model(vit_params)
    path = tmp_path / "vit.pt"
    torch.save(vit.state_dict(), path)
    loaded_params = ViTParams(**{**vit_params.__dict__, "resume_from_checkpoint": str(path)})
    vlm = create_model(tiny_vlm_params(vit=loaded_params))
    assert_same_weights(vlm.vision.state_dict(), vit.state_dict())


def test_loading_llm_weights_into_a_vlm_says_what_was_loaded_from_where(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    llm = create_model(tiny_lm_params())
    save_run_checkpoint(tmp_path / "llm_run", 3, llm)
    lm_params = TransformerParams(**{**tiny_lm_params().__dict__, "resume_from_checkpoint": str(tmp_path / "llm_run")})
    create_model(tiny_vlm_params(transformer=lm_params))
    own = llm.state_dict()
    values = sum(t.numel() for t in own.values())
    # The run dir is named by the checkpoint it resolved to.
    assert (
        f"loaded {len(own)} tensors ({values / 1e6:.2f}M values): "
        f"{tmp_path / 'llm_run' / 'checkpoints' / 'checkpoint_3.pt'} -> model.transformer"
    ) in capsys.readouterr().err.splitlines()


def test_only_rank_zero_reports_loaded_weights(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("RANK", "1")
    model = create_model(tiny_lm_params())
    load_weights_into(model, model.state_dict(), "x.pt -> model")
    assert "loaded" not in capsys.readouterr().err
