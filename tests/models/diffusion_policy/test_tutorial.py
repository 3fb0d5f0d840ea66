"""The LLM -> VLM -> VLA tutorial notebook runs top to bottom (executed with nbclient on its tiny settings)."""

from __future__ import annotations

import os

from tests.conftest import REPO_ROOT
from tests.tutorials.notebook_execution import code_outputs, execute_notebook

NOTEBOOK = REPO_ROOT / "tutorials" / "training_llm_vlm_vla.ipynb"


def test_training_llm_vlm_vla_notebook_executes(tmp_path):
    nb = execute_notebook(NOTEBOOK, env={"VLA_TUTORIAL_RUNS": str(tmp_path)})
    assert {"llm", "vlm", "vla"} <= set(os.listdir(tmp_path))
    outputs = code_outputs(nb)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the open-loop plot
    assert (tmp_path / "vla" / "open_loop" / "open_loop_metrics.json").exists()
