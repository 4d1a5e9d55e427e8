"""The link simulator of the benchmarks (bench/link.py): bytes intact, connections closed as
TCP closes them, nothing left behind, and shaping that is never faster than set.

No test asserts that something is fast enough: the machines are shared and noisy. Times are
checked only against lower bounds that hold physically (N bytes at R bytes/s cannot arrive
in less than N/R minus the bucket's burst; a round trip cannot be shorter than the rtt).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import random
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from bench.latency import bare_upload, upload_body
from bench.link import PROFILES, Link, _Bucket
from boothsync.receiver import Receiver
from tests.helpers import jpeg, wait_for

ROOT = Path(__file__).resolve().parents[1]
FAST = 400e6  # bits per second: for tests of what arrives, not of when
DEADLINE = 10.0
# Asyncio's timers never fire early; this only absorbs float rounding in the sums below.
EPSILON = 0.001


class Backend:
    """A TCP server on 127.0.0.1. With ``handle``, runs it on every connection in a thread
    of its own (and closes the connection after it); without, hands every accepted socket
    to the test through :attr:`accepted`. :meth:`stop` joins every thread."""

    def __init__(self, handle: Callable[[socket.socket], None] | None = None) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._handle = handle
        self.accepted: queue.Queue[socket.socket] = queue.Queue()
        self._wake, self._waker = socket.socketpair()
        self._threads: list[threading.Thread] = []
        # Made here, not in the thread: a test counting descriptors after the constructor
        # must find every one of the backend's already open.
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake, selectors.EVENT_READ)
        self._accepter = threading.Thread(target=self._accept, name="backend")
        self._accepter.start()

    def _accept(self) -> None:
        while True:
            ready = [key.fileobj for key, _ in self._selector.select()]
            if self._wake in ready:
                return
            conn, _ = self._listener.accept()
            if self._handle is None:
                self.accepted.put(conn)
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), name="backend-conn")
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        assert self._handle is not None
        # An error is the test's to see at the other end.
        with conn, contextlib.suppress(OSError):
            self._handle(conn)

    def take(self) -> socket.socket:
        """The next accepted connection (only without ``handle``)."""
        conn = self.accepted.get(timeout=DEADLINE)
        conn.settimeout(DEADLINE)
        return conn

    def stop(self) -> None:
        self._waker.send(b"x")
        self._accepter.join()
        for thread in self._threads:
            thread.join(DEADLINE)
        self._selector.close()
        for sock in (self._listener, self._wake, self._waker):
            sock.close()
        while not self.accepted.empty():
            self.accepted.get().close()


@pytest.fixture
def backends() -> Iterator[Callable[..., Backend]]:
    """Start a backend; every one is stopped afterwards."""
    started: list[Backend] = []

    def start(handle: Callable[[socket.socket], None] | None = None) -> Backend:
        backend = Backend(handle)
        started.append(backend)
        return backend

    yield start
    for backend in started:
        backend.stop()


def echo(conn: socket.socket) -> None:
    """Send back everything as it comes; at the end of the input, end the output."""
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)


def connect(link: Link) -> socket.socket:
    sock = socket.create_connection(link.address, timeout=DEADLINE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    parts = []
    while part := sock.recv(65536):
        parts.append(part)
    return b"".join(parts)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    parts = []
    while size:
        part = sock.recv(size)
        assert part, f"the connection ended {size} bytes short"
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def ended(sock: socket.socket) -> bool:
    """Whether the other end has gone: the end of the stream, or a reset."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def fast_link(port: int, rtt: float = 0.01) -> Link:
    return Link("127.0.0.1", port, up_bps=FAST, down_bps=FAST, rtt=rtt)


def test_bytes_arrive_intact_both_ways_over_many_connections(
    backends: Callable[..., Backend],
) -> None:
    """Random bytes sent through 30 connections at once come back from an echo server
    exactly as sent, each on its own connection, empty and large transfers alike; the
    link counts every byte each way."""
    backend = backends(echo)
    rng = random.Random(20260601)
    payloads = [rng.randbytes(rng.choice([0, 1, 1460, 70_000, 300_000])) for _ in range(30)]
    received: list[bytes | None] = [None] * len(payloads)

    with fast_link(backend.port) as link:

        def client(index: int) -> None:
            with connect(link) as sock:

                def send() -> None:
                    sock.sendall(payloads[index])
                    sock.shutdown(socket.SHUT_WR)

                sender = threading.Thread(target=send, name="sender")
                sender.start()
                received[index] = read_to_end(sock)
                sender.join()

        clients = [threading.Thread(target=client, args=(i,)) for i in range(len(payloads))]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        assert [r == p for r, p in zip(received, payloads, strict=True)] == [True] * 30
        total = sum(len(p) for p in payloads)
        wait_for(lambda: link.open_connections == 0, what="every connection closed")
        assert (link.connections, link.bytes_up, link.bytes_down) == (30, total, total)


