"""The data plan: which whole shards of each dataset feed checkpoint interval k.

For every dataset the shards are visited in a seeded permutation (one permutation per epoch) with a cursor; interval k
takes, per dataset, the next shards until they hold at least `weight x interval_samples` samples. The plan is a
pure function of (dataset manifests, weights, seed, interval index, interval size): every rank computes the same plan
without communicating, a checkpoint stores its `to_dict()`, and `print(plan)` shows the datastrings (a shard read in
several passes listed once, with the number of passes).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from vla_foundry import storage
from vla_foundry.data.manifest import Manifest, read_manifest
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.data_params import STREAMED_MODALITIES, DataParams, known_modalities


class DataExhaustedError(RuntimeError):
    """A dataset ran out of unseen shards and `allow_multiple_epochs` is off."""


@dataclass(frozen=True)
class DatasetCursor:
    """Position in a dataset's shard order: the epoch (which permutation) and the next index into it."""

    epoch: int = 0
    cursor: int = 0


# Keys of plans and plan states saved before the interval between checkpoints stopped being called a "window".
_OLD_KEYS = {"window_index": "interval_index", "samples_per_window": "interval_samples"}


def _renamed_keys(d: dict[str, Any]) -> dict[str, Any]:
    """`d` with the keys of older checkpoints under their current names (resuming such a run keeps working)."""
    renamed = {new: d[old] for old, new in _OLD_KEYS.items() if old in d and new not in d}
    return {**{k: v for k, v in d.items() if k not in _OLD_KEYS}, **renamed}


