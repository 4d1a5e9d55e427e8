"""An HTTP server for this machine's own small endpoints, that can be stopped cleanly.

The local receivers and the booth-trigger listener all need what the standard
library's servers lack: a thread per connection that the server knows about,
so that stopping can cut open connections and join their threads (the
standard ThreadingMixIn waits for idle keep-alive clients), and a bind that
never stalls on a reverse name lookup. :class:`LocalServer` is the life of such a server
that the receivers share: started once in a background thread (or served in the
foreground), stopped cleanly, usable as a context manager. Knows nothing of what is served.
"""

from __future__ import annotations

import contextlib
import http.server
import logging
import os
import socket
import socketserver
import struct
import threading
import time
from email.message import Message
from types import TracebackType
from typing import Any, Literal, Self, cast

__all__ = [
    "ClientGone",
    "Framing",
    "LocalServer",
    "Rejected",
    "TrackedHTTPServer",
    "abort_connection",
    "body_framing",
    "linger_close",
]

log = logging.getLogger(__name__)

#: How a request says its body ends: not at all, by Content-Length, chunked, or unreadably.
Framing = Literal["none", "length", "chunked", "invalid"]

# How long stop() waits for the serving loop and the connections' threads, all together.
_JOIN_SECONDS = 5.0
# After an answer sent before a body we will not read, keep reading (and dropping) it for a
# while: closing with unread data makes the kernel send a reset, which can destroy the
# answer before the client reads it.
_LINGER_SECONDS = 5.0
_SINK = 256 * 1024


class Rejected(Exception):
    """A request a local server refuses with ``status`` and a one-line ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientGone(Exception):
    """The client hung up or went silent before its request was complete."""


class TrackedHTTPServer(http.server.HTTPServer):
    """HTTPServer with one tracked thread per connection; see the module docstring."""

    #: Name of each connection's thread.
    connection_thread_name = "http-conn"
    #: What the server is called in its log lines.
    label = "local server"
    #: Take the port exclusively where the platform can (Windows): there
    #: SO_REUSEADDR would let a second program bind a port already in use.
    exclusive_port = False

    def __init__(
        self, address: tuple[str, int], handler: type[http.server.BaseHTTPRequestHandler]
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._conn_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr. Requests are answered inside the
        # handlers, so what gets here is a connection that broke: not news.
        log.debug("%s: connection from %s broke", self.label, client_address, exc_info=True)

    def server_bind(self) -> None:
        exclusive = getattr(socket, "SO_EXCLUSIVEADDRUSE", None)
        if self.exclusive_port and exclusive is not None:
            self.socket.setsockopt(socket.SOL_SOCKET, exclusive, 1)
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on a bad resolver.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        conn = cast(socket.socket, request)
        thread = threading.Thread(
            target=self._serve_connection,
            args=(conn, client_address),
            name=self.connection_thread_name,
            daemon=True,
        )
        with self._conn_lock:
            self._connections[conn] = thread
        try:
            thread.start()
        except BaseException:
            # socketserver closes the connection when this raises.
            with self._conn_lock:
                del self._connections[conn]
            raise

    def _serve_connection(self, conn: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(conn, client_address)
        except Exception:
            self.handle_error(conn, client_address)
        finally:
            self.shutdown_request(conn)
            with self._conn_lock:
                self._connections.pop(conn, None)

    def close_connections(self) -> list[threading.Thread]:
        """Cut every open connection (blocked reads return at once); their threads."""
        with self._conn_lock:
            items = list(self._connections.items())
        for conn, _ in items:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return [thread for _, thread in items]


class LocalServer:
    """Start once, stop cleanly, ``with`` works: the shared life of a local test server.

    A subclass builds its :class:`TrackedHTTPServer` in ``__init__`` and hands it to
    :meth:`_serve_with`; then ``base_url`` (``origin``) is known before :meth:`start`.
    ``_stopping`` is set by :meth:`stop`, for handlers that wait (an injected delay) to
    end at once.
    """

    #: Name of the background thread that serves.
    thread_name = "local-server"

    def _serve_with(self, server: TrackedHTTPServer) -> None:
        self._server = server
        self._life_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._serving = False
        self._stopped = False
        host = str(server.server_address[0])
        url_host = f"[{host}]" if ":" in host else host
        self.origin = f"http://{url_host}:{server.server_port}"

    def __repr__(self) -> str:
        where = getattr(self, "base_url", self.origin)
        directory = getattr(self, "directory", None)
        return f"{type(self).__name__}(base_url={where!r}, directory={str(directory)!r})"

    def __enter__(self) -> Self:
        """Start serving in the background unless already started."""
        with self._life_lock:
            started = self._thread is not None
        return self if started else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Serve in a background thread; a server starts once."""
        with self._life_lock:
            if self._thread is not None or self._stopped:
                raise RuntimeError(f"a {type(self).__name__} can be started only once")
            self._thread = threading.Thread(
                target=self.serve_forever, name=self.thread_name, daemon=True
            )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until :meth:`stop` is called from another thread.

        A KeyboardInterrupt leaves this method; the caller then calls :meth:`stop`.
        """
        with self._life_lock:
            if self._stopped:
                return
            if self._serving:
                raise RuntimeError(f"this {type(self).__name__} is already serving")
            self._serving = True
        # The poll interval bounds how long stop() waits for the loop to notice.
        self._server.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        """Stop serving, cut open connections, join every thread, close the socket.

        Idempotent. Requests still in flight are dropped.
        """
        with self._life_lock:
            if self._stopped:
                return
            self._stopped = True
            serving = self._serving
        self._stopping.set()
        if serving:
            # socketserver's shutdown() waits for serve_forever to notice; calling it when
            # serve_forever never ran would wait forever.
            self._server.shutdown()
        threads = self._server.close_connections()
        deadline = time.monotonic() + _JOIN_SECONDS
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._server.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in (*threads, self._thread) if t is not None and t.is_alive()]
        if alive:
            log.warning("%r stopped, but threads still run: %s", self, ", ".join(alive))


def abort_connection(conn: socket.socket) -> None:
    """Close so that the peer sees a reset, not an orderly end (a fault on purpose)."""
    try:
        linger = struct.pack("hh" if os.name == "nt" else "ii", 1, 0)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    except OSError:
        pass
    conn.close()


def linger_close(conn: socket.socket, stopping: threading.Event) -> None:
    """Send our end, drop what the client still sends for a while, then close (so the answer
    is not destroyed by a reset while the client is still sending)."""
    try:
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(0.2)
        sink = bytearray(_SINK)
        deadline = time.monotonic() + _LINGER_SECONDS
        while time.monotonic() < deadline and not stopping.is_set():
            try:
                if not conn.recv_into(sink):
                    break
            except TimeoutError:
                continue
    except OSError:
        pass
    finally:
        conn.close()


def body_framing(headers: Message) -> tuple[Framing, int]:
    """How a request's body is framed, and its length when Content-Length gives it (several
    different Content-Length values, or one that is not a number, are "invalid")."""
    if headers.get("Transfer-Encoding") is not None:
        return "chunked", 0
    values = {v.strip() for v in headers.get_all("Content-Length") or []}
    if not values:
        return "none", 0
    value = values.pop()
    if values or not (value.isascii() and value.isdigit()):
        return "invalid", 0
    return "length", int(value)
