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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

MAGIC = b"VLAF"
CONTENT_TYPE = "application/x-vla-foundry"
_ALLOWED_DTYPES = {"uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "bool"}


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
    """The inverse of `encode_message`. Arrays are views into `data` (no copy): writable when it is a bytearray."""
    if len(data) < 8 or data[:4] != MAGIC:
        raise WireFormatError("not a policy-server message (it must start with b'VLAF' and a header length)")
    (n,) = struct.unpack("<I", data[4:8])
    try:
        header = json.loads(data[8 : 8 + n])
    except json.JSONDecodeError as e:
        raise WireFormatError(f"message header is not JSON: {e}") from None
    body = memoryview(data)[8 + n :]
    arrays = []
    for spec in header.get("arrays", []):
        if spec["dtype"] not in _ALLOWED_DTYPES:
            raise WireFormatError(f"array dtype {spec['dtype']!r} is not allowed")
        end = spec["offset"] + spec["nbytes"]
        if end > len(body):
            raise WireFormatError(f"array of {spec['nbytes']} bytes at offset {spec['offset']} runs past the message")
        arrays.append(np.frombuffer(body[spec["offset"] : end], dtype=spec["dtype"]).reshape(spec["shape"]))

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            if set(x) == {"__array__"}:
                return arrays[x["__array__"]]
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk(header.get("tree"))


def read_body(stream: Any, length: int) -> bytearray:
    """Read exactly `length` bytes into one writable buffer (decoded arrays then view it without copies)."""
    buf = bytearray(length)
    view = memoryview(buf)
    got = 0
    while got < length:
        n = stream.readinto(view[got:])
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


class PolicyServer:
    """Serves `policy.predict` over HTTP on a background thread. One prediction runs at a time (the model and its
    noise generator are shared); requests queue."""

    def __init__(self, policy: Any, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self.inference_seconds: list[float] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the client's
                # delayed ACK hold the body back for tens of milliseconds.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: a robot calls many times a second
                return

            def _reply(self, status: int, payload: Any) -> None:
                body = encode_message(payload)
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/health":
                    self._reply(200, {"status": "ok"})
                elif self.path == "/metadata":
                    self._reply(200, server.policy.metadata())
                elif self.path == "/latency":
                    self._reply(200, latency_summary(list(server.inference_seconds)))
                else:
                    self._reply(404, {"error": f"unknown path {self.path}; GET /health, /metadata, /latency"})

            def do_POST(self) -> None:
                if self.path != "/predict":
                    self._reply(404, {"error": f"unknown path {self.path}; POST /predict"})
                    return
                try:
                    request = decode_message(read_body(self.rfile, int(self.headers.get("Content-Length", 0))))
                    observation = request["observation"]
                    start = time.perf_counter()
                    with server._lock:
                        actions = server.policy.predict(observation, seed=request.get("seed"))
                    elapsed = time.perf_counter() - start
                    server.inference_seconds.append(elapsed)
                    self._reply(200, {"actions": np.asarray(actions, dtype=np.float64), "inference_ms": elapsed * 1e3})
                except (ValueError, KeyError, TypeError) as e:
                    self._reply(400, {"error": f"{e.__class__.__name__}: {e}"})
                except Exception as e:  # the server keeps serving; the client sees what failed
                    self._reply(500, {"error": f"{e.__class__.__name__}: {e}"})

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
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
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument("--device", default="cpu")
    serve.add_argument("--seed", type=int, default=0)
    latency = sub.add_parser("latency", help="measure round-trip latency against a running server")
    latency.add_argument("--url", default="http://127.0.0.1:8765")
    latency.add_argument("--n", type=int, default=20)
    args = parser.parse_args(argv)

    if args.command == "latency":
        print(format_latency_report(PolicyClient(args.url).latency_report(n=args.n)))
        return 0

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
    server = PolicyServer(policy, args.host, args.port).start()
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
