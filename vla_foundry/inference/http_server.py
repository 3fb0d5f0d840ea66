"""A small HTTP/1.1 server that stays available under slow, silent and oversized clients.

One thread receives every request (headers and body) with non-blocking sockets and a selector; a request is handed
to one of `workers` threads only once it has arrived in full. A client that sends slowly therefore holds a socket
and a small buffer, never a worker, and each request must arrive within `timeout_s` of the connection opening (or
of the previous reply on a kept-alive connection); when that deadline passes the client gets 408 and is closed.

Limits, each answered with a reply before the connection is closed (never a reset):
  - more than `max_connections` open connections -> 503 at once;
  - a request head over 64 KiB -> 431; a malformed request line or header -> 400;
  - a declared Content-Length over `max_request_bytes` -> 413 before any byte of the body is read;
  - request bodies held at once (being received, waiting, answered) over 4 x `max_request_bytes` -> 503;
  - more than `workers` + `max_queue` complete requests waiting or being answered -> 503.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http
import http.client
import io
import queue
import selectors
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from email.message import Message

MAX_HEAD_BYTES = 64 << 10
# Request bodies held at once, in units of the per-request limit: a few full-size requests in flight.
BUFFERED_REQUESTS = 4
# What an error reply's lingering close reads and discards at most (in time and bytes) before closing.
_DRAIN_SECONDS = 2.0
_DRAIN_BYTES = 64 << 20
# The first body buffer; it grows 4-fold (up to the declared length) each time it fills, so memory follows what a
# client actually sent, not what it declared, and a 4 MB body is copied once on the way.
_FIRST_BODY_BUFFER = 1 << 20
_GROWTH = 4


@dataclasses.dataclass
class Request:
    """One complete HTTP request."""

    method: str
    path: str
    headers: Message
    body: bytearray
    keep_alive: bool


@dataclasses.dataclass
class Reply:
    """What a handler answers: status, body, its content type, and extra headers."""

    status: int
    body: bytes | bytearray
    content_type: str
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


# (status, message, the request's headers or None when they did not arrive) -> the error reply to send.
ErrorReply = Callable[[int, str, "Message | None"], Reply]


class _Connection:
    """A client socket and where its current request stands: "head" (headers arriving), "body", "busy" (a worker
    answers it), "drain" (an error was sent; what the client still sends is read and discarded, then closed)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.state = "head"
        self.deadline = deadline
        self.buf = bytearray()  # head bytes, then any bytes after the current request (pipelined)
        self.answered = 0  # requests answered on this connection
        self.headers: Message | None = None
        self.method = self.path = ""
        self.keep_alive = False
        self.body = bytearray()
        self.length = 0  # declared body length
        self.got = 0  # body bytes received
        self.drained = 0


