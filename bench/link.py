"""A venue's uplink on this machine: a TCP proxy in user space that shapes rate and adds delay.

Owns :class:`Link`, a proxy on 127.0.0.1 that forwards every TCP connection to one target
and makes the way there look like the uplink of a venue (a 4G hotspot, crowded Wi-Fi)
rather than loopback:

- each direction has a rate in bits per second (``up_bps`` client to server, ``down_bps``
  server to client), shared by every connection going that way: one token bucket per
  direction, as one uplink is shared. The bucket holds a small burst (16 KiB, or 5 ms of
  the rate if that is more), so the average rate holds over any window longer than that;
- every chunk also travels half the round-trip time ``rtt`` one way: it reaches the other
  end when the bucket has let it go plus ``rtt / 2``, in order within each connection;
- a new connection costs one round trip before its first byte goes (the handshake, which
  the kernel here finishes at once over loopback);
- a bounded queue at the bottleneck (:data:`QUEUE_SECONDS` of the rate, shared by a
  direction's connections) and a bounded window per connection: a sender that outruns the
  link, or a receiver that stops reading, stops the other end's sending as TCP's windows
  would, instead of filling memory;
- half-close (FIN) travels like data, after everything sent before it; a reset by either
  end (or a write into a closed end) resets both sides.

:data:`PROFILES` names the uplinks measured against, and the module is a command line: the
proxy in front of a server until Ctrl+C (``python -m bench.link --target 127.0.0.1:PORT
--profile 4g``, for pointing boothsync, rclone or a browser through it) and a self-check
(``python -m bench.link --measure``) that sends data through each profile to a local sink
and prints the achieved rates and round trips against the set ones.

What it does not model: packet loss, reordering, jitter, or TCP's own reaction to the
round trip (slow start, the congestion window): both ends talk to this proxy over loopback,
where every segment is acknowledged at once, so a lone connection gets the full rate at
once where a real one would ramp up over a few round trips. For the same reason a sender's
writes finish early: its kernel takes up to ``tcp_wmem`` (4 MB) into its send buffer over
loopback, so write timeouts and progress counted from writes are optimistic; the time to
the server's answer is not.

This kernel has no ``netem``; the proxy is the stand-in. Must not: know anything about HTTP
or boothsync (it forwards bytes), buffer without bound, block its event loop, or leave a
thread or a socket behind after :meth:`Link.stop`.

Exit codes: 0 served until Ctrl+C, or measured (every byte arrived intact); 1 the
measurement is invalid (bytes lost or damaged, a connection failed); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import socket
import socketserver
import statistics
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import urlsplit

from bench.idle import machine, positive

__all__ = ["PROFILES", "QUEUE_SECONDS", "Link", "Profile", "add_shape_options", "main", "shape_of"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Profile:
    """An uplink: rates in bits per second each way, the round trip in seconds."""

    up_bps: float
    down_bps: float
    rtt: float
    about: str

    def describe(self) -> str:
        return (
            f"up {self.up_bps / 1e6:g} Mbit/s, down {self.down_bps / 1e6:g} Mbit/s,"
            f" rtt {self.rtt * 1000:g} ms"
        )


PROFILES: dict[str, Profile] = {
    "4g": Profile(10e6, 40e6, 0.080, "a 4G hotspot with fair reception"),
    "bad": Profile(2e6, 8e6, 0.300, "a crowded cell or a weak hotspot"),
    "venue": Profile(20e6, 20e6, 0.080, "the venue's Wi-Fi on a shared line"),
}
"""The uplinks measured against, by name. A booth uploads: the up rate is the one that
counts, and on mobile it is a fraction of the down rate.

- ``4g``: a 4G hotspot with fair reception, 10 Mbit/s up, 40 Mbit/s down, 80 ms round trip;
- ``bad``: a crowded cell or a weak hotspot (the whole venue filming the first dance on
  the same cell), 2 Mbit/s up, 8 down, 300 ms;
