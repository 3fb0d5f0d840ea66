"""The data plan: deterministic, proportional to the weights, cursor-based, serialisable, explicit epochs."""

from __future__ import annotations

import json

import pytest

from vla_foundry.data.manifest import Manifest, ShardInfo
from vla_foundry.data.planner import CheckpointPlan, DataExhaustedError, DataPlanState, plan_checkpoint
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.data_params import TextDataParams


def fake_manifest(name: str, num_shards: int, per_shard: int) -> Manifest:
    shards = tuple(ShardInfo(f"shard_{i:06d}", per_shard) for i in range(num_shards))
    return Manifest(f"/data/{name}", f"/data/{name}/manifest.jsonl", shards)


def text_params(n: int, weights: list[float], **kw) -> TextDataParams:
    return TextDataParams(
        dataset_manifest=[f"/data/d{i}" for i in range(n)],
        dataset_weighting=weights,
        dataset_modality=["text"] * n,
        seed=kw.pop("seed", 7),
        **kw,
    )


MANIFESTS = [fake_manifest("d0", 40, 10), fake_manifest("d1", 40, 10)]


def test_same_inputs_give_the_same_plan():
    params = text_params(2, [0.3, 0.7])
    a = plan_checkpoint(params, 2, 100, manifests=MANIFESTS)
    b = plan_checkpoint(params, 2, 100, manifests=MANIFESTS)
    assert a == b


def test_replaying_from_the_start_equals_chaining_previous_states():
    params = text_params(2, [0.3, 0.7])
    chained = plan_checkpoint(params, 0, 100, manifests=MANIFESTS)
    for k in (1, 2, 3):
        chained = plan_checkpoint(params, k, 100, chained.state, manifests=MANIFESTS)
    assert plan_checkpoint(params, 3, 100, manifests=MANIFESTS) == chained


def test_shards_are_drawn_in_proportion_to_weights():
    plan = plan_checkpoint(text_params(2, [1.0, 3.0]), 0, 200, manifests=MANIFESTS)
    assert [d.weight for d in plan.datasets] == [0.25, 0.75]
    assert [d.num_samples for d in plan.datasets] == [50, 150]
    # Whole shards of 10 samples, just enough to cover each dataset's share.
    assert [len(d.shards) for d in plan.datasets] == [5, 15]


def test_consecutive_windows_take_new_shards_until_the_epoch_ends():
    params = text_params(1, [1.0])
    manifest = [fake_manifest("d0", 10, 10)]
    seen = []
    state = None
    for k in range(5):
        plan = plan_checkpoint(params, k, 20, state, manifests=manifest)
        seen += plan.datasets[0].shards
        state = plan.state
    assert len(seen) == 10 and len(set(seen)) == 10
    assert plan.state.cursors[0].epoch == 0 and plan.state.cursors[0].cursor == 10


def test_epoch_wraps_to_a_new_permutation_when_allowed():
    params = text_params(1, [1.0])
    manifest = [fake_manifest("d0", 10, 10)]
    first = plan_checkpoint(params, 0, 100, manifests=manifest)
    second = plan_checkpoint(params, 1, 100, first.state, manifests=manifest)
    assert second.datasets[0].shard_epochs == (1,) * 10
    assert sorted(second.datasets[0].shards) == sorted(first.datasets[0].shards)
    assert second.datasets[0].shards != first.datasets[0].shards


def test_running_out_without_multiple_epochs_is_an_error():
    params = text_params(1, [1.0], allow_multiple_epochs=False)
    with pytest.raises(DataExhaustedError, match="ran out of shards in interval 1.*allow_multiple_epochs"):
        plan_checkpoint(params, 1, 60, manifests=[fake_manifest("d0", 10, 10)])


def test_different_seeds_give_different_orders():
    a = plan_checkpoint(text_params(1, [1.0], seed=1), 0, 50, manifests=MANIFESTS[:1])
    b = plan_checkpoint(text_params(1, [1.0], seed=2), 0, 50, manifests=MANIFESTS[:1])
    assert a.datasets[0].shards != b.datasets[0].shards


def test_plan_round_trips_through_json():
    plan = plan_checkpoint(text_params(2, [0.5, 0.5]), 1, 64, manifests=MANIFESTS)
    restored = CheckpointPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert restored == plan
    assert DataPlanState.from_dict(json.loads(json.dumps(plan.state.to_dict()))) == plan.state


