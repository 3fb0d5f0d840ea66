"""Checkpoint directories (one process): the integrity index, full training state, the latest complete checkpoint,
one-line errors for bad files, pruning, weights for inference and the streaming export."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil

import pytest
import torch

from tests.training.conftest import synthetic_batches, tiny_lm_params
from vla_foundry.checkpoint import (
    INDEX_FILE,
    CheckpointError,
    DCPCheckpointer,
    checkpoint_dir,
    checkpoint_file,
    latest_checkpoint,
    list_checkpoints,
    load_file,
    load_model_checkpoint,
    load_trainer_state,
    prune_checkpoints,
    read_metadata,
    remove_incomplete_checkpoints,
    resolve_checkpoint,
    save_file,
    write_safetensors_streaming,
)
from vla_foundry.models.ema import EMA
from vla_foundry.models.registry import create_model
from vla_foundry.optim import build_optimizer, build_scheduler
from vla_foundry.params import EMAParams, HyperParams


def _trained(seed: int = 0, steps: int = 2):
    torch.manual_seed(seed)
    model = create_model(tiny_lm_params())
    hp = HyperParams(lr=1e-2, precision="fp32")
    opt = build_optimizer(model, hp)
    sched = build_scheduler(opt, hp, total_steps=10)
    ema = EMA(model, EMAParams(enabled=True, decay=0.9))
    for batch in list(synthetic_batches(4 * steps, 4))[:steps]:
        ids = batch["input_ids"]
        logits = model(input_ids=ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        ema.update(1)
    return model, opt, sched, ema


def _save(run_dir, n, model, opt, sched, ema, ctx, **state):
    """Checkpoint n through the trainer's path: a Checkpointer built with the stateful objects."""
    checkpointer = DCPCheckpointer(str(run_dir), ctx, model, opt, sched, ema, async_save=False)
    try:
        checkpointer.save(n, {"step": n, **state})
    finally:
        checkpointer.close()


def _load(run_dir, model, opt, sched, ema, ctx):
    """Resume state from the latest checkpoint of run_dir into the given objects; returns the trainer state."""
    checkpointer = DCPCheckpointer(str(run_dir), ctx, model, opt, sched, ema)
    try:
        return checkpointer.load(checkpointer.latest(verify=True))
    finally:
        checkpointer.close()


@pytest.fixture
def saved_run(tmp_path, cpu_ctx):
    """A run dir with complete checkpoints 1 and 2 (2 is one more step of training); yields (run_dir, model)."""
    model, opt, sched, ema = _trained()
    _save(tmp_path, 1, model, opt, sched, ema, cpu_ctx)
    model2, opt2, sched2, ema2 = _trained(steps=3)
    _save(tmp_path, 2, model2, opt2, sched2, ema2, cpu_ctx)
    return str(tmp_path), model2, ema2


def test_checkpoint_directory_is_indexed_with_sizes_and_sha256(saved_run):
    run_dir, _, _ = saved_run
    ckpt = checkpoint_dir(run_dir, 2)
    assert sorted(os.listdir(ckpt)) == [".metadata", "__0_0.distcp", INDEX_FILE, "trainer_state.pt"]
    with open(os.path.join(ckpt, INDEX_FILE)) as f:
        index = json.load(f)
    assert sorted(index["files"]) == [".metadata", "__0_0.distcp", "trainer_state.pt"]
    for name, entry in index["files"].items():
        with open(os.path.join(ckpt, name), "rb") as f:
            data = f.read()
        assert entry == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}, name


def test_training_state_roundtrip_restores_optimizer_scheduler_ema_and_rng(tmp_path, cpu_ctx):
    model, opt, sched, ema = _trained()
    torch.manual_seed(123)
    _save(tmp_path, 1, model, opt, sched, ema, cpu_ctx, samples_seen=7)
    expected_draw = torch.rand(3)

    fresh, fresh_opt, fresh_sched, fresh_ema = _trained(seed=5, steps=1)
    state = _load(tmp_path, fresh, fresh_opt, fresh_sched, fresh_ema, cpu_ctx)
    assert state["samples_seen"] == 7 and state["checkpoint"] == 1
    assert torch.equal(torch.rand(3), expected_draw)
    assert fresh_sched.last_epoch == sched.last_epoch
    for (name, p), q in zip(model.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), name
        assert torch.equal(opt.state[p]["exp_avg"], fresh_opt.state[q]["exp_avg"]), name
    assert all(torch.equal(a, b) for a, b in zip(ema.shadow, fresh_ema.shadow))
    assert fresh_ema.num_updates == ema.num_updates