- ``venue``: the venue's Wi-Fi on a shared line, symmetric, 20 Mbit/s each way, 80 ms.
"""

# The bucket's burst: small, so that the rate holds over short windows (a few ms of the rate),
# but at least a few segments, so that a quiet link answers a small request at once.
BURST_SECONDS = 0.005
MIN_BURST = 16 * 1024
# How much is read at a time: about 2 ms of the rate, so that a slow link delivers a steady
# trickle rather than lumps; at least one Ethernet-sized segment, at most what a stream
# reader buffers.
CHUNK_SECONDS = 0.002
MIN_CHUNK = 1460
MAX_CHUNK = 64 * 1024
# The bottleneck's queue: chunks waiting for the bucket beyond this many seconds of the
# rate make the link stop reading from every sender of that direction (a router's buffer
# full). Deep enough to keep the bucket busy; shallow, so that a small request behind a
# large upload waits about this long, not seconds (a bloated 4G buffer is not modelled).
QUEUE_SECONDS = 0.05
# Per connection, what may be read and not yet delivered: what the queue and the one-way
# delay hold at the full rate, twice, so one connection alone can fill the link.
MIN_WINDOW = 256 * 1024
# Generous: stopping aborts every connection, which takes one turn of the loop.
STOP_SECONDS = 10.0


class _Bucket:
    """One direction's rate, shared by all its connections: when each chunk has left.

    The tokens may go below zero: a debt, paid off at the rate. So a chunk is never refused,
    only given a later departure, and chunks leave in the order they came to the bucket.
    """

    def __init__(self, bytes_per_second: float, burst: float, now: float) -> None:
        self.rate = bytes_per_second
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    def reserve(self, size: int, now: float) -> float:
        """The time the ``size`` bytes handed over at ``now`` have left."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= size
        return now if self._tokens >= 0 else now - self._tokens / self.rate

    def backlog(self, now: float) -> float:
        """Seconds until everything handed over so far has left."""
        tokens = self._tokens + (now - self._stamp) * self.rate
        return max(0.0, -tokens / self.rate)


class _Direction:
    """The shaping of one direction (up or down), and what went through it."""

    def __init__(self, bps: float, rtt: float, burst: int | None, queue: float) -> None:
        self.bps = bps
        rate = bps / 8
        self.delay = rtt / 2
        self.burst = burst if burst is not None else max(MIN_BURST, int(rate * BURST_SECONDS))
        self.chunk = max(MIN_CHUNK, min(MAX_CHUNK, int(rate * CHUNK_SECONDS)))
        self.queue = queue
        self.window = max(MIN_WINDOW, int(2 * rate * (queue + self.delay)))
        self.bucket: _Bucket | None = None  # made on the loop, with the loop's clock
        self.delivered = 0

    def start(self, now: float) -> _Bucket:
        self.bucket = _Bucket(self.bps / 8, self.burst, now)
        return self.bucket


