"""The policy server under slow, silent and oversized-header clients (Slowloris and its relatives). Every attack is
bounded in connections and seconds and only reaches 127.0.0.1."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from tests.inference.conftest import observation
from vla_foundry.inference import Policy, PolicyClient, PolicyServer
from vla_foundry.inference.policy_server import MAGIC


@pytest.fixture(scope="module")
def policy(policy_run) -> Policy:
    return Policy.from_run(policy_run)


def read_reply(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection (or `limit_s` passes, or it resets the
    connection), and the seconds that took."""
    start = time.monotonic()
    sock.settimeout(limit_s)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except OSError:  # a timeout or a reset: the reply so far is what the assertions see
        pass
    return b"".join(chunks), time.monotonic() - start


class Trickler:
    """`n` connections that each send `data` one byte every `interval` seconds (Slowloris), for at most
    `limit_s` seconds, on a background thread; `alive()` counts those the server has not closed."""

    def __init__(self, port: int, n: int, data: bytes, interval: float, limit_s: float) -> None:
        self.socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
        self.data, self.interval, self.limit_s = data, interval, limit_s
        self.closed: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        for i in range(len(self.data)):
            if self._stop.is_set() or time.monotonic() - start > self.limit_s:
                return
            for k, sock in enumerate(self.socks):
                if k not in self.closed:
                    try:
                        sock.sendall(self.data[i : i + 1])
                    except OSError:
                        self.closed.add(k)
            self._stop.wait(self.interval)

    def alive(self) -> int:
        return len(self.socks) - len(self.closed)

    def __enter__(self) -> Trickler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.socks:
            sock.close()


def endless_header() -> bytes:
    return b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 4096


def test_fifty_slow_header_senders_do_not_keep_other_clients_waiting(policy):
    obs = observation(np.random.default_rng(0))
    server = PolicyServer(policy, port=0, workers=4, max_queue=32, timeout_s=6)
    with server, Trickler(server.port, 50, endless_header(), interval=0.2, limit_s=6) as attack:
        time.sleep(0.5)  # every attacking connection is open and sending
        client = PolicyClient(server.url, timeout_s=30)
        for seed in range(3):
            start = time.monotonic()
            actions = client.predict(obs, seed=seed)
            elapsed = time.monotonic() - start
            assert actions.shape == (5, 4)
            assert elapsed < 2.0, f"a prediction waited {elapsed:.1f} s behind slow senders"
        assert attack.alive() == 50  # the attack was still under way while the client was answered


@pytest.mark.parametrize(
    ("head", "what"),
    [
        pytest.param(endless_header(), b"request headers not received within 1 s", id="headers"),
        pytest.param(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n" + b"\0" * 4096,
            b"request not received within 1 s",
            id="body",
        ),
    ],
)
def test_a_request_trickling_in_is_answered_408_at_its_deadline(policy, head, what):
    # One byte every 0.1 s never lets a single read time out; the whole request has 1 s.
    with PolicyServer(policy, port=0, timeout_s=1) as server:
        sock = socket.create_connection(("127.0.0.1", server.port))
        header_end = head.find(b"\r\n\r\n") + 4 if what.startswith(b"request not") else 0
        sock.sendall(head[:header_end])
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(read_reply(sock, 10)[0]), daemon=True)
        start = time.monotonic()
        reader.start()
        for i in range(header_end, min(len(head), header_end + 50)):
            if not reader.is_alive():
                break
            try:
                sock.sendall(head[i : i + 1])
            except OSError:
                break
            time.sleep(0.1)
        reader.join(timeout=10)
        elapsed = time.monotonic() - start
        sock.close()
    assert received and received[0].startswith(b"HTTP/1.1 408"), received[:1]
    assert what in received[0]
    assert elapsed < 3.0, f"the trickling client was held {elapsed:.1f} s (deadline 1 s)"


@pytest.mark.parametrize(
    "sent", [pytest.param(b"", id="nothing"), pytest.param(b"GET /health HTTP/1.1\r\nHo", id="half_the_headers")]
)
def test_a_silent_client_gets_408_not_a_bare_close(policy, sent):
    server = PolicyServer(policy, port=0, timeout_s=0.5)
    with server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(sent)
        reply, elapsed = read_reply(sock, 10)
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout"), reply[:200]
    assert b"request headers not received within 0.5 s" in reply
    assert elapsed < 3.0


def test_a_kept_alive_connection_answers_one_request_after_another(policy):
    server = PolicyServer(policy, port=0)
    with server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)  # HTTP/1.1: keep-alive
        sockets = []
        for path in ("/health", "/latency", "/health"):
            conn.request("GET", path)
            reply = conn.getresponse()
            assert reply.status == 200 and reply.getheader("Connection") == "keep-alive"
            reply.read()
            sockets.append(conn.sock)
        conn.close()
    assert sockets[0] is not None and all(sock is sockets[0] for sock in sockets)


def test_an_idle_kept_alive_connection_is_closed_without_a_reply(policy):
    server = PolicyServer(policy, port=0, timeout_s=0.5)
    with server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        rest, elapsed = read_reply(sock, 10)  # no second request: the connection idles past --timeout_s
    assert first.startswith(b"HTTP/1.1 200 OK") and first.endswith(b'{"status": "ok"}')
    assert rest == b"" and elapsed < 3.0


def binary_request(header: bytes) -> bytes:
    """A POST /predict whose VLAF message has `header` as its JSON header and no arrays."""
    body = MAGIC + struct.pack("<I", len(header)) + header
    head = "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-vla-foundry\r\nAccept: application/json"
    return f"{head}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body


@pytest.fixture(scope="module")
def roomy_server(policy) -> Iterator[PolicyServer]:
    with PolicyServer(policy, port=0, max_request_mb=16) as server:
        yield server


def exchange(server: PolicyServer, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request)
        return read_reply(sock, 30)[0]


def test_a_message_header_over_one_mib_gets_400_before_it_is_parsed(roomy_server):
    header = b'{"tree": {"observation": [' + b"[]," * 700_000 + b'0]}, "arrays": []}'  # 2.1 MB of header
    reply = exchange(roomy_server, binary_request(header))
    assert reply.startswith(b"HTTP/1.1 400"), reply[:300]
    assert f"message header of {len(header):,} bytes exceeds the 1,048,576-byte limit".encode() in reply


def test_a_message_header_of_a_hundred_thousand_lists_gets_400(roomy_server):
    header = b'{"tree": {"observation": [' + b"[]," * 100_000 + b'0]}, "arrays": []}'  # 300 kB
    reply = exchange(roomy_server, binary_request(header))
    assert reply.startswith(b"HTTP/1.1 400"), reply[:300]
    assert b"message header holds more than 50,000 JSON values" in reply


def test_a_message_header_nested_900_deep_gets_400_not_500(roomy_server):
    header = b'{"tree": {"observation": ' + b"[" * 900 + b"]" * 900 + b'}, "arrays": []}'
    reply = exchange(roomy_server, binary_request(header))
    assert reply.startswith(b"HTTP/1.1 400"), reply[:300]
    assert b"message header nests 902 lists/objects deep; at most 32 are accepted" in reply
