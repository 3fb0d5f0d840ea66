"""The loader of one checkpoint interval: planned shards -> ranks/workers -> tar stream -> shuffle -> mix -> batches.

Splitting (no overlap, no loss): for each dataset, the plan's shards go to ranks round-robin (`shards[rank::world]`)
and a rank's shards to its workers the same way. Where a dataset has fewer shards than ranks (or a rank fewer than
workers), every reader of that level opens the shards and keeps a disjoint stride of each shard's samples instead.

Equal steps on every rank: each rank yields exactly `interval_samples / world_size / batch_size` batches. Batch b of
a rank is built by worker `b % num_workers`. Each worker draws, for each sample slot, a dataset by weight (seeded),
and takes that dataset's next sample from its shuffle buffer. When a worker's share of a dataset runs out before its
batches are full (shards of unequal size), it starts another pass over that share with a new shuffle: the repeat is
counted in `LoaderStats.repeated_passes`, never silent. Undecodable samples are skipped (the slot is refilled),
counted and listed; above `max_bad_sample_fraction` of the rank's interval the loader raises `BadDataError`.

Determinism and exact resume: every random choice (shuffle, mixing, crop, augmentation, instruction choice) comes from
generators seeded by (seed, interval, rank, worker, ...), so the batches are a pure function of the plan and the
loader arguments. `start_batch=n` (with the same plan, world size and num_workers) yields exactly the batches n, n+1,
... of the uninterrupted run: workers replay their stream up to batch n without collating it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from vla_foundry import storage
from vla_foundry.data.pipelines import build_pipeline
from vla_foundry.data.planner import CheckpointPlan, DatasetPlan
from vla_foundry.data.robotics.processor import SampleError
from vla_foundry.data.sample_streams import EndlessStream, LoaderStats
from vla_foundry.data.streaming.registry import get_stream_source, is_stream, open_source
from vla_foundry.data.tar_stream import ShardReadError, iter_tar_samples
from vla_foundry.params.data_params import DataParams

LOADER_KEY = "_loader"
# Batch entry listing the source of each sample: "<shard url> key <sample key>".
SAMPLE_KEYS = "sample_keys"


class BadDataError(RuntimeError):
    """More than `max_bad_sample_fraction` of an interval's samples were unusable; the message lists them."""


def split_for_reader(num_shards: int, rank: int, world_size: int, worker: int, num_workers: int):
    """(shard indices, sample filter) of one (rank, worker) reader.

    The filter is a list of (stride, offset) levels applied in turn to the sample index within a shard: a sample is
    kept at a level when index % stride == offset, and the kept samples are re-indexed for the next level.
    """
    indices = list(range(num_shards))
    levels: list[tuple[int, int]] = []
    for part, parts in ((rank, world_size), (worker, num_workers)):
        if parts == 1:
            continue
        if len(indices) >= parts:
            indices = indices[part::parts]
        else:
            levels.append((parts, part))
    return indices, levels


def _keep(index: int, levels: list[tuple[int, int]]) -> bool:
    for stride, offset in levels:
        if index % stride != offset:
            return False
        index //= stride
    return True


class LazyGenerator:
    """A `np.random.Generator` seeded with `seed`, created on first use: seeding one costs more than the rest of a
    sample's bookkeeping, and most samples draw nothing (no augmentation, a single candidate instruction)."""

    __slots__ = ("_rng", "_seed")

    def __init__(self, seed: list[int]) -> None:
        self._seed = seed
        self._rng: np.random.Generator | None = None

    def __getattr__(self, name: str) -> Any:
        if self._rng is None:
            self._rng = np.random.default_rng(self._seed)
        return getattr(self._rng, name)