class _Pipe:
    """One direction of one connection: reads ``source``, hands every chunk to the
    direction's bucket, writes it to ``sink`` once it has left and travelled."""

    def __init__(
        self, direction: _Direction, source: asyncio.StreamReader, sink: asyncio.StreamWriter
    ) -> None:
        assert direction.bucket is not None
        self._direction = direction
        self._bucket = direction.bucket
        self._source = source
        self._sink = sink
        # (when it reaches the other end, the bytes); b"" is the end of the stream (FIN)
        self._flight: deque[tuple[float, bytes]] = deque()
        self._held = 0  # read and not yet written to the sink
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()

    async def read(self) -> None:
        loop = asyncio.get_running_loop()
        direction = self._direction
        while True:
            await self._wait_for_room(loop)
            data = await self._source.read(direction.chunk)
            now = loop.time()
            # The end goes through the bucket too (as an empty chunk): it leaves after
            # everything already queued, as a FIN queues behind the data on a real link.
            left = self._bucket.reserve(len(data), now)
            self._flight.append((left + direction.delay, data))
            self._held += len(data)
            self._arrived.set()
            if not data:
                return

    async def _wait_for_room(self, loop: asyncio.AbstractEventLoop) -> None:
        direction = self._direction
        while True:
            if self._held >= direction.window:
                self._room.clear()
                await self._room.wait()
                continue
            over = self._bucket.backlog(loop.time()) - direction.queue
            if over > 0:
                await asyncio.sleep(over)
                continue
            return

    async def write(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._flight:
                self._arrived.clear()
                await self._arrived.wait()
            at, data = self._flight.popleft()
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if self._sink.can_write_eof():
                    self._sink.write_eof()
                return
            self._sink.write(data)
            await self._sink.drain()
            self._held -= len(data)
            self._direction.delivered += len(data)
            self._room.set()


class Link:
    """A shaped TCP proxy from 127.0.0.1:``port`` to ``target_host:target_port``.

    The listening socket is bound by the constructor (port 0, the default, picks a free one),
    so :attr:`port` and :attr:`base_url` are known before serving. :meth:`start` (or
    ``with``) serves from a thread of its own running an event loop; :meth:`stop` closes
    every connection (a reset to both ends) and the listening socket, and joins the thread.

    ``up_bps`` shapes client to server, ``down_bps`` server to client, in bits per second;
    ``rtt`` is the round trip in seconds, half of it added each way. ``burst`` (bytes)
    overrides the buckets' burst, ``queue`` the bottleneck's queue in seconds of the rate.
    """

    thread_name = "bench-link"

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        up_bps: float,
        down_bps: float,
        rtt: float,
        host: str = "127.0.0.1",
        port: int = 0,
        burst: int | None = None,
        queue: float = QUEUE_SECONDS,
    ) -> None:
        if up_bps <= 0 or down_bps <= 0:
            raise ValueError("up_bps and down_bps must be greater than 0")
        if rtt < 0 or queue < 0:
            raise ValueError("rtt and queue must not be negative")
        if burst is not None and burst <= 0:
            raise ValueError("burst must be greater than 0")
        self.target_host = target_host
        self.target_port = target_port
        self.up_bps = up_bps
        self.down_bps = down_bps
        self.rtt = rtt
        self._up = _Direction(up_bps, rtt, burst, queue)
        self._down = _Direction(down_bps, rtt, burst, queue)
        self._sock = socket.create_server((host, port), backlog=128)
        self.host: str = self._sock.getsockname()[0]
        self.port: int = self._sock.getsockname()[1]
        self.connections = 0  # accepted so far
        self.open_connections = 0  # accepted and not yet closed on both sides
        self._handlers: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @classmethod
    def with_profile(
        cls, target_host: str, target_port: int, profile: str | Profile, **options: Any
    ) -> Link:
        """A link shaped as one of :data:`PROFILES` (by name) or as ``profile``."""
        shape = PROFILES[profile] if isinstance(profile, str) else profile
        return cls(
            target_host,
            target_port,
            up_bps=shape.up_bps,
            down_bps=shape.down_bps,
            rtt=shape.rtt,
            **options,
        )

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: where an HTTP client goes to reach the target through
        the link. (A server that builds URLs from the Host header, as the local receiver
        does for upload URLs, then hands out URLs that go through the link too.)"""
        return f"http://{self.host}:{self.port}"

    @property
    def bytes_up(self) -> int:
        """Bytes delivered to the target so far."""
        return self._up.delivered

    @property
    def bytes_down(self) -> int:
        """Bytes delivered to the clients so far."""
        return self._down.delivered

    @property
    def up_burst(self) -> int:
        """Bytes the up bucket lets through at once after a pause."""
        return self._up.burst

    @property
    def down_burst(self) -> int:
        """Bytes the down bucket lets through at once after a pause."""
        return self._down.burst

    def start(self) -> Link:
        if self._thread is not None:
            raise RuntimeError("a link starts once")
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise RuntimeError(f"the link did not start: {self._error!r}") from self._error
        return self

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Close every connection and the listening socket; join the thread. Idempotent."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            self._sock.close()  # never served: the socket is still ours
            return
        if loop is not None and stopping is not None:
            # The loop may have finished already (a second stop): then there is nothing to do.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"the link's thread did not stop within {timeout:g} s")

    def __enter__(self) -> Link:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # The loop's side ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(), or logged once serving
            if not self._ready.is_set():
                self._error = exc
            else:
                log.exception("the link failed")
        finally:
            self._ready.set()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopping = asyncio.Event()
        self._up.start(loop.time())
        self._down.start(loop.time())
        server = await asyncio.start_server(self._serve, sock=self._sock, limit=MAX_CHUNK * 2)
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            handlers = list(self._handlers)
            for handler in handlers:
                handler.cancel()
            # Each handler closes its sockets on the way out (see _serve).
            await asyncio.gather(*handlers, return_exceptions=True)
            await server.wait_closed()

    async def _serve(self, client_in: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None and self._stopping is not None
        self._handlers.add(task)
        self.connections += 1
        number = self.connections
        self.open_connections += 1
        target: asyncio.StreamWriter | None = None
        clean = False
        try:
            if self._stopping.is_set():
                return  # accepted as the link stopped: it is reset below
            # The client's kernel finished the handshake at once over loopback; on the link
            # it takes a round trip before the first byte can go.
            await asyncio.sleep(self.rtt)
            target_in, target = await asyncio.open_connection(
                self.target_host, self.target_port, limit=MAX_CHUNK * 2
            )
            up = _Pipe(self._up, client_in, target)
            down = _Pipe(self._down, target_in, client)
            await _all([up.read(), up.write(), down.read(), down.write()])
            clean = True
        except OSError as exc:
            # A reset by either end, a write into a closed one, or a target that refused:
            # what the other end then sees is a reset too.
            log.debug("link connection %d ended: %r", number, exc)
        except asyncio.CancelledError:
            # Only stop() cancels a connection, and waits for it. Ending as cancelled would
            # make the stream machinery of Python 3.11 log the cancellation as an error.
            pass
        finally:
            # Both sockets are closed before anything is awaited: a stop() cancelling this
            # wait must not leave one of them open.
            writers = [writer for writer in (client, target) if writer is not None]
            for writer in writers:
                _close(writer, reset=not clean)
            self.open_connections -= 1
            try:
                with contextlib.suppress(asyncio.CancelledError):  # as above
                    await _closed(writers)
            finally:
                self._handlers.discard(task)


async def _all(work: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` side by side until all of it is done; the first failure (or our own
    cancellation) cancels the rest, and nothing is left running either way."""
    tasks = [asyncio.ensure_future(item) for item in work]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _close(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    """Close one socket of a connection; ``reset`` closes it with an RST, anything unsent
    dropped. (A graceful close has nothing left to send: every chunk was drained before the
    FIN went.)"""
    if reset:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
    else:
        writer.close()


async def _closed(writers: Sequence[asyncio.StreamWriter]) -> None:
    """Wait until the loop has let go of the sockets, so that none outlives it."""
    for writer in writers:
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), STOP_SECONDS)


