"""A second checkpoint backend from a user package (examples/plugins/torch_save_checkpoint.py), named with
`--plugins` and `--checkpoint_backend`: it trains, saves, resumes bit for bit and exports like the DCP backend."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.training.conftest import lm_run_args, run_main
from vla_foundry.checkpoint import INDEX_FILE, CheckpointError, checkpoint_dir, read_checkpoint_weights
from vla_foundry.main import main
from vla_foundry.metrics import read_metrics

PLUGIN_DIR = str(REPO_ROOT / "examples" / "plugins")
PLUGIN = ["--plugins", "torch_save_checkpoint", "--checkpoint_backend", "torch_save"]


def _step_losses(run_dir: str) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "loss" in r}


@pytest.fixture(scope="module")
def plugin_run(tiny_datasets, tmp_path_factory):
    """An uninterrupted 2-checkpoint run written by the plugin backend."""
    sys.path.insert(0, PLUGIN_DIR)
    try:
        yield run_main(lm_run_args(tiny_datasets, str(tmp_path_factory.mktemp("plugin_runs")), "ts", *PLUGIN))
    finally:
        sys.path.remove(PLUGIN_DIR)


def test_the_plugin_backend_writes_its_own_files_and_the_index_names_it(plugin_run):
    ckpt = checkpoint_dir(plugin_run.run_dir, 2)
    assert sorted(os.listdir(ckpt)) == ["ema.pt", INDEX_FILE, "model.pt", "optimizer.pt", "trainer_state.pt"]
    with open(os.path.join(ckpt, INDEX_FILE)) as f:
        index = json.load(f)
    assert index["backend"] == "torch_save"
    assert sorted(index["files"]) == ["ema.pt", "model.pt", "optimizer.pt", "trainer_state.pt"]
    # The weights read through the backend are the ones the file holds.
    saved = torch.load(os.path.join(ckpt, "model.pt"), weights_only=True)
    read = read_checkpoint_weights(ckpt)
    assert read.keys() == saved.keys() and all(torch.equal(read[k], saved[k]) for k in saved)


def test_a_resume_through_the_plugin_backend_is_bitwise_identical(plugin_run, tmp_path, tiny_datasets, monkeypatch):
    monkeypatch.syspath_prepend(PLUGIN_DIR)
    resumed_dir = str(tmp_path / "ts")
    shutil.copytree(plugin_run.run_dir, resumed_dir, ignore=shutil.ignore_patterns("checkpoint_2", "*.safetensors"))
    args = lm_run_args(tiny_datasets, str(tmp_path), "ignored", *PLUGIN, "--model.resume_from_checkpoint", resumed_dir)
    resumed = run_main(args)
    assert resumed.losses == plugin_run.losses[12:]
    assert _step_losses(resumed_dir) == _step_losses(plugin_run.run_dir)
    for ema in (False, True):
        a = read_checkpoint_weights(checkpoint_dir(plugin_run.run_dir, 2), use_ema=ema)
        b = read_checkpoint_weights(checkpoint_dir(resumed_dir, 2), use_ema=ema)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resuming_with_another_backend_names_the_one_that_wrote_it(plugin_run, tmp_path, tiny_datasets, capsys):
    resumed_dir = str(tmp_path / "ts")
    shutil.copytree(plugin_run.run_dir, resumed_dir, ignore=shutil.ignore_patterns("checkpoint_2", "*.safetensors"))
    assert main(lm_run_args(tiny_datasets, str(tmp_path), "x", "--model.resume_from_checkpoint", resumed_dir)) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (
        f"error: {checkpoint_dir(resumed_dir, 1)} was written by checkpoint backend 'torch_save'; resume it with "
        "--checkpoint_backend torch_save (this run uses 'dcp')"
    )


def test_export_cli_loads_the_plugin_and_writes_the_plugin_checkpoints_weights(plugin_run, tmp_path):
    from safetensors.torch import load_file as load_safetensors

    out = str(tmp_path / "ema_1.safetensors")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([PLUGIN_DIR, str(REPO_ROOT)])}
    command = [sys.executable, "-m", "vla_foundry.checkpoint", "export", "--run_dir", plugin_run.run_dir,
               "--checkpoint", "1", "--output", out, "--ema", "--plugins", "torch_save_checkpoint"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    saved = torch.load(os.path.join(checkpoint_dir(plugin_run.run_dir, 1), "ema.pt"), weights_only=True)
    model = torch.load(os.path.join(checkpoint_dir(plugin_run.run_dir, 1), "model.pt"), weights_only=True)
    exported = load_safetensors(out)
    assert exported.keys() == model.keys()
    # EMA values (kept in fp32) in place of the trained weights, cast to the weights' dtype.
    assert all(torch.equal(exported[k], saved[k].to(model[k].dtype)) for k in saved)
    # The end of the run exported the last checkpoint's weights through the same backend.
    final = load_safetensors(os.path.join(plugin_run.run_dir, "model.safetensors"))
    last = torch.load(os.path.join(checkpoint_dir(plugin_run.run_dir, 2), "model.pt"), weights_only=True)
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in last)


def test_an_unknown_backend_is_one_line_with_the_closest_names(tmp_path, tiny_datasets, capsys):
    assert main(lm_run_args(tiny_datasets, str(tmp_path), "u", "--checkpoint_backend", "dpc")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: checkpoint_backend='dpc' is not registered; closest: dcp")
    assert "--plugins my_pkg.module" in err and not os.path.exists(tmp_path / "u")


def test_a_checkpoint_of_an_unregistered_backend_names_it_and_the_plugins_flag(tmp_path):
    ckpt = tmp_path / "checkpoints" / "checkpoint_1"
    ckpt.mkdir(parents=True)
    (ckpt / INDEX_FILE).write_text(
        json.dumps({"format": "vla_foundry.checkpoint/1", "backend": "s3_zarr", "files": {}})
    )
    with pytest.raises(CheckpointError, match=r"backend 's3_zarr', which is not registered .*--plugins my_pkg.module"):
        read_checkpoint_weights(str(tmp_path))
