"""A small HTTP policy server for robot clients, its client, and a latency report.

Start / stop:

    python -m vla_foundry.inference.policy_server serve --run_dir experiments/my_vla --port 8765
    # Ctrl-C (SIGINT) or SIGTERM stops it; in Python: `with PolicyServer(policy, port=0) as server: ...`

Client:

    client = PolicyClient("http://127.0.0.1:8765")
    actions = client.predict(observation)           # same observation dict as Policy.predict
    print(client.latency_report(observation, n=50))

    python -m vla_foundry.inference.policy_server latency --policy_url http://127.0.0.1:8765 --n 50

Endpoints: GET /health, GET /metadata (cameras, fields, chunk length), GET /latency (server-side inference times),
POST /predict. Two wire formats (docs/formats.md §7), chosen per request: binary `application/x-vla-foundry`
(`VLAF`, a little-endian uint32 header length, a JSON header, then the raw bytes of every array; what
`PolicyClient` speaks) and plain JSON `application/json` (arrays as nested lists, camera frames also as base64
PNG/JPEG), so `curl` or any robot stack can call the server. A request body is read as its Content-Type says; the
reply is in the format `Accept` names, else in the request's format, else (a GET without either) JSON.

Limits: `--max_request_mb` (413 from the declared Content-Length, before reading), `--timeout_s` for a whole
request, headers and body (408), `--workers` requests answered at once and `--max_queue` waiting, `--max_connections`
open (beyond: 503, never a reset); a slow client holds a connection, never a worker. Loopback only unless
`--allow_remote`. Malformed requests get 400 naming the field.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import ipaddress
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from email.message import Message
from typing import Any

import numpy as np

from vla_foundry.inference.http_server import BoundedHTTPServer, Reply, Request
from vla_foundry.inference.wire import (
    CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    MAGIC,
    TooLargeError,
    WireFormatError,
    decode_json_request,
    decode_message,
    encode_json,
    encode_message,
)

__all__ = [
    "CONTENT_TYPE",
    "JSON_CONTENT_TYPE",
    "PolicyClient",
    "PolicyServer",
    "PolicyServerError",
    "WireFormatError",
    "decode_message",
    "encode_message",
]

# A few 1080p RGB frames per camera (1920 x 1080 x 3 = 6.2 MB each) fit; anything larger is refused unread.
DEFAULT_MAX_REQUEST_MB = 64.0
_READ_CHUNK = 1 << 20
# Inference times kept for GET /latency: the most recent ones, so memory stays bounded however long it serves.
_LATENCY_HISTORY = 10_000
_DEFAULT_URL = "http://127.0.0.1:8765"


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


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or "localhost") can only be reached from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reply_format(headers: Message | None) -> str:
    """ "json" or "binary": the format `Accept` names first, else the request's Content-Type, else JSON."""
    if headers is None:
        return "json"
    accept = (headers.get("Accept") or "").lower()
    positions = {fmt: accept.find(mime) for fmt, mime in (("binary", CONTENT_TYPE), ("json", JSON_CONTENT_TYPE))}
    named = {fmt: pos for fmt, pos in positions.items() if pos >= 0}
    if named:
        return min(named, key=named.get)
    return "binary" if _media_type(headers) == CONTENT_TYPE else "json"


def _media_type(headers: Message) -> str:
    return (headers.get("Content-Type") or "").split(";")[0].strip().lower()


def make_reply(status: int, payload: Any, fmt: str) -> Reply:
    """`payload` as a reply in `fmt` ("json" or "binary")."""
    if fmt == "json":
        return Reply(status, encode_json(payload), JSON_CONTENT_TYPE)
    return Reply(status, encode_message(payload), CONTENT_TYPE)


def error_reply(status: int, message: str, headers: Message | None) -> Reply:
    """{"error": message} in the format the client asked for (JSON when its headers did not arrive)."""
    return make_reply(status, {"error": message}, reply_format(headers))