# The self-check --------------------------------------------------------------------------------

_HEAD = struct.Struct("!cQ")  # what the client asks of the sink: an operation, a size


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    parts = []
    while size:
        part = sock.recv(min(size, 1 << 20))
        if not part:
            raise ConnectionError("the connection ended early")
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


class _Timeline:
    """When bytes reached the receiving side of one measurement, over all its connections."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reads: list[tuple[float, int]] = []  # (time.monotonic(), bytes)

    def receive(self, sock: socket.socket, size: int) -> bytes:
        """Read ``size`` bytes from ``sock``, noting when each read came; their hash."""
        hasher = hashlib.blake2b(digest_size=32)
        while size:
            part = sock.recv(min(size, 1 << 20))
            now = time.monotonic()
            if not part:
                raise ConnectionError(f"the connection ended {size} bytes short")
            with self._lock:
                self._reads.append((now, len(part)))
            hasher.update(part)
            size -= len(part)
        return hasher.digest()

    def rate(self, burst: int) -> float:
        """Bits per second after the first tenth of the bytes (or twice the bucket's
        ``burst``, if more): those carry the burst, let through at once, which would count
        as bytes carried in no time, and the connections' start."""
        with self._lock:
            reads = sorted(self._reads)
        total = sum(size for _, size in reads)
        skip = max(total / 10, 2 * burst)
        got = 0
        for at, size in reads:
            got += size
            if got >= skip:
                span = reads[-1][0] - at
                return 8 * (total - got) / span if span > 0 else float("inf")
        return float("nan")


class _SinkHandler(socketserver.BaseRequestHandler):
    """``U size``: takes ``size`` bytes (noting their arrival on the server's timeline) and
    answers their hash; ``D size``: sends ``size`` bytes of the server's payload; ``E``:
    echoes until the end."""

    server: _Sink

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            op, size = _HEAD.unpack(_recv_exactly(sock, _HEAD.size))
            if op == b"U":
                sock.sendall(self.server.timeline.receive(sock, size))
            elif op == b"D":
                sock.sendall(self.server.payload[:size])
            elif op == b"E":
                while data := sock.recv(4096):
                    sock.sendall(data)
        except OSError as exc:
            log.debug("sink connection ended: %r", exc)


