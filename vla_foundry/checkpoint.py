"""Checkpoints: sharded save (synchronous or asynchronous), integrity index, resume, weights for inference, export.

Checkpoint n of a run is one directory, written with torch.distributed.checkpoint (DCP):

  <run_dir>/checkpoints/checkpoint_<n>/
    __<rank>_0.distcp   each rank's own shards of {"model", "optimizer", "ema"} (no gather onto one rank)
    .metadata           DCP's global layout (shapes, dtypes, which file holds which chunk)
    trainer_state.pt    step, samples seen, data plan state, scheduler, grad scaler, EMA update count, RNG
                        state of every rank, world size, wandb run id (tensors and plain values only)
    index.json          written LAST: every file's size and sha256. A checkpoint is complete only when its
                        index exists and every file matches it.

`n` counts checkpoint windows (1, 2, ...). A checkpoint written by N ranks loads on M ranks (DCP reshards).
One process can read the model (and EMA) weights without any process group: `load_model_checkpoint`,
`export_weights` (streams tensor by tensor into a consolidated `.safetensors`).

Older runs hold consolidated files (`checkpoint_<n>.pt` + `trainer_state_<n>.pt`, optionally `ema_<n>.pt`); their
weights still load (`load_model_checkpoint`, `--model.resume_weights_only`), but they cannot be resumed.

Public entry points for other modules: `latest_checkpoint` / `resolve_checkpoint` (the newest COMPLETE
checkpoint of a run dir), `load_model_checkpoint` / `read_checkpoint_weights` (weights for inference),
`export_weights` (consolidated safetensors), `CheckpointSaver` and `load_training_state` (training).
Every failure to read a checkpoint is one `CheckpointError` naming the file and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import random
import re
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vla_foundry import storage
from vla_foundry.distributed import (
    DistributedContext,
    all_gather_objects,
    barrier,
    broadcast_object,
    checkpoint_process_group,
    unwrap_model,
)

CHECKPOINT_DIR_RE = re.compile(r"^checkpoint_(\d+)$")
LEGACY_CHECKPOINT_RE = re.compile(r"^checkpoint_(\d+)\.(pt|safetensors)$")
# Kept for callers matching consolidated weight files by name.
CHECKPOINT_RE = LEGACY_CHECKPOINT_RE
INDEX_FILE = "index.json"
TRAINER_STATE_FILE = "trainer_state.pt"
INDEX_FORMAT = "vla_foundry.checkpoint/1"
LEGACY_KINDS = ("checkpoint", "optimizer", "ema", "trainer_state")
# Consolidated weights written at the end of a run (and by `python -m vla_foundry.checkpoint export`).
EXPORTED_MODEL = "model.safetensors"
EXPORTED_EMA = "ema.safetensors"
_HASH_CHUNK = 8 << 20


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, corrupt or does not fit the model; the message names the file."""


def warn_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- layout


def checkpoints_dir(run_dir: str) -> str:
    return storage.join(run_dir, "checkpoints")


def checkpoint_dir(run_dir: str, n: int) -> str:
    """The directory of (sharded) checkpoint n."""
    return storage.join(checkpoints_dir(run_dir), f"checkpoint_{n}")


def checkpoint_file(run_dir: str, n: int, kind: str = "checkpoint") -> str:
    """A file of the older consolidated layout (`<kind>_<n>.pt`), still readable for weights."""
    return storage.join(checkpoints_dir(run_dir), f"{kind}_{n}.pt")


@dataclass(frozen=True)
class CheckpointRef:
    """A resolved checkpoint: its run dir, number and path (a checkpoint directory, or a consolidated weights file;
    number -1 for a weights file outside a run's checkpoints)."""

    run_dir: str
    number: int
    path: str
    sharded: bool = True

    @property
    def model_file(self) -> str:
        """Where the weights are (the checkpoint directory for a sharded checkpoint)."""
        return self.path

    def file(self, name: str) -> str:
        return storage.join(self.path, name)

    def sibling(self, kind: str) -> str:
        """A file of the consolidated layout next to a `checkpoint_<n>.pt` (`ema`, `trainer_state`, ...)."""
        return checkpoint_file(self.run_dir, self.number, kind)


def _file_sizes(directory: str) -> dict[str, int]:
    """{path relative to directory: size} of every file below it (local or s3)."""
    if storage.is_s3(directory):
        prefix = directory.rstrip("/") + "/"
        return {url[len(prefix) :]: size for url, size in storage.list_s3_objects(prefix)}
    out = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with contextlib.suppress(FileNotFoundError):
                out[os.path.relpath(path, directory).replace(os.sep, "/")] = os.path.getsize(path)
    return out


