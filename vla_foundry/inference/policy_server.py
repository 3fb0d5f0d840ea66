"""A small HTTP policy server for robot clients, its client, and a latency report.

Start / stop:

    python -m vla_foundry.inference.policy_server serve --run_dir experiments/my_vla --port 8765
    # Ctrl-C (SIGINT) or SIGTERM stops it; in Python: `with PolicyServer(policy, port=0) as server: ...`

Client:

    client = PolicyClient("http://127.0.0.1:8765")
    actions = client.predict(observation)           # same observation dict as Policy.predict
    print(client.latency_report(observation, n=50))

    python -m vla_foundry.inference.policy_server latency --url http://127.0.0.1:8765 --n 50

Endpoints: GET /health, GET /metadata (cameras, fields, chunk length), GET /latency (server-side inference times),
POST /predict. Requests and replies use one binary message format: `VLAF`, a little-endian uint32 header length,
a JSON header, then the raw bytes of every array. The header holds the message tree with arrays replaced by
`{"__array__": i}` and, per array, its dtype, shape and byte offset — no pickle, so any language can speak it.

Limits: `--max_request_mb` (413 from the declared Content-Length, before reading), `--workers` connections at once
and `--max_queue` waiting (beyond: 503, never a reset), `--timeout_s` per read (408), a listen backlog of 128,
loopback only unless `--allow_remote`. Malformed requests get 400 naming the field.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ipaddress
import json
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import numpy as np

MAGIC = b"VLAF"
CONTENT_TYPE = "application/x-vla-foundry"
_ALLOWED_DTYPES = {"uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "bool"}
# A few 1080p RGB frames per camera (1920 x 1080 x 3 = 6.2 MB each) fit; anything larger is refused unread.
DEFAULT_MAX_REQUEST_MB = 64.0
_READ_CHUNK = 1 << 20
# Inference times kept for GET /latency: the most recent ones, so memory stays bounded however long it serves.
_LATENCY_HISTORY = 10_000


class WireFormatError(ValueError):
    """A message that is not in the policy server's format."""