class _Sink(socketserver.ThreadingTCPServer):
    """The far end of the self-check, on 127.0.0.1, a thread per connection (joined when it
    closes). Uploads are noted on :attr:`timeline`, new for each measurement."""

    allow_reuse_address = True
    daemon_threads = False
    block_on_close = True

    def __init__(self, payload: bytes) -> None:
        super().__init__(("127.0.0.1", 0), _SinkHandler)
        self.payload = payload
        self.port: int = self.server_address[1]
        self.timeline = _Timeline()
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), name="sink")

    def __enter__(self) -> _Sink:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self._thread.join()
        self.server_close()


def _upload(address: tuple[str, int], data: bytes) -> bool:
    """Send ``data`` to the sink; whether it arrived intact."""
    with socket.create_connection(address) as sock:
        sock.sendall(_HEAD.pack(b"U", len(data)) + data)
        return _recv_exactly(sock, 32) == _digest(data)


def _uploads(
    sink: _Sink, address: tuple[str, int], data: bytes, connections: int, burst: int
) -> _Rate:
    """``data`` uploaded in ``connections`` shares at once."""
    sink.timeline = _Timeline()
    share = -(-len(data) // connections)
    parts = [data[i : i + share] for i in range(0, len(data), share)]
    results: list[bool | OSError] = [ConnectionError("not run")] * len(parts)

    def send(index: int) -> None:
        try:
            results[index] = _upload(address, parts[index])
        except OSError as exc:
            results[index] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(parts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, OSError):
            raise result
    return _Rate(sink.timeline.rate(burst), all(results))


def _download(address: tuple[str, int], payload: bytes, burst: int) -> _Rate:
    timeline = _Timeline()
    with socket.create_connection(address) as sock:
        sock.sendall(_HEAD.pack(b"D", len(payload)))
        digest = timeline.receive(sock, len(payload))
    return _Rate(timeline.rate(burst), digest == _digest(payload))


@dataclass(frozen=True)
class _Rate:
    bps: float
    intact: bool


def _round_trips(address: tuple[str, int]) -> tuple[float, float]:
    """In seconds: the median of NEW_CONNECTIONS first one-byte echoes on new connections
    (each from before its connect), and of ROUND_TRIPS more echoes on the last of them."""
    firsts, times = [], []
    for _ in range(NEW_CONNECTIONS):
        started = time.monotonic()
        with socket.create_connection(address) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(_HEAD.pack(b"E", 0) + b"x")
            _recv_exactly(sock, 1)
            firsts.append(time.monotonic() - started)
            if len(firsts) < NEW_CONNECTIONS:
                continue
            for _ in range(ROUND_TRIPS):
                sent = time.monotonic()
                sock.sendall(b"x")
                _recv_exactly(sock, 1)
                times.append(time.monotonic() - sent)
    return statistics.median(firsts), statistics.median(times)


@dataclass(frozen=True)
class _Measured:
    name: str
    shape: Profile | None  # None: straight to the sink, the baseline
    up: float  # bits per second
    up_shared: float
    down: float
    rtt: float  # seconds
    first_reply: float
    intact: bool


PARALLEL = 4
ROUND_TRIPS = 10
NEW_CONNECTIONS = 3
# What the simulator promises (its targets): the rate within 5 % of the set one, a round
# trip no shorter than set and at most 10 % longer.
RATE_LOW, RATE_HIGH = 0.95, 1.05
RTT_HIGH = 1.10


def _measure_one(
    name: str, shape: Profile | None, sink: _Sink, payload: bytes, say: Callable[[str], None]
) -> _Measured:
    target = ("127.0.0.1", sink.port)
    link = None if shape is None else Link.with_profile(*target, shape).start()
    try:
        address = target if link is None else link.address
        up_burst = 0 if link is None else link.up_burst
        up = _uploads(sink, address, payload, 1, up_burst)
        shared = _uploads(sink, address, payload, PARALLEL, up_burst)
        down = _download(address, payload, 0 if link is None else link.down_burst)
        first_reply, rtt = _round_trips(address)
    finally:
        if link is not None:
            link.stop()
    measured = _Measured(
        name,
        shape,
        up.bps,
        shared.bps,
        down.bps,
        rtt,
        first_reply,
        up.intact and shared.intact and down.intact,
    )
    say(f"{name}: measured{'' if measured.intact else ' (DAMAGED BYTES)'}")
    return measured


def _ratio(value: float, reference: float | None) -> str:
    return "n/a" if not reference else f"{value / reference:.3f}"


def _mbit(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1e6:.2f}"


def _report(results: Sequence[_Measured], megabytes: float, say: Callable[[str], None]) -> bool:
    """The tables; whether every figure is within the simulator's targets."""
    say("")
    say(
        f"rates: {megabytes:g} MB per transfer, measured at the receiving end after its first"
        " tenth (which carries the bucket's burst)"
    )
    say(f"{'link':<10}{'direction':<14}{'set Mbit/s':>11}{'Mbit/s':>10}{'x set':>8}")
    ok = True
    for item in results:
        rows = (
            ("up", item.up, None if item.shape is None else item.shape.up_bps),
            (
                f"up, {PARALLEL} conns",
                item.up_shared,
                None if not item.shape else item.shape.up_bps,
            ),
            ("down", item.down, None if item.shape is None else item.shape.down_bps),
        )
        for direction, value, wanted in rows:
            say(
                f"{item.name:<10}{direction:<14}{_mbit(wanted):>11}{_mbit(value):>10}"
                f"{_ratio(value, wanted):>8}"
            )
            if wanted is not None:
                ok = ok and RATE_LOW <= value / wanted <= RATE_HIGH
    say("")
    say(
        f"round trips: a 1-byte echo, median of {ROUND_TRIPS} on one connection; a new"
        f" connection's first echo from before the connect, median of {NEW_CONNECTIONS}"
        " (set: 2 x rtt, the handshake's and the echo's)"
    )
    say(
        f"{'link':<10}{'set rtt ms':>11}{'rtt ms':>10}{'x set':>8}"
        f"{'set new ms':>12}{'new ms':>10}{'x set':>8}"
    )
    for item in results:
        rtt = None if item.shape is None else item.shape.rtt
        say(
            f"{item.name:<10}{_ms(rtt):>11}{_ms(item.rtt):>10}{_ratio(item.rtt, rtt):>8}"
            f"{_ms(None if rtt is None else 2 * rtt):>12}{_ms(item.first_reply):>10}"
            f"{_ratio(item.first_reply, None if rtt is None else 2 * rtt):>8}"
        )
        if rtt:
            ok = ok and 1.0 <= item.rtt / rtt <= RTT_HIGH
            ok = ok and 1.0 <= item.first_reply / (2 * rtt) <= RTT_HIGH
    return ok


def _ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}"


