"""The environment of a Ray that this process starts on its own machine (preprocessing, a LeRobot stream, the Ray
Train launcher). Set before `import ray`: some of it is read at import time."""

from __future__ import annotations

import os


def prepare_local_ray_environment() -> None:
    """Local workers share this interpreter's environment, so Ray need not rebuild it under `uv run`; token
    authentication stays on, as Ray's default for a local cluster, but stated explicitly, so Ray does not log a
    warning about choosing it on every start. A value the user set for either is kept."""
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "token")
