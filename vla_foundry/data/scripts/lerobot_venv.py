"""A separate Python environment with the real `lerobot` library, to read this project's LeRobot datasets with it.

    python -m vla_foundry.data.scripts.lerobot_venv            # create (or reuse) it; prints its python

lerobot 0.6.1 needs Python >= 3.12 and pins torch < 2.12, while this project runs on Python 3.11 with a newer
torch, so the two cannot share one environment. This one is a uv venv under
~/.cache/vla_foundry/lerobot-venv-<version> (or $VLA_FOUNDRY_LEROBOT_VENV) holding lerobot, its dataset-reading
dependencies, and the same torch and torchvision releases as this project (overriding lerobot's torch pin), so uv
takes the CUDA libraries from its cache instead of downloading another torch stack. torchcodec is left out: it
needs FFmpeg's shared libraries, and without it lerobot decodes videos with PyAV, as it does wherever torchcodec
cannot load.

The Python interpreter is $VLA_FOUNDRY_LEROBOT_PYTHON, else the first Python >= 3.12 found on this machine (pyenv
versions, python3.12, python3.13), else the one uv provides. The environment is built under a file lock and marked
complete by a stamp file written last, so concurrent callers wait for one build and an interrupted build is
redone.
"""

from __future__ import annotations

import dataclasses
import fcntl
import glob
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

LEROBOT_VERSION = "0.6.1"
# lerobot[dataset] less torchcodec, at the releases this project was checked against.
DATASET_REQUIREMENTS = ("datasets==4.8.5", "pandas==2.3.3", "pyarrow==26.0.1", "av==15.1.0", "jsonlines==4.0.0")
STAMP = "vla_foundry-lerobot-venv.json"


def venv_dir() -> Path:
    """Where the environment lives: $VLA_FOUNDRY_LEROBOT_VENV, else ~/.cache/vla_foundry/lerobot-venv-<version>."""
    default = Path.home() / ".cache" / "vla_foundry" / f"lerobot-venv-{LEROBOT_VERSION}"
    return Path(os.environ.get("VLA_FOUNDRY_LEROBOT_VENV", default))


def requirements() -> list[str]:
    """What the environment installs: lerobot, its dataset readers, and this project's torch / torchvision."""
    return [f"lerobot=={LEROBOT_VERSION}", *DATASET_REQUIREMENTS]


def overrides() -> list[str]:
    """Pins that replace lerobot's torch range with the releases installed here (same CUDA wheels in uv's cache)."""
    pins = []
    for name in ("torch", "torchvision"):
        version = importlib.metadata.version(name).split("+")[0]
        pins.append(f"{name}=={version}")
    return pins


def _python_version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    major, minor = out.stdout.split()
    return int(major), int(minor)


def find_python() -> str:
    """A Python >= 3.12 interpreter for the environment (see the module docstring for the search order)."""
    explicit = os.environ.get("VLA_FOUNDRY_LEROBOT_PYTHON")
    if explicit:
        if (_python_version(explicit) or (0, 0)) < (3, 12):
            raise RuntimeError(f"VLA_FOUNDRY_LEROBOT_PYTHON={explicit} is not a Python >= 3.12 interpreter")
        return explicit
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(f"{pyenv_root}/versions/3.1[2-9]*/bin/python3"))
    candidates += [p for p in (shutil.which("python3.12"), shutil.which("python3.13")) if p]
    for candidate in candidates:
        if (_python_version(candidate) or (0, 0)) >= (3, 12):
            return candidate
    return "3.12"  # uv finds or provides one


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("uv is not on PATH; install it (pip install uv) to build the lerobot environment")
    return uv


def ensure_lerobot_venv(quiet: bool = True) -> Path:
    """The environment's python executable, building the environment first when it is missing or was built for
    other requirements."""
    root = venv_dir()
    python = root / "bin" / "python"
    wanted = {"requirements": requirements(), "overrides": overrides()}
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; later callers find it stamped
        stamp = root / STAMP
        if stamp.exists() and json.loads(stamp.read_text()) == wanted and python.exists():
            return python
        shutil.rmtree(root, ignore_errors=True)
        out = None if not quiet else subprocess.DEVNULL
        subprocess.run([_uv(), "venv", "--quiet", "--python", find_python(), str(root)], check=True, stdout=out)
        override_file = root / "overrides.txt"
        override_file.write_text("\n".join(wanted["overrides"]) + "\n")
        install = [_uv(), "pip", "install", "--python", str(python), "--override", str(override_file)]
        run = subprocess.run([*install, *wanted["requirements"]], stdout=out, stderr=subprocess.PIPE, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"installing lerobot into {root} failed:\n{run.stderr[-4000:]}")
        stamp.write_text(json.dumps(wanted))
    return python


def lerobot_env() -> dict[str, str]:
    """Environment variables for a process of the lerobot environment: offline, nothing from this project's venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env


@dataclasses.dataclass(frozen=True)
class LeRobotVenvParams:
    """`python -m vla_foundry.data.scripts.lerobot_venv` takes no settings: it builds (or finds) the environment."""


def main(argv: list[str] | None = None) -> int:
    from vla_foundry.cli import run_command

    return run_command(
        LeRobotVenvParams, _run, argv, prog="python -m vla_foundry.data.scripts.lerobot_venv", doc=__doc__
    )


def _run(params: LeRobotVenvParams) -> int:
    start = time.perf_counter()
    try:
        python = ensure_lerobot_venv(quiet=False)
    except (RuntimeError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"lerobot {LEROBOT_VERSION} environment ready in {time.perf_counter() - start:.1f} s: {python}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