def measure(links: Sequence[tuple[str, Profile]], megabytes: float) -> int:
    """The self-check: every link in ``links``, after the baseline (straight to the sink)."""
    say = print
    size = int(megabytes * 1_000_000)
    say(
        f"bench.link self-check: {megabytes:g} MB up (one connection, then {PARALLEL} at once)"
        f" and down, and one-byte echoes on {NEW_CONNECTIONS} new connections, through each"
        " link to a local sink"
    )
    say(f"machine: {machine()}")
    for name, shape in links:
        say(f"{name}: {shape.describe()} ({shape.about})")
    say(
        f"targets: every rate {RATE_LOW:g}-{RATE_HIGH:g}x of the set one, every round trip"
        f" 1-{RTT_HIGH:g}x of the set one"
    )
    payload = os.urandom(size)
    results = []
    try:
        with _Sink(payload) as sink:
            # The baseline: the same transfers over bare loopback, to show the link, not
            # the machine, sets the figures below (it is many times faster).
            results.append(_measure_one("direct", None, sink, payload, say))
            for name, shape in links:
                results.append(_measure_one(name, shape, sink, payload, say))
    except OSError as exc:
        print(f"bench.link: invalid measurement: a connection failed: {exc!r}", file=sys.stderr)
        return 1
    ok = _report(results, megabytes, say)
    say(f"target: the link does what it is set to: {'met' if ok else 'MISSED'}")
    if not all(item.intact for item in results):
        print("bench.link: invalid measurement: bytes arrived damaged", file=sys.stderr)
        return 1
    return 0


# The command -----------------------------------------------------------------------------------


