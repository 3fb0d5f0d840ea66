"""The LeRobot tutorial notebook runs top to bottom: synthetic dataset -> Ray preprocessing -> validation -> a
look at one sample -> a tiny VLA trained on the shards -> a policy prediction on a raw observation -> the same VLA
trained straight from the LeRobot root through a Ray Data stream."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.tutorials.notebook_execution import code_outputs, execute_notebook, output_text

NOTEBOOK = REPO_ROOT / "tutorials" / "lerobot.ipynb"


def test_lerobot_notebook_goes_from_a_dataset_to_a_policy_prediction(tmp_path: Path):
    nb = execute_notebook(NOTEBOOK, env={"LEROBOT_TUTORIAL_DIR": str(tmp_path)})

    info = json.loads((tmp_path / "toy_lerobot" / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 4
    shards = tmp_path / "preprocessed" / "shards"
    metadata = json.loads((shards / "processing_metadata.json").read_text())
    # 4 episodes of 12 + 9 + 15 + 10 frames; every step is an anchor (the preset allows padding at both edges).
    assert metadata["samples"]["written"] == 46 and metadata["inputs_failed"] == 0
    assert (tmp_path / "vla" / "config_model.yaml").exists()
    # Section 7: the same policy trained straight from the LeRobot root, through a Ray Data stream.
    assert (tmp_path / "vla_stream" / "checkpoints").is_dir()
    streamed = [json.loads(line) for line in (tmp_path / "vla_stream" / "metrics.jsonl").read_text().splitlines()]
    assert sum(r.get("interval_samples_read", 0) for r in streamed) == 64

    text = output_text(nb)
    assert "0 problems" in text
    assert "observation.state" in text and "(16, 3)" in text  # the sample's low-dim window, 1 + 1 + 14 rows
    assert "predicted chunk (15, 2)" in text  # anchor + 14 future steps of the 2 action values
    assert any("image/png" in o.get("data", {}) for o in code_outputs(nb))  # the camera frames
    assert "streamed run: 8 steps" in text


def test_lerobot_notebook_is_committed_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not code_outputs(nb)
    assert all(cell.get("execution_count") is None for cell in nb.cells if cell.cell_type == "code")
