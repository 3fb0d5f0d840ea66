"""Fixtures shared by the whole suite: offline settings, a moto S3 server on loopback, preset paths."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PRESETS = REPO_ROOT / "config_presets"

# Nothing in the suite may reach the internet: hubs are offline, wandb is off.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

# What .ci/run installs on Debian/Ubuntu for headless rendering (EGL with Mesa's software rasteriser).
SIM_SYSTEM_PACKAGES = "libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri"
EGL_VENDOR_DIRS = ("/usr/share/glvnd/egl_vendor.d", "/etc/glvnd/egl_vendor.d")


def headless_gl_problem(
    library: str = "libEGL.so.1", vendor_dirs: tuple[str, ...] = EGL_VENDOR_DIRS, platform: str = sys.platform
) -> str | None:
    """One line saying what the simulator tests lack to render with MUJOCO_GL=egl on Linux, or None: the EGL
    library, or any EGL vendor (Mesa's or a GPU driver's) for it to load."""
    if platform != "linux" or os.environ.get("MUJOCO_GL", "egl") != "egl":
        return None
    import ctypes

    fix = f"on Debian/Ubuntu: sudo apt-get install {SIM_SYSTEM_PACKAGES}"
    try:
        ctypes.CDLL(library)
    except OSError:
        return f"the simulator tests render with EGL and {library} is not installed; {fix}"
    if not any(os.path.isdir(d) and any(n.endswith(".json") for n in os.listdir(d)) for d in vendor_dirs):
        return f"the simulator tests render with EGL and no EGL vendor (Mesa or a GPU driver) is installed; {fix}"
    return None


@pytest.fixture(scope="session")
def headless_gl() -> None:
    """Fails the simulator tests with one line naming the missing system packages, before a simulator starts."""
    problem = headless_gl_problem()
    if problem:
        pytest.fail(problem, pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 for the session; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def stoppable_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, subprocess.Popen]]:
    """A moto S3 server in a process of its own on 127.0.0.1 (so a test can SIGSTOP it: it still accepts
    connections, and never answers), with a bucket `runs`; boto3 is pointed at it. Yields (endpoint, process)."""
    import signal
    import sys
    import time

    import boto3

    port = _free_port()
    moto_server = os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen(
        [moto_server, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in (("AWS_ENDPOINT_URL", endpoint), ("AWS_ACCESS_KEY_ID", "testing"),
                        ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):  # fmt: skip
        monkeypatch.setenv(name, value)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="runs")
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        yield endpoint, proc
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point boto3 at the moto server through the standard environment variables; yields the endpoint."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("VLA_FOUNDRY_S3_BACKOFF_S", "0.01")
    return s3_server


@pytest.fixture
def s3_bucket(s3_env: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty bucket on the moto server; yields `s3://<bucket>`."""
    import boto3

    name = "test-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40].strip("-")
    client = boto3.client("s3", endpoint_url=s3_env)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if name in existing:
        for obj in client.list_objects_v2(Bucket=name).get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])
    else:
        client.create_bucket(Bucket=name)
    return f"s3://{name}"


def dry_run_lines(script: Path, args: list[str], env: dict[str, str], unset: tuple[str, ...] = ()) -> list[list[str]]:
    """The commands an example script prints under DRY_RUN=1 (one argv each), with `env` added to this process's
    environment minus the variables in `unset` (so a caller's own SOURCE or RUN does not leak in)."""
    import shlex
    import subprocess

    base = {k: v for k, v in os.environ.items() if k not in unset}
    proc = subprocess.run(
        ["bash", str(script), *args], env={**base, "DRY_RUN": "1", **env}, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return [shlex.split(line) for line in proc.stdout.splitlines()]


def tiny_vla_stream_args(root: Path, save_path: Path, name: str) -> list[str]:
    """Training flags of the tiny VLA streamed from the LeRobot root `root` on two processes: 2 windows of 16
    samples, per-process batch 4, global batch 8, 32x32 frames, one Ray Data worker."""
    return [
        "--model", f"include {PRESETS / 'models' / 'vla_diffusion_tiny.yaml'}",
        "--hparams", f"include {PRESETS / 'hparams' / 'cpu_tiny.yaml'}",
        "--data", f"include {PRESETS / 'data' / 'tiny_robotics_lerobot.yaml'}",
        "--data.dataset_manifest", f"[{root}]",
        "--data.dataset_modality", "[lerobot]",
        "--data.language_instruction_types", "[original]",
        "--data.streaming", f"include {PRESETS / 'preprocessing' / 'lerobot_1past_14future.yaml'}",
        "--data.streaming.future_lowdim_steps", "4",
        "--data.streaming.max_future_padding", "4",
        "--data.streaming.image_size", "[32, 32]",
        "--data.ray_num_workers", "1",
        "--hparams.per_gpu_batch_size", "4",
        "--hparams.global_batch_size", "8",
        "--total_train_samples", "32",
        "--num_checkpoints", "2",
        "--log_every_n_steps", "1",
        "--wandb", "False",
        "--save_path", str(save_path),
        "--name", name,
    ]  # fmt: skip