def test_a_parameter_that_never_had_a_gradient_resumes_without_optimizer_state(tmp_path, cpu_ctx):
    """AdamW has no state for a parameter that never got a gradient (a backbone's unused LM head): the checkpoint
    holds none, and a resume into a fresh optimizer leaves it without state, as in the run that saved it."""
    torch.manual_seed(0)
    model = create_model(tiny_lm_params())
    hp = HyperParams(lr=1e-2, precision="fp32")
    opt, sched = build_optimizer(model, hp), None
    sched = build_scheduler(opt, hp, total_steps=10)
    unused_name, unused = next((n, p) for n, p in model.named_parameters() if p.ndim == 1)
    ids = next(iter(synthetic_batches(4, 4)))["input_ids"]
    torch.nn.functional.cross_entropy(model(input_ids=ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten()).backward()
    unused.grad = None
    opt.step()
    assert unused not in opt.state
    _save(tmp_path, 1, model, opt, sched, None, cpu_ctx)

    torch.manual_seed(1)
    fresh = create_model(tiny_lm_params())
    fresh_opt = build_optimizer(fresh, hp)
    _load(tmp_path, fresh, fresh_opt, build_scheduler(fresh_opt, hp, 10), None, cpu_ctx)
    fresh_params = dict(fresh.named_parameters())
    assert fresh_params[unused_name] not in fresh_opt.state
    for name, p in model.named_parameters():
        if name != unused_name:
            assert torch.equal(opt.state[p]["exp_avg"], fresh_opt.state[fresh_params[name]]["exp_avg"]), name


def test_latest_checkpoint_is_the_newest_complete_one_for_every_caller(saved_run):
    from vla_foundry.checkpoint import weights_source
    from vla_foundry.inference.run_loading import split_run_path

    run_dir, _, _ = saved_run
    # An interrupted save of checkpoint 3: every file but the index.
    shutil.copytree(checkpoint_dir(run_dir, 2), checkpoint_dir(run_dir, 3), ignore=shutil.ignore_patterns(INDEX_FILE))
    with open(os.path.join(run_dir, "config_model.yaml"), "w") as f:
        f.write("type: transformer\n")
    expected = checkpoint_dir(run_dir, 2)
    assert list_checkpoints(run_dir) == [1, 2]
    assert latest_checkpoint(run_dir, warn=lambda m: None).path == expected
    assert resolve_checkpoint(os.path.join(run_dir, "checkpoints")).path == expected
    assert weights_source(run_dir) == expected
    assert split_run_path(run_dir) == (run_dir, expected)


def test_truncated_latest_checkpoint_is_skipped_with_a_warning_naming_it(saved_run):
    run_dir, _, _ = saved_run
    shard = os.path.join(checkpoint_dir(run_dir, 2), "__0_0.distcp")
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)
    warnings = []
    assert latest_checkpoint(run_dir, warn=warnings.append).number == 1
    assert len(warnings) == 1 and shard in warnings[0]


