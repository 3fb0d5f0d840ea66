"""Whole training runs in one process: loss goes down, run dir layout, exact resume, accumulation, errors, sync."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from tests.training.conftest import checkpoint_weights, lm_run_args, run_main
from vla_foundry import storage
from vla_foundry.checkpoint import TRAINER_STATE_FILE, checkpoint_dir
from vla_foundry.main import main
from vla_foundry.metrics import read_metrics
from vla_foundry.params import ModelParams, load_params_from_yaml


def _step_losses(run_dir: str) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "loss" in r}


def _assert_same_weights(run_a: str, run_b: str, n: int, ema: bool = False) -> None:
    sa, sb = checkpoint_weights(run_a, n, ema), checkpoint_weights(run_b, n, ema)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def _trainer_state(run_dir: str, n: int) -> dict:
    return torch.load(os.path.join(checkpoint_dir(run_dir, n), TRAINER_STATE_FILE), weights_only=True)


def _copy_run_up_to_checkpoint(src: str, dst: str, n: int) -> None:
    """What a run dir looks like when the job died after checkpoint n (before the end-of-run export)."""
    later = [f"checkpoint_{k}" for k in range(n + 1, 10)]
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*later, "*.safetensors"))


def test_llm_training_decreases_loss(llm_run):
    losses = llm_run.losses
    assert len(losses) == 24
    assert sum(losses[-4:]) / 4 < losses[0] - 0.5


def test_run_dir_holds_configs_metrics_and_checkpoints(llm_run):
    run_dir = llm_run.run_dir
    assert sorted(os.listdir(run_dir)) == [
        "checkpoints", "config.yaml", "config_model.yaml", "ema.safetensors", "metrics.jsonl", "model.safetensors",
    ]  # fmt: skip
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == ["checkpoint_1", "checkpoint_2"]
    assert sorted(os.listdir(checkpoint_dir(run_dir, 2))) == [
        ".metadata", "__0_0.distcp", "index.json", "trainer_state.pt",
    ]  # fmt: skip
    model_params = load_params_from_yaml(ModelParams, os.path.join(run_dir, "config_model.yaml"))
    assert model_params.type == "transformer" and model_params.hidden_dim == 64
    record = next(r for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "loss" in r)
    for key in ("lr", "grad_norm", "samples_per_sec", "samples_per_sec_per_gpu", "tokens_per_sec",
                "data_wait_fraction", "peak_memory_gib"):  # fmt: skip
        assert isinstance(record[key], float), key
    interval_records = [r for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "skipped_samples" in r]
    assert [(r["checkpoint_interval"], r["skipped_samples"]) for r in interval_records] == [(0, 0), (1, 0)]
    state = _trainer_state(run_dir, 2)
    assert (state["step"], state["samples_seen"], state["intervals_done"]) == (24, 192, 2)


def test_resume_after_checkpoint_is_bitwise_identical(llm_run, tmp_path, tiny_datasets):
    """Checkpoint intervals of 96 samples over shards of 16 mixed 0.6/0.4: checkpoint 1 falls mid-epoch of both datasets."""
    resumed_dir = str(tmp_path / "llm")
    _copy_run_up_to_checkpoint(llm_run.run_dir, resumed_dir, 1)
    resumed = run_main(
        lm_run_args(tiny_datasets, str(tmp_path), "ignored", "--model.resume_from_checkpoint", resumed_dir)
    )
    assert resumed.run_dir == resumed_dir
    assert resumed.losses == llm_run.losses[12:]
    assert _step_losses(resumed_dir) == _step_losses(llm_run.run_dir)
    _assert_same_weights(llm_run.run_dir, resumed_dir, 2)
    _assert_same_weights(llm_run.run_dir, resumed_dir, 2, ema=True)


def test_gradient_accumulation_4x2_equals_batch_8(llm_run, tmp_path, tiny_datasets):
    accumulated = run_main(
        lm_run_args(
            tiny_datasets, str(tmp_path), "accum", "--hparams.per_gpu_batch_size", "2",
            "--hparams.global_batch_size", "8",
        )
    )  # fmt: skip
    assert accumulated.losses == pytest.approx(llm_run.losses, rel=1e-5)
    a = checkpoint_weights(accumulated.run_dir, 2)
    b = checkpoint_weights(llm_run.run_dir, 2)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_weights_only_resume_starts_a_new_run_from_the_weights(llm_run, tmp_path, tiny_datasets):
    tuned = run_main(
        lm_run_args(
            tiny_datasets, str(tmp_path), "finetune", "--num_checkpoints", "1", "--total_train_samples", "32",
            "--model.resume_from_checkpoint", llm_run.run_dir, "--model.resume_weights_only", "True",
        )
    )  # fmt: skip
    assert tuned.run_dir == str(tmp_path / "finetune")
    assert tuned.state.step == 4
    # Starts from the trained weights: far below the first loss of the run from scratch.
    assert tuned.losses[0] < llm_run.losses[0] - 0.5


def test_missing_resume_path_fails_before_building_anything(tmp_path, tiny_datasets, capsys):
    missing = str(tmp_path / "gone" / "checkpoints" / "checkpoint_3")
    code = main(lm_run_args(tiny_datasets, str(tmp_path), "never", "--model.resume_from_checkpoint", missing))
    assert code == 2
    assert missing in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "never")


def test_missing_dataset_fails_in_one_line_before_the_run_dir_exists(tmp_path, tiny_datasets, capsys):
    missing = str(tmp_path / "no_such_dataset")
    args = lm_run_args(tiny_datasets, str(tmp_path), "never")
    args[args.index("--data.dataset_manifest") + 1] = f"[{tiny_datasets['text_a']}, {missing}]"
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {missing}/manifest.jsonl does not exist; a dataset directory must hold manifest.jsonl "
                   "(docs/formats.md §1)"]  # fmt: skip
    assert not os.path.exists(tmp_path / "never")


def test_checkpoint_of_another_model_shape_names_mismatching_keys(llm_run, tmp_path, tiny_datasets, capsys):
    code = main(
        lm_run_args(
            tiny_datasets, str(tmp_path), "wider", "--model.hidden_dim", "96",
            "--model.resume_from_checkpoint", llm_run.run_dir, "--model.resume_weights_only", "True",
        )
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "layers.0.attention.wq.weight (checkpoint [64, 64] vs model [96, 96])" in err
    assert "shape mismatch in" in err


def test_remote_copy_equals_run_dir_and_resume_works_from_remote_only(llm_run, tmp_path, tiny_datasets, s3_bucket):
    remote = f"{s3_bucket}/runs/llm"
    partial = str(tmp_path / "partial")
    _copy_run_up_to_checkpoint(llm_run.run_dir, partial, 1)
    for path in storage.list_files(partial):
        storage.upload_file(path, f"{remote}/{os.path.relpath(path, partial)}")
    shutil.rmtree(partial)

    local_root = tmp_path / "local"
    resumed = run_main(
        lm_run_args(
            tiny_datasets, str(local_root), "llm", "--remote_sync", f"{s3_bucket}/runs",
            "--model.resume_from_checkpoint", f"{remote}/checkpoints/checkpoint_1",
        )
    )  # fmt: skip
    assert resumed.run_dir == str(local_root / "llm")
    assert resumed.losses == llm_run.losses[12:]
    _assert_same_weights(llm_run.run_dir, resumed.run_dir, 2)
    local = {os.path.relpath(p, resumed.run_dir): storage.read_bytes(p) for p in storage.list_files(resumed.run_dir)}
    remote_files = {u[len(remote) + 1 :]: storage.read_bytes(u) for u in storage.list_files(remote)}
    assert remote_files == local


@pytest.mark.parametrize("precision", ["amp_bf16", "pure_bf16", "fp16"])
def test_low_precision_modes_train(tmp_path, tiny_datasets, precision):
    result = run_main(
        lm_run_args(
            tiny_datasets, str(tmp_path), precision, "--hparams.precision", precision, "--num_checkpoints", "1",
            "--total_train_samples", "24", "--ema.enabled", "False",
        )
    )  # fmt: skip
    assert len(result.losses) == 3 and result.losses[-1] < result.losses[0]
    weights = checkpoint_weights(result.run_dir, 1)
    expected = torch.bfloat16 if precision == "pure_bf16" else torch.float32
    assert weights["tok_embeddings.weight"].dtype == expected


def test_max_checkpoint_limit_prunes_local_and_remote(tmp_path, tiny_datasets, s3_bucket):
    result = run_main(
        lm_run_args(
            tiny_datasets, str(tmp_path), "pruned", "--num_checkpoints", "3", "--total_train_samples", "48",
            "--max_checkpoint_limit", "1", "--remote_sync", f"{s3_bucket}/runs",
        )
    )  # fmt: skip
    assert sorted(os.listdir(os.path.join(result.run_dir, "checkpoints"))) == ["checkpoint_3"]
    remote = f"{s3_bucket}/runs/pruned/checkpoints"
    remote_dirs = {u[len(remote) + 1 :].split("/")[0] for u in storage.list_files(remote)}
    assert remote_dirs == {"checkpoint_3"}


def test_resumed_run_continues_the_same_wandb_run(tmp_path, tiny_datasets, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    args = ["--wandb", "True", "--total_train_samples", "32", "--ema.enabled", "False"]
    first = run_main(lm_run_args(tiny_datasets, str(tmp_path / "a"), "wb", *args))
    run_id = _trainer_state(first.run_dir, 1)["wandb_run_id"]
    assert run_id
    resumed_dir = str(tmp_path / "b" / "wb")
    _copy_run_up_to_checkpoint(first.run_dir, resumed_dir, 1)
    run_main(
        lm_run_args(tiny_datasets, str(tmp_path / "b"), "wb", *args, "--model.resume_from_checkpoint", resumed_dir)
    )
    runs = [d for d in os.listdir(os.path.join(resumed_dir, "wandb")) if d.startswith("offline-run-")]
    assert len(runs) == 2 and {d.rsplit("-", 1)[-1] for d in runs} == {run_id}
    assert _trainer_state(resumed_dir, 2)["wandb_run_id"] == run_id


def test_metrics_plot_command_writes_png(llm_run, tmp_path):
    from vla_foundry.plot_metrics import main as plot_main

    out = tmp_path / "plot.png"
    assert plot_main(["--run_dir", llm_run.run_dir, "--output", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_vlm_initialised_from_llm_run_trains(llm_run, tmp_path, tiny_datasets):
    from tests.conftest import PRESETS
    from vla_foundry.models.registry import create_model

    result = run_main(
        [
            "--model", f"include {PRESETS / 'models' / 'vlm_tiny.yaml'}",
            "--model.transformer.resume_from_checkpoint", llm_run.run_dir,
            "--hparams", f"include {PRESETS / 'hparams' / 'cpu_tiny.yaml'}",
            "--hparams.lr", "3e-3",
            "--data.type", "image_caption",
            "--data.seq_len", "40",
            "--data.dataset_manifest", f"[{tiny_datasets['image_caption']}]",
            "--data.dataset_weighting", "[1.0]",
            "--data.dataset_modality", "[image_caption]",
            "--data.num_workers", "0",
            "--total_train_samples", "96",
            "--save_path", str(tmp_path),
            "--name", "vlm",
        ]
    )  # fmt: skip
    assert sum(result.losses[-3:]) / 3 < result.losses[0] - 0.3
    # The saved model config rebuilds the VLM with the LLM run's weights in its language model.
    vlm_params = load_params_from_yaml(ModelParams, os.path.join(result.run_dir, "config_model.yaml"))
    assert vlm_params.transformer.resume_from_checkpoint == llm_run.run_dir
    rebuilt = create_model(vlm_params)
    llm_weights = checkpoint_weights(llm_run.run_dir, 2)
    for name, value in rebuilt.language_model.state_dict().items():
        assert torch.equal(value, llm_weights[name]), name


def test_missing_llm_run_of_a_vlm_fails_naming_the_field(tmp_path, tiny_datasets, capsys):
    from tests.conftest import PRESETS

    missing = str(tmp_path / "no_llm_run")
    code = main(
        [
            "--model", f"include {PRESETS / 'models' / 'vlm_tiny.yaml'}",
            "--model.transformer.resume_from_checkpoint", missing,
            "--data.type", "image_caption",
            "--data.dataset_manifest", f"[{tiny_datasets['image_caption']}]",
            "--data.dataset_weighting", "[1.0]",
            "--data.dataset_modality", "[image_caption]",
            "--total_train_samples", "16",
            "--save_path", str(tmp_path),
            "--name", "vlm",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert f"model.transformer.resume_from_checkpoint: checkpoint path not found: {missing}" in err
    assert not os.path.exists(tmp_path / "vlm")


def test_validation_loss_after_each_checkpoint(tmp_path, tiny_datasets):
    result = run_main(
        lm_run_args(
            tiny_datasets, str(tmp_path), "val", "--total_train_samples", "48", "--num_checkpoints", "2",
            "--data.val_dataset_manifest", f"[{tiny_datasets['text_b']}]", "--total_val_samples", "16",
        )
    )  # fmt: skip
    assert sorted(result.val_losses) == [1, 2]
    assert all(0 < v < 10 for v in result.val_losses.values())
    logged = [
        (r["step"], r["val_loss"])
        for r in read_metrics(os.path.join(result.run_dir, "metrics.jsonl"))
        if "val_loss" in r
    ]
    assert logged == [(3, result.val_losses[1]), (6, result.val_losses[2])]


def test_num_epochs_budget_counts_the_datasets_samples(tmp_path, tiny_datasets):
    # text_a 64 + text_b 48 samples = 112 per epoch = 14 steps of 8.
    args = _without_flag(lm_run_args(tiny_datasets, str(tmp_path), "epochs"), "--total_train_samples")
    result = run_main([*args, "--num_epochs", "1", "--num_checkpoints", "1"])
    assert result.state.samples_seen == 112 and result.state.step == 14


def test_starting_a_new_run_over_an_existing_one_is_refused(llm_run, tiny_datasets, capsys):
    save_path, name = os.path.split(llm_run.run_dir)
    assert main(lm_run_args(tiny_datasets, save_path, name)) == 2
    assert f"run dir {llm_run.run_dir} already holds checkpoints" in capsys.readouterr().err


def _without_flag(args: list[str], flag: str) -> list[str]:
    i = args.index(flag)
    return args[:i] + args[i + 2 :]
