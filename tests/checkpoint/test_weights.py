"""Reading model weights out of weights files, checkpoints and run directories (local and s3)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.models.conftest import tiny_lm_params
from tests.models.test_weights import assert_same_weights, save_run_checkpoint
from vla_foundry import storage
from vla_foundry.checkpoint import CheckpointError, read_model_weights, resolve_checkpoint
from vla_foundry.models import create_model


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
    assert resolve_checkpoint(str(tmp_path)).path.endswith("checkpoint_10.pt")
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