def test_a_half_closed_connection_still_carries_the_answer(
    backends: Callable[..., Backend],
) -> None:
    """A client that shuts down its sending side after its request still gets the whole
    answer, which the server sends only once it has seen the end of the request."""
    request = os.urandom(100_000)

    def answer(conn: socket.socket) -> None:
        got = read_to_end(conn)
        conn.sendall(hashlib.sha256(got).digest() * 1000)

    backend = backends(answer)
    with fast_link(backend.port) as link, connect(link) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        assert read_to_end(sock) == hashlib.sha256(request).digest() * 1000


def test_a_server_that_half_closes_first_still_gets_the_request(
    backends: Callable[..., Backend],
) -> None:
    """A server that sends a greeting and shuts down its sending side: the client reads the
    greeting and the end of the stream, then sends, and the server gets it all and the end."""
    backend = backends()
    with fast_link(backend.port) as link, connect(link) as client:
        with backend.take() as server:
            server.sendall(b"hello")
            server.shutdown(socket.SHUT_WR)
            assert read_to_end(client) == b"hello"
            client.sendall(b"request after the greeting")
            client.shutdown(socket.SHUT_WR)
            assert read_to_end(server) == b"request after the greeting"
        wait_for(lambda: link.open_connections == 0, what="the connection closed")


def test_closing_the_client_closes_the_server_side(backends: Callable[..., Backend]) -> None:
    """When the client closes its connection, the server sees the end of the stream; once it
    closes too, the link holds nothing for the connection."""
    backend = backends()
    with fast_link(backend.port) as link:
        client = connect(link)
        with backend.take() as server:
            client.sendall(b"x")
            assert read_exactly(server, 1) == b"x"
            client.close()
            assert ended(server)
        wait_for(lambda: link.open_connections == 0, what="the connection closed")


def test_closing_the_server_closes_the_client_side(backends: Callable[..., Backend]) -> None:
    """When the server closes the connection, the client sees the end of the stream; once it
    closes too, the link holds nothing for the connection."""
    backend = backends()
    with fast_link(backend.port) as link:
        with connect(link) as client:
            server = backend.take()
            server.sendall(b"bye")
            server.close()
            assert read_to_end(client) == b"bye"
        wait_for(lambda: link.open_connections == 0, what="the connection closed")


def test_a_reset_by_the_client_resets_the_server_side(backends: Callable[..., Backend]) -> None:
    """A client that resets its connection (closing with SO_LINGER 0) resets the server's
    side too, rather than ending it as if the client had finished."""
    backend = backends()
    with fast_link(backend.port) as link:
        client = connect(link)
        with backend.take() as server:
            client.sendall(b"x")
            assert read_exactly(server, 1) == b"x"
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            with pytest.raises(ConnectionResetError):
                server.recv(1)
        wait_for(lambda: link.open_connections == 0, what="the connection closed")