def encode_message(obj: Any) -> bytearray:
    """Nested dicts / lists / scalars / strings with numpy arrays -> bytes (each array copied once, into place)."""
    arrays: list[dict] = []
    chunks: list[np.ndarray] = []
    offset = 0

    def walk(x: Any) -> Any:
        nonlocal offset
        if isinstance(x, np.ndarray):
            data = np.ascontiguousarray(x)
            if data.dtype.name not in _ALLOWED_DTYPES:
                raise WireFormatError(f"array dtype {data.dtype} cannot be sent; use one of {sorted(_ALLOWED_DTYPES)}")
            arrays.append(
                {"dtype": data.dtype.name, "shape": list(data.shape), "offset": offset, "nbytes": data.nbytes}
            )
            chunks.append(data)
            offset += data.nbytes
            return {"__array__": len(arrays) - 1}
        if isinstance(x, dict):
            return {str(k): walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        if isinstance(x, np.generic):
            return x.item()
        return x

    tree = walk(obj)
    header = json.dumps({"tree": tree, "arrays": arrays}).encode("utf-8")
    start = 8 + len(header)
    out = bytearray(start + offset)
    out[:8] = MAGIC + struct.pack("<I", len(header))
    out[8:start] = header
    for spec, data in zip(arrays, chunks):
        target = np.frombuffer(out, dtype=np.uint8, count=spec["nbytes"], offset=start + spec["offset"])
        target[:] = data.reshape(-1).view(np.uint8)
    return out


def decode_message(data: bytes | bytearray) -> Any:
    """The inverse of `encode_message`. Arrays are views into `data` (no copy): writable when it is a bytearray.

    Anything malformed (a header that is not the expected JSON, array specs that do not fit the body, an array
    reference to no array) raises WireFormatError naming what is wrong; nothing is allocated beyond `data`."""
    if len(data) < 8 or data[:4] != MAGIC:
        raise WireFormatError("not a policy-server message (it must start with b'VLAF' and a header length)")
    (n,) = struct.unpack("<I", data[4:8])
    if 8 + n > len(data):
        raise WireFormatError(f"message header of {n} bytes runs past the {len(data)}-byte message")
    try:
        header = json.loads(data[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WireFormatError(f"message header is not JSON: {e}") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays", []), list):
        raise WireFormatError("message header must be a JSON object with 'tree' and a list 'arrays'")
    body = memoryview(data)[8 + n :]
    arrays = [_decode_array(spec, body, i) for i, spec in enumerate(header.get("arrays", []))]

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            if set(x) == {"__array__"}:
                index = x["__array__"]
                if not isinstance(index, int) or not 0 <= index < len(arrays):
                    raise WireFormatError(f"array reference {index!r} names no array of the message")
                return arrays[index]
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk(header.get("tree"))


def _decode_array(spec: Any, body: memoryview, i: int) -> np.ndarray:
    """One array of a message from its header spec {dtype, shape, offset, nbytes}, checked against the body."""
    if not isinstance(spec, dict) or spec.get("dtype") not in _ALLOWED_DTYPES:
        dtype = spec.get("dtype") if isinstance(spec, dict) else spec
        raise WireFormatError(f"array {i}: dtype {dtype!r} is not allowed; use one of {sorted(_ALLOWED_DTYPES)}")
    shape, offset, nbytes = spec.get("shape"), spec.get("offset"), spec.get("nbytes")
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise WireFormatError(f"array {i}: shape {shape!r} must be a list of non-negative integers")
    if not (isinstance(offset, int) and isinstance(nbytes, int) and offset >= 0 and nbytes >= 0):
        raise WireFormatError(f"array {i}: offset {offset!r} and nbytes {nbytes!r} must be non-negative integers")
    itemsize = np.dtype(spec["dtype"]).itemsize
    if int(np.prod(shape, dtype=np.int64)) * itemsize != nbytes:
        raise WireFormatError(f"array {i}: shape {shape} of {spec['dtype']} does not hold {nbytes} bytes")
    if offset + nbytes > len(body):
        raise WireFormatError(f"array {i} of {nbytes} bytes at offset {offset} runs past the message")
    return np.frombuffer(body[offset : offset + nbytes], dtype=spec["dtype"]).reshape(shape)


def read_body(stream: Any, length: int, deadline: float | None = None) -> bytearray:
    """Read exactly `length` bytes into one writable buffer (decoded arrays then view it without copies).

    The caller bounds `length` first; with `deadline` (a `time.monotonic()` value) a client trickling bytes cannot
    hold the reader past it."""
    buf = bytearray(length)
    view = memoryview(buf)
    got = 0
    while got < length:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"request body not received in time: {got} of {length} bytes")
        n = stream.readinto(view[got : got + _READ_CHUNK])
        if not n:
            raise WireFormatError(f"message cut short: {got} of {length} bytes received")
        got += n
    return buf


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """count, mean and percentiles in milliseconds."""
    if not seconds:
        return {"count": 0}
    ms = np.asarray(seconds) * 1000.0
    return {
        "count": int(ms.size),
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


class RequestError(ValueError):
    """A request the server refuses (answered 400); the message names the field."""


def parse_predict_request(request: Any) -> tuple[Any, int | None]:
    """(observation(s), seed) of a decoded /predict request; RequestError naming the field otherwise. The
    observation's own fields are checked by `Policy.check_observation`."""
    if not isinstance(request, dict):
        raise RequestError(f"request must be an object with fields observation and seed; got {type(request).__name__}")
    unknown = sorted(set(request) - {"observation", "seed"})
    if unknown:
        raise RequestError(f"request has unknown field(s) {unknown}; valid fields: observation, seed")
    if "observation" not in request:
        raise RequestError("request lacks field 'observation' (an observation dict, or a list of them)")
    observation = request["observation"]
    if not isinstance(observation, (dict, list)) or (isinstance(observation, list) and not observation):
        raise RequestError("field 'observation' must be an observation dict or a non-empty list of them")
    seed = request.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise RequestError(f"field 'seed' must be null or an integer in [0, 2**63); got {type(seed).__name__} {seed!r}")
    return observation, seed


def _error_response(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 reply that closes the connection, its body in the wire format (clients decode it)."""
    body = encode_message({"error": message})
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n"
        "Retry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + bytes(body)


def _lingering_close(sock: socket.socket, seconds: float, max_bytes: int = 64 << 20) -> None:
    """Half-close and discard what the client still sends (bounded in time and bytes) before closing: closing a
    socket with unread data makes the kernel send a reset, and the client would lose the reply it was sent."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + seconds
        drained = 0
        buf = bytearray(1 << 16)
        while drained < max_bytes and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            n = sock.recv_into(buf)
            if not n:
                break
            drained += n


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or "localhost") can only be reached from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _PooledHTTPServer(HTTPServer):
    """An HTTP server whose connections are handled by a fixed pool of `workers` threads. Up to `max_queue` more
    connections wait for a worker; beyond that a connection is answered 503 at once. The listen backlog is
    `backlog`, so a burst of clients is queued by the kernel instead of being reset."""

    def __init__(self, address: tuple[str, int], handler: type, workers: int, max_queue: int, backlog: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        # Read by server_activate's listen() during HTTPServer.__init__.
        self.request_queue_size = backlog
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="policy-server-worker")
        self._slots = threading.BoundedSemaphore(workers + max_queue)
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._reject_busy(request)
            return
        self._pool.submit(self._handle, request, client_address)

    def _handle(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def _reject_busy(self, sock: socket.socket) -> None:
        # On the accept thread: the reply is small (it fits the socket buffer), the drain is short and bounded.
        with contextlib.suppress(OSError):
            sock.settimeout(1.0)
            sock.sendall(_error_response(503, "Service Unavailable", "server busy: every worker and queue slot is "
                                         "taken; retry shortly"))  # fmt: skip
            _lingering_close(sock, 0.2, max_bytes=1 << 20)
        with contextlib.suppress(OSError):
            sock.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client vanishing mid-reply is the client's business; anything else is printed as usual.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class PolicyServer:
    """Serves `policy.predict` over HTTP on a background thread. One prediction runs at a time (the model and its
    noise generator are shared); `workers` connections are read and answered concurrently, `max_queue` more wait,
    and any beyond get 503. A request larger than `max_request_mb` is refused with 413 before its body is read; a
    client that sends nothing for `timeout_s` (or takes longer than that for its body) is disconnected (408).
    Only a loopback address is served unless `allow_remote` (the server has no authentication)."""

    def __init__(
        self,
        policy: Any,
        host: str = "127.0.0.1",
        port: int = 8765,
        workers: int = 4,
        max_queue: int = 32,
        max_request_mb: float = DEFAULT_MAX_REQUEST_MB,
        timeout_s: float = 10.0,
        backlog: int = 128,
        allow_remote: bool = False,
    ) -> None:
        if workers < 1 or max_queue < 0 or backlog < 1:
            raise ValueError(f"workers={workers} and backlog={backlog} must be >= 1, max_queue={max_queue} >= 0")
        if not max_request_mb > 0 or not timeout_s > 0:
            raise ValueError(f"max_request_mb={max_request_mb} and timeout_s={timeout_s} must be > 0")
        if not is_loopback(host):
            if not allow_remote:
                raise ValueError(
                    f"host {host!r} is not a loopback address: the policy server has no authentication; pass "
                    "--allow_remote (allow_remote=True) to serve other machines"
                )
            print(
                f"warning: the policy server listens on {host}: anyone who can reach this port can query the policy",
                file=sys.stderr,
                flush=True,
            )
        self.policy = policy
        self.max_request_bytes = int(max_request_mb * 2**20)
        self.timeout_s = timeout_s
        self._lock = threading.Lock()  # one prediction at a time
        self._stats_lock = threading.Lock()  # guards inference_seconds
        self.inference_seconds: collections.deque[float] = collections.deque(maxlen=_LATENCY_HISTORY)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Socket timeout of every read and write (StreamRequestHandler applies it).
            timeout = timeout_s

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the client's
                # delayed ACK hold the body back for tens of milliseconds.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._linger = False

            def finish(self) -> None:
                super().finish()
                if self._linger:
                    _lingering_close(self.connection, min(server.timeout_s, 2.0))

            def log_message(self, format: str, *args: Any) -> None:  # quiet: a robot calls many times a second
                return

            def _reply(self, status: int, payload: Any, close: bool = False) -> None:
                body = encode_message(payload)
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                if close:
                    # The request body (if any) stays unread: the connection cannot carry another request.
                    self.send_header("Connection", "close")
                    self.close_connection = True
                    self._linger = True
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/health":
                    self._reply(200, {"status": "ok"})
                elif self.path == "/metadata":
                    self._reply(200, server.policy.metadata())
                elif self.path == "/latency":
                    with server._stats_lock:  # a consistent copy while workers append
                        seconds = list(server.inference_seconds)
                    self._reply(200, latency_summary(seconds))
                else:
                    self._reply(404, {"error": f"unknown path {self.path}; GET /health, /metadata, /latency"})

            def _body_length(self) -> int | None:
                """The declared body size, checked before anything is read; None after an error reply."""
                if self.headers.get("Transfer-Encoding"):
                    self._reply(411, {"error": "chunked requests are not accepted; send a Content-Length"}, True)
                    return None
                declared = self.headers.get("Content-Length")
                if declared is None:
                    self._reply(411, {"error": "Content-Length header required"}, True)
                    return None
                try:
                    length = int(declared)
                except ValueError:
                    length = -1
                if length < 0:
                    self._reply(400, {"error": f"Content-Length {declared[:40]!r} is not a byte count"}, True)
                    return None
                if length > server.max_request_bytes:
                    limit = server.max_request_bytes / 2**20
                    self._reply(
                        413,
                        {"error": f"request of {length} bytes exceeds the server's limit of {limit:g} MB "
                                  "(--max_request_mb); send fewer or smaller frames"},
                        True,
                    )  # fmt: skip
                    return None
                return length

            def do_POST(self) -> None:
                if self.path != "/predict":
                    self._reply(404, {"error": f"unknown path {self.path}; POST /predict"}, close=True)
                    return
                length = self._body_length()
                if length is None:
                    return
                try:
                    body = read_body(self.rfile, length, deadline=time.monotonic() + server.timeout_s)
                except (TimeoutError, WireFormatError) as e:
                    self._reply(408 if isinstance(e, TimeoutError) else 400, {"error": str(e)}, close=True)
                    return
                try:
                    observation, seed = parse_predict_request(decode_message(body))
                    start = time.perf_counter()
                    with server._lock:
                        actions = server.policy.predict(observation, seed=seed)
                    elapsed = time.perf_counter() - start
                    with server._stats_lock:
                        server.inference_seconds.append(elapsed)
                    self._reply(200, {"actions": np.asarray(actions, dtype=np.float64), "inference_ms": elapsed * 1e3})
                except (ValueError, KeyError, TypeError) as e:
                    self._reply(400, {"error": f"{e.__class__.__name__}: {e}"})
                except Exception as e:  # the server keeps serving; the client sees what failed
                    self._reply(500, {"error": f"{e.__class__.__name__}: {e}"})

        self.httpd = _PooledHTTPServer((host, port), Handler, workers, max_queue, backlog)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> PolicyServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="policy-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class PolicyServerError(RuntimeError):
    """The server answered with an error (the message is the server's)."""


class PolicyClient:
    """Talks to a `PolicyServer`: the same observations and actions as `Policy`, over HTTP."""

    def __init__(self, url: str, timeout_s: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, path: str, payload: Any | None = None) -> Any:
        data = encode_message(payload) if payload is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method="POST" if data is not None else "GET",
            headers={"Content-Type": CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return decode_message(read_body(response, int(response.headers.get("Content-Length", 0))))
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                message = decode_message(body).get("error", body[:200])
            except WireFormatError:
                message = body[:200]
            raise PolicyServerError(f"{self.url}{path} answered {e.code}: {message}") from None

    def health(self) -> dict:
        return self._call("/health")

    def metadata(self) -> dict:
        return self._call("/metadata")

    def server_latency(self) -> dict:
        return self._call("/latency")

    def predict(self, observation: dict | list[dict], seed: int | None = None) -> np.ndarray:
        """Denormalised actions, as `Policy.predict` returns them."""
        return self._call("/predict", {"observation": observation, "seed": seed})["actions"]

    def example_observation(self, image_hw: tuple[int, int] = (480, 640), instruction: str = "test") -> dict:
        """A random observation shaped as the served policy expects (for smoke tests and latency reports)."""
        meta = self.metadata()
        rng = np.random.default_rng(0)
        n = len(meta["image_indices"])
        images = {
            cam: [rng.integers(0, 256, (*image_hw, 3), dtype=np.uint8) for _ in range(n)]
            for cam in meta["camera_names"]
        }
        rows = meta["proprioception_rows"]
        proprio = {name: np.zeros((rows, dim)) for name, dim in meta["proprioception_fields"].items()}
        return {"images": images, "proprioception": proprio, "instruction": instruction}

    def latency_report(self, observation: dict | None = None, n: int = 20, warmup: int = 2) -> dict:
        """Round-trip and server-side inference latency over `n` requests (after `warmup` untimed ones)."""
        observation = observation if observation is not None else self.example_observation()
        round_trips, inference = [], []
        for i in range(warmup + n):
            start = time.perf_counter()
            reply = self._call("/predict", {"observation": observation, "seed": i})
            if i >= warmup:
                round_trips.append(time.perf_counter() - start)
                inference.append(reply["inference_ms"] / 1e3)
        return {"round_trip": latency_summary(round_trips), "inference": latency_summary(inference)}


def format_latency_report(report: dict) -> str:
    """`PolicyClient.latency_report` as two aligned lines (round trip, server-side inference)."""
    lines = []
    for name in ("round_trip", "inference"):
        r = report[name]
        lines.append(
            f"{name:>10}: n={r['count']} mean {r['mean_ms']:.1f} ms | p50 {r['p50_ms']:.1f} | p90 {r['p90_ms']:.1f} | "
            f"p99 {r['p99_ms']:.1f} | max {r['max_ms']:.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vla_foundry.inference.policy_server", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a diffusion-policy run until Ctrl-C / SIGTERM")
    serve.add_argument("--run_dir", required=True, help="run directory (local or s3://) or checkpoint file")
    serve.add_argument("--checkpoint", default=None, help="checkpoint number (default: the latest)")
    serve.add_argument("--no_ema", action="store_true", help="use the raw weights even when EMA weights were saved")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback unless --allow_remote)")
    serve.add_argument("--allow_remote", action="store_true", help="allow a non-loopback --host (no authentication)")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--workers", type=int, default=4, help="connections handled at once")
    serve.add_argument("--max_queue", type=int, default=32, help="connections waiting for a worker; beyond: 503")
    serve.add_argument(
        "--max_request_mb", type=float, default=DEFAULT_MAX_REQUEST_MB, help="larger requests are refused (413)"
    )
    serve.add_argument("--timeout_s", type=float, default=10.0, help="per-connection read timeout (seconds)")
    serve.add_argument("--device", default="cpu")
    serve.add_argument("--seed", type=int, default=0)
    latency = sub.add_parser("latency", help="measure round-trip latency against a running server")
    latency.add_argument("--url", default="http://127.0.0.1:8765")
    latency.add_argument("--n", type=int, default=20)
    args = parser.parse_args(argv)

    if args.command == "latency":
        print(format_latency_report(PolicyClient(args.url).latency_report(n=args.n)))
        return 0

    if not (is_loopback(args.host) or args.allow_remote):  # checked before the (slow) policy load
        print(f"error: --host {args.host} is not a loopback address: pass --allow_remote to serve other machines "
              "(the server has no authentication)", file=sys.stderr)  # fmt: skip
        return 2
    import signal

    from vla_foundry.inference.policy import Policy
    from vla_foundry.params.base_params import ConfigError

    try:
        policy = Policy.from_run(
            args.run_dir, args.checkpoint, use_ema=not args.no_ema, device=args.device, seed=args.seed
        )
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        server = PolicyServer(
            policy,
            args.host,
            args.port,
            workers=args.workers,
            max_queue=args.max_queue,
            max_request_mb=args.max_request_mb,
            timeout_s=args.timeout_s,
            allow_remote=args.allow_remote,
        ).start()
    except (ValueError, OSError) as e:
        print(f"error: cannot serve on {args.host}:{args.port}: {e}", file=sys.stderr)
        return 2
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print(f"serving {policy.run.checkpoint} (EMA: {policy.run.used_ema}) at {server.url}; Ctrl-C to stop", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    server.stop()
    print("policy server stopped", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