def test_corrupt_latest_checkpoint_of_the_same_size_fails_its_checksum(saved_run):
    run_dir, _, _ = saved_run
    shard = os.path.join(checkpoint_dir(run_dir, 2), "__0_0.distcp")
    with open(shard, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    warnings = []
    assert latest_checkpoint(run_dir, verify=True, warn=warnings.append).number == 1
    assert "__0_0.distcp is corrupt" in warnings[0]
    with pytest.raises(CheckpointError, match=r"checkpoint_2/__0_0\.distcp is corrupt"):
        resolve_checkpoint(checkpoint_dir(run_dir, 2), verify=True)


class _Payload:
    """Any object outside tensors and plain containers: loading it would run arbitrary unpickling."""


@pytest.mark.parametrize("fault", ["truncated", "unsafe_pickle", "missing", "empty"])
def test_bad_trainer_state_file_is_one_checkpoint_error_naming_it(saved_run, fault):
    run_dir, _, _ = saved_run
    path = os.path.join(checkpoint_dir(run_dir, 2), "trainer_state.pt")
    if fault == "truncated":
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 40)
    elif fault == "unsafe_pickle":
        torch.save({"step": 2, "payload": _Payload()}, path)
    elif fault == "missing":
        os.unlink(path)
    else:
        open(path, "wb").close()
    with pytest.raises(CheckpointError) as info:
        load_file(path)
    message = str(info.value)
    assert path in message and "\n" not in message
    if fault == "unsafe_pickle":
        assert "never arbitrary pickled objects" in message
    # The index catches the same fault before anything is loaded, naming the same file.
    with pytest.raises(CheckpointError, match=path):
        resolve_checkpoint(checkpoint_dir(run_dir, 2))


def test_checkpoint_metadata_with_foreign_globals_is_refused(saved_run):
    run_dir, _, _ = saved_run
    ckpt = checkpoint_dir(run_dir, 2)
    with open(os.path.join(ckpt, ".metadata"), "wb") as f:
        pickle.dump(_Payload(), f)
    with pytest.raises(CheckpointError, match=r"\.metadata is corrupt or refused .*_Payload is not allowed"):
        read_metadata(ckpt)


def test_missing_checkpoint_path_names_the_path(tmp_path):
    missing = str(tmp_path / "nowhere" / "checkpoints" / "checkpoint_4")
    with pytest.raises(CheckpointError, match="nowhere/checkpoints/checkpoint_4"):
        resolve_checkpoint(missing)
    with pytest.raises(CheckpointError, match="nowhere"):
        resolve_checkpoint(str(tmp_path / "nowhere"))
    with pytest.raises(CheckpointError, match="weights file not found: .*gone.pt"):
        resolve_checkpoint(str(tmp_path / "gone.pt"))


def test_checkpoint_of_another_shape_names_mismatching_keys(saved_run):
    run_dir, _, _ = saved_run
    wider = create_model(tiny_lm_params(hidden_dim=48, n_layers=3))
    with pytest.raises(CheckpointError) as info:
        load_model_checkpoint(wider, run_dir)
    message = str(info.value)
    assert "layers.0.attention.wq.weight (checkpoint [32, 32] vs model [48, 48])" in message
    assert "missing from the checkpoint" in message and "layers.2.attention.wq.weight" in message


def test_weights_and_ema_weights_load_into_a_plain_model(saved_run):
    run_dir, model, ema = saved_run
    plain = load_model_checkpoint(create_model(tiny_lm_params()), run_dir)
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), model.parameters()))
    smoothed = load_model_checkpoint(create_model(tiny_lm_params()), run_dir, use_ema=True)
    assert all(torch.equal(a, b) for a, b in zip(smoothed.parameters(), ema.shadow))


def test_older_consolidated_checkpoints_still_load_weights_but_do_not_resume(tmp_path):
    model = create_model(tiny_lm_params())
    save_file(model.state_dict(), checkpoint_file(str(tmp_path), 1))
    save_file({"step": 1}, checkpoint_file(str(tmp_path), 1, "trainer_state"))
    ref = resolve_checkpoint(str(tmp_path))
    assert ref.path == checkpoint_file(str(tmp_path), 1) and not ref.sharded
    loaded = load_model_checkpoint(create_model(tiny_lm_params()), str(tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters()))
    with pytest.raises(CheckpointError, match="--model.resume_weights_only True"):
        load_trainer_state(ref)


def test_prune_keeps_newest_complete_checkpoint_directories(tmp_path, cpu_ctx):
    model, opt, sched, ema = _trained()
    for n in (1, 2, 3):
        _save(tmp_path, n, model, opt, sched, ema, cpu_ctx)
    assert prune_checkpoints(str(tmp_path), 2) == [1]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["checkpoint_2", "checkpoint_3"]
    assert prune_checkpoints(str(tmp_path), None) == []


