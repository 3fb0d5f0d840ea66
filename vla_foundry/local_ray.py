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


class _DropStateApiWarnings:
    """A logging filter dropping Ray Train's "Failed to query Ray Train Controller actor state" warnings."""

    def filter(self, record: object) -> bool:
        return "Failed to query Ray Train Controller" not in str(getattr(record, "msg", ""))


def quiet_ray_train_worker() -> None:
    """Worker-process setup hook of a local Ray Train run. Ray Train's placement-group cleaner asks Ray's state API,
    every few seconds, whether the controller is alive; a local Ray started without the dashboard has no state
    API, so each ask logged a warning on the driver (about ten per run). The cleaner exists to free the placement
    group of a controller that died; a local Ray ends with the launcher's process, which frees it anyway. Only that
    warning is dropped."""
    import logging

    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").addFilter(
        _DropStateApiWarnings()
    )
