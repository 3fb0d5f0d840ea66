"""A full disk as one line: which directory, what was being written, how much space it needs and what is free.

A write that fails with ENOSPC surfaces in many shapes: a plain `OSError`, torch's zip writer turning it into
`RuntimeError: [enforce fail at inline_container.cc...] unexpected pos`, or DCP's `CheckpointException` holding
each rank's failure. `find_disk_full` digs the ENOSPC out of any of them; `DiskFullError` is the one-line error
the run ends with instead of a traceback.
"""

from __future__ import annotations

import errno
import os
import shutil


class DiskFullError(OSError):
    """No space left on the device holding the run dir; the message names the directory and the space needed."""


def find_disk_full(error: BaseException) -> OSError | None:
    """The ENOSPC `OSError` behind `error` (its causes, contexts, DCP's per-rank failures), or None."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, DiskFullError):
            return e
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return e
        if "No space left on device" in str(e) and not hasattr(e, "failures"):
            # Some writers (torch's C++ file writer) keep only the text of the OS error.
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)
        # torch.distributed.checkpoint's CheckpointException: {rank: (exception, traceback summary)}.
        failures = getattr(e, "failures", None)
        if isinstance(failures, dict):
            for failure in failures.values():
                inner = failure[0] if isinstance(failure, tuple) else failure
                if isinstance(inner, BaseException):
                    todo.append(inner)
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
    return None


def megabytes(num_bytes: float) -> str:
    return f"{num_bytes / 1e6:.1f} MB"


def free_bytes(path: str) -> int | None:
    """Free bytes on the file system holding `path` (its nearest existing parent), None when unknown."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def disk_full_message(run_dir: str, writing: str, needed_bytes: int | None, resume_hint: str) -> str:
    """ "no space left on device in <run_dir> while writing <what> (it needs about X MB; Y MB free): <what to do>"."""
    sizes = []
    if needed_bytes:
        sizes.append(f"it needs about {megabytes(needed_bytes)}")
    free = free_bytes(run_dir)
    if free is not None:
        sizes.append(f"{megabytes(free)} free there now")
    shown = f" ({'; '.join(sizes)})" if sizes else ""
    return f"no space left on device in {run_dir} while writing {writing}{shown}: {resume_hint}"