def test_a_save_killed_before_its_first_file_leaves_an_empty_directory_that_is_removed_and_named(tmp_path, cpu_ctx):
    model, opt, sched, ema = _trained()
    _save(tmp_path, 1, model, opt, sched, ema, cpu_ctx)
    os.makedirs(tmp_path / "checkpoints" / "checkpoint_2")  # created, then the process was killed
    messages: list[str] = []
    removed = remove_incomplete_checkpoints(str(tmp_path), warn=messages.append)
    assert removed == [checkpoint_dir(str(tmp_path), 2)]
    assert messages == [f"removed 1 leftovers of interrupted saves: {checkpoint_dir(str(tmp_path), 2)}"]
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["checkpoint_1"]


def test_export_cli_writes_model_and_ema_safetensors_equal_to_the_trained_weights(saved_run):
    from safetensors.torch import load_file as load_safetensors

    from vla_foundry.checkpoint.cli import main as checkpoint_main

    run_dir, model, ema = saved_run
    assert checkpoint_main(["export", "--run_dir", run_dir]) == 0
    assert checkpoint_main(["export", "--run_dir", run_dir, "--ema", "True"]) == 0
    exported = load_safetensors(os.path.join(run_dir, "model.safetensors"))
    assert exported.keys() == model.state_dict().keys()
    assert all(torch.equal(exported[k], v) for k, v in model.state_dict().items())
    exported_ema = load_safetensors(os.path.join(run_dir, "ema.safetensors"))
    assert all(torch.equal(exported_ema[k], v) for k, v in ema.shards().items())
    older = str(os.path.join(run_dir, "first.safetensors"))
    assert checkpoint_main(["export", "--run_dir", run_dir, "--checkpoint", "1", "--output", older]) == 0
    assert not torch.equal(load_safetensors(older)["output.weight"], exported["output.weight"])


def test_streaming_writer_loads_at_most_one_batch_at_a_time(tmp_path):
    from safetensors.torch import load_file as load_safetensors

    torch.manual_seed(0)
    tensors = {f"t{i}": torch.randn(16, 8) for i in range(6)} | {"ids": torch.arange(5), "flag": torch.ones(3).bool()}
    requested = []

    def load_batch(keys):
        requested.append(sum(tensors[k].numel() * tensors[k].element_size() for k in keys))
        return {k: tensors[k] for k in keys}

    specs = {k: (tuple(v.shape), v.dtype) for k, v in tensors.items()}
    out = str(tmp_path / "w.safetensors")
    write_safetensors_streaming(out, specs, load_batch, max_batch_bytes=1024)
    assert max(requested) <= 1024 and len(requested) > 1
    loaded = load_safetensors(out)
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_export_without_ema_weights_names_the_checkpoint(tmp_path, cpu_ctx, capsys):
    from vla_foundry.checkpoint.cli import main as checkpoint_main

    model, opt, sched, _ = _trained()
    _save(tmp_path, 1, model, opt, sched, None, cpu_ctx)
    assert checkpoint_main(["export", "--run_dir", str(tmp_path), "--ema"]) == 2
    assert "checkpoint_1 holds no EMA weights" in capsys.readouterr().err


def test_an_old_style_checkpoint_file_name_points_to_the_directory(saved_run):
    run_dir, _, _ = saved_run
    with pytest.raises(CheckpointError, match=f"checkpoints are directories now: give {checkpoint_dir(run_dir, 2)}"):
        resolve_checkpoint(checkpoint_file(run_dir, 2))


def test_export_cli_reads_a_yaml_config_and_names_the_closest_flag(saved_run, tmp_path, capsys):
    from safetensors.torch import load_file as load_safetensors

    from vla_foundry.checkpoint.cli import main as checkpoint_main

    run_dir, model, _ = saved_run
    out = tmp_path / "from_yaml.safetensors"
    config = tmp_path / "export.yaml"
    config.write_text(f"run_dir: {run_dir}\noutput: {out}\n")
    assert checkpoint_main(["export", "--config_path", str(config)]) == 0
    exported = load_safetensors(str(out))
    assert all(torch.equal(exported[k], v) for k, v in model.state_dict().items())
    assert checkpoint_main(["export", "--run_dri", run_dir]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: unknown key 'run_dri' (on the command line); closest valid names under the top level: run_dir"
    )
