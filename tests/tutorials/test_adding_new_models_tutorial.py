"""The adding-new-models tutorial runs top to bottom: a model type from a module outside the package, named as a
plugin, parsed (with its shared attribute) and trained a few steps from a job YAML on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.tutorials.notebook_execution import code_outputs, execute_notebook, output_text

NOTEBOOK = REPO_ROOT / "tutorials" / "adding_new_models.ipynb"


def test_a_plugin_model_type_is_parsed_and_trained(tmp_path: Path):
    nb = execute_notebook(NOTEBOOK, env={"TOY_MODEL_TUTORIAL_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"})

    run = tmp_path / "toy"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["plugins"] == ["toy_mlp_lm"] and config["model"]["type"] == "toy_mlp_lm"
    assert config["model"]["seq_len"] == config["data"]["seq_len"] == 64  # shared from the data side
    state_files = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "checkpoint_1" in state_files

    text = output_text(nb)
    assert "model.seq_len shared from data.seq_len: 64 = 64" in text
    assert "unknown key 'model.hiden_dim'" in text and "hidden_dim" in text
    # 96 samples in global batches of 16: 6 steps, and the loss falls.
    assert "in 6 steps" in text
    first, last = (float(x) for x in text.split("loss went from ")[1].split(" in ")[0].split(" to "))
    assert last < first


def test_adding_new_models_notebook_is_committed_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not code_outputs(nb)
    assert all(cell.get("execution_count") is None for cell in nb.cells if cell.cell_type == "code")


@pytest.mark.slow
def test_the_documented_nbconvert_command_runs_the_notebook_from_its_own_folder(tmp_path: Path):
    """What the README tells a user to type, from the tutorials/ folder: `uv run jupyter nbconvert --to notebook
    --execute NOTEBOOK` with the notebooks group (which brings jupyter); the kernel starts in the notebook's folder.
    `--isolated` runs it in a fresh environment with that group, as `uv sync --group notebooks` would make, without
    adding jupyter to the environment the other tests share (its JSON-schema extras slow every Ray start down)."""
    import json
    import os
    import shutil
    import subprocess

    uv = shutil.which("uv")
    assert uv, "uv is not on PATH: install it (pip install uv) to run the documented tutorial command"
    env = {**os.environ, "TOY_MODEL_TUTORIAL_DIR": str(tmp_path / "work"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [uv, "run", "--isolated", "--frozen", "--group", "notebooks", "jupyter", "nbconvert", "--to", "notebook", "--execute",
         NOTEBOOK.name, "--output-dir", str(tmp_path / "out")],
        cwd=NOTEBOOK.parent, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    executed = json.loads((tmp_path / "out" / NOTEBOOK.name).read_text())
    errors = [
        o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"] if o["output_type"] == "error"
    ]
    assert errors == []
    assert (tmp_path / "work" / "toy" / "checkpoints" / "checkpoint_1").is_dir()