def _target(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or an http(s) URL."""
    try:
        if "://" in text:
            parts = urlsplit(text)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            if not parts.hostname:
                raise ValueError
            return parts.hostname, port
        host, _, port_text = text.rpartition(":")
        host = host.strip("[]")
        port = int(port_text)
        if not host or not 0 < port < 65536:
            raise ValueError
        return host, port
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT or a URL (got {text!r})") from None


def _not_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative (got {text})")
    return value


def add_shape_options(parser: argparse.ArgumentParser, *, profile_help: str) -> None:
    """--profile, and --up, --down, --rtt put over it (read back with :func:`shape_of`)."""
    parser.add_argument("--profile", choices=sorted(PROFILES), help=profile_help)
    parser.add_argument(
        "--up",
        type=positive(float),
        metavar="MBIT",
        help="rate client to server in Mbit/s, over the profile's",
    )
    parser.add_argument(
        "--down",
        type=positive(float),
        metavar="MBIT",
        help="rate server to client in Mbit/s, over the profile's",
    )
    parser.add_argument(
        "--rtt", type=_not_negative, metavar="MS", help="round trip in ms, over the profile's"
    )


def shape_of(args: argparse.Namespace, default: str = "4g") -> tuple[str, Profile, bool]:
    """The profile asked for (its name), with --up, --down and --rtt put over it, and
    whether any of them changed it."""
    name = args.profile or default
    shape = PROFILES[name]
    if args.up is None and args.down is None and args.rtt is None:
        return name, shape, False
    custom = Profile(
        shape.up_bps if args.up is None else args.up * 1e6,
        shape.down_bps if args.down is None else args.down * 1e6,
        shape.rtt if args.rtt is None else args.rtt / 1000,
        f"{name} with figures of the command line",
    )
    return name, custom, True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.link",
        description=(
            "A shaped TCP proxy on 127.0.0.1 that makes the way to a server look like a venue's"
            " uplink; or, with --measure, a check that it does."
        ),
        epilog="profiles: "
        + "; ".join(f"{n}: {p.describe()} ({p.about})" for n, p in PROFILES.items()),
    )
    parser.add_argument(
        "--target", type=_target, metavar="HOST:PORT", help="where to forward connections"
    )
    add_shape_options(
        parser, profile_help="the link's shape (default 4g; with --measure, every profile)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on (default: a free one)"
    )
    parser.add_argument(
        "--measure", action="store_true", help="check the shaping against a local sink"
    )
    parser.add_argument(
        "--megabytes",
        type=positive(float),
        default=5.0,
        help="with --measure: MB per transfer (default: %(default)s)",
    )
    return parser


def _shape(args: argparse.Namespace) -> tuple[str, Profile]:
    """The profile asked for, with --up, --down and --rtt put over it."""
    name, shape, changed = shape_of(args)
    return ("custom" if changed else name), shape


def serve(target: tuple[str, int], name: str, shape: Profile, port: int) -> int:
    """The proxy until Ctrl+C (or SIGTERM)."""
    stopped = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    handled = [signal.SIGINT] + ([signal.SIGTERM] if hasattr(signal, "SIGTERM") else [])
    previous = {signum: signal.signal(signum, on_signal) for signum in handled}
    try:
        with Link.with_profile(*target, shape, port=port) as link:
            print(
                f"bench.link: listening on {link.host}:{link.port} ({link.base_url}),"
                f" forwarding to {target[0]}:{target[1]} as {name}: {shape.describe()}."
                " Ctrl+C stops.",
                flush=True,
            )
            # A timeout, so that Ctrl+C is seen where a wait without one cannot be
            # interrupted (Windows).
            while not stopped.wait(0.5):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(
        f"bench.link: stopped after {link.connections} connection(s),"
        f" {link.bytes_up / 1e6:.2f} MB up, {link.bytes_down / 1e6:.2f} MB down",
        flush=True,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.measure:
        custom = args.profile or any(x is not None for x in (args.up, args.down, args.rtt))
        links = [_shape(args)] if custom else list(PROFILES.items())
        return measure(links, args.megabytes)
    if args.target is None:
        parser.error("--target HOST:PORT is needed (or --measure)")
    if not 0 <= args.port < 65536:
        parser.error(f"--port must be 0 to 65535 (got {args.port})")
    try:
        name, shape = _shape(args)
        return serve(args.target, name, shape, args.port)
    except OSError as exc:
        print(f"bench.link: cannot listen: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
