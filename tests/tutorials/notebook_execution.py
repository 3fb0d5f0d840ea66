"""Execute a tutorial notebook the way a user runs it: a fresh python3 kernel of this environment, started in the
notebook's own folder (where `jupyter lab` and `jupyter nbconvert --execute` start it), nothing added to its
PYTHONPATH."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def execute_notebook(path: Path, env: dict[str, str] | None = None, timeout_s: int = 600) -> Any:
    """Run every cell of the notebook at `path` in order and return the executed notebook (outputs filled in).

    `env` is added to this process's environment for the kernel. The kernel's working directory is the notebook's
    folder, as under Jupyter. A cell that raises fails the call (nbclient's CellExecutionError, naming the cell and
    the traceback).
    """
    import nbformat
    from nbclient import NotebookClient

    kernel_env = {**os.environ, **(env or {})}
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout_s, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute(env=kernel_env)
    return nb


def code_outputs(nb: Any) -> list[dict]:
    """Every output of every code cell, in order."""
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


def output_text(nb: Any) -> str:
    """The text a reader sees: stream output and plain-text results of every code cell, joined."""
    parts = []
    for o in code_outputs(nb):
        if o.get("output_type") == "stream":
            parts.append(o.get("text", ""))
        else:
            parts.append(o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)
