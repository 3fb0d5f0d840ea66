"""The LLM -> VLM -> VLA tutorial notebook runs top to bottom (executed with nbclient on its tiny settings)."""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient

from tests.conftest import REPO_ROOT

NOTEBOOK = REPO_ROOT / "tutorials" / "training_llm_vlm_vla.ipynb"


def test_training_llm_vlm_vla_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("VLA_TUTORIAL_RUNS", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
    assert {"llm", "vlm", "vla"} <= set(os.listdir(tmp_path))
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the open-loop plot
    assert (tmp_path / "vla" / "open_loop" / "open_loop_metrics.json").exists()
