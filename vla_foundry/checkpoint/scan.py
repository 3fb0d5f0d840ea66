"""Which checkpoints a run dir holds: `list_checkpoints`, THE latest complete one (`latest_checkpoint`), and
`resolve_checkpoint` for any path a user gives (run dir, checkpoints dir, checkpoint dir, weights file)."""

from __future__ import annotations

from collections.abc import Callable

from vla_foundry import storage
from vla_foundry.checkpoint.integrity import index_problem, verify_checkpoint
from vla_foundry.checkpoint.layout import (
    EXPORTED_MODEL,
    CheckpointError,
    CheckpointRef,
    checkpoint_dir,
    checkpoint_file,
    checkpoint_number,
    checkpoints_dir,
    file_sizes,
    warn_stderr,
)


def scan(run_dir: str) -> tuple[dict[int, str | None], set[int]]:
    """({n: problem or None} of checkpoint directories, {n} of complete consolidated (older) checkpoints)."""
    sizes = file_sizes(checkpoints_dir(run_dir))
    per_dir: dict[int, dict[str, int]] = {}
    top = set()
    for rel, size in sizes.items():
        head, _, rest = rel.partition("/")
        named = checkpoint_number(head)
        if named is not None and named[1] and rest:
            per_dir.setdefault(named[0], {})[rest] = size
        elif not rest:
            top.add(head)
    sharded = {n: index_problem(checkpoint_dir(run_dir, n), files) for n, files in per_dir.items()}
    legacy = {
        named[0]
        for f in top
        if (named := checkpoint_number(f)) is not None and not named[1] and f"trainer_state_{named[0]}.pt" in top
    }
    return sharded, legacy


def list_checkpoints(run_dir: str, complete_only: bool = True) -> list[int]:
    """Checkpoint numbers of a run dir (local or s3), ascending. Complete: a checkpoint directory whose index
    matches its files, or an older consolidated checkpoint with its trainer state."""
    sharded, legacy = scan(run_dir)
    numbers = {n for n, problem in sharded.items() if problem is None or not complete_only} | legacy
    if not complete_only:
        top = {storage.basename(f) for f in storage.list_files(checkpoints_dir(run_dir), recursive=False)}
        numbers |= {named[0] for f in top if (named := checkpoint_number(f)) is not None and not named[1]}
    return sorted(numbers)


def incomplete_checkpoints(run_dir: str) -> list[str]:
    """Checkpoint directories that are not complete (a save that was interrupted), oldest first."""
    sharded, _ = scan(run_dir)
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
    sharded, legacy = scan(run_dir)
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
    named = checkpoint_number(name)
    if named is not None and named[1]:
        sizes = file_sizes(path)
        if not sizes:
            raise CheckpointError(f"checkpoint not found: {path}")
        problem = index_problem(path, sizes)
        if problem:
            raise CheckpointError(f"checkpoint {problem}; give an earlier checkpoint or the run dir")
        ref = CheckpointRef(run_of, named[0], path)
        if verify:
            verify_checkpoint(ref)
        return ref
    if named is not None:
        if not storage.exists(path):
            as_dir = storage.join(parent, f"checkpoint_{named[0]}")
            hint = f" (checkpoints are directories now: give {as_dir})" if file_sizes(as_dir) else ""
            raise CheckpointError(f"checkpoint not found: {path}{hint}")
        return CheckpointRef(run_of, named[0], path, sharded=False)
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
        if not storage.exists(path) and not file_sizes(path):
            raise CheckpointError(
                f"checkpoint path not found: {path} (give a run dir, its checkpoints/ dir or a checkpoint_<n> dir)"
            )
        raise CheckpointError(f"no complete checkpoint under {path} (no checkpoints/checkpoint_<n>/ with its index)")
    return ref
