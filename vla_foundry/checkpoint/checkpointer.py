"""`Checkpointer`: THE interface the trainer saves and resumes through, and the registry of checkpoint backends.

One `Checkpointer` is built once per run with the stateful objects (model, optimizer, scheduler, EMA, grad scaler)
and offers `save(n, trainer_state)`, `wait()`, `load(ref)`, `latest()` and `close()`. What every backend shares
lives here: the checkpoint directory, `trainer_state.pt` (counters, data plan, scheduler, scaler, EMA update count,
every rank's RNG), the integrity index written last (which also names the backend), at most one save in flight,
pruning and the one-line disk-full error. A backend is one subclass that writes and reads the tensors (model,
optimizer, EMA) and says which tensors a checkpoint holds:

    @register_checkpoint_backend("my_backend")
    class MyCheckpointer(Checkpointer):
        def write_state(self, ckpt_dir, n): ...            # collective; None or a Future (asynchronous)
        def read_state(self, ckpt_dir, with_ema): ...      # collective; restores model, optimizer (and EMA)
        @classmethod
        def saved_tensors(cls, ckpt_dir, group): ...       # {name: (shape, dtype)} of "model" / "ema"
        @classmethod
        def read_tensors(cls, ckpt_dir, group, into): ...  # one process: fills `into`'s tensors in place

The run picks its backend with `--checkpoint_backend NAME`; readers (inference, export) pick the one the
checkpoint's `index.json` names.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar

import torch
from torch import nn

from vla_foundry import storage
from vla_foundry.checkpoint.files import load_file, save_file
from vla_foundry.checkpoint.integrity import backend_name, write_index
from vla_foundry.checkpoint.layout import (
    TRAINER_STATE_FILE,
    CheckpointError,
    CheckpointRef,
    checkpoint_dir,
    warn_stderr,
)
from vla_foundry.checkpoint.prune import prune_checkpoints
from vla_foundry.checkpoint.scan import latest_checkpoint
from vla_foundry.checkpoint.state import check_state_dict_matches, rng_state, set_rng_state, tensor_bytes
from vla_foundry.distributed import DistributedContext, all_gather_objects, barrier
from vla_foundry.params.base_params import ConfigError

_BACKENDS: dict[str, type[Checkpointer]] = {}


def register_checkpoint_backend(name: str) -> Callable[[type[Checkpointer]], type[Checkpointer]]:
    """Class decorator: make a `Checkpointer` subclass selectable as `--checkpoint_backend NAME`."""

    def register(cls: type[Checkpointer]) -> type[Checkpointer]:
        if name in _BACKENDS and _BACKENDS[name] is not cls:
            raise ValueError(f"checkpoint backend {name!r} is already registered by {_BACKENDS[name].__qualname__}")
        cls.name = name
        _BACKENDS[name] = cls
        return cls

    return register


def checkpoint_backends() -> list[str]:
    return sorted(_BACKENDS)


def checkpoint_backend(name: str) -> type[Checkpointer]:
    """The backend class registered as `name`; a `ConfigError` naming the closest registered ones otherwise."""
    if name in _BACKENDS:
        return _BACKENDS[name]
    from vla_foundry.params.parsing import _closest

    raise ConfigError(
        f"checkpoint_backend={name!r} is not registered; closest: {_closest(name, list(_BACKENDS))}; registered: "
        f"{', '.join(checkpoint_backends())} (a backend defined in your own module registers when the module is "
        "imported: --plugins my_pkg.module)"
    )


def backend_of(ckpt_dir: str) -> type[Checkpointer]:
    """The backend that wrote a complete checkpoint directory (named in its index)."""
    name = backend_name(ckpt_dir)
    if name not in _BACKENDS:
        raise CheckpointError(
            f"{ckpt_dir} was written by checkpoint backend {name!r}, which is not registered here (registered: "
            f"{', '.join(checkpoint_backends())}); import the module that defines it with --plugins my_pkg.module"
        )
    return _BACKENDS[name]


def load_trainer_state(ref: CheckpointRef) -> dict[str, Any]:
    """The trainer state (step, data plan, scheduler, RNG of every rank ...) of a checkpoint directory."""
    if not ref.sharded:
        raise CheckpointError(
            f"{ref.path} is a consolidated weights file (an older layout, or an export): it holds no training state "
            "to resume; load its weights with --model.resume_weights_only True"
        )
    return load_file(ref.file(TRAINER_STATE_FILE))


class Checkpointer(ABC):
    """Saves and restores a run's training state; at most one save in flight. Collective: every rank builds it and
    calls `save()` / `load()` together.

    `save()` returns once training may go on (the state is staged in host memory, or written); the write, then rank
    0's index and pruning and `on_complete(n, removed)` run in the background. The next `save()`, `wait()` and
    `close()` wait for the pending one, so the end of a run and a crash flush it.
    """

    name: ClassVar[str] = ""
    # Files `saved_tensors` reads: all a reader downloads from s3 to list a checkpoint's tensors.
    metadata_files: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        run_dir: str,
        ctx: DistributedContext,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        ema: Any = None,
        scaler: Any = None,
        async_save: bool = True,
        keep_last: int | None = None,
        on_complete: Callable[[int, list[int]], None] | None = None,
        warn: Callable[[str], None] = warn_stderr,
    ) -> None:
        self.run_dir = run_dir
        self.ctx = ctx
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.ema = ema
        self.scaler = scaler
        self.async_save = async_save
        self.keep_last = keep_last
        self.on_complete = on_complete
        self.warn = warn
        self.completed: list[int] = []
        self._pending: Future | None = None
        self._pending_n = 0
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-finish")
        # Bytes of checkpoint n's state (global tensor sizes), to say how much space a failed save needed.
        self._state_bytes: dict[int, int] = {}

    # ------------------------------------------------------------------------------------- backend hooks

    @abstractmethod
    def write_state(self, ckpt_dir: str, n: int) -> Future | None:
        """Write model, optimizer and EMA tensors into `ckpt_dir` (created, trainer state inside). Return None when
        every rank's files are written, or a Future that completes, on rank 0, once they all are."""
        ...

    @abstractmethod
    def read_state(self, ckpt_dir: str, with_ema: bool) -> None:
        """Restore model, optimizer (and, with `with_ema`, the EMA) in place from a local checkpoint directory."""
        ...

    @classmethod
    @abstractmethod
    def saved_tensors(cls, ckpt_dir: str, group: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """{name: (global shape, dtype)} of the tensors saved under `group` ("model" or "ema"; {} when none)."""
        ...

    @classmethod
    @abstractmethod
    def read_tensors(cls, ckpt_dir: str, group: str, into: dict[str, torch.Tensor]) -> None:
        """In one process, without a process group: fill `into`'s tensors (full shapes) with the saved values."""
        ...

    def close_backend(self) -> None:
        """Release what the backend holds between saves (staging buffers)."""
        return None  # optional: most backends hold nothing between saves

    # ------------------------------------------------------------------------------------- the interface

    def latest(self, verify: bool = False) -> CheckpointRef | None:
        """The newest complete checkpoint of this run dir, or None."""
        return latest_checkpoint(self.run_dir, verify=verify, warn=self.warn)

    def save(self, n: int, trainer_state: dict[str, Any]) -> float:
        """Start (or, synchronous, do) checkpoint n; returns the seconds training was blocked. A full disk ends as
        one `DiskFullError` (here, or from the next `wait()` for an asynchronous save)."""
        self.wait()
        try:
            return self._save(n, trainer_state)
        except BaseException as e:
            self._raise_if_disk_full(e, n)
            raise

    def wait(self) -> None:
        """Block until the pending save (if any) is written, indexed and its `on_complete` ran; re-raises its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                pending.result()
            except BaseException as e:
                self._raise_if_disk_full(e, self._pending_n)
                raise

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._finisher.shutdown(wait=True)
            self.close_backend()

    def load(self, ref: CheckpointRef) -> dict[str, Any]:
        """Restore model, optimizer, scheduler, EMA, grad scaler and this rank's RNG from the local checkpoint
        directory `ref`; returns its trainer state. Collective."""
        trainer = load_trainer_state(ref)
        writer = backend_of(ref.path)
        if writer is not type(self):
            raise CheckpointError(
                f"{ref.path} was written by checkpoint backend {writer.name!r}; resume it with --checkpoint_backend "
                f"{writer.name} (this run uses {self.name!r})"
            )
        saved = self.saved_tensors(ref.path, "model")
        check_state_dict_matches(self.model, {k: shape for k, (shape, _) in saved.items()}, ref.path)
        with_ema = self.ema is not None and bool(self.saved_tensors(ref.path, "ema"))
        if self.ema is not None and not with_ema:
            self.warn(f"{ref.path} holds no EMA weights: the EMA restarts from the current weights")
        self.read_state(ref.path, with_ema)
        if with_ema:
            self.ema.num_updates = int(trainer.get("ema_num_updates") or 0)
        self.scheduler.load_state_dict(trainer["scheduler"])
        if self.scaler is not None and "grad_scaler" in trainer:
            self.scaler.load_state_dict(trainer["grad_scaler"])
        rngs = trainer.get("rng", [])
        if len(rngs) == self.ctx.world_size:
            set_rng_state(rngs[self.ctx.rank])
        else:
            self.warn(
                f"checkpoint was written by {len(rngs)} processes, this run has {self.ctx.world_size}: the weights, "
                "optimizer and EMA were resharded and the data continues at the next checkpoint interval; RNG states "
                "are not restored, so the continuation is not bitwise identical"
            )
        return trainer

    # ------------------------------------------------------------------------------------- internals

    def _save(self, n: int, trainer_state: dict[str, Any]) -> float:
        start = time.perf_counter()
        self._pending_n = n
        ckpt_dir = checkpoint_dir(self.run_dir, n)
        rngs = all_gather_objects(rng_state())
        if self.ctx.is_main:
            # A directory left by an interrupted save of the same number is replaced.
            storage.remove(ckpt_dir)
            os.makedirs(ckpt_dir)
            save_file(self._trainer_state(n, trainer_state, rngs), os.path.join(ckpt_dir, TRAINER_STATE_FILE))
        barrier()
        self._state_bytes[n] = self._state_size()
        written = self.write_state(ckpt_dir, n)
        if written is None:
            written = Future()
            written.set_result(None)
        info = {"checkpoint": n, "step": trainer_state.get("step"), "world_size": self.ctx.world_size}
        self._pending = self._finisher.submit(self._finish, written, ckpt_dir, n, {**info, "backend": self.name})
        if not self.async_save:
            self.wait()
        return time.perf_counter() - start

    def _trainer_state(self, n: int, trainer_state: dict[str, Any], rngs: list[Any]) -> dict[str, Any]:
        extra = {
            **trainer_state,
            "checkpoint": n,
            "world_size": self.ctx.world_size,
            "rng": rngs,
            "scheduler": self.scheduler.state_dict(),
            "ema_num_updates": self.ema.num_updates if self.ema is not None else None,
        }
        if self.scaler is not None:
            extra["grad_scaler"] = self.scaler.state_dict()
        return extra

    def _state_size(self) -> int:
        ema = self.ema.shards() if self.ema is not None else {}
        return tensor_bytes([self.model.state_dict(), self.optimizer.state_dict().get("state", {}), ema])

    def _finish(self, written: Future, ckpt_dir: str, n: int, info: dict[str, Any]) -> None:
        # Every rank's future completes after its own files are written; rank 0's only after every rank's are,
        # so its index covers every file of the checkpoint.
        written.result()
        if self.ctx.is_main:
            write_index(ckpt_dir, info)
            self.completed.append(n)
            removed = prune_checkpoints(self.run_dir, self.keep_last)
            if self.on_complete is not None:
                self.on_complete(n, removed)

    def _raise_if_disk_full(self, error: BaseException, n: int) -> None:
        """A save that ran out of disk ends as one `DiskFullError` line: the run dir, the space the checkpoint
        needs, and which checkpoint is complete to resume from. Rank 0 removes the partial checkpoint at once."""
        from vla_foundry.disk_space import DiskFullError, disk_full_message, find_disk_full

        if isinstance(error, DiskFullError) or find_disk_full(error) is None:
            return
        if self.ctx.is_main:
            storage.remove(checkpoint_dir(self.run_dir, n))
        complete = latest_checkpoint(self.run_dir, warn=lambda m: None)
        if complete is not None:
            hint = (
                f"checkpoint {complete.number} is complete (the partial checkpoint {n} was removed); free space or "
                f"move the run dir to a larger disk, then resume with --model.resume_from_checkpoint {self.run_dir}"
            )
        else:
            hint = "no checkpoint is complete yet; free space (or use --save_path on a larger disk) and run again"
        raise DiskFullError(
            disk_full_message(self.run_dir, f"checkpoint {n}", self._state_bytes.get(n), hint)
        ) from error