def test_plan_and_state_saved_under_the_old_window_keys_still_load():
    plan = plan_checkpoint(text_params(2, [0.5, 0.5]), 1, 64, manifests=MANIFESTS)
    old = plan.to_dict()
    old["window_index"], old["samples_per_window"] = old.pop("interval_index"), old.pop("interval_samples")
    assert CheckpointPlan.from_dict(old) == plan
    old_state = {"window_index": 1, "cursors": plan.state.to_dict()["cursors"]}
    assert DataPlanState.from_dict(old_state) == plan.state


def test_planner_command_accepts_the_old_window_flags_with_a_warning(tiny_data, capsys):
    from vla_foundry.data.planner import main

    main(["--dataset_manifest", f"[{tiny_data['text']}]", "--dataset_weighting", "[1.0]", "--dataset_modality",
          "[text]", "--type", "text", "--windows", "2", "--samples_per_window", "16"])  # fmt: skip
    captured = capsys.readouterr()
    assert "interval 1: 16 samples" in captured.out
    assert "--windows is now --intervals" in captured.err
    assert "--samples_per_window is now --interval_samples" in captured.err


def test_printed_plan_shows_datastrings():
    plan = plan_checkpoint(text_params(1, [1.0]), 0, 20, manifests=MANIFESTS[:1])
    text = str(plan)
    assert plan.datasets[0].datastring in text
    assert plan.datasets[0].datastring.startswith("/data/d0/{shard_") and plan.datasets[0].datastring.endswith("}.tar")


def test_list_lengths_must_match():
    params = TextDataParams(dataset_manifest=["/a", "/b"], dataset_weighting=[1.0], dataset_modality=["text", "text"])
    with pytest.raises(ConfigError, match="same length; got 2, 1 and 2"):
        plan_checkpoint(params, 0, 10, manifests=MANIFESTS)


def test_modality_must_match_the_data_type():
    params = TextDataParams(dataset_manifest=["/a"], dataset_weighting=[1.0], dataset_modality=["robotics"])
    with pytest.raises(ConfigError, match=r"dataset_modality\[0\]='robotics' does not match data.type='text'"):
        plan_checkpoint(params, 0, 10, manifests=MANIFESTS[:1])


def test_plan_reads_real_manifests(tiny_data):
    params = TextDataParams(
        dataset_manifest=[tiny_data["text"] + "/manifest.jsonl"], dataset_weighting=[1.0], dataset_modality=["text"]
    )
    plan = plan_checkpoint(params, 0, 20)
    assert plan.datasets[0].dataset_dir == tiny_data["text"]
    assert plan.datasets[0].available_samples == 32


def test_validation_plan_uses_the_validation_datasets_with_their_own_order():
    params = TextDataParams(
        dataset_manifest=["/data/d0"], dataset_weighting=[1.0], dataset_modality=["text"],
        val_dataset_manifest=["/data/d0"], seed=7,
    )  # fmt: skip
    train = plan_checkpoint(params, 0, 200, manifests=MANIFESTS[:1])
    val = plan_checkpoint(params, 0, 200, split="val", manifests=MANIFESTS[:1])
    assert val.split == "val" and val.datasets[0].weight == 1.0
    assert val.datasets[0].shards != train.datasets[0].shards


def test_validation_plan_without_validation_datasets_is_an_error():
    with pytest.raises(ConfigError, match="val_dataset_manifest is empty"):
        plan_checkpoint(text_params(1, [1.0]), 0, 10, split="val", manifests=MANIFESTS[:1])


def test_planner_command_prints_consecutive_intervals(tiny_data, capsys):
    from vla_foundry.data.planner import main

    main(["--dataset_manifest", f"[{tiny_data['text']}]", "--dataset_weighting", "[1.0]", "--dataset_modality",
          "[text]", "--type", "text", "--intervals", "2", "--interval_samples", "16"])  # fmt: skip
    out = capsys.readouterr().out
    assert "interval 0: 16 samples" in out and "interval 1: 16 samples" in out
    assert f"{tiny_data['text']}/{{shard_" in out


def test_printed_plan_of_a_small_dataset_read_in_many_passes_counts_shards_and_passes():
    # 2 shards of 1026 samples; a window of 20 passes' worth of samples reads each shard 20 times.
    plan = plan_checkpoint(text_params(1, [1.0]), 0, 20 * 2052, manifests=[fake_manifest("d0", 2, 1026)])
    lines = str(plan).splitlines()
    assert lines[1] == (
        "  [0] text weight 1.0000: 41040 samples wanted from 2 shards read in 20 passes (2052 samples per pass), "
        "epoch/cursor 0/0 -> 19/2"
    )
    # Each shard named once, not once per pass.
    assert lines[2].count("shard_000000") == 1 and lines[2].count("shard_000001") == 1
