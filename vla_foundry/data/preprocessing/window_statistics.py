"""Normalisation statistics of windowed low-dim fields, built from per-task partial aggregates (docs/formats.md §3).

Each read task accumulates, per field and per window row t, the count of valid rows, their mean and sum of
squared deviations (merged with Chan et al.'s parallel update, so merged mean/std/min/max/count are exact up to
float64 rounding), min and max, and a sample of valid rows for percentiles.

Percentile method: each partial keeps every valid row of a timestep until it holds `PERCENTILE_SAMPLE_SIZE`
rows, then a uniform random subset of that size (seeded). Merging two partials keeps a count-weighted random
subset of their union. While a timestep has at most `PERCENTILE_SAMPLE_SIZE` valid rows in the whole dataset the
percentiles are exact (numpy "linear" interpolation); beyond that they are estimates from a uniform sample of
that size (standard error of a quantile q about sqrt(q(1-q)/n) in rank terms). Global percentiles pool the
per-timestep samples weighted by their counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PERCENTILES = (1, 2, 5, 95, 98, 99)
PERCENTILE_SAMPLE_SIZE = 4096


@dataclass
class FieldStats:
    """Partial statistics of one field over windows of T rows and D dims (arrays [T, D]; count [T])."""

    count: np.ndarray  # (T,) int64
    mean: np.ndarray  # (T, D) float64
    m2: np.ndarray  # (T, D) float64: sum of squared deviations from the mean
    min: np.ndarray  # (T, D)
    max: np.ndarray  # (T, D)
    samples: list[np.ndarray] = field(default_factory=list)  # per t: (n_t, D) kept rows for percentiles

    @classmethod
    def empty(cls, window: int, dim: int) -> FieldStats:
        return cls(
            count=np.zeros(window, np.int64),
            mean=np.zeros((window, dim)),
            m2=np.zeros((window, dim)),
            min=np.full((window, dim), np.inf),
            max=np.full((window, dim), -np.inf),
            samples=[np.zeros((0, dim)) for _ in range(window)],
        )

    @property
    def dim(self) -> int:
        return self.mean.shape[1]

    def merge(self, other: FieldStats, rng: np.random.Generator) -> None:
        """Fold `other` into self (Chan's pooled mean / M2 update per timestep)."""
        if other.mean.shape != self.mean.shape:
            raise ValueError(f"cannot merge statistics of shape {other.mean.shape} into {self.mean.shape}")
        n_a, n_b = self.count[:, None].astype(np.float64), other.count[:, None].astype(np.float64)
        n = n_a + n_b
        safe = np.where(n > 0, n, 1.0)
        delta = other.mean - self.mean
        self.mean = self.mean + delta * n_b / safe
        self.m2 = self.m2 + other.m2 + delta**2 * n_a * n_b / safe
        self.count = self.count + other.count
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)
        for t in range(len(self.samples)):
            self.samples[t] = _merge_samples(self.samples[t], int(n_a[t, 0]), other.samples[t], int(n_b[t, 0]), rng)

    @classmethod
    def from_windows(cls, values: np.ndarray, valid: np.ndarray) -> FieldStats:
        """Statistics of N windows: values (N, T, D), valid (N, T) bool."""
        _, window, dim = values.shape
        values = values.astype(np.float64)
        out = cls.empty(window, dim)
        out.count = valid.sum(axis=0).astype(np.int64)
        weights = valid[:, :, None].astype(np.float64)  # (N, T, 1)
        safe = np.maximum(out.count, 1)[:, None]
        out.mean = (values * weights).sum(axis=0) / safe
        out.m2 = (((values - out.mean) ** 2) * weights).sum(axis=0)
        out.min = np.where(valid[:, :, None], values, np.inf).min(axis=0)
        out.max = np.where(valid[:, :, None], values, -np.inf).max(axis=0)
        out.samples = [values[valid[:, t], t] for t in range(window)]
        return out


def _merge_samples(a: np.ndarray, n_a: int, b: np.ndarray, n_b: int, rng: np.random.Generator) -> np.ndarray:
    """A uniform sample of the union of two populations given uniform samples of each and their sizes."""
    if len(a) + len(b) <= PERCENTILE_SAMPLE_SIZE and len(a) == n_a and len(b) == n_b:
        return np.concatenate([a, b])
    # Take from each side in proportion to its population, without replacement.
    total = n_a + n_b
    k = min(PERCENTILE_SAMPLE_SIZE, total)
    k_a = min(len(a), round(k * n_a / total))
    k_b = min(len(b), k - k_a)
    pick_a = a[rng.choice(len(a), k_a, replace=False)] if k_a < len(a) else a
    pick_b = b[rng.choice(len(b), k_b, replace=False)] if k_b < len(b) else b
    return np.concatenate([pick_a, pick_b])