def format_http_reply(reply: Reply, close: bool) -> bytes:
    """The status line and headers of `reply` (its body is sent after them)."""
    reason = http.HTTPStatus(reply.status).phrase
    lines = [f"HTTP/1.1 {reply.status} {reason}", f"Content-Type: {reply.content_type}"]
    lines += [f"Content-Length: {len(reply.body)}", f"Connection: {'close' if close else 'keep-alive'}"]
    lines += [f"{k}: {v}" for k, v in reply.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class BoundedHTTPServer:
    """Serves `handle(request) -> Reply` on `address` (see the module docstring for the limits). `error_reply`
    builds the replies the server itself sends (400, 408, 411, 413, 431, 503), in the client's format."""

    def __init__(
        self,
        address: tuple[str, int],
        handle: Callable[[Request], Reply],
        error_reply: ErrorReply,
        workers: int,
        max_queue: int,
        max_connections: int,
        max_request_bytes: int,
        timeout_s: float,
        backlog: int,
    ) -> None:
        self.handle = handle
        self.error_reply = error_reply
        self.workers, self.max_queue, self.max_connections = workers, max_queue, max_connections
        self.max_request_bytes = max_request_bytes
        self.max_buffered_bytes = BUFFERED_REQUESTS * max_request_bytes
        self.timeout_s = timeout_s
        self.listener = socket.create_server(address, backlog=backlog)
        self.listener.setblocking(False)
        self.server_address = self.listener.getsockname()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.listener, selectors.EVENT_READ)
        # Workers hand connections back to the receiving thread through this queue and wake it with a byte.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._returned: queue.SimpleQueue[tuple[_Connection, bool]] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="policy-server-worker")
        # Owned by the receiving thread alone.
        self._connections: set[_Connection] = set()
        self._busy = 0  # requests handed to the pool and not yet returned
        self._buffered = 0  # bytes of request bodies allocated
        self._scratch = bytearray(1 << 16)
        self._stopping = threading.Event()
        self._stopped = threading.Event()

    # -- the receiving thread -----------------------------------------------------------------------------------

    def serve_forever(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, _ in self._selector.select(self._next_timeout()):
                    if key.fileobj is self.listener:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            self._wake_r.recv(4096)
                    else:
                        self._guarded(self._on_readable, key.data)
                self._take_returned()
                self._expire(time.monotonic())
        finally:
            for conn in list(self._connections):
                self._close(conn)
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serving (returns once the receiving thread has closed every connection)."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._stopped.wait()

    def server_close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        for sock in (self.listener, self._wake_r, self._wake_w):
            sock.close()
        self._selector.close()

    def _guarded(self, fn: Callable[[_Connection], None], conn: _Connection) -> None:
        """Run `fn(conn)`; a bug in handling one connection closes that connection and is printed, the server
        keeps serving the others."""
        try:
            fn(conn)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self._close(conn)

    def _next_timeout(self) -> float:
        now = time.monotonic()
        nearest = min((c.deadline for c in self._connections), default=now + 0.5)
        return min(max(nearest - now, 0.0), 0.5)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of file descriptors: the kernel keeps the client queued until one frees
                print(f"policy server: accept failed: {e}", file=sys.stderr, flush=True)
                return
            sock.setblocking(False)
            # Headers and body go out in one send; without TCP_NODELAY a reply split over segments could still
            # wait for the client's delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock, time.monotonic() + self.timeout_s)
            self._connections.add(conn)
            self._selector.register(sock, selectors.EVENT_READ, conn)
            if sum(c.state != "drain" for c in self._connections) > self.max_connections:
                self._refuse(conn, 503, f"server busy: {self.max_connections} connections are open "
                             "(--max_connections); retry shortly")  # fmt: skip

    def _on_readable(self, conn: _Connection) -> None:
        if conn.state == "body":
            self._receive_body(conn)
            return
        try:
            n = conn.sock.recv_into(self._scratch)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        if not n:
            self._close(conn)
            return
        if conn.state == "drain":
            conn.drained += n
            if conn.drained > _DRAIN_BYTES:
                self._close(conn)
            return
        conn.buf += memoryview(self._scratch)[:n]
        self._head_arrived(conn)

    def _receive_body(self, conn: _Connection) -> None:
        """Read what the socket holds of the body (until it would block), growing the buffer as it fills."""
        while conn.state == "body" and conn.got < conn.length:
            if conn.got == len(conn.body) and not self._reserve(conn, min(conn.length, _GROWTH * len(conn.body))):
                return
            view = memoryview(conn.body)[conn.got :]
            try:
                n = conn.sock.recv_into(view)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                n = 0
            finally:
                view.release()
            if not n:
                self._close(conn)  # the client went away mid-body: nobody to answer
                return
            conn.got += n
        if conn.state == "body":
            self._body_arrived(conn)

    def _head_arrived(self, conn: _Connection) -> None:
        """Parse the request head once it is complete; then the body (or the whole request) is underway."""
        while conn.buf[:2] == b"\r\n":  # blank lines before a request are allowed (RFC 9112 §2.2)
            del conn.buf[:2]
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(conn.buf) > MAX_HEAD_BYTES:
                self._refuse(conn, 431, f"request line and headers exceed {MAX_HEAD_BYTES} bytes")
            return
        if end + 4 > MAX_HEAD_BYTES:
            self._refuse(conn, 431, f"request line and headers exceed {MAX_HEAD_BYTES} bytes")
            return
        head, rest = bytes(conn.buf[: end + 4]), conn.buf[end + 4 :]
        error = self._parse_head(conn, head)
        if error is not None:
            self._refuse(conn, *error)
            return
        conn.state = "body"
        # What arrived with the head (at most MAX_HEAD_BYTES + one read) fits the first buffer.
        if not self._reserve(conn, min(conn.length, _FIRST_BODY_BUFFER)):
            return
        conn.got = min(len(rest), conn.length)
        conn.body[: conn.got] = rest[: conn.got]
        conn.buf = rest[conn.got :]
        self._receive_body(conn)

    def _parse_head(self, conn: _Connection, head: bytes) -> tuple[int, str] | None:
        """Fill the connection's method, path, headers, keep_alive and declared length; (status, message) of the
        error reply when the head is not acceptable."""
        line, _, fields = head.partition(b"\r\n")
        parts = line.decode("latin-1").split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
            return 400, f"malformed request line {line[:80]!r}; expected e.g. 'POST /predict HTTP/1.1'"
        conn.method, conn.path, version = parts
        try:
            conn.headers = http.client.parse_headers(io.BytesIO(fields))
        except http.client.HTTPException as e:
            return 400, f"malformed request headers: {e}"
        tokens = (conn.headers.get("Connection") or "").lower()
        conn.keep_alive = "close" not in tokens and (version == "HTTP/1.1" or "keep-alive" in tokens)
        if conn.headers.get("Transfer-Encoding"):
            return 411, "chunked requests are not accepted; send a Content-Length"
        declared = conn.headers.get_all("Content-Length") or []
        if not declared:
            if conn.method == "POST":
                return 411, "Content-Length header required"
            conn.length = 0
            return None
        if len(set(declared)) > 1 or not declared[0].strip().isdigit():
            return 400, f"Content-Length {', '.join(declared)[:40]!r} is not a byte count"
        conn.length = int(declared[0])
        if conn.length > self.max_request_bytes:
            limit = self.max_request_bytes / 2**20
            return 413, (
                f"request of {conn.length} bytes exceeds the server's limit of {limit:g} MB (--max_request_mb); "
                "send fewer or smaller frames"
            )
        return None

    def _reserve(self, conn: _Connection, capacity: int) -> bool:
        """Grow the connection's body buffer to `capacity` bytes if the server's budget for buffered bodies allows;
        otherwise answer 503 and return False."""
        extra = capacity - len(conn.body)
        if extra <= 0:
            return True
        if self._buffered + extra > self.max_buffered_bytes:
            budget = self.max_buffered_bytes / 2**20
            self._refuse(conn, 503, f"server busy: {budget:g} MB of request bodies are being received or answered "
                         "(4 x --max_request_mb); retry shortly")  # fmt: skip
            return False
        self._buffered += extra
        conn.body.extend(bytes(extra))
        return True

    def _body_arrived(self, conn: _Connection) -> None:
        """Hand the request to a worker once its body is complete."""
        if conn.got < conn.length:
            return
        if self._busy >= self.workers + self.max_queue:
            self._refuse(conn, 503, f"server busy: {self.workers} requests are being answered and {self.max_queue} "
                         "are waiting (--workers, --max_queue); retry shortly")  # fmt: skip
            return
        request = Request(conn.method, conn.path, conn.headers, conn.body, conn.keep_alive)
        self._selector.unregister(conn.sock)
        conn.state, conn.deadline = "busy", float("inf")
        self._busy += 1
        self._pool.submit(self._answer, conn, request)

    def _take_returned(self) -> None:
        while True:
            try:
                conn, keep = self._returned.get_nowait()
            except queue.Empty:
                return
            self._busy -= 1
            self._release_body(conn)
            if not keep or self._stopping.is_set():
                self._close(conn)
                continue
            conn.state, conn.deadline, conn.headers = "head", time.monotonic() + self.timeout_s, None
            conn.answered += 1
            conn.sock.setblocking(False)
            self._selector.register(conn.sock, selectors.EVENT_READ, conn)
            if conn.buf:  # a pipelined request already arrived
                self._guarded(self._head_arrived, conn)

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._connections if c.deadline <= now]:
            if conn.state == "drain" or (conn.state == "head" and not conn.buf and conn.answered):
                self._close(conn)  # a finished lingering close, or an idle kept-alive connection
            elif conn.state == "head":
                self._refuse(conn, 408, f"request headers not received within {self.timeout_s:g} s (--timeout_s): "
                             f"{len(conn.buf)} bytes arrived")  # fmt: skip
            else:
                self._refuse(conn, 408, f"request not received within {self.timeout_s:g} s (--timeout_s): "
                             f"{conn.got} of {conn.length} body bytes arrived")  # fmt: skip

    def _refuse(self, conn: _Connection, status: int, message: str) -> None:
        """Send an error reply, then read and discard what the client still sends (bounded in time and bytes)
        before closing: closing with unread data makes the kernel send a reset, and the client would lose the
        reply. The reply is small and the socket new to it, so one non-blocking send takes it whole."""
        reply = self.error_reply(status, message, conn.headers)
        if status in (503, 408):
            reply.headers.setdefault("Retry-After", "1")
        self._release_body(conn)
        try:
            conn.sock.send(format_http_reply(reply, close=True) + bytes(reply.body))
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        # Still registered for reading: what arrives now is discarded.
        conn.state, conn.deadline = "drain", time.monotonic() + min(self.timeout_s, _DRAIN_SECONDS)
        if sum(c.state == "drain" for c in self._connections) > self.max_connections:
            self._close(conn)  # too many lingering closes at once: this one closes at once

    def _release_body(self, conn: _Connection) -> None:
        self._buffered -= len(conn.body)
        conn.body = bytearray()

    def _close(self, conn: _Connection) -> None:
        if conn.state != "busy":  # a worker's request still holds its body; it is released when handed back
            self._release_body(conn)
        self._connections.discard(conn)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()

    # -- the workers --------------------------------------------------------------------------------------------

    def _answer(self, conn: _Connection, request: Request) -> None:
        """Answer one complete request on a worker thread, then hand the connection back."""
        keep = request.keep_alive
        try:
            reply = self.handle(request)
            conn.sock.settimeout(self.timeout_s)  # a client that does not read its reply cannot hold the worker
            conn.sock.sendall(format_http_reply(reply, close=not keep) + bytes(reply.body))
        except OSError:
            keep = False  # the client went away mid-reply: its business
        except Exception:
            traceback.print_exc(file=sys.stderr)
            keep = False
        finally:
            self._returned.put((conn, keep))
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
