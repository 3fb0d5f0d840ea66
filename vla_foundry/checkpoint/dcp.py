"""The default backend: torch.distributed.checkpoint (DCP), each rank writing and reading only its own shards.

    checkpoint_<n>/__<rank>_0.distcp   each rank's shards of {"model", "optimizer", "ema"} (no gather onto one rank)
    checkpoint_<n>/.metadata           DCP's global layout (shapes, dtypes, which file holds which chunk)

A checkpoint written by N ranks loads on M ranks (DCP reshards); one process reads the weights without a process
group. Saves are asynchronous by default: training blocks only while the shards are copied to host memory.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import torch
from torch import nn

from vla_foundry.checkpoint.checkpointer import Checkpointer, register_checkpoint_backend
from vla_foundry.checkpoint.layout import CheckpointError
from vla_foundry.distributed import checkpoint_process_group

METADATA_FILE = ".metadata"


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

            with open(os.path.join(ckpt_dir, METADATA_FILE), "rb") as f:
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
            f"{os.path.join(ckpt_dir, METADATA_FILE)} is missing: the checkpoint is incomplete"
        ) from None
    except Exception as e:
        raise CheckpointError(
            f"{os.path.join(ckpt_dir, METADATA_FILE)} is corrupt or refused ({type(e).__name__}: {str(e)[:160]}); "
            "use an earlier checkpoint"
        ) from None


def tensors_in(metadata: Any, group: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """{key: (global shape, dtype)} of the tensors DCP saved under `group` ("model" or "ema")."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    prefix = f"{group}."
    return {
        k[len(prefix) :]: (tuple(v.size), v.properties.dtype)
        for k, v in metadata.state_dict_metadata.items()
        if k.startswith(prefix) and isinstance(v, TensorStorageMetadata)
    }


@contextlib.contextmanager
def _single_process_quietly() -> Iterator[None]:
    """DCP warns on every call without a process group (also from its writer thread) that it assumes one process:
    here that is the intent, so that one warning is filtered."""
    import warnings

    warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
    yield


def dcp_load(state: dict[str, Any], ckpt_dir: str, process_group: Any = None, no_dist: bool = False) -> None:
    """DCP's load into `state`'s tensors in place; any failure is one `CheckpointError` naming the checkpoint."""
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


def training_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer, ema: Any) -> dict[str, Any]:
    """{"model", "optimizer", "ema"} as each rank's shards (DTensors under FSDP2, plain tensors otherwise), keyed by
    the unwrapped model's parameter names. No gather: this is what DCP saves and loads in place."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optim_state}
    if ema is not None:
        state["ema"] = ema.shards()
    return state


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


def _stager_reusable(stager: Any) -> bool:
    """Whether a DefaultStager can stage again. torch 2.11's clears its copy table after every stage (`close()`),
    so its next stage of any state dict holding a class object fails with `KeyError: <class 'type'>`; such a
    stager is made anew for each save."""
    table = getattr(getattr(stager, "_state_dict_stager", None), "_deepcopy_dispatch", None)
    return not isinstance(table, dict) or type in table


@register_checkpoint_backend("dcp")
class DCPCheckpointer(Checkpointer):
    """Sharded checkpoints with torch.distributed.checkpoint, written asynchronously from a staged host copy."""

    metadata_files = (METADATA_FILE,)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.process_group = checkpoint_process_group()
        self._stager: Any = None

    def write_state(self, ckpt_dir: str, n: int) -> Future | None:
        import torch.distributed as dist
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import FileSystemWriter

        state = training_state_dict(self.model, self.optimizer, self.ema)
        writer = FileSystemWriter(ckpt_dir, thread_count=1)
        no_dist = not dist.is_initialized()
        if not self.async_save:
            # Collective: returns once rank 0 gathered every rank's result and wrote .metadata.
            with _single_process_quietly():
                dcp.save(state, storage_writer=writer, process_group=self.process_group, no_dist=no_dist)
            return None
        with _single_process_quietly():
            # Rank 0's future completes only after DCP gathered every rank's result and wrote .metadata.
            return dcp.async_save(
                state,
                storage_writer=writer,
                process_group=self.process_group,
                async_stager=self._staging(),
                no_dist=no_dist,
            )

    def _staging(self) -> Any:
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
        return self._stager

    def close_backend(self) -> None:
        if self._stager is not None:
            self._stager.close()
            self._stager = None

    def read_state(self, ckpt_dir: str, with_ema: bool) -> None:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        # Each rank reads only the chunks of its own shards; another number of ranks is resharded by DCP.
        state = training_state_dict(self.model, self.optimizer, self.ema if with_ema else None)
        unsaved = drop_unsaved_optimizer_state(state["optimizer"], read_metadata(ckpt_dir))
        dcp_load(state, ckpt_dir, process_group=self.process_group)
        set_model_state_dict(self.model, state["model"])
        # Strict unless parameters without saved state were just left out on purpose (they stay without state).
        set_optimizer_state_dict(
            self.model,
            self.optimizer,
            state["optimizer"],
            options=StateDictOptions(strict=False) if unsaved else None,
        )

    @classmethod
    def saved_tensors(cls, ckpt_dir: str, group: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return tensors_in(read_metadata(ckpt_dir), group)

    @classmethod
    def read_tensors(cls, ckpt_dir: str, group: str, into: dict[str, torch.Tensor]) -> None:
        # DCP reads straight into the given tensors: no second copy of the weights.
        dcp_load({group: into}, ckpt_dir, no_dist=True)