class WindowStats:
    """Partial statistics of every low-dim field of a set of windowed samples."""

    FLUSH_EVERY = 256

    def __init__(self, seed: int = 0) -> None:
        self.fields: dict[str, FieldStats] = {}
        self.rng = np.random.default_rng(seed)
        self._pending: dict[str, list[np.ndarray]] = {}
        self._pending_valid: list[np.ndarray] = []

    def add_sample(self, lowdim: dict[str, np.ndarray], valid: np.ndarray) -> None:
        """Add one sample: lowdim {name: [T, D]} and valid [T] (past_mask | future_mask)."""
        for name, values in lowdim.items():
            values = np.asarray(values)
            if values.ndim != 2 or not np.issubdtype(values.dtype, np.number) or values.dtype == np.bool_:
                continue
            self._pending.setdefault(name, []).append(values)
        self._pending_valid.append(np.asarray(valid, bool))
        if len(self._pending_valid) >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Fold the buffered samples into the running statistics (vectorised over samples)."""
        if not self._pending_valid:
            return
        valid = np.stack(self._pending_valid)  # (N, T)
        for name, rows in self._pending.items():
            if len(rows) != len(valid):
                raise ValueError(f"field {name!r} is missing from some samples")
            batch = FieldStats.from_windows(np.stack(rows), valid)
            if name in self.fields:
                self.fields[name].merge(batch, self.rng)
            else:
                self.fields[name] = batch
        self._pending, self._pending_valid = {}, []

    def merge(self, other: WindowStats) -> None:
        self.flush()
        other.flush()
        for name, stats in other.fields.items():
            if name in self.fields:
                self.fields[name].merge(stats, self.rng)
            else:
                self.fields[name] = stats

    # Serialisation of partials (npz, no pickle): one group of arrays per field.
    def to_npz_dict(self) -> dict[str, np.ndarray]:
        self.flush()
        out: dict[str, np.ndarray] = {"__fields__": np.array(sorted(self.fields), dtype=str)}
        for i, name in enumerate(sorted(self.fields)):
            s = self.fields[name]
            out[f"{i}/count"], out[f"{i}/mean"], out[f"{i}/m2"] = s.count, s.mean, s.m2
            out[f"{i}/min"], out[f"{i}/max"] = s.min, s.max
            out[f"{i}/sample_sizes"] = np.array([len(x) for x in s.samples], np.int64)
            out[f"{i}/samples"] = np.concatenate(s.samples) if s.samples else np.zeros((0, s.dim))
        return out

    @classmethod
    def from_npz_dict(cls, data: dict[str, np.ndarray], seed: int = 0) -> WindowStats:
        out = cls(seed)
        for i, name in enumerate(data["__fields__"].tolist()):
            sizes = data[f"{i}/sample_sizes"]
            samples = np.split(data[f"{i}/samples"], np.cumsum(sizes)[:-1]) if len(sizes) else []
            out.fields[name] = FieldStats(
                count=data[f"{i}/count"],
                mean=data[f"{i}/mean"],
                m2=data[f"{i}/m2"],
                min=data[f"{i}/min"],
                max=data[f"{i}/max"],
                samples=list(samples),
            )
        return out

    def to_json(self) -> dict[str, dict]:
        """stats.json content: global and per-timestep mean/std/min/max/percentiles and count per field."""
        self.flush()
        out: dict[str, dict] = {}
        for name in sorted(self.fields):
            s = self.fields[name]
            count = s.count.astype(np.float64)
            n = count.sum()
            if n == 0:
                continue
            seen = count > 0
            mean = (s.mean * count[:, None]).sum(axis=0) / n
            # Pooled M2 over timesteps: within-timestep M2 plus between-timestep spread.
            m2 = s.m2.sum(axis=0) + (count[:, None] * (s.mean - mean) ** 2).sum(axis=0)
            std_t = np.sqrt(np.where(seen[:, None], s.m2 / np.where(seen, count, 1.0)[:, None], 0.0))
            entry: dict[str, list] = {
                "mean": mean.tolist(),
                "std": np.sqrt(m2 / n).tolist(),
                "min": s.min[seen].min(axis=0).tolist(),
                "max": s.max[seen].max(axis=0).tolist(),
                "mean_per_timestep": np.where(seen[:, None], s.mean, 0.0).tolist(),
                "std_per_timestep": std_t.tolist(),
                "min_per_timestep": np.where(seen[:, None], s.min, 0.0).tolist(),
                "max_per_timestep": np.where(seen[:, None], s.max, 0.0).tolist(),
                "count": s.count.astype(int).tolist(),
            }
            pooled = _pooled_sample(s)
            for q in PERCENTILES:
                entry[f"percentile_{q}"] = np.percentile(pooled, q, axis=0).tolist()
                entry[f"percentile_{q}_per_timestep"] = [
                    np.percentile(x, q, axis=0).tolist() if len(x) else [0.0] * s.dim for x in s.samples
                ]
            out[name] = entry
        return out


def _pooled_sample(s: FieldStats) -> np.ndarray:
    """All kept rows when they are the whole population, else a count-weighted resample across timesteps."""
    exact = all(len(x) == c for x, c in zip(s.samples, s.count))
    if exact:
        return np.concatenate([x for x in s.samples if len(x)])
    rng = np.random.default_rng(0)
    pooled, n_pooled = np.zeros((0, s.dim)), 0
    for x, c in zip(s.samples, s.count):
        if len(x):
            pooled = _merge_samples(pooled, n_pooled, x, int(c), rng)
            n_pooled += int(c)
    return pooled
