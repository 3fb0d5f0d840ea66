"""Checkpoints: save and resume a run through one `Checkpointer`; read, verify and export what it wrote.

Checkpoint n of a run is one directory, whatever backend wrote it:

  <run_dir>/checkpoints/checkpoint_<n>/
    ...                 the backend's files: model, optimizer and EMA tensors (DCP, the default: each rank's own
                        shards `__<rank>_0.distcp` and the global layout `.metadata`)
    trainer_state.pt    step, samples seen, data plan state, scheduler, grad scaler, EMA update count, RNG state of
                        every rank, world size, wandb run id (tensors and plain values only)
    index.json          written LAST: the backend's name and every file's size and sha256. A checkpoint is
                        complete only when its index exists and every file matches it.

`n` counts checkpoint intervals (1, 2, ...). The modules, one idea each:

  layout       names and paths (the one checkpoint-name rule), `CheckpointRef`, `CheckpointError`
  integrity    the index: write, check sizes, verify checksums
  scan         the checkpoints of a run dir, THE latest complete one, any user-given path resolved
  checkpointer `Checkpointer` (the interface the trainer uses) and the backend registry
  dcp          the default backend (torch.distributed.checkpoint, asynchronous)
  state        model fit checks, RNG states
  files        weights-only .pt / .safetensors files
  remote       s3 checkpoints copied locally
  legacy       the older consolidated `checkpoint_<n>.pt` layout (weights only)
  weights      weights for inference in one process (`load_model_checkpoint`, `read_model_weights`)
  resume       which checkpoint a resume continues from
  prune        keeping the newest N, removing interrupted saves
  export       streaming consolidated `.safetensors` (`python -m vla_foundry.checkpoint export`, see `cli`)

Every failure to read a checkpoint is one `CheckpointError` naming the file and what to do.
"""

from vla_foundry.checkpoint.checkpointer import (
    Checkpointer,
    backend_of,
    checkpoint_backend,
    checkpoint_backends,
    load_trainer_state,
    register_checkpoint_backend,
)
from vla_foundry.checkpoint.dcp import DCPCheckpointer, read_metadata
from vla_foundry.checkpoint.export import export_run_weights, export_weights, write_safetensors_streaming
from vla_foundry.checkpoint.files import load_file, save_file
from vla_foundry.checkpoint.integrity import verify_checkpoint
from vla_foundry.checkpoint.layout import (
    EXPORTED_EMA,
    EXPORTED_MODEL,
    INDEX_FILE,
    TRAINER_STATE_FILE,
    CheckpointError,
    CheckpointRef,
    checkpoint_dir,
    checkpoint_file,
    checkpoint_number,
)
from vla_foundry.checkpoint.prune import prune_checkpoints, remove_incomplete_checkpoints
from vla_foundry.checkpoint.remote import fetch_checkpoint, local_checkpoint
from vla_foundry.checkpoint.resume import resolve_resume_checkpoint
from vla_foundry.checkpoint.scan import latest_checkpoint, list_checkpoints, resolve_checkpoint
from vla_foundry.checkpoint.weights import (
    has_ema,
    load_model_checkpoint,
    read_checkpoint_weights,
    read_model_weights,
    weights_source,
)

__all__ = [
    "EXPORTED_EMA",
    "EXPORTED_MODEL",
    "INDEX_FILE",
    "TRAINER_STATE_FILE",
    "CheckpointError",
    "CheckpointRef",
    "Checkpointer",
    "DCPCheckpointer",
    "backend_of",
    "checkpoint_backend",
    "checkpoint_backends",
    "checkpoint_dir",
    "checkpoint_file",
    "checkpoint_number",
    "export_run_weights",
    "export_weights",
    "fetch_checkpoint",
    "has_ema",
    "latest_checkpoint",
    "list_checkpoints",
    "load_file",
    "load_model_checkpoint",
    "load_trainer_state",
    "local_checkpoint",
    "prune_checkpoints",
    "read_checkpoint_weights",
    "read_metadata",
    "read_model_weights",
    "register_checkpoint_backend",
    "remove_incomplete_checkpoints",
    "resolve_checkpoint",
    "resolve_resume_checkpoint",
    "save_file",
    "verify_checkpoint",
    "weights_source",
    "write_safetensors_streaming",
]
