"""The adding-new-datasets notebook runs top to bottom: npz episodes -> a converter in a module of its own, loaded
with --plugins in the job and its Ray workers -> validated shards with a quality report -> a few training steps."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.tutorials.notebook_execution import code_outputs, execute_notebook, output_text

NOTEBOOK = REPO_ROOT / "tutorials" / "adding_new_datasets.ipynb"


def test_a_plugin_converter_turns_npz_episodes_into_shards_a_vla_trains_on(tmp_path: Path):
    nb = execute_notebook(NOTEBOOK, env={"ADDING_DATASETS_TUTORIAL_DIR": str(tmp_path)})
    shards = tmp_path / "preprocessed" / "shards"
    metadata = json.loads((shards / "processing_metadata.json").read_text())
    # Episodes of 12 + 9 + 10 steps; the 1past_14future preset pads both edges, so every step is an anchor.
    assert metadata["samples"]["written"] == 31 and metadata["inputs_failed"] == 0
    assert metadata["type"] == "toy_npz"
    assert sorted(metadata["quality"]["episodes"]) == ["episode_0", "episode_1", "episode_2"]
    config = (shards / "preprocessing_config.yaml").read_text()
    assert "toy_npz_source" in config  # the plugin is recorded with the run
    assert (tmp_path / "vla" / "config_model.yaml").exists()
    text = output_text(nb)
    assert "0 problems" in text and "'episodes': 3" in text


def test_adding_new_datasets_notebook_is_committed_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not code_outputs(nb)
    assert all(cell.get("execution_count") is None for cell in nb.cells if cell.cell_type == "code")