class DatasetStream(EndlessStream):
    """One reader's endless sample stream of one shard dataset: its shards in plan order (shuffled from the second
    pass on), its sample stride, the shared shuffle buffer."""

    def __init__(
        self,
        dataset: DatasetPlan,
        dataset_index: int,
        rank: int,
        world_size: int,
        worker: int,
        num_workers: int,
        seed: list[int],
        buffer_size: int,
        stats: LoaderStats,
    ) -> None:
        indices, self.levels = split_for_reader(len(dataset.shards), rank, world_size, worker, num_workers)
        self.shards = [dataset.shards[i] for i in indices]
        self.expected = dict(zip(dataset.shards, dataset.shard_sizes))
        self.dataset_index = dataset_index
        super().__init__(seed, buffer_size, stats)

    def read_pass(self, pass_index: int, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
        shards = list(self.shards)
        if pass_index > 0:
            shards = [shards[i] for i in rng.permutation(len(shards))]
        for url in shards:
            index = 0
            try:
                for sample in iter_tar_samples(url):
                    keep = _keep(index, self.levels)
                    index += 1
                    if keep:
                        yield sample
            except ShardReadError as e:
                self._shard_error(str(e))
                continue
            if index < self.expected[url]:
                # A tar cut at a member boundary reads as a short but well-formed archive: the manifest tells.
                self._shard_error(f"shard {url}: ended after {index} samples, manifest.jsonl says {self.expected[url]}")

    def _shard_error(self, message: str) -> None:
        self.stats.shard_errors += 1
        self.stats.record_bad(message)

    def empty_share(self) -> str:
        return (
            f"dataset {self.dataset_index} gave this reader no readable sample from shards {self.shards}; "
            "check the shards (see the bad-sample list) or plan more shards"
        )


class IntervalDataset(IterableDataset):
    """Yields (already collated) batches of one rank's interval; each carries its batch index under `_loader`."""

    def __init__(
        self,
        data_params: DataParams,
        plan: CheckpointPlan,
        batch_size: int,
        rank: int,
        world_size: int,
        num_workers: int,
        seed: int,
        start_batch: int,
        training: bool,
        model_params: Any = None,
    ) -> None:
        super().__init__()
        self.data_params = data_params
        self.plan = plan
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.num_workers = max(1, num_workers)
        self.seed = seed
        self.start_batch = start_batch
        self.training = training
        self.model_params = model_params
        self.num_batches = plan.interval_samples // world_size // batch_size

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        pipeline = build_pipeline(self.data_params, self.plan, self.training, self.model_params, self.batch_size)
        stats = LoaderStats(samples_per_dataset=[0] * len(self.plan.datasets))
        base = [self.seed, self.plan.interval_index, self.rank, worker]
        active = [i for i, d in enumerate(self.plan.datasets) if d.weight > 0 and d.shards]
        streams: dict[int, EndlessStream] = {}
        for i in active:
            d = self.plan.datasets[i]
            if is_stream(d.modality):
                # A streamed source root: the rank's share of the interval, read by the source's own stream; a
                # source read in loader workers gives each worker a part in proportion to the batches it makes.
                source = open_source(self.data_params, d.dataset_dir, d.modality)
                part = (0, 1, 1)
                if source.in_loader_workers(self.data_params):
                    batches = [len(range(w, self.num_batches, self.num_workers)) for w in range(self.num_workers)]
                    part = (sum(batches[:worker]), sum(batches[: worker + 1]), max(1, self.num_batches))
                streams[i] = source.open_stream(
                    d, i, self.rank, self.world_size, [*base, i], self.data_params.shuffle_buffer_size, stats, part
                )
            else:
                streams[i] = DatasetStream(
                    d, i, self.rank, self.world_size, worker, self.num_workers, [*base, i],
                    self.data_params.shuffle_buffer_size, stats,
                )  # fmt: skip
        probs = np.array([self.plan.datasets[i].weight for i in active])
        probs = probs / probs.sum()
        mix_rng = np.random.default_rng([*base, 1_000_000])
        sample_counter = 0
        pending: list[dict[str, Any]] = []
        pending_keys: list[str] = []  # where each pending item came from: "<shard url> key <sample key>"
        for b in range(worker, self.num_batches, self.num_workers):
            while len(pending) < self.batch_size:
                i = active[int(mix_rng.choice(len(active), p=probs))] if len(active) > 1 else active[0]
                raw = streams[i].next()
                rng = LazyGenerator([*base, 2_000_000, sample_counter])
                sample_counter += 1
                try:
                    items = pipeline.process(raw, i, rng)
                except SampleError as e:
                    stats.record_bad(f"{raw['__url__']} key {raw['__key__']}: {e}")
                    continue
                stats.samples += 1
                stats.samples_per_dataset[i] += 1
                pending.extend(items)
                pending_keys.extend([f"{raw.get('__url__')} key {raw.get('__key__')}"] * len(items))
            items, pending = pending[: self.batch_size], pending[self.batch_size :]
            keys, pending_keys = pending_keys[: self.batch_size], pending_keys[self.batch_size :]
            if b < self.start_batch:
                continue
            batch = pipeline.collate(items)
            # The samples a batch holds, so a failure (e.g. a non-finite loss) can name them.
            batch[SAMPLE_KEYS] = keys
            batch[LOADER_KEY] = {
                "batch_index": b,
                "worker": worker,
                "stats": dataclasses.replace(stats, bad=list(stats.bad)),
            }
            stats.bad.clear()
            yield batch


def _as_is(batch: dict[str, Any]) -> dict[str, Any]:
    """Batches leave the workers already collated (torch's default conversion would walk them again)."""
    return batch


class IntervalLoader:
    """Iterable over one rank's batches of a checkpoint interval, with resume state and data-quality counters.

    `len(loader)` is the number of batches still to come; `batches_consumed` counts batches yielded so far plus
    `start_batch` (what a checkpoint stores to resume mid-interval); `stats` holds the counters of the batches yielded.
    """

    def __init__(
        self,
        dataset: IntervalDataset,
        num_workers: int,
        prefetch_factor: int,
        max_bad_fraction: float,
        pin_memory: bool = False,
    ) -> None:
        self.dataset = dataset
        self.pin_memory = pin_memory
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.max_bad_fraction = max_bad_fraction
        self.batches_consumed = dataset.start_batch
        self.stats = LoaderStats(samples_per_dataset=[0] * len(dataset.plan.datasets))
        self._worker_stats: dict[int, LoaderStats] = {}
        self._bad_list: list[str] = []
        self.rank_samples = dataset.plan.interval_samples // dataset.world_size

    @property
    def num_batches(self) -> int:
        """Batches of the whole interval on this rank (the same on every rank)."""
        return self.dataset.num_batches

    def __len__(self) -> int:
        return self.num_batches - self.batches_consumed

    def state_dict(self) -> dict[str, Any]:
        return {
            "interval_index": self.dataset.plan.interval_index,
            "batches_consumed": self.batches_consumed,
            "num_workers": self.num_workers,
            "world_size": self.dataset.world_size,
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.batches_consumed >= self.num_batches:
            return
        self.dataset.start_batch = self.batches_consumed
        loader = DataLoader(
            self.dataset,
            batch_size=None,
            collate_fn=_as_is,
            num_workers=self.num_workers,
            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
            persistent_workers=False,
            pin_memory=self.pin_memory,
        )
        # Workers deliver their batches round-robin; after a mid-interval start their first batches are not in
        # global order, so a few are held until their turn.
        waiting: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        for batch in loader:
            info = batch.pop(LOADER_KEY)
            waiting[info["batch_index"]] = (batch, info)
            while self.batches_consumed in waiting:
                out, out_info = waiting.pop(self.batches_consumed)
                self._account(out_info["worker"], out_info["stats"])
                self.batches_consumed += 1
                yield out

    def _account(self, worker: int, worker_stats: LoaderStats) -> None:
        """Fold a worker's cumulative counters in; stop the run when bad samples exceed the allowed fraction."""
        new_bad = worker_stats.bad
        self._worker_stats[worker] = dataclasses.replace(worker_stats, bad=[])
        self._bad_list.extend(new_bad)
        total = LoaderStats(samples_per_dataset=[0] * len(self.dataset.plan.datasets))
        for s in self._worker_stats.values():
            total.add(s)
        total.bad = list(self._bad_list)
        self.stats = total
        allowed = self.max_bad_fraction * self.rank_samples
        if total.bad_samples > allowed:
            listing = "\n  ".join(total.bad)
            raise BadDataError(
                f"interval {self.dataset.plan.interval_index}, rank {self.dataset.rank}: {total.bad_samples} unusable "
                f"samples / shard errors, more than data.max_bad_sample_fraction={self.max_bad_fraction} of the "
                f"rank's {self.rank_samples} samples:\n  {listing}"
            )


def build_dataloader(
    data_params: DataParams,
    plan: CheckpointPlan,
    *,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int | None = None,
    seed: int | None = None,
    start_batch: int = 0,
    model_params: Any = None,
    training: bool = True,
    check_shards: bool = True,
    pin_memory: bool = False,
) -> IntervalLoader:
    """The loader of `plan`'s checkpoint interval for one rank: `plan.interval_samples / world_size / batch_size` batches.

    Checks, before any worker starts, that the interval divides into whole batches on every rank, that every planned
    shard exists (one HEAD per shard on S3; `check_shards=False` skips it) and that the pipeline can be built
    (tokenizer, stats, window). `num_workers` / `seed` default to data.num_workers / data.seed. `pin_memory=True`
    puts batches in page-locked memory for faster, asynchronous host-to-GPU copies.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be within [0, world_size={world_size})")
    per_rank = plan.interval_samples // world_size
    if plan.interval_samples % world_size or per_rank % batch_size:
        raise ValueError(
            f"an interval of {plan.interval_samples} samples does not split into whole batches of {batch_size} on "
            f"{world_size} rank(s); make interval_samples a multiple of batch_size x world_size"
        )
    num_batches = per_rank // batch_size
    if not 0 <= start_batch <= num_batches:
        raise ValueError(f"start_batch={start_batch} must be within [0, {num_batches}] for this interval")
    num_workers = data_params.num_workers if num_workers is None else num_workers
    if any(
        is_stream(d.modality) and not get_stream_source(d.modality).in_loader_workers(data_params)
        for d in plan.datasets
    ):
        # A streamed source pulled in this process (its own workers, e.g. Ray's, do the decoding): the interval's
        # loader runs here, without loader worker processes.
        num_workers = 0
    seed = int(data_params.seed or 0) if seed is None else int(seed)
    if check_shards:
        for d in plan.datasets:
            if is_stream(d.modality):
                continue
            missing = [url for url in dict.fromkeys(d.shards) if not storage.exists(url)]
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} planned shard(s) of dataset {d.dataset_dir} do not exist (listed in its "
                    f"manifest.jsonl): {', '.join(missing[:10])}"
                )
    dataset = IntervalDataset(
        data_params, plan, batch_size, rank, world_size, num_workers, seed, start_batch, training, model_params
    )
    # Build one pipeline here so configuration errors surface in the caller, not inside a worker.
    build_pipeline(data_params, plan, training, model_params)
    return IntervalLoader(
        dataset, num_workers, data_params.prefetch_factor, data_params.max_bad_sample_fraction, pin_memory
    )
