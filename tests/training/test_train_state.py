"""The counters a checkpoint stores: written as `intervals_done`; a trainer state written before the rename (with
`windows_done`) still resumes, with one warning line."""

from __future__ import annotations

from vla_foundry.train import TrainState


def test_train_state_round_trips_under_its_own_keys():
    state = TrainState(step=7, samples_seen=56, tokens_seen=900, intervals_done=2)
    assert state.to_dict() == {"step": 7, "samples_seen": 56, "tokens_seen": 900, "intervals_done": 2}
    assert TrainState.from_dict(state.to_dict()) == state


def test_an_older_trainer_state_with_windows_done_is_read_with_one_warning(capsys):
    older = {"step": 12, "samples_seen": 96, "tokens_seen": 3000, "windows_done": 1}
    assert TrainState.from_dict(older) == TrainState(12, 96, 3000, 1)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: trainer state key windows_done is read as intervals_done (older checkpoint)"]
