"""The simulation tutorial runs top to bottom: scripted ALOHA demos -> Ray preprocessing -> a tiny VLA ->
closed-loop evaluation with a video frame shown."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO_ROOT
from tests.tutorials.notebook_execution import code_outputs, execute_notebook, output_text

NOTEBOOK = REPO_ROOT / "tutorials" / "sim_evaluation.ipynb"


def test_sim_notebook_goes_from_demos_to_a_closed_loop_evaluation(tmp_path: Path, headless_gl):
    nb = execute_notebook(NOTEBOOK, env={"SIM_TUTORIAL_DIR": str(tmp_path)})
    info = json.loads((tmp_path / "demos" / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["total_episodes"] == 1
    # The recorded demos go through the normal preprocessing path: every recorded step becomes an anchor.
    shards = tmp_path / "preprocessed" / "shards"
    metadata = json.loads((shards / "processing_metadata.json").read_text())
    assert metadata["samples"]["written"] == info["total_frames"] and metadata["inputs_failed"] == 0
    from vla_foundry.data.validate import validate_dataset

    assert validate_dataset(str(shards)) == []
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["episodes"][0]["steps"] <= 20 and results["settings"]["run_dir"] == str(tmp_path / "vla")
    text = output_text(nb)
    assert "aloha_transfer_cube: success" in text and "episode 0: seed 1000" in text
    assert any("image/png" in o.get("data", {}) for o in code_outputs(nb))  # the video frames
    # The Meta-World part: the suite's table with both drawer tasks done by their experts.
    metaworld = json.loads((tmp_path / "metaworld_eval" / "results.json").read_text())
    assert {t: r["successes"] for t, r in metaworld["tasks"].items()} == {
        "metaworld/drawer-open-v3": 2,
        "metaworld/drawer-close-v3": 2,
    }
    assert "| **mean of 2 tasks** | 4/4 |" in text and "'open the drawer'" in text


def test_sim_notebook_is_committed_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not code_outputs(nb)