def test_a_target_that_refuses_ends_the_client_connection() -> None:
    """With nothing listening at the target, a client's connection to the link ends (end of
    stream or reset) instead of hanging, and the link serves the next one alike."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        free_port = probe.getsockname()[1]  # nothing listens there once it is closed
    with fast_link(free_port) as link:
        for _ in range(2):
            with connect(link) as client:
                assert ended(client)
        wait_for(lambda: link.open_connections == 0, what="the connections closed")
        assert link.connections == 2


@pytest.mark.parametrize("direction", ["up", "down"])
def test_bytes_never_arrive_faster_than_the_set_rate(
    backends: Callable[..., Backend], direction: str
) -> None:
    """400 kB at 8 Mbit/s (1 MB/s) take at least (400 kB - the burst) / 1 MB/s, plus the
    handshake's round trip and the one-way delay, from the connect to the last byte; up
    (client to server) and down alike."""
    size, rtt = 400_000, 0.02
    payload = os.urandom(size)
    done: queue.Queue[tuple[float, bytes]] = queue.Queue()

    def server(conn: socket.socket) -> None:
        if direction == "up":
            got = read_exactly(conn, size)
            done.put((time.monotonic(), got))
        else:
            conn.sendall(payload)

    backend = backends(server)
    slow, fast = 8e6, FAST
    up, down = (slow, fast) if direction == "up" else (fast, slow)
    with Link("127.0.0.1", backend.port, up_bps=up, down_bps=down, rtt=rtt) as link:
        burst = link.up_burst if direction == "up" else link.down_burst
        started = time.monotonic()
        with connect(link) as client:
            if direction == "up":
                client.sendall(payload)
                finished, got = done.get(timeout=DEADLINE)
            else:
                got = read_exactly(client, size)
                finished = time.monotonic()
    assert got == payload
    least = (size - burst) / (slow / 8) + rtt + rtt / 2
    assert finished - started >= least - EPSILON


def test_connections_share_one_rate(backends: Callable[..., Backend]) -> None:
    """Four connections uploading 100 kB each at once share the one uplink: together they
    take at least (400 kB - the burst) / 1 MB/s at 8 Mbit/s, as one connection would, not a
    quarter of that."""
    share, connections, rtt = 100_000, 4, 0.02
    arrivals: queue.Queue[float] = queue.Queue()

    def server(conn: socket.socket) -> None:
        read_exactly(conn, share)
        arrivals.put(time.monotonic())

    backend = backends(server)
    with Link("127.0.0.1", backend.port, up_bps=8e6, down_bps=FAST, rtt=rtt) as link:
        clients = [connect(link) for _ in range(connections)]
        started = time.monotonic()
        senders = [threading.Thread(target=c.sendall, args=(os.urandom(share),)) for c in clients]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join()
        finished = max(arrivals.get(timeout=DEADLINE) for _ in clients)
        for client in clients:
            client.close()
        least = (share * connections - link.up_burst) / 1e6 + rtt / 2
    assert finished - started >= least - EPSILON


def test_a_round_trip_is_never_shorter_than_the_rtt(backends: Callable[..., Backend]) -> None:
    """With a 100 ms round trip, a new connection's first echo takes at least two of them
    (the handshake's and its own), and every echo after it at least one."""
    rtt = 0.1
    backend = backends(echo)
    with fast_link(backend.port, rtt=rtt) as link:
        started = time.monotonic()
        with connect(link) as client:
            client.sendall(b"x")
            assert read_exactly(client, 1) == b"x"
            assert time.monotonic() - started >= 2 * rtt - EPSILON
            for _ in range(5):
                sent = time.monotonic()
                client.sendall(b"y")
                assert read_exactly(client, 1) == b"y"
                assert time.monotonic() - sent >= rtt - EPSILON


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_stop_ends_every_connection_and_leaves_no_thread_or_socket(
    backends: Callable[..., Backend],
) -> None:
    """stop() in the middle of idle connections and of a transfer: both ends of every
    connection see it end, the link's thread is gone, the process holds no more sockets
    than before the link, and a second stop() does nothing."""
    backend = backends()
    before = _open_descriptors()
    link = Link("127.0.0.1", backend.port, up_bps=1e6, down_bps=FAST, rtt=0.01).start()
    clients = [connect(link) for _ in range(5)]
    servers = [backend.take() for _ in clients]
    # A transfer that takes 8 s at 1 Mbit/s: still going when the link stops.
    sender = threading.Thread(
        target=lambda: _ignore_errors(clients[0].sendall, os.urandom(1_000_000)), name="sender"
    )
    sender.start()
    wait_for(lambda: link.bytes_up > 0, what="the transfer under way")

    link.stop()
    assert not any(t.name == Link.thread_name for t in threading.enumerate())
    sender.join(DEADLINE)
    assert not sender.is_alive()
    for sock in [*clients, *servers]:
        assert _drained_to_end(sock)
        sock.close()
    assert link.open_connections == 0
    assert _open_descriptors() == before
    link.stop()


def _ignore_errors(send: Callable[[bytes], None], data: bytes) -> None:
    # The link is stopped under it: what the test wants.
    with contextlib.suppress(OSError):
        send(data)


def _drained_to_end(sock: socket.socket) -> bool:
    """Read whatever was still delivered until the end of the stream or a reset."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def test_a_link_never_started_gives_its_socket_back() -> None:
    """A link made and stopped without serving closes its listening socket."""
    before = _open_descriptors() if Path("/proc/self/fd").is_dir() else None
    link = Link("127.0.0.1", 9, up_bps=1e6, down_bps=1e6, rtt=0.0)
    link.stop()
    with pytest.raises(OSError):
        socket.create_connection(link.address, timeout=DEADLINE).close()
    if before is not None:
        assert _open_descriptors() == before


def test_an_upload_to_the_receiver_crosses_the_link_with_both_requests(
    receiver: Receiver, tmp_path: Path
) -> None:
    """An EventPics upload pointed at the link (POST getuploadurl, then PUT) reaches the
    local receiver intact, and the upload URL it is given points through the link too (the
    receiver builds it from the Host header): the picture's bytes cross the shaped uplink."""
    picture = tmp_path / "IMG_0001.jpg"
    picture.write_bytes(jpeg(os.urandom(200_000)))
    port = urlsplit(receiver.base_url).port
    assert port is not None
    with fast_link(port) as link, httpx.Client(trust_env=False, timeout=DEADLINE) as client:
        answer = client.post(f"{link.base_url}/getuploadurl", json=upload_body(picture.name))
        assert answer.json()["uploadUrl"].startswith(f"{link.base_url}/")
        bare_upload(client, link.base_url, picture)
        assert link.bytes_up > picture.stat().st_size
    matches = [r for r in receiver.received() if r.file_name == picture.name]
    assert len(matches) == 1
    stored = matches[0]
    assert stored.sha256 == hashlib.sha256(picture.read_bytes()).hexdigest()


def test_the_bucket_lets_a_burst_through_then_the_rate() -> None:
    """The shared bucket (1000 bytes/s, a burst of 100): the burst leaves at once, then each
    chunk leaves when the rate has paid for it, in the order handed over and whichever
    connection it comes from; after a pause no more than the burst leaves at once."""
    bucket = _Bucket(1000, 100, now=0.0)
    assert bucket.reserve(100, 0.0) == 0.0
    assert bucket.reserve(100, 0.0) == pytest.approx(0.1)
    assert bucket.reserve(50, 0.05) == pytest.approx(0.15)
    assert bucket.backlog(0.05) == pytest.approx(0.1)
    assert bucket.reserve(0, 0.06) == pytest.approx(0.15)  # the end of a stream queues too
    assert bucket.reserve(100, 10.0) == 10.0
    assert bucket.reserve(100, 10.0) == pytest.approx(10.1)


def test_every_profile_makes_a_link_as_described() -> None:
    """The named profiles (4g, bad, venue) each make a link with their rates and round trip,
    and say what they stand for."""
    assert set(PROFILES) == {"4g", "bad", "venue"}
    for name, profile in PROFILES.items():
        link = Link.with_profile("127.0.0.1", 9, name)
        link.stop()
        assert (link.up_bps, link.down_bps, link.rtt) == (
            profile.up_bps,
            profile.down_bps,
            profile.rtt,
        )
        assert profile.about


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT to a child (POSIX)")
def test_the_command_serves_until_interrupted(backends: Callable[..., Backend]) -> None:
    """`python -m bench.link --target 127.0.0.1:PORT --profile venue` prints the address it
    listens on, carries a connection there to the target, and on Ctrl+C (SIGINT) stops with
    exit code 0, saying what it carried."""
    backend = backends(echo)
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "bench.link"),
            *("--target", f"127.0.0.1:{backend.port}", "--profile", "venue"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+) \(http://127\.0\.0\.1:\1\)", first)
        assert found is not None, first
        with socket.create_connection(("127.0.0.1", int(found[1])), timeout=DEADLINE) as sock:
            sock.sendall(b"through the command")
            sock.shutdown(socket.SHUT_WR)
            assert read_to_end(sock) == b"through the command"
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, first + rest
    assert re.search(r"stopped after 1 connection\(s\), 0\.00 MB up", rest), rest


def test_the_command_wants_a_target_or_measure() -> None:
    """`python -m bench.link` with neither --target nor --measure is a usage error (exit 2)."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.link", "--profile", "4g"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--target" in result.stderr
