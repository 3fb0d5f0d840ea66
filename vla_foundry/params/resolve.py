"""The resolve step: the checks and derived values that need files, run once after parsing and before anything is
built.

Parsing (`parse_train_params`) reads only the config files. This step reads what the config names: a policy's
backbone run (local or s3), the datasets' manifests, preprocessing_config.yaml and stats.json, and the tokenizer
(a transformers tokenizer loads its files). It returns new params with every data-derived value filled (robotics
dims, window and cameras, the budget of a `num_epochs` run, a backbone taken from its run), so that
`--resolve_configs True` prints exactly what a run would use. Its errors are one line naming the field and what is
valid. `resolve_preprocessing_params` is the same step for a preprocessing job (its converter, rules and files).

The params package imports nothing from `data/`, `models/` or `inference/`: the reads are done by the packages that
own them, through two hooks. A model type's params implement `ModelParams.resolve_files` / `check_data` (in the
model's own folder); the data package registers a `DataReader` (`vla_foundry/data/resolve.py`), loaded with the
built-in registrations (`vla_foundry.plugins.load_builtin_params`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any

from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.data_params import DataParams
from vla_foundry.params.train_experiment_params import TrainExperimentParams, derive_params


class DataReader(ABC):
    """The reads of the resolve step that belong to the data package."""

    @abstractmethod
    def resolve_data(self, data: DataParams, save_path: str) -> tuple[DataParams, int]:
        """(`data` with its data-derived values filled, the datasets' total samples): prepares streamed sources
        (cached under `save_path`), reads every manifest (validation ones too) and, for robotics, the stored window
        and statistics."""

    @abstractmethod
    def check_tokenizer(self, params: TrainExperimentParams) -> None:
        """Refuse special token ids of the model that `data.tokenizer` does not give (loads the tokenizer)."""

    @abstractmethod
    def check_preprocessing(self, params: Any) -> None:
        """Refuse a preprocessing job's unknown converter or rule names and missing input files."""


_readers: list[DataReader] = []


def register_data_reader(reader: DataReader) -> DataReader:
    """Make `reader` the resolve step's data reader (the last one registered wins)."""
    _readers.append(reader)
    return reader


def data_reader() -> DataReader:
    """The registered data reader (importing the built-in registrations first)."""
    from vla_foundry.plugins import load_builtin_params

    load_builtin_params()
    if not _readers:
        raise RuntimeError("no DataReader is registered: vla_foundry.data.resolve registers one when imported")
    return _readers[-1]


def resolve_params(params: TrainExperimentParams) -> TrainExperimentParams:
    """New params with the file-dependent values resolved and checked (see the module docstring)."""
    reader = data_reader()
    model = params.model.resolve_files()
    # Every manifest is read now, before a run dir exists: a wrong dataset path fails in seconds, naming it.
    data, dataset_num_samples = reader.resolve_data(params.data, params.save_path)
    resolved = derive_params(
        dataclasses.replace(params, model=model, data=data),
        dataset_num_samples=dataset_num_samples if params.num_epochs is not None else None,
        resolved=True,
    )
    check_tokenizers(resolved)
    return resolved


def check_tokenizers(params: TrainExperimentParams) -> None:
    """The model's special token ids against `data.tokenizer` (a mismatch would only fail at the first step, or
    silently put image embeddings in the wrong places). A tokenizer that cannot be loaded is one ConfigError."""
    try:
        params.model.check_data(params.data)
        data_reader().check_tokenizer(params)
    except OSError as e:
        tokenizer = getattr(params.data, "tokenizer", None)
        raise ConfigError(f"data.tokenizer={tokenizer!r} cannot be loaded: {_first_line(str(e))}") from None


def resolve_preprocessing_params(params: Any) -> Any:
    """A preprocessing job's params checked against what they name (converter, rules, input files); unchanged."""
    data_reader().check_preprocessing(params)
    return params


def _first_line(message: str) -> str:
    lines = message.strip().splitlines()
    return lines[0] if lines else message