def _is_temporary(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.startswith(".tmp-") or ".tmp-" in base or base.endswith(".tmp")


def _index_problem(ckpt_dir: str, sizes: dict[str, int]) -> str | None:
    """Why the checkpoint directory is not complete (index missing / unreadable / a file missing or of another
    size), or None when it is. Cheap: sizes only; `verify_checkpoint` also checks the checksums."""
    if INDEX_FILE not in sizes:
        return f"{ckpt_dir} is incomplete (no {INDEX_FILE}: the save did not finish)"
    try:
        index = json.loads(storage.read_text(storage.join(ckpt_dir, INDEX_FILE)))
        files = index["files"]
    except Exception as e:
        return f"{storage.join(ckpt_dir, INDEX_FILE)} is unreadable ({type(e).__name__}: {e})"
    for name, entry in files.items():
        if name not in sizes:
            return f"{storage.join(ckpt_dir, name)} is missing (listed in {INDEX_FILE})"
        if sizes[name] != entry["size"]:
            return f"{storage.join(ckpt_dir, name)} has {sizes[name]} bytes, {INDEX_FILE} says {entry['size']}"
    return None


def _scan(run_dir: str) -> tuple[dict[int, str | None], set[int]]:
    """({n: problem or None} of checkpoint directories, {n} of complete consolidated (older) checkpoints)."""
    sizes = _file_sizes(checkpoints_dir(run_dir))
    per_dir: dict[int, dict[str, int]] = {}
    top = set()
    for rel, size in sizes.items():
        head, _, rest = rel.partition("/")
        match = CHECKPOINT_DIR_RE.match(head)
        if match and rest:
            per_dir.setdefault(int(match.group(1)), {})[rest] = size
        elif not rest:
            top.add(head)
    sharded = {n: _index_problem(checkpoint_dir(run_dir, n), files) for n, files in per_dir.items()}
    legacy = {
        int(m.group(1)) for f in top if (m := LEGACY_CHECKPOINT_RE.match(f)) and f"trainer_state_{m.group(1)}.pt" in top
    }
    return sharded, legacy


def list_checkpoints(run_dir: str, complete_only: bool = True) -> list[int]:
    """Checkpoint numbers of a run dir (local or s3), ascending. Complete: a checkpoint directory whose index
    matches its files, or an older consolidated checkpoint with its trainer state."""
    sharded, legacy = _scan(run_dir)
    numbers = {n for n, problem in sharded.items() if problem is None or not complete_only} | legacy
    if not complete_only:
        top = {storage.basename(f) for f in storage.list_files(checkpoints_dir(run_dir), recursive=False)}
        numbers |= {int(m.group(1)) for f in top if (m := LEGACY_CHECKPOINT_RE.match(f))}
    return sorted(numbers)


def incomplete_checkpoints(run_dir: str) -> list[str]:
    """Checkpoint directories that are not complete (a save that was interrupted), oldest first."""
    sharded, _ = _scan(run_dir)
    return [checkpoint_dir(run_dir, n) for n, problem in sorted(sharded.items()) if problem is not None]


def _ref(run_dir: str, n: int, sharded_numbers: set[int]) -> CheckpointRef:
    if n in sharded_numbers:
        return CheckpointRef(run_dir, n, checkpoint_dir(run_dir, n))
    return CheckpointRef(run_dir, n, checkpoint_file(run_dir, n), sharded=False)


def latest_checkpoint(
    run_dir: str, verify: bool = False, warn: Callable[[str], None] = warn_stderr
) -> CheckpointRef | None:
    """THE latest checkpoint of a run dir (local or s3): the newest complete one, or None.

    Newer checkpoints that are incomplete (interrupted save) or, with `verify`, fail their checksums are skipped
    with a warning naming them. Every module that needs "the latest checkpoint" calls this.
    """
    sharded, legacy = _scan(run_dir)
    complete = {n for n, problem in sharded.items() if problem is None}
    for n in sorted(complete | legacy, reverse=True):
        ref = _ref(run_dir, n, complete)
        if verify and ref.sharded:
            try:
                verify_checkpoint(ref)
            except CheckpointError as e:
                warn(f"warning: skipping checkpoint {ref.path}: {e}")
                continue
        for m, problem in sorted(sharded.items(), reverse=True):
            if m > n and problem is not None:
                warn(f"warning: skipping checkpoint {checkpoint_dir(run_dir, m)}: {problem}")
        return ref
    for m, problem in sorted(sharded.items(), reverse=True):
        if problem is not None:
            warn(f"warning: skipping checkpoint {checkpoint_dir(run_dir, m)}: {problem}")
    return None


def resolve_checkpoint(path: str, verify: bool = False, warn: Callable[[str], None] = warn_stderr) -> CheckpointRef:
    """Accept a checkpoint directory `checkpoint_<n>`, an older `checkpoint_<n>.pt`, a run's `checkpoints/` dir,
    a run dir (its latest complete checkpoint, see `latest_checkpoint`; a run dir without checkpoints: its exported
    `model.safetensors`), or any .pt / .safetensors weights file; local, s3:// or hf://.

    Raises `CheckpointError` naming the path when nothing usable is there; cheap (listings, the index) unless
    `verify`, which also checks the checksums of a chosen checkpoint directory.
    """
    # An hf:// run is read from the Hub cache: its configs and exported weights (or the checkpoint named).
    path = storage.local_run(str(path).rstrip("/"))
    name = storage.basename(path)
    parent = storage.dirname(path)
    run_of = storage.dirname(parent) if storage.basename(parent) == "checkpoints" else parent
    if match := CHECKPOINT_DIR_RE.match(name):
        sizes = _file_sizes(path)
        if not sizes:
            raise CheckpointError(f"checkpoint not found: {path}")
        problem = _index_problem(path, sizes)
        if problem:
            raise CheckpointError(f"checkpoint {problem}; give an earlier checkpoint or the run dir")
        ref = CheckpointRef(run_of, int(match.group(1)), path)
        if verify:
            verify_checkpoint(ref)
        return ref
    if match := LEGACY_CHECKPOINT_RE.match(name):
        if not storage.exists(path):
            as_dir = storage.join(parent, f"checkpoint_{match.group(1)}")
            hint = f" (checkpoints are directories now: give {as_dir})" if _file_sizes(as_dir) else ""
            raise CheckpointError(f"checkpoint not found: {path}{hint}")
        return CheckpointRef(run_of, int(match.group(1)), path, sharded=False)
    if name.endswith((".pt", ".safetensors")):
        if not storage.exists(path):
            raise CheckpointError(f"weights file not found: {path}")
        # A weights file under another name (e.g. an exported model.safetensors): weights only, no training state.
        return CheckpointRef(parent, -1, path, sharded=False)
    run_dir = parent if name == "checkpoints" else path
    ref = latest_checkpoint(run_dir, verify=verify, warn=warn)
    if ref is None and name != "checkpoints" and storage.exists(storage.join(run_dir, EXPORTED_MODEL)):
        # A run without checkpoints but with its exported weights (pushed to / pulled from the Hub): weights only.
        return CheckpointRef(run_dir, -1, storage.join(run_dir, EXPORTED_MODEL), sharded=False)
    if ref is None:
        if not storage.exists(path) and not _file_sizes(path):
            raise CheckpointError(
                f"checkpoint path not found: {path} (give a run dir, its checkpoints/ dir or a checkpoint_<n> dir)"
            )
        raise CheckpointError(f"no complete checkpoint under {path} (no checkpoints/checkpoint_<n>/ with its index)")
    return ref


# ------------------------------------------------------------------------------------------- integrity


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_index(ckpt_dir: str, info: dict[str, Any]) -> None:
    """Checksum every file of a finished checkpoint directory and write `index.json` last (atomically)."""
    files = {}
    for rel, size in sorted(_file_sizes(ckpt_dir).items()):
        if rel == INDEX_FILE or _is_temporary(rel):
            continue
        files[rel] = {"size": size, "sha256": sha256_file(os.path.join(ckpt_dir, rel))}
    storage.write_text(
        os.path.join(ckpt_dir, INDEX_FILE), json.dumps({"format": INDEX_FORMAT, **info, "files": files}, indent=1)
    )


def verify_checkpoint(ref: CheckpointRef) -> None:
    """Check a checkpoint directory against its index: every file present with its size and (local) checksum.
    Raises `CheckpointError` naming the first file that does not match."""
    sizes = _file_sizes(ref.path)
    problem = _index_problem(ref.path, sizes)
    if problem:
        raise CheckpointError(problem)
    if storage.is_s3(ref.path):
        return  # checksums are checked on the local copy after download
    index = json.loads(storage.read_text(ref.file(INDEX_FILE)))
    for name, entry in index["files"].items():
        if sha256_file(ref.file(name)) != entry["sha256"]:
            raise CheckpointError(
                f"{ref.file(name)} is corrupt (its sha256 differs from {INDEX_FILE}); delete {ref.path} to use the "
                "previous checkpoint"
            )


@contextlib.contextmanager
def local_checkpoint(ref: CheckpointRef) -> Iterator[CheckpointRef]:
    """The checkpoint itself when local; an s3 checkpoint is downloaded to a temporary directory (and verified)."""
    if not storage.is_s3(ref.path):
        yield ref
        return
    with tempfile.TemporaryDirectory(prefix="vla_foundry_ckpt_") as tmp:
        local = os.path.join(tmp, storage.basename(ref.path))
        if ref.sharded:
            for rel in _file_sizes(ref.path):
                storage.download_file(ref.file(rel), os.path.join(local, rel))
            out = CheckpointRef(ref.run_dir, ref.number, local)
            verify_checkpoint(out)
        else:
            storage.download_file(ref.path, local)
            out = CheckpointRef(ref.run_dir, ref.number, local, sharded=False)
        yield out


# ------------------------------------------------------------------------------------------- reading


def load_file(path: str) -> Any:
    """Load a .pt (weights_only: tensors and plain containers, never arbitrary pickle) or .safetensors file.

    Missing, truncated, corrupt or refused (non-weights-only) files raise one `CheckpointError` naming the file.
    """
    if storage.is_s3(path):
        with tempfile.TemporaryDirectory(prefix="vla_foundry_ckpt_") as tmp:
            local = os.path.join(tmp, storage.basename(path))
            try:
                storage.download_file(path, local)
            except FileNotFoundError:
                raise CheckpointError(f"checkpoint file not found: {path}") from None
            return load_file(local)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file as load_safetensors

            return load_safetensors(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0][:200]
        raise CheckpointError(
            f"{path} is refused or corrupt: it is not a weights-only file ({first}); only tensors and plain "
            "containers are loaded, never arbitrary pickled objects: re-save it with tensors only, or delete it"
        ) from None
    except Exception as e:
        raise CheckpointError(
            f"{path} is truncated or corrupt ({type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e) else ''}); "
            "delete it and use an earlier checkpoint"
        ) from None


def save_file(obj: Any, path: str) -> None:
    """torch.save to a temporary name in the same directory, then rename (a crash never leaves half a file)."""
    with storage.atomic_local_path(path) as tmp:
        torch.save(obj, tmp)


class _MetadataUnpickler(pickle.Unpickler):
    """DCP pickles its `.metadata`; only DCP's own metadata classes, torch sizes / dtypes and builtin containers
    are accepted, so reading a checkpoint never runs arbitrary pickled code."""

    _BUILTINS = frozenset({"set", "frozenset", "slice", "tuple", "list", "dict", "bytearray", "complex"})

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("torch.distributed.checkpoint."):
            return super().find_class(module, name)
        if module == "torch" and (
            name == "Size" or isinstance(getattr(torch, name, None), torch.dtype | torch.layout | torch.memory_format)
        ):
            return getattr(torch, name)
        if (module, name) in {
            ("collections", "OrderedDict"),
            ("_codecs", "encode"),
            ("torch.serialization", "_get_layout"),
            ("pathlib", "PosixPath"),
            ("pathlib", "PurePosixPath"),
            ("pathlib", "WindowsPath"),
            ("pathlib", "PureWindowsPath"),
        }:
            return super().find_class(module, name)
        if module == "builtins" and name in self._BUILTINS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in checkpoint metadata")


def _reader(ckpt_dir: str) -> Any:
    from torch.distributed.checkpoint import FileSystemReader

    class SafeFileSystemReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            from torch.distributed.checkpoint.metadata import StorageMeta

            with open(os.path.join(ckpt_dir, ".metadata"), "rb") as f:
                metadata = _MetadataUnpickler(f).load()
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeFileSystemReader(ckpt_dir)


def read_metadata(ckpt_dir: str) -> Any:
    """DCP metadata of a local checkpoint directory (global shapes and dtypes of every saved tensor)."""
    try:
        return _reader(ckpt_dir).read_metadata()
    except FileNotFoundError:
        raise CheckpointError(
            f"{os.path.join(ckpt_dir, '.metadata')} is missing: the checkpoint is incomplete"
        ) from None
    except Exception as e:
        raise CheckpointError(
            f"{os.path.join(ckpt_dir, '.metadata')} is corrupt or refused ({type(e).__name__}: {str(e)[:160]}); "
            "use an earlier checkpoint"
        ) from None


def _saved_tensors(metadata: Any, group: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """{key: (global shape, dtype)} of the tensors saved under `group` ("model" or "ema")."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    prefix = f"{group}."
    return {
        k[len(prefix) :]: (tuple(v.size), v.properties.dtype)
        for k, v in metadata.state_dict_metadata.items()
        if k.startswith(prefix) and isinstance(v, TensorStorageMetadata)
    }


def check_state_dict_matches(model: nn.Module, state: dict[str, Any], source: str) -> None:
    """Raise `CheckpointError` listing missing, unexpected and shape-mismatched keys. `state` maps names to tensors
    or to shapes."""
    expected = {k: tuple(v.shape) for k, v in unwrap_model(model).state_dict().items()}
    given = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in state.items()}
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(given) if expected[k] != given[k])
    if not (missing or unexpected or mismatched):
        return
    lines = [f"checkpoint {source} does not fit the model:"]
    if mismatched:
        shown = ", ".join(f"{k} (checkpoint {list(given[k])} vs model {list(expected[k])})" for k in mismatched[:10])
        lines.append(f"  shape mismatch in {len(mismatched)} keys: {shown}")
    if missing:
        lines.append(f"  missing from the checkpoint ({len(missing)}): {', '.join(missing[:10])}")
    if unexpected:
        lines.append(f"  not in the model ({len(unexpected)}): {', '.join(unexpected[:10])}")
    raise CheckpointError("\n".join(lines))


@contextlib.contextmanager
def _single_process_quietly() -> Iterator[None]:
    """DCP warns on every call without a process group (also from its writer thread) that it assumes one process:
    here that is the intent, so that one warning is filtered."""
    import warnings

    warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
    yield


def _dcp_load(state: dict[str, Any], ckpt_dir: str, process_group: Any = None, no_dist: bool = False) -> None:
    import torch.distributed.checkpoint as dcp

    try:
        with _single_process_quietly():
            dcp.load(state, storage_reader=_reader(ckpt_dir), process_group=process_group, no_dist=no_dist)
    except CheckpointError:
        raise
    except Exception as e:
        text = str(e).strip().splitlines()
        raise CheckpointError(
            f"cannot read checkpoint {ckpt_dir} ({type(e).__name__}: {text[0][:200] if text else ''}); it is corrupt "
            "or incomplete: use an earlier checkpoint"
        ) from None


def read_checkpoint_weights(path: str, use_ema: bool = False, verify: bool = True) -> dict[str, torch.Tensor]:
    """The consolidated model state dict of a checkpoint (any form `resolve_checkpoint` accepts; local or s3) in
    one process, without a process group. With `use_ema` the EMA values replace the trainable weights. `verify`
    checks the checksums first (a run dir then skips a corrupt latest checkpoint with a warning)."""
    ref = resolve_checkpoint(path, verify=verify)
    with local_checkpoint(ref) as local:
        if not local.sharded:
            state = load_file(local.path)
            if use_ema:
                ema_file = ref.sibling("ema")
                if ref.number < 0 or not storage.exists(ema_file):
                    raise CheckpointError(f"no EMA weights next to {ref.path} ({ema_file} does not exist)")
                state = {**state, **{k: v.to(state[k].dtype) for k, v in load_file(ema_file)["shadow"].items()}}
            return state
        metadata = read_metadata(local.path)
        saved = _saved_tensors(metadata, "model")
        state = {k: torch.empty(shape, dtype=dtype) for k, (shape, dtype) in saved.items()}
        _dcp_load({"model": state}, local.path, no_dist=True)
        if use_ema:
            _load_ema_into(state, metadata, local.path, ref.path)
        return state


def _load_ema_into(state: dict[str, torch.Tensor], metadata: Any, local_dir: str, source: str) -> None:
    ema_saved = _saved_tensors(metadata, "ema")
    if not ema_saved:
        raise CheckpointError(f"checkpoint {source} holds no EMA weights (the run had ema.enabled=False)")
    # Loaded in fp32 (how the EMA is kept), then cast to the weight's dtype.
    ema = {k: torch.empty(shape, dtype=dtype) for k, (shape, dtype) in ema_saved.items() if k in state}
    _dcp_load({"ema": ema}, local_dir, no_dist=True)
    for k, v in ema.items():
        state[k] = v.to(state[k].dtype)


def has_ema(ref: CheckpointRef) -> bool:
    """Whether a checkpoint holds EMA weights."""
    if not ref.sharded:
        return ref.number >= 0 and storage.exists(ref.sibling("ema"))
    if not storage.is_s3(ref.path):
        return bool(_saved_tensors(read_metadata(ref.path), "ema"))
    with _s3_metadata_only(ref) as local_dir:
        return bool(_saved_tensors(read_metadata(local_dir), "ema"))


@contextlib.contextmanager
def _s3_metadata_only(ref: CheckpointRef) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="vla_foundry_meta_") as tmp:
        storage.download_file(ref.file(".metadata"), os.path.join(tmp, ".metadata"))
        yield tmp


def load_model_checkpoint(model: nn.Module, path: str, use_ema: bool = False, verify: bool = True) -> nn.Module:
    """Load a checkpoint (any form `resolve_checkpoint` accepts; local or s3) into a plain (unwrapped) model in one
    process. With `use_ema` the EMA weights are loaded (an error when the checkpoint has none); `verify` checks the
    checksums first (a run dir then skips a corrupt latest checkpoint with a warning)."""
    ref = resolve_checkpoint(path, verify=verify)
    if not ref.sharded:
        state = read_checkpoint_weights(ref.path if ref.number < 0 else path, use_ema=use_ema, verify=False)
        check_state_dict_matches(model, state, ref.path)
        model.load_state_dict(state, strict=True)
        return model
    with local_checkpoint(ref) as local:
        metadata = read_metadata(local.path)
        check_state_dict_matches(model, {k: s for k, (s, _) in _saved_tensors(metadata, "model").items()}, ref.path)
        # DCP reads straight into the model's own tensors: no second copy of the weights.
        own = model.state_dict()
        _dcp_load({"model": own}, local.path, no_dist=True)
        if use_ema:
            _load_ema_into(own, metadata, local.path, ref.path)
            model.load_state_dict(own, strict=True)
    return model


# ------------------------------------------------------------------------------------------- RNG


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors and plain values (weights_only-loadable)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ------------------------------------------------------------------------------------------- saving


def training_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer, ema: Any) -> dict[str, Any]:
    """{"model", "optimizer", "ema"} as each rank's shards (DTensors under FSDP2, plain tensors otherwise), keyed by
    the unwrapped model's parameter names. No gather: this is what DCP saves and loads in place."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    if ema is not None:
        state["ema"] = ema.shards()
    return state


def _stager_reusable(stager: Any) -> bool:
    """Whether a DefaultStager can stage again. torch 2.11's clears its copy table after every stage (`close()`),
    so its next stage of any state dict holding a class object fails with `KeyError: <class 'type'>`; such a
    stager is made anew for each save."""
    table = getattr(getattr(stager, "_state_dict_stager", None), "_deepcopy_dispatch", None)
    return not isinstance(table, dict) or type in table


def _tensor_bytes(state: Any) -> int:
    """Bytes of every tensor in a nested state dict (a DTensor counts its global size: DCP writes each chunk once)."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, dict):
        return sum(_tensor_bytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(_tensor_bytes(v) for v in state)
    return 0


class CheckpointSaver:
    """Writes checkpoints with DCP, each rank its own shards; at most one save in flight.

    `save()` returns once the state is staged (copied to host memory, asynchronous mode) or written (synchronous);
    the write, then rank 0's index (checksums) and `on_complete(n)` run in the background. The next `save()`,
    `wait()` and `close()` wait for the pending one, so the end of a run and a crash flush it. Collective: every
    rank constructs it and calls `save()` together.
    """

    def __init__(
        self,
        run_dir: str,
        ctx: DistributedContext,
        async_save: bool = True,
        on_complete: Callable[[int], None] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.ctx = ctx
        self.async_save = async_save
        self.on_complete = on_complete
        self.process_group = checkpoint_process_group()
        self._pending: Future | None = None
        self._stager: Any = None
        self._finisher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-finish")
        self.completed: list[int] = []
        self._pending_n = 0
        # Bytes of checkpoint n's state (global tensor sizes), to say how much space a failed save needed.
        self._state_bytes: dict[int, int] = {}

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

    def save(
        self,
        n: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        ema: Any,
        trainer_state: dict[str, Any],
        scaler: Any = None,
    ) -> float:
        """Start (or, synchronous, do) checkpoint n; returns the seconds training was blocked. A full disk ends as
        one `DiskFullError` (here, or from the next `wait()` for an asynchronous save)."""
        self.wait()
        try:
            return self._save(n, model, optimizer, scheduler, ema, trainer_state, scaler)
        except BaseException as e:
            self._raise_if_disk_full(e, n)
            raise

    def _save(
        self,
        n: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        ema: Any,
        trainer_state: dict[str, Any],
        scaler: Any,
    ) -> float:
        import torch.distributed as dist
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import FileSystemWriter

        start = time.perf_counter()
        self._pending_n = n
        ckpt_dir = checkpoint_dir(self.run_dir, n)
        rngs = all_gather_objects(rng_state())
        if self.ctx.is_main:
            # A directory left by an interrupted save of the same number is replaced.
            storage.remove(ckpt_dir)
            os.makedirs(ckpt_dir)
            extra = {
                **trainer_state,
                "checkpoint": n,
                "world_size": self.ctx.world_size,
                "rng": rngs,
                "scheduler": scheduler.state_dict(),
                "ema_num_updates": ema.num_updates if ema is not None else None,
            }
            if scaler is not None:
                extra["grad_scaler"] = scaler.state_dict()
            save_file(extra, os.path.join(ckpt_dir, TRAINER_STATE_FILE))
        barrier()
        state = training_state_dict(model, optimizer, ema)
        self._state_bytes[n] = _tensor_bytes(state)
        writer = FileSystemWriter(ckpt_dir, thread_count=1)
        no_dist = not dist.is_initialized()
        info = {"checkpoint": n, "step": trainer_state.get("step"), "world_size": self.ctx.world_size}
        if self.async_save:
            if self._stager is not None and not _stager_reusable(self._stager):
                self._stager = None
            if self._stager is None:
                from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

                # One stager for the whole run: its host copy of this rank's shards is allocated once and reused
                # (pinned on GPU hosts for fast copies), so later saves block only for the copy itself.
                self._stager = DefaultStager(
                    StagingOptions(
                        use_pinned_memory=torch.cuda.is_available(),
                        use_shared_memory=False,
                        use_async_staging=False,
                        use_non_blocking_copy=False,
                    )
                )
            with _single_process_quietly():
                written = dcp.async_save(
                    state,
                    storage_writer=writer,
                    process_group=self.process_group,
                    async_stager=self._stager,
                    no_dist=no_dist,
                )
            self._pending = self._finisher.submit(self._finish, written, ckpt_dir, n, info)
        else:
            with _single_process_quietly():
                dcp.save(state, storage_writer=writer, process_group=self.process_group, no_dist=no_dist)
            done: Future = Future()
            done.set_result(None)
            self._pending = self._finisher.submit(self._finish, done, ckpt_dir, n, info)
            self.wait()
        return time.perf_counter() - start

    def _finish(self, written: Future, ckpt_dir: str, n: int, info: dict[str, Any]) -> None:
        # Every rank's future completes after its own files are written; rank 0's only after DCP gathered all
        # ranks' results and wrote .metadata, so its index covers every file of the checkpoint.
        written.result()
        if self.ctx.is_main:
            write_index(ckpt_dir, info)
            self.completed.append(n)
            if self.on_complete is not None:
                self.on_complete(n)

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
            if self._stager is not None:
                self._stager.close()
                self._stager = None


def save_checkpoint(
    run_dir: str,
    n: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    ema: Any,
    trainer_state: dict[str, Any],
    ctx: DistributedContext,
    scaler: Any = None,
) -> None:
    """Write checkpoint n synchronously and completely (index included). Collective: every rank calls it."""
    saver = CheckpointSaver(run_dir, ctx, async_save=False)
    try:
        saver.save(n, model, optimizer, scheduler, ema, trainer_state, scaler=scaler)
    finally:
        saver.close()
    barrier()


# ------------------------------------------------------------------------------------------- resuming


def resolve_resume_checkpoint(path: str, ctx: DistributedContext, warn: Callable[[str], None]) -> CheckpointRef:
    """`resolve_checkpoint` with checksums, on rank 0 only (one read of the files), shared with every rank; a
    failure raises the same `CheckpointError` on every rank."""
    result: CheckpointRef | str | None = None
    if ctx.is_main:
        try:
            result = resolve_checkpoint(path, verify=True, warn=warn)
        except CheckpointError as e:
            result = str(e)
    result = broadcast_object(result)
    if isinstance(result, str):
        raise CheckpointError(result)
    return result


def load_trainer_state(ref: CheckpointRef) -> dict[str, Any]:
    """The trainer state (step, data plan, scheduler, RNG of every rank ...) of a checkpoint directory."""
    if not ref.sharded:
        raise CheckpointError(
            f"{ref.path} is a consolidated weights file (an older layout, or an export): it holds no training state "
            "to resume; load its weights with --model.resume_weights_only True"
        )
    return load_file(ref.file(TRAINER_STATE_FILE))


def load_training_state(
    ref: CheckpointRef,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    ema: Any,
    ctx: DistributedContext,
    warn: Callable[[str], None] = warn_stderr,
    scaler: Any = None,
) -> dict[str, Any]:
    """Restore model, optimizer, scheduler, EMA and this rank's RNG from checkpoint `ref`; returns trainer state.

    Each rank reads only the chunks of its own shards; a checkpoint written by another number of ranks is
    resharded by DCP. Collective: every rank calls it.
    """
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    trainer = load_trainer_state(ref)
    metadata = read_metadata(ref.path)
    saved = {k: s for k, (s, _) in _saved_tensors(metadata, "model").items()}
    check_state_dict_matches(model, saved, ref.path)
    state = training_state_dict(model, optimizer, ema)
    if ema is not None and not _saved_tensors(metadata, "ema"):
        warn(f"{ref.path} holds no EMA weights: the EMA restarts from the current weights")
        del state["ema"]
    unsaved = drop_unsaved_optimizer_state(state["optimizer"], metadata)
    _dcp_load(state, ref.path, process_group=checkpoint_process_group())
    set_model_state_dict(model, state["model"])
    # Strict unless parameters without saved state were just left out on purpose (they stay without state).
    set_optimizer_state_dict(
        model, optimizer, state["optimizer"], options=StateDictOptions(strict=False) if unsaved else None
    )
    if ema is not None and "ema" in state:
        ema.num_updates = int(trainer.get("ema_num_updates") or 0)
    scheduler.load_state_dict(trainer["scheduler"])
    if scaler is not None and "grad_scaler" in trainer:
        scaler.load_state_dict(trainer["grad_scaler"])
    rngs = trainer.get("rng", [])
    if len(rngs) == ctx.world_size:
        set_rng_state(rngs[ctx.rank])
    else:
        warn(
            f"checkpoint was written by {len(rngs)} processes, this run has {ctx.world_size}: the weights, optimizer "
            "and EMA were resharded and the data continues at the next window; RNG states are not restored, so the "
            "continuation is not bitwise identical"
        )
    return trainer


def drop_unsaved_optimizer_state(optim_state: dict[str, Any], metadata: Any) -> list[str]:
    """Remove from `optim_state` (as `get_state_dict` builds it) the parameters the checkpoint holds no optimizer
    state for; returns their names.

    AdamW creates a parameter's state at its first gradient, so a parameter that never had one (e.g. a backbone's
    unused LM head) has none in the checkpoint, while `get_state_dict` on a fresh optimizer fills every parameter.
    Loading leaves such a parameter without state, exactly as in the run that saved it.
    """
    saved = set(metadata.state_dict_metadata)
    dropped = [
        name
        for name, entry in optim_state.get("state", {}).items()
        if not any(f"optimizer.state.{name}.{key}" in saved for key in entry)
    ]
    for name in dropped:
        del optim_state["state"][name]
    return dropped


def remove_incomplete_checkpoints(run_dir: str, warn: Callable[[str], None] = warn_stderr) -> list[str]:
    """Delete interrupted saves (checkpoint directories without a valid index) and temporary files of a local run
    dir; returns what was removed. Run on rank 0 before training starts."""
    removed = []
    if storage.is_s3(run_dir) or not os.path.isdir(checkpoints_dir(run_dir)):
        return removed
    for path in incomplete_checkpoints(run_dir):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    for rel in _file_sizes(checkpoints_dir(run_dir)):
        if _is_temporary(rel):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(checkpoints_dir(run_dir), rel))
            removed.append(os.path.join(checkpoints_dir(run_dir), rel))
    if removed:
        warn(f"removed {len(removed)} leftovers of interrupted saves: {', '.join(removed[:5])}")
    return removed


def prune_checkpoints(run_dir: str, limit: int | None) -> list[int]:
    """Delete all but the newest `limit` complete checkpoints (whole directories, or all consolidated files);
    returns the removed numbers."""
    if limit is None:
        return []
    sharded, legacy = _scan(run_dir)
    complete = {n for n, problem in sharded.items() if problem is None}
    numbers = sorted(complete | legacy)
    removed = numbers[:-limit] if len(numbers) > limit else []
    for n in removed:
        if n in complete:
            storage.remove(checkpoint_dir(run_dir, n))
        else:
            for kind in LEGACY_KINDS:
                storage.remove(checkpoint_file(run_dir, n, kind))
    return removed


# ------------------------------------------------------------------------------------------- export

_SAFETENSORS_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def write_safetensors_streaming(
    output: str,
    specs: dict[str, tuple[tuple[int, ...], torch.dtype]],
    load_batch: Callable[[list[str]], dict[str, torch.Tensor]],
    max_batch_bytes: int,
) -> int:
    """Write a .safetensors file whose header is known up front (from the checkpoint metadata), loading and writing
    the tensors a batch of at most `max_batch_bytes` at a time; returns the largest batch in bytes.

    safetensors' own writer needs every tensor in memory at once; the format (8-byte little-endian header length,
    JSON header with dtype, shape and byte offsets, then the raw little-endian bytes) allows streaming."""
    names = sorted(specs)
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    sizes = {}
    for name in names:
        shape, dtype = specs[name]
        if dtype not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"tensor {name} has dtype {dtype}, which safetensors export does not support")
        sizes[name] = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
        header[name] = {
            "dtype": _SAFETENSORS_DTYPES[dtype],
            "shape": list(shape),
            "data_offsets": [offset, offset + sizes[name]],
        }
        offset += sizes[name]
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    largest = 0
    with storage.atomic_local_path(output) as tmp, open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        batch: list[str] = []
        batch_bytes = 0
        for i, name in enumerate(names):
            batch.append(name)
            batch_bytes += sizes[name]
            if i + 1 < len(names) and batch_bytes + sizes[names[i + 1]] <= max_batch_bytes:
                continue
            tensors = load_batch(batch)
            for key in batch:
                t = tensors[key].contiguous()
                f.write(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
            largest = max(largest, batch_bytes)
            batch, batch_bytes = [], 0
    return largest


def export_weights(
    path: str,
    output: str | None = None,
    use_ema: bool = False,
    checkpoint: int | None = None,
    max_batch_bytes: int = 256 << 20,
) -> str:
    """Write a checkpoint's consolidated weights (or its EMA weights in place of the trainable ones) as one
    `.safetensors` file, streaming at most `max_batch_bytes` of tensors at a time (host memory stays far below the
    model size). `path`: a run dir (latest complete checkpoint, or `checkpoint`), a checkpoint dir or file.
    Default output: `<run>/model.safetensors` (`ema.safetensors` with `use_ema`)."""
    if checkpoint is not None:
        path = checkpoint_dir(path, checkpoint)
    ref = resolve_checkpoint(path, verify=True)
    if output is None:
        if ref.run_dir and not storage.is_s3(ref.run_dir) and ref.number >= 0:
            output = os.path.join(ref.run_dir, EXPORTED_EMA if use_ema else EXPORTED_MODEL)
        else:
            raise CheckpointError(f"give --output for {path} (a local .safetensors path)")
    if not output.endswith(".safetensors"):
        raise CheckpointError(f"--output {output!r} must end with .safetensors")
    with local_checkpoint(ref) as local:
        if not local.sharded:
            from safetensors.torch import save_file as save_safetensors

            state = read_checkpoint_weights(path, use_ema=use_ema, verify=False)
            # Tensors that share memory (tied embeddings) are stored once each, as safetensors requires.
            state = {k: v.detach().clone().contiguous() for k, v in state.items()}
            with storage.atomic_local_path(output) as tmp:
                save_safetensors(state, tmp)
            return output
        metadata = read_metadata(local.path)
        specs = _saved_tensors(metadata, "model")
        ema_specs = _saved_tensors(metadata, "ema") if use_ema else {}
        if use_ema and not ema_specs:
            raise CheckpointError(f"checkpoint {ref.path} holds no EMA weights (the run had ema.enabled=False)")

        def load_batch(keys: list[str]) -> dict[str, torch.Tensor]:
            model_keys = [k for k in keys if k not in ema_specs]
            out = {k: torch.empty(specs[k][0], dtype=specs[k][1]) for k in model_keys}
            if out:
                _dcp_load({"model": out}, local.path, no_dist=True)
            ema = {k: torch.empty(ema_specs[k][0], dtype=ema_specs[k][1]) for k in keys if k in ema_specs}
            if ema:
                _dcp_load({"ema": ema}, local.path, no_dist=True)
            out.update({k: v.to(specs[k][1]) for k, v in ema.items()})
            return out

        write_safetensors_streaming(output, specs, load_batch, max_batch_bytes)
    return output


def export_run_weights(run_dir: str, with_ema: bool, warn: Callable[[str], None] = warn_stderr) -> list[str]:
    """`model.safetensors` (and `ema.safetensors`) of a run's latest complete checkpoint, in the run dir."""
    ref = latest_checkpoint(run_dir, warn=warn)
    if ref is None:
        return []
    outputs = [export_weights(ref.path, os.path.join(run_dir, EXPORTED_MODEL))]
    if with_ema and has_ema(ref):
        outputs.append(export_weights(ref.path, os.path.join(run_dir, EXPORTED_EMA), use_ema=True))
    return outputs


def main(argv: list[str] | None = None) -> int:
    """`python -m vla_foundry.checkpoint export --run_dir RUN_OR_CHECKPOINT [--checkpoint N] [--output F] [--ema]`"""
    import argparse

    from vla_foundry.cli import add_bool_flag, add_run_dir_flag, run_dir_value

    parser = argparse.ArgumentParser(prog="python -m vla_foundry.checkpoint", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export", help="write consolidated weights as one .safetensors file (streaming)")
    add_run_dir_flag(export, "run dir (latest complete checkpoint), checkpoint_<n> dir or file; local or s3")
    export.add_argument("--checkpoint", type=int, default=None, help="checkpoint number n of the run (default latest)")
    export.add_argument("--output", default=None, help="a .safetensors file (default <run>/model.safetensors)")
    add_bool_flag(export, "--ema", "export the EMA weights (default <run>/ema.safetensors)")
    args = parser.parse_args(argv)
    path = run_dir_value(export, args)
    try:
        out = export_weights(path, args.output, use_ema=args.ema, checkpoint=args.checkpoint)
    except (CheckpointError, storage.StorageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
