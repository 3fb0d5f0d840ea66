"""The policy server under hostile and heavy input: sizes refused before reading, bounded memory, every client of a
burst answered, 503 (never a reset) beyond the queue, malformed fields -> 400 naming the field. Loopback only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from tests.conftest import REPO_ROOT, _free_port
from tests.inference.conftest import observation
from vla_foundry.inference import Policy, PolicyClient, PolicyServer
from vla_foundry.inference.policy_server import PolicyServerError, encode_message


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB, read from /proc (VmRSS is in kB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def http_exchange(port: int, request: bytes, timeout: float = 30.0) -> bytes:
    """Send raw bytes to the server and return everything it answers until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class ServerProcess:
    """The `serve` command as its own process (its memory is measured on its own)."""

    def __init__(self, run_dir: str, *flags: str) -> None:
        self.port = _free_port()
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        cmd = [sys.executable, "-m", "vla_foundry.inference.policy_server", "serve", "--run_dir", run_dir]
        self.proc = subprocess.Popen(
            [*cmd, "--port", str(self.port), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.client = PolicyClient(f"http://127.0.0.1:{self.port}", timeout_s=60)
        for _ in range(600):
            assert self.proc.poll() is None, self.proc.stdout.read()
            try:
                self.client.health()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("policy server did not start within 60 s")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # no server outlives the test run
            out, _ = self.proc.communicate()
            raise AssertionError(f"the server did not exit within 60 s of SIGTERM; its output:\n{out}") from None
        return out


@pytest.fixture(scope="module")
def server_process(policy_run) -> Iterator[ServerProcess]:
    server = ServerProcess(policy_run, "--max_request_mb", "1", "--workers", "4", "--max_queue", "64")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def policy(policy_run) -> Policy:
    return Policy.from_run(policy_run)


@pytest.fixture(scope="module")
def served(policy) -> Iterator[PolicyClient]:
    with PolicyServer(policy, port=0, max_request_mb=1) as server:
        yield PolicyClient(server.url)


def test_a_huge_declared_content_length_gets_413_without_allocating(server_process):
    # 104 bytes on the wire declaring 1 GiB: the body is never read or allocated.
    before = rss_mb(server_process.proc.pid)
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {2**30}\r\n\r\n".encode()
    reply = http_exchange(server_process.port, head)
    time.sleep(0.5)  # an allocation, if any, would have happened by now
    grown = rss_mb(server_process.proc.pid) - before
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"exceeds the server's limit of 1 MB" in reply
    assert grown < 50, f"server RSS grew by {grown:.0f} MB"


def test_a_body_over_the_limit_is_answered_413_not_reset(served):
    obs = observation(np.random.default_rng(0), size=(600, 800))  # 4 frames of 1.4 MB > 1 MB
    with pytest.raises(PolicyServerError, match=r"answered 413: request of \d+ bytes exceeds .* 1 MB"):
        served.predict(obs)
    assert served.health() == {"status": "ok"}


def test_fifty_concurrent_clients_are_all_answered(server_process):
    obs = observation(np.random.default_rng(1))
    results: dict[int, object] = {}

    def call(i: int) -> None:
        try:
            results[i] = PolicyClient(server_process.client.url, timeout_s=120).predict(obs, seed=i)
        except Exception as e:  # recorded and asserted on below
            results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    errors = {i: r for i, r in results.items() if not isinstance(r, np.ndarray)}
    assert len(results) == 50 and not errors, errors
    assert all(r.shape == (5, 4) for r in results.values())


def test_a_request_beyond_workers_and_queue_gets_503_not_a_reset(policy):
    obs = observation(np.random.default_rng(0))
    answered: list[np.ndarray] = []
    with PolicyServer(policy, port=0, workers=1, max_queue=0, timeout_s=5) as server:
        server._lock.acquire()  # the only worker's prediction waits on the lock: worker taken, queue empty
        try:
            first = threading.Thread(target=lambda: answered.append(PolicyClient(server.url).predict(obs, seed=0)))
            first.start()
            time.sleep(0.5)
            with pytest.raises(PolicyServerError, match="answered 503: server busy: 1 requests are being answered"):
                PolicyClient(server.url, timeout_s=10).health()
        finally:
            server._lock.release()
        first.join(timeout=30)
    assert len(answered) == 1 and answered[0].shape == (5, 4)


def test_a_connection_beyond_max_connections_gets_503_not_a_reset(policy):
    with PolicyServer(policy, port=0, max_connections=2, timeout_s=5) as server:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
        try:
            for sock in idle:
                sock.sendall(b"GET /health HTTP/1.1\r\n")  # headers started, never finished
            time.sleep(0.3)
            with pytest.raises(PolicyServerError, match=r"answered 503: server busy: 2 connections are open"):
                PolicyClient(server.url, timeout_s=10).health()
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.3)
        assert PolicyClient(server.url).health() == {"status": "ok"}


def test_a_client_that_stalls_mid_body_is_disconnected_with_408(policy):
    with PolicyServer(policy, port=0, timeout_s=0.5) as server:
        reply = http_exchange(server.port, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nVLAF")
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]


def _observation_with(change) -> dict:
    obs = observation(np.random.default_rng(0))
    change(obs)
    return obs


@pytest.mark.parametrize(
    ("request_body", "field"),
    [
        pytest.param(
            {
                "observation": _observation_with(
                    lambda o: o["proprioception"]["observation.state"].__setitem__((1, 2), np.nan)
                )
            },
            r"\['proprioception'\]\['observation.state'\] holds 1 NaN/Inf",
            id="nan_proprioception",
        ),
        pytest.param(
            {
                "observation": _observation_with(
                    lambda o: o["proprioception"].__setitem__("observation.state", np.full((2, 4), np.inf))
                )
            },
            r"\['proprioception'\]\['observation.state'\] holds 8 NaN/Inf",
            id="inf_proprioception",
        ),
        pytest.param(
            {
                "observation": _observation_with(
                    lambda o: o["images"]["front"].__setitem__(0, np.zeros((0, 0, 3), np.uint8))
                )
            },
            r"\['images'\]\['front'\] is uint8 of shape \(0, 0, 3\); expected uint8 \(H, W, 3\) with H, W > 0",
            id="zero_size_image",
        ),
        pytest.param(
            {
                "observation": _observation_with(
                    lambda o: o["images"]["wrist"].__setitem__(1, np.full((48, 64, 3), np.nan, np.float32))
                )
            },
            r"\['images'\]\['wrist'\] is float32 of shape \(48, 64, 3\); expected uint8",
            id="float_nan_image",
        ),
        pytest.param(
            {"observation": _observation_with(lambda o: o["proprioception"].__setitem__("observation.state", "fast"))},
            r"\['proprioception'\]\['observation.state'\] has dtype <U4; expected real numbers",
            id="string_proprioception",
        ),
        pytest.param(
            {"observation": _observation_with(lambda o: o["images"].__setitem__("front", 5))},
            r"\['images'\]\['front'\] is a int; expected a list of uint8",
            id="int_frames",
        ),
        pytest.param(
            {"observation": _observation_with(lambda o: o.__setitem__("instruction", 3))},
            r"\['instruction'\] must be a string",
            id="int_instruction",
        ),
        pytest.param(
            {"observation": observation(np.random.default_rng(0)), "seed": "7"},
            r"field 'seed' must be null or an integer .*got str '7'",
            id="string_seed",
        ),
        pytest.param(
            {"observation": observation(np.random.default_rng(0)), "sed": 1},
            r"unknown field\(s\) \['sed'\]",
            id="unknown_field",
        ),
        pytest.param({"seed": 1}, r"lacks field 'observation'", id="no_observation"),
        pytest.param({"observation": []}, r"field 'observation' must be .* non-empty list", id="empty_batch"),
    ],
)
def test_a_malformed_request_is_answered_400_naming_the_field(served, request_body, field):
    with pytest.raises(PolicyServerError, match=r"answered 400: .*" + field):
        served._call("/predict", request_body)


def test_a_malformed_message_is_answered_400(served):
    port = int(served.url.rsplit(":", 1)[1])
    body = bytes(encode_message({"observation": np.zeros(4, np.uint8)}))
    body = body.replace(b'"nbytes": 4', b'"nbytes": 9')  # the header lies about the array size
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    reply = http_exchange(port, head + body)
    assert reply.startswith(b"HTTP/1.1 400") and b"does not hold 9 bytes" in reply, reply[:300]


def test_health_answers_while_serving(served):
    assert served.health() == {"status": "ok"}


def test_a_non_loopback_host_needs_allow_remote(policy, capsys):
    from vla_foundry.inference.policy_server import main

    with pytest.raises(ValueError, match="not a loopback address.*--allow_remote"):
        PolicyServer(policy, host="0.0.0.0", port=0)
    assert main(["serve", "--run_dir", "unused", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: --host 0.0.0.0 is not a loopback address: pass --allow_remote") and err.count("\n") == 1
    )


def _mixed_requests(server: ServerProcess, n: int) -> None:
    """n requests cycling through a prediction, an invalid field, an oversize declaration and a health check."""
    obs = observation(np.random.default_rng(2))
    bad = {"observation": obs, "seed": "x"}
    oversize = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {2**31}\r\n\r\n".encode()
    for i in range(n):
        kind = i % 4
        if kind == 0:
            assert server.client.predict(obs, seed=i).shape == (5, 4)
        elif kind == 1:
            with pytest.raises(PolicyServerError, match="answered 400"):
                server.client._call("/predict", bad)
        elif kind == 2:
            assert http_exchange(server.port, oversize).startswith(b"HTTP/1.1 413")
        else:
            assert server.client.health() == {"status": "ok"}


def _assert_memory_bounded(server: ServerProcess, n: int) -> None:
    _mixed_requests(server, 40)  # warm-up: allocator pools and caches reach their working size
    before = rss_mb(server.proc.pid)
    _mixed_requests(server, n)
    grown = rss_mb(server.proc.pid) - before
    assert grown < 50, f"server RSS grew by {grown:.0f} MB over {n} requests"


def test_memory_stays_bounded_over_many_requests(server_process):
    _assert_memory_bounded(server_process, 120)


@pytest.mark.soak
def test_memory_stays_bounded_over_a_thousand_requests(server_process):
    _assert_memory_bounded(server_process, 1000)
