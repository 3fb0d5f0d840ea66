"""The quickstart job: its config resolves, and it trains (on a reduced budget here)."""

from __future__ import annotations

import os

from tests.conftest import PRESETS, REPO_ROOT
from tests.training.conftest import run_main
from vla_foundry.params import parse_train_params

QUICKSTART = str(PRESETS / "training_jobs" / "quickstart.yaml")


def test_quickstart_config_resolves_to_a_tiny_llm_on_bundled_text(monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    params = parse_train_params(["--config_path", QUICKSTART])
    assert params.model.type == "transformer" and params.data.type == "text_untokenized"
    assert params.data.dataset_manifest == ["examples/data/text_untokenized"]
    assert (params.total_steps, params.samples_per_checkpoint, params.hparams.precision) == (128, 1024, "fp32")


def test_quickstart_trains_with_a_reduced_budget(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO_ROOT)
    result = run_main(
        [
            "--config_path",
            QUICKSTART,
            "--total_train_samples",
            "192",
            "--save_path",
            str(tmp_path),
            "--hparams.warmup",
            "0",
        ]
    )
    assert result.run_dir == os.path.join(str(tmp_path), "quickstart")
    assert len(result.losses) == 12
    assert sum(result.losses[-3:]) / 3 < result.losses[0] - 0.5
    assert sorted(os.listdir(os.path.join(result.run_dir, "checkpoints")))[0] == "checkpoint_1"
