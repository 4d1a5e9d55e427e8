"""An HTTP server for this machine's own small endpoints, that can be stopped cleanly.

The local receiver and the booth-trigger listener both need what the standard
library's servers lack: a thread per connection that the server knows about,
so that stopping can cut open connections and join their threads (the
standard ThreadingMixIn waits for idle keep-alive clients), and a bind that
never stalls on a reverse name lookup. Knows nothing of what is served.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import socketserver
import threading
from typing import Any, cast

__all__ = ["TrackedHTTPServer"]


class TrackedHTTPServer(http.server.HTTPServer):
    """HTTPServer with one tracked thread per connection; see the module docstring."""

    #: Name of each connection's thread.
    connection_thread_name = "http-conn"
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
