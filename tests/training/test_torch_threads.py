"""`hparams.torch_threads` sets the training process's torch intra-op threads (tiny CPU presets use 1)."""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import lm_run_args, run_main
from vla_foundry.params import ConfigError, HyperParams


def test_training_runs_on_the_configured_number_of_torch_threads(tiny_datasets, tmp_path):
    before = torch.get_num_threads()
    wanted = 3 if before != 3 else 2
    try:
        run_main(lm_run_args(tiny_datasets, str(tmp_path), "threads", "--hparams.torch_threads", str(wanted),
                             "--total_train_samples", "16", "--num_checkpoints", "1"))  # fmt: skip
        assert torch.get_num_threads() == wanted
    finally:
        torch.set_num_threads(before)


def test_zero_threads_is_a_config_error():
    with pytest.raises(ConfigError, match="hparams.torch_threads=0 must be >= 1"):
        HyperParams(torch_threads=0).validate()