@dataclass(frozen=True)
class DataPlanState:
    """What the next interval's plan continues from: the index of the last planned interval and its end cursors."""

    interval_index: int
    cursors: tuple[DatasetCursor, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"interval_index": self.interval_index, "cursors": [[c.epoch, c.cursor] for c in self.cursors]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataPlanState:
        d = _renamed_keys(d)
        return cls(int(d["interval_index"]), tuple(DatasetCursor(int(e), int(c)) for e, c in d["cursors"]))


@dataclass(frozen=True)
class DatasetPlan:
    """One dataset's part of an interval: its shards (URLs, in reading order) and how many samples it should give."""

    dataset_dir: str
    modality: str
    weight: float
    num_samples: int
    shards: tuple[str, ...]
    shard_sizes: tuple[int, ...]
    # Epochs each shard was drawn from (shards drawn after a wrap-around belong to a later epoch).
    shard_epochs: tuple[int, ...]
    start: DatasetCursor
    end: DatasetCursor

    @property
    def available_samples(self) -> int:
        return sum(self.shard_sizes)

    @property
    def distinct_shards(self) -> list[str]:
        """The shards of the plan, each once, in the order they are first read."""
        return list(dict.fromkeys(self.shards))

    @property
    def passes(self) -> int:
        """Epochs the plan reads from (a small dataset is read in many passes to fill an interval)."""
        return len(set(self.shard_epochs))

    @property
    def datastring(self) -> str:
        """The shard list in brace form, e.g. `s3://b/ds/{000003,000000}.tar`."""
        return self._brace_form(list(self.shards))

    def summary(self) -> str:
        """One line per dataset for the console: shards read again in later passes are counted (and listed) once."""
        distinct = self.distinct_shards
        if len(distinct) == len(self.shards):
            wanted = f"from {len(self.shards)} shards ({self.available_samples} available)"
            return (
                f"{wanted}, epoch/cursor {self.start.epoch}/{self.start.cursor} -> {self.end.epoch}/{self.end.cursor}"
            )
        size = dict(zip(self.shards, self.shard_sizes))
        per_pass = sum(size[s] for s in distinct)
        return (
            f"from {len(distinct)} shards read in {self.passes} passes ({per_pass} samples per pass), epoch/cursor "
            f"{self.start.epoch}/{self.start.cursor} -> {self.end.epoch}/{self.end.cursor}"
        )

    def _brace_form(self, shards: list[str]) -> str:
        if not shards:
            return ""
        names = [storage.basename(s)[: -len(".tar")] for s in shards]
        if self.modality in STREAMED_MODALITIES:
            return f"{self.dataset_dir} episodes {{{','.join(names)}}}"
        return storage.join(self.dataset_dir, "{" + ",".join(names) + "}.tar")


@dataclass(frozen=True)
class CheckpointPlan:
    """The data of checkpoint interval `interval_index`: one `DatasetPlan` per dataset, weights normalised."""

    interval_index: int
    interval_samples: int
    seed: int
    datasets: tuple[DatasetPlan, ...]
    split: str = "train"
    allow_multiple_epochs: bool = True

    @property
    def state(self) -> DataPlanState:
        """Cursors after this interval: give them as `previous` to plan the next interval."""
        return DataPlanState(self.interval_index, tuple(d.end for d in self.datasets))

    @property
    def datastrings(self) -> list[str]:
        return [d.datastring for d in self.datasets]

    @property
    def weights(self) -> list[float]:
        return [d.weight for d in self.datasets]

    def to_dict(self) -> dict[str, Any]:
        return {
            "interval_index": self.interval_index,
            "interval_samples": self.interval_samples,
            "seed": self.seed,
            "split": self.split,
            "allow_multiple_epochs": self.allow_multiple_epochs,
            "datasets": [
                {
                    "dataset_dir": d.dataset_dir,
                    "modality": d.modality,
                    "weight": d.weight,
                    "num_samples": d.num_samples,
                    "shards": list(d.shards),
                    "shard_sizes": list(d.shard_sizes),
                    "shard_epochs": list(d.shard_epochs),
                    "start": [d.start.epoch, d.start.cursor],
                    "end": [d.end.epoch, d.end.cursor],
                }
                for d in self.datasets
            ],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckpointPlan:
        datasets = tuple(
            DatasetPlan(
                dataset_dir=x["dataset_dir"],
                modality=x["modality"],
                weight=float(x["weight"]),
                num_samples=int(x["num_samples"]),
                shards=tuple(x["shards"]),
                shard_sizes=tuple(int(v) for v in x["shard_sizes"]),
                shard_epochs=tuple(int(v) for v in x["shard_epochs"]),
                start=DatasetCursor(*x["start"]),
                end=DatasetCursor(*x["end"]),
            )
            for x in d["datasets"]
        )
        d = _renamed_keys(d)
        return cls(
            interval_index=int(d["interval_index"]),
            interval_samples=int(d["interval_samples"]),
            seed=int(d["seed"]),
            datasets=datasets,
            split=d.get("split", "train"),
            allow_multiple_epochs=bool(d.get("allow_multiple_epochs", True)),
        )

    def __str__(self) -> str:
        lines = [
            f"data plan ({self.split}) interval {self.interval_index}: {self.interval_samples} samples, seed {self.seed}"
        ]
        for i, d in enumerate(self.datasets):
            lines.append(f"  [{i}] {d.modality} weight {d.weight:.4f}: {d.num_samples} samples wanted {d.summary()}")
            lines.append(f"      {d._brace_form(d.distinct_shards)}")
        return "\n".join(lines)


def shard_permutation(seed: int, dataset_index: int, epoch: int, num_shards: int) -> np.ndarray:
    """The shard order of one epoch of one dataset: a permutation seeded by (seed, dataset index, epoch)."""
    return np.random.default_rng([seed, dataset_index, epoch]).permutation(num_shards)


def dataset_sources(data_params: DataParams, split: str = "train") -> tuple[list[str], list[float], list[str]]:
    """(paths, normalised weights, modalities) of the train or validation datasets, checked for consistency."""
    if split == "train":
        paths, weights, modalities = (
            list(data_params.dataset_manifest),
            list(data_params.dataset_weighting),
            list(data_params.dataset_modality),
        )
        if not paths:
            raise ConfigError("data.dataset_manifest is empty: name at least one dataset directory or manifest.jsonl")
        if not (len(paths) == len(weights) == len(modalities)):
            raise ConfigError(
                "data.dataset_manifest, data.dataset_weighting and data.dataset_modality must have the same length; "
                f"got {len(paths)}, {len(weights)} and {len(modalities)}"
            )
    elif split == "val":
        paths = list(data_params.val_dataset_manifest)
        if not paths:
            raise ConfigError("data.val_dataset_manifest is empty: there is no validation data to plan")
        weights = list(data_params.val_dataset_weighting) or [1.0] * len(paths)
        if len(weights) != len(paths):
            raise ConfigError(
                "data.val_dataset_weighting must be empty or as long as data.val_dataset_manifest; "
                f"got {len(weights)} and {len(paths)}"
            )
        modalities = [data_params.type] * len(paths)
    else:
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    for i, modality in enumerate(modalities):
        if modality not in known_modalities():
            raise ConfigError(
                f"data.dataset_modality[{i}]={modality!r} is not a modality; valid: {', '.join(known_modalities())}"
            )
        if STREAMED_MODALITIES.get(modality, modality) != data_params.type:
            raise ConfigError(
                f"data.dataset_modality[{i}]={modality!r} does not match data.type={data_params.type!r}; one run "
                "streams one modality (its pipeline), so every dataset must have the modality of data.type (or "
                "lerobot, a LeRobot root streamed as robotics)"
            )
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ConfigError(f"dataset weights must be >= 0 with a positive sum, got {weights}")
    total = float(sum(weights))
    return paths, [w / total for w in weights], modalities


def dataset_manifest(data_params: DataParams, path: str, modality: str) -> Manifest:
    """The manifest of a dataset: its manifest.jsonl, or for a streamed LeRobot root its episodes as shards."""
    if modality in STREAMED_MODALITIES:
        from vla_foundry.data.streaming.registry import open_source

        return open_source(data_params, path, modality).manifest()
    return read_manifest(path)


def plan_checkpoint(
    data_params: DataParams,
    interval_index: int,
    interval_samples: int,
    previous: DataPlanState | None = None,
    *,
    split: str = "train",
    manifests: list[Manifest] | None = None,
) -> CheckpointPlan:
    """Plan checkpoint interval `interval_index` of `interval_samples` samples (all ranks together).

    `previous` is the state of interval `interval_index - 1` (from a checkpoint or the previous plan); when None, the
    intervals before are replayed from the start, which gives the same result. `manifests` may be given to avoid
    re-reading them (same order as the datasets).
    """
    if interval_samples < 1:
        raise ValueError(f"interval_samples={interval_samples} must be >= 1")
    if interval_index < 0:
        raise ValueError(f"interval_index={interval_index} must be >= 0")
    paths, weights, modalities = dataset_sources(data_params, split)
    if manifests is None:
        manifests = [dataset_manifest(data_params, p, m) for p, m in zip(paths, modalities)]
    seed = int(data_params.seed or 0)
    # Validation uses its own shard orders so they never coincide with the training ones.
    seed_offset = 0 if split == "train" else 1_000_003

    if previous is None:
        cursors = tuple(DatasetCursor() for _ in paths)
        first = 0
    else:
        if len(previous.cursors) != len(paths):
            raise ValueError(
                f"the saved data plan has {len(previous.cursors)} dataset cursors but {len(paths)} datasets are "
                "configured; resume with the same data.dataset_manifest list"
            )
        if previous.interval_index >= interval_index:
            raise ValueError(
                f"previous plan state is for interval {previous.interval_index}, not before interval {interval_index}"
            )
        cursors, first = previous.cursors, previous.interval_index + 1

    plan: CheckpointPlan | None = None
    for k in range(first, interval_index + 1):
        datasets = []
        for i, (manifest, modality, weight) in enumerate(zip(manifests, modalities, weights)):
            datasets.append(
                _plan_dataset(
                    manifest, i, modality, weight, interval_samples, cursors[i], seed + seed_offset,
                    data_params.allow_multiple_epochs, k,
                )
            )  # fmt: skip
        plan = CheckpointPlan(
            interval_index=k,
            interval_samples=interval_samples,
            seed=seed,
            datasets=tuple(datasets),
            split=split,
            allow_multiple_epochs=data_params.allow_multiple_epochs,
        )
        cursors = plan.state.cursors
    assert plan is not None
    return plan


def _plan_dataset(
    manifest: Manifest,
    index: int,
    modality: str,
    weight: float,
    interval_samples: int,
    start: DatasetCursor,
    seed: int,
    allow_multiple_epochs: bool,
    interval_index: int,
) -> DatasetPlan:
    needed = math.ceil(weight * interval_samples) if weight > 0 else 0
    n = len(manifest.shards)
    if needed and manifest.num_samples == 0:
        raise DataExhaustedError(f"{manifest.path}: every shard has num_sequences 0; the dataset has no samples")
    epoch, cursor = start.epoch, start.cursor
    order = shard_permutation(seed, index, epoch, n)
    shards: list[str] = []
    sizes: list[int] = []
    epochs: list[int] = []
    while sum(sizes) < needed:
        if cursor >= n:
            if not allow_multiple_epochs:
                raise DataExhaustedError(
                    f"dataset {manifest.dataset_dir} ran out of shards in interval {interval_index} after epoch {epoch}: "
                    f"{needed} samples were needed, {sum(sizes)} were left. Set data.allow_multiple_epochs True to "
                    "start a new (reshuffled) epoch, or lower total_train_samples"
                )
            epoch, cursor = epoch + 1, 0
            order = shard_permutation(seed, index, epoch, n)
        info = manifest.shards[int(order[cursor])]
        cursor += 1
        shards.append(manifest.shard_url(info.name))
        sizes.append(info.num_sequences)
        epochs.append(epoch)
    return DatasetPlan(
        dataset_dir=manifest.dataset_dir,
        modality=modality,
        weight=weight,
        num_samples=needed,
        shards=tuple(shards),
        shard_sizes=tuple(sizes),
        shard_epochs=tuple(epochs),
        start=start,
        end=DatasetCursor(epoch, cursor),
    )


@dataclasses.dataclass(frozen=True)
class PlannerParams:
    """`python -m vla_foundry.data.planner`: which checkpoint intervals to print; every other flag is a field of the data block
    (as in a data preset, without `data.`)."""

    # Intervals printed, from the first.
    intervals: int = 1
    # Samples per checkpoint interval (global batch x steps per interval).
    interval_samples: int = 0
    # The datasets planned: the training ones or the validation ones.
    split: Literal["train", "val"] = "train"

    def validate(self) -> None:
        if self.interval_samples < 1:
            raise ConfigError("give --interval_samples N (and optionally --intervals K, --split val)")
        if self.intervals < 1:
            raise ConfigError(f"intervals={self.intervals} must be >= 1")


# The planner's flags from before the interval between checkpoints stopped being called a "window".
PLANNER_RENAMED = {"windows": "intervals", "samples_per_window": "interval_samples"}


def main(argv: list[str] | None = None) -> int:
    """Print the plan of some checkpoint intervals: `python -m vla_foundry.data.planner --config_path data.yaml --intervals 3
    --interval_samples 1024 [--data flags, e.g. --seed 1]` (data flags as in a data preset, without `data.`)."""
    import sys

    from vla_foundry.cli import Spelling, command_help, parse_command, pop_bool_flag, report_error
    from vla_foundry.params.parsing import parse_params

    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        print(command_help("python -m vla_foundry.data.planner", main.__doc__, PlannerParams))
        print("Every other flag is a field of the data block: python vla_foundry/main.py --help data")
        return 0
    own_names = {f"--{f.name}" for f in dataclasses.fields(PlannerParams)} | {f"--{n}" for n in PLANNER_RENAMED}
    own: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        name = args[i].partition("=")[0]
        target = own if name in own_names else rest
        takes_value = "=" not in args[i] and i + 1 < len(args) and target is own
        target += args[i : i + 2] if takes_value else [args[i]]
        i += 2 if takes_value else 1
    try:
        debug, rest = pop_bool_flag(rest, "--debug")
    except ConfigError as e:
        return report_error(e, False)
    try:
        planner = parse_command(PlannerParams, own, Spelling(renamed=PLANNER_RENAMED))
        params = parse_params(DataParams, rest)
    except (ConfigError, FileNotFoundError) as e:
        return report_error(e, debug)
    state = None
    for k in range(planner.intervals):
        plan = plan_checkpoint(params, k, planner.interval_samples, state, split=planner.split)
        print(plan)
        state = plan.state
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