class PolicyServer:
    """Serves `policy.predict` over HTTP on a background thread. One prediction runs at a time (the model and its
    noise generator are shared). Requests are received by one thread and answered by `workers` threads once they
    have arrived in full; `max_queue` more complete requests wait, and beyond `max_connections` open connections (or
    `workers + max_queue` complete requests) a client gets 503. A request larger than `max_request_mb` is refused
    with 413 before its body is read; a request (headers and body) not received within `timeout_s` is answered 408.
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
        max_connections: int = 256,
    ) -> None:
        if workers < 1 or max_queue < 0 or backlog < 1 or max_connections < 1:
            raise ValueError(
                f"workers={workers}, backlog={backlog} and max_connections={max_connections} must be >= 1, "
                f"max_queue={max_queue} >= 0"
            )
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
        self.httpd = BoundedHTTPServer(
            (host, port),
            self._answer,
            error_reply,
            workers=workers,
            max_queue=max_queue,
            max_connections=max_connections,
            max_request_bytes=self.max_request_bytes,
            timeout_s=timeout_s,
            backlog=backlog,
        )
        self._thread: threading.Thread | None = None

    def _answer(self, request: Request) -> Reply:
        """The reply to one complete request (on a worker thread)."""
        fmt = reply_format(request.headers)
        if request.method == "GET":
            if request.path == "/health":
                return make_reply(200, {"status": "ok"}, fmt)
            if request.path == "/metadata":
                return make_reply(200, self.policy.metadata(), fmt)
            if request.path == "/latency":
                with self._stats_lock:  # a consistent copy while workers append
                    seconds = list(self.inference_seconds)
                return make_reply(200, latency_summary(seconds), fmt)
            return make_reply(404, {"error": f"unknown path {request.path}; GET /health, /metadata, /latency"}, fmt)
        if request.method != "POST":
            reply = make_reply(405, {"error": f"method {request.method} is not served; use GET or POST"}, fmt)
            reply.headers["Allow"] = "GET, POST"
            return reply
        if request.path != "/predict":
            return make_reply(404, {"error": f"unknown path {request.path}; POST /predict"}, fmt)
        try:
            observation, seed = parse_predict_request(self._decode_body(request))
            start = time.perf_counter()
            with self._lock:
                actions = self.policy.predict(observation, seed=seed)
            elapsed = time.perf_counter() - start
            with self._stats_lock:
                self.inference_seconds.append(elapsed)
            return make_reply(
                200, {"actions": np.asarray(actions, dtype=np.float64), "inference_ms": elapsed * 1e3}, fmt
            )
        except TooLargeError as e:
            return make_reply(413, {"error": str(e)}, fmt)
        except UnsupportedMediaType as e:
            return make_reply(415, {"error": str(e)}, fmt)
        except (ValueError, KeyError, TypeError) as e:
            return make_reply(400, {"error": f"{e.__class__.__name__}: {e}"}, fmt)
        except Exception as e:  # the server keeps serving; the client sees what failed
            return make_reply(500, {"error": f"{e.__class__.__name__}: {e}"}, fmt)

    def _decode_body(self, request: Request) -> Any:
        """The /predict body in the format its Content-Type names (without one: binary if it starts with VLAF)."""
        media = _media_type(request.headers)
        if media == CONTENT_TYPE or (not media and request.body[:4] == MAGIC):
            return decode_message(request.body)
        if media == JSON_CONTENT_TYPE or not media:
            return decode_json_request(request.body, self.max_request_bytes)
        raise UnsupportedMediaType(
            f"Content-Type {media!r} is not served; send {CONTENT_TYPE} (binary) or {JSON_CONTENT_TYPE}"
        )

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> PolicyServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="policy-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class UnsupportedMediaType(ValueError):
    """A request body in neither wire format (answered 415)."""


class PolicyServerError(RuntimeError):
    """The server answered with an error (the message is the server's)."""


def _decode_reply(body: bytearray, headers: Message) -> Any:
    """A reply in the format its Content-Type names."""
    if _media_type(headers) == JSON_CONTENT_TYPE:
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise WireFormatError(f"reply is not JSON: {e}") from None
    return decode_message(body)


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
            headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = read_body(response, int(response.headers.get("Content-Length", 0)))
                return _decode_reply(body, response.headers)
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                message = _decode_reply(bytearray(body), e.headers).get("error", body[:200])
            except (WireFormatError, AttributeError):
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


@dataclasses.dataclass(frozen=True)
class ServeParams:
    """`policy_server serve`: which policy, and the server's address and limits."""

    # Run directory (local, s3:// or hf://) or checkpoint file of the policy.
    run_dir: str = ""
    # Checkpoint number of run_dir (None: the latest).
    checkpoint: int | None = None
    # Use the raw weights even when EMA weights were saved.
    no_ema: bool = False
    # Address to listen on (loopback unless allow_remote).
    host: str = "127.0.0.1"
    # Allow a non-loopback host (the server has no authentication).
    allow_remote: bool = False
    # TCP port (0: any free port).
    port: int = 8765
    # Complete requests answered at once.
    workers: int = 4
    # Complete requests waiting for a worker; beyond: 503.
    max_queue: int = 32
    # Larger requests are refused (413), from the declared Content-Length.
    max_request_mb: float = DEFAULT_MAX_REQUEST_MB
    # Seconds a request (headers and body) may take to arrive; beyond: 408.
    timeout_s: float = 10.0
    # Open connections (slow senders included); beyond: 503.
    max_connections: int = 256
    # Torch device of the policy.
    device: str = "cpu"
    # Seed of the diffusion noise of a request that gives none.
    seed: int = 0

    def validate(self) -> None:
        from vla_foundry.params.base_params import ConfigError

        if not self.run_dir:
            raise ConfigError("--run_dir is required: a run directory (local, s3:// or hf://) or checkpoint file")
        if not (is_loopback(self.host) or self.allow_remote):  # checked before the (slow) policy load
            raise ConfigError(
                f"--host {self.host} is not a loopback address: pass --allow_remote to serve other machines "
                "(the server has no authentication)"
            )


@dataclasses.dataclass(frozen=True)
class LatencyParams:
    """`policy_server latency`: round-trip latency against a running server."""

    # The server's URL.
    policy_url: str = _DEFAULT_URL
    # Timed requests (after 2 untimed ones).
    n: int = 20


def serve(params: ServeParams) -> int:
    """Load the policy and serve it until Ctrl-C / SIGTERM."""
    import signal

    from vla_foundry.inference.policy import Policy

    policy = Policy.from_run(
        params.run_dir, params.checkpoint, use_ema=not params.no_ema, device=params.device, seed=params.seed
    )
    try:
        server = PolicyServer(
            policy,
            params.host,
            params.port,
            workers=params.workers,
            max_queue=params.max_queue,
            max_request_mb=params.max_request_mb,
            timeout_s=params.timeout_s,
            allow_remote=params.allow_remote,
            max_connections=params.max_connections,
        ).start()
    except (ValueError, OSError) as e:
        print(f"error: cannot serve on {params.host}:{params.port}: {e}", file=sys.stderr)
        return 2
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    print(f"serving {policy.run.checkpoint} (EMA: {policy.run.used_ema}) at {server.url}; Ctrl-C to stop", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        stopped.wait()
    server.stop()
    print("policy server stopped", flush=True)
    return 0


def latency(params: LatencyParams) -> None:
    print(format_latency_report(PolicyClient(params.policy_url).latency_report(n=params.n)))


def main(argv: list[str] | None = None) -> int:
    from vla_foundry.cli import Spelling, Subcommand, run_subcommands

    return run_subcommands(
        {
            "serve": Subcommand(ServeParams, serve, "serve a policy run until Ctrl-C / SIGTERM"),
            "latency": Subcommand(
                LatencyParams,
                latency,
                "measure round-trip latency against a running server",
                Spelling(renamed={"url": "policy_url"}),
            ),
        },
        argv,
        prog="python -m vla_foundry.inference.policy_server",
        doc=__doc__.split("\n")[0],
        errors=(FileNotFoundError, ValueError),
    )


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The process ends here without interpreter shutdown, which joins the worker threads: one still inside a
    # prediction whose connection the stopped server has closed would hold a SIGTERMed server alive (once, on a
    # machine at load 20, a stopped server closed its socket and did not exit). Nothing is left to save.
    os._exit(code)
