"""Reading checkpoints (files, run directories, s3) and the LLM -> VLM weight hand-off."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.models.conftest import tiny_lm_params, tiny_vlm_params
from vla_foundry import storage
from vla_foundry.checkpoint import CheckpointError
from vla_foundry.models import create_model
from vla_foundry.models.weights import find_latest_checkpoint, load_weights_into, read_model_weights
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


def test_reads_a_pt_checkpoint_file(tmp_path: Path) -> None:
    model = create_model(tiny_lm_params())
    path = save_run_checkpoint(tmp_path, 1, model)
    assert_same_weights(read_model_weights(str(path)), model.state_dict())


def test_reads_a_safetensors_file(tmp_path: Path) -> None:
    model = create_model(tiny_lm_params())
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    assert_same_weights(read_model_weights(str(path)), model.state_dict())


def test_run_directory_picks_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    models = [create_model(tiny_lm_params()) for _ in range(3)]
    for n, model in zip((2, 10, 9), models):
        save_run_checkpoint(tmp_path, n, model)
    (tmp_path / "checkpoints" / "optimizer_11.pt").write_bytes(b"not a model")
    # Weights of a save that never finished (no trainer state): not the latest checkpoint.
    torch.save(models[0].state_dict(), tmp_path / "checkpoints" / "checkpoint_11.pt")
    assert find_latest_checkpoint(str(tmp_path)).endswith("checkpoint_10.pt")
    assert_same_weights(read_model_weights(str(tmp_path)), models[1].state_dict())


def test_wrapper_prefixes_are_removed(tmp_path: Path) -> None:
    model = create_model(tiny_lm_params())
    path = tmp_path / "compiled.pt"
    torch.save({f"_orig_mod.{k}": v for k, v in model.state_dict().items()}, path)
    assert_same_weights(read_model_weights(str(path)), model.state_dict())


def test_reads_a_run_directory_on_s3(s3_bucket: str, tmp_path: Path) -> None:
    model = create_model(tiny_lm_params())
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    storage.write_bytes(f"{s3_bucket}/runs/llm/checkpoints/checkpoint_3.pt", buffer.getvalue())
    storage.write_bytes(f"{s3_bucket}/runs/llm/checkpoints/trainer_state_3.pt", b"complete")
    storage.write_bytes(f"{s3_bucket}/runs/llm/checkpoints/checkpoint_4.pt", b"a save that never finished")
    assert_same_weights(read_model_weights(f"{s3_bucket}/runs/llm"), model.state_dict())


def test_missing_checkpoint_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint_7.pt"):
        read_model_weights(str(tmp_path / "checkpoint_7.pt"))
    with pytest.raises(CheckpointError, match=f"no complete checkpoint under {tmp_path}"):
        read_model_weights(str(tmp_path))


def test_arbitrary_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "obj": Path("/")}, path)
    with pytest.raises(CheckpointError, match="not a weights-only torch checkpoint"):
        read_model_weights(str(path))


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
