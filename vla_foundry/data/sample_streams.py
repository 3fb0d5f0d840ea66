"""What every per-dataset sample stream of the loader shares: the loader's counters (`LoaderStats`) and the base of
the endless, shuffled stream of one dataset for one reader (`EndlessStream`: a shard dataset's `DatasetStream`, a
streamed source's stream). A leaf module: it imports nothing from the package, so any stream can use it.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Bad-sample descriptions kept per worker (the counts are always exact).
MAX_LISTED_BAD = 50


@dataclass
class LoaderStats:
    """Counters of one rank's window (summed over its workers)."""

    samples: int = 0
    bad_samples: int = 0
    shard_errors: int = 0
    repeated_passes: int = 0
    samples_per_dataset: list[int] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)

    def record_bad(self, message: str, count: int = 1) -> None:
        """Count `count` unusable samples; the description is listed while the list is short."""
        self.bad_samples += count
        if len(self.bad) < MAX_LISTED_BAD:
            self.bad.append(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def add(self, other: LoaderStats) -> None:
        self.samples += other.samples
        self.bad_samples += other.bad_samples
        self.shard_errors += other.shard_errors
        self.repeated_passes += other.repeated_passes
        if len(self.samples_per_dataset) < len(other.samples_per_dataset):
            self.samples_per_dataset += [0] * (len(other.samples_per_dataset) - len(self.samples_per_dataset))
        for i, n in enumerate(other.samples_per_dataset):
            self.samples_per_dataset[i] += n
        self.bad.extend(other.bad)


class EndlessStream(ABC):
    """One reader's endless sample stream of one dataset: pass after pass over the reader's share, each pass through
    a shuffle buffer seeded by (seed, pass index). A further pass (the mixer needs more than the share holds) is
    counted in `stats.repeated_passes`; a pass that yields nothing is an error, never an endless loop.

    Subclasses say what one pass reads (`read_pass`) and how to name the share in that error (`empty_share`).
    """

    def __init__(self, seed: list[int], buffer_size: int, stats: LoaderStats) -> None:
        self.seed = seed
        self.buffer_size = max(1, buffer_size)
        self.stats = stats
        self._iter = self._endless()

    @abstractmethod
    def read_pass(self, pass_index: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
        """Raw samples of pass `pass_index` in read order (`rng` is the pass's generator, shared with the buffer)."""

    @abstractmethod
    def empty_share(self) -> str:
        """The error of a pass that gave no readable sample: which dataset and share, and what to check."""

    def _one_pass(self, pass_index: int) -> Iterator[dict[str, Any]]:
        rng = np.random.default_rng([*self.seed, pass_index])
        buffer: list[dict[str, Any]] = []
        for sample in self.read_pass(pass_index, rng):
            if len(buffer) < self.buffer_size:
                buffer.append(sample)
                continue
            j = int(rng.integers(len(buffer)))
            buffer[j], sample = sample, buffer[j]
            yield sample
        for j in rng.permutation(len(buffer)):
            yield buffer[j]

    def _endless(self) -> Iterator[dict[str, Any]]:
        pass_index = 0
        while True:
            produced = 0
            for sample in self._one_pass(pass_index):
                produced += 1
                yield sample
            if produced == 0:
                raise RuntimeError(self.empty_share())
            pass_index += 1
            self.stats.repeated_passes += 1

    def next(self) -> dict[str, Any]:
        return next(self._iter)
