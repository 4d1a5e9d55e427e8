"""The dashboard's HTTP server: uvicorn on one thread of the running boothsync.

Owns binding the listening socket (a port that is taken is one log line, and boothsync goes on
without its dashboard), serving an ASGI app on it until told to stop, and telling other
processes where it serves (a file in the state folder that ``boothsync dashboard`` reads).
Must not know what the app serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from boothsync.errors import BoothsyncError

if TYPE_CHECKING:
    from boothsync.config import WebConfig

__all__ = [
    "DashboardServer",
    "NoDashboard",
    "local_url",
    "login_link",
    "serving_file",
    "serving_url",
]

log = logging.getLogger(__name__)

SERVING_FILE: Final = "serving"


def serving_file(state: Path) -> Path:
    return state / "web" / SERVING_FILE


def serving_url(state: Path) -> str | None:
    """The dashboard's address that a boothsync running on ``state`` wrote, if any."""
    try:
        text = serving_file(state).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeError):
        return None
    return text if text.startswith("http://") else None


class NoDashboard(BoothsyncError):
    """No dashboard is served for this state folder, or no login can be left there."""


def login_link(state: Path, page: str = "/") -> str:
    """The URL that logs a browser in once to the dashboard served for ``state``, and then
    shows ``page``."""
    from boothsync.web.auth import make_login_token

    url = serving_url(state)
    if url is None:
        raise NoDashboard(
            "serves no dashboard: [web] enabled is false, or its address was taken (its log"
            " says which)"
        )
    try:
        token = make_login_token(state)
    except OSError as exc:
        raise NoDashboard(
            f"{state}: cannot leave a login there: {exc.strerror or exc}; run this as the"
            " account boothsync runs as"
        ) from exc
    return f"{url}/login?token={token}" + (f"&next={page}" if page != "/" else "")


def local_url(web: WebConfig) -> str:
    """The address to open on this computer: a wildcard listen is reached on loopback."""
    host = web.host
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{web.port}"


class DashboardServer:
    """Serve the app that ``make_app`` makes (on the server's thread, so its imports cost the
    starting boothsync nothing) on ``web.listen`` until :meth:`stop`. ``make_app`` gets the
    ``[web]`` table as served: a port 0 replaced by the one chosen."""

    def __init__(self, make_app: Callable[[WebConfig], Any], web: WebConfig, state: Path) -> None:
        self._make_app = make_app
        self.web = web
        self._state = state
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self.started = threading.Event()
        self.url = local_url(web)

    def start(self) -> bool:
        """Bind and start serving; False (and one log line) when the address is not free."""
        try:
            listener = _bind(self.web.host, self.web.port)
        except OSError as exc:
            log.error(
                "dashboard: cannot listen on %s: %s; uploads go on without the dashboard "
                "(set [web] listen to another port, or stop what uses this one)",
                self.web.listen,
                exc.strerror or exc,
            )
            return False
        if self.web.port == 0:
            port = listener.getsockname()[1]
            shown = f"[{self.web.host}]" if ":" in self.web.host else self.web.host
            self.web = replace(self.web, listen=f"{shown}:{port}")
            self.url = local_url(self.web)
        self._thread = threading.Thread(
            target=self._serve, args=(listener,), name="dashboard", daemon=True
        )
        self._thread.start()
        self._write_serving()
        log.info("dashboard on %s (`boothsync dashboard` opens it)", self.url)
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        server, loop, wake = self._server, self._loop, self._wake
        if server is not None:
            server.should_exit = True
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed already
                loop.call_soon_threadsafe(wake.set)
        if self._thread is not None:
            self._thread.join(timeout)
        with contextlib.suppress(OSError):
            serving_file(self._state).unlink()

    def _write_serving(self) -> None:
        path = serving_file(self._state)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            temporary = path.with_name(f".{SERVING_FILE}.{os.getpid()}")
            temporary.write_text(self.url + "\n", encoding="utf-8")
            os.replace(temporary, path)
        except OSError as exc:
            log.warning("dashboard: cannot note its address in %s: %s", path, exc)

    def _serve(self, listener: socket.socket) -> None:
        try:
            import uvicorn

            app = self._make_app(self.web)
            owner = self

            class _Server(uvicorn.Server):
                async def main_loop(self) -> None:
                    # uvicorn's own loop wakes ten times a second to look for a stop; waiting
                    # on an event instead keeps an idle boothsync idle.
                    owner._loop = asyncio.get_running_loop()
                    owner._wake = asyncio.Event()
                    if not owner._stopping:
                        await owner._wake.wait()

            config = uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan="off",
                http="h11",
                ws="none",
                loop="asyncio",
                server_header=False,
                date_header=False,
                timeout_keep_alive=5,
                limit_concurrency=64,
            )
            logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
            self._server = _Server(config)
            self.started.set()
            self._server.run(sockets=[listener])
        except Exception:
            log.exception("dashboard: the server stopped with an unexpected error")
        finally:
            listener.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio then sets TCP_NODELAY on each connection (it looks at the
    # protocol), so an answer is not held back waiting for the browser's delayed ACK.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if sys.platform == "win32":  # pragma: no cover - Windows only
            # Windows' SO_REUSEADDR would let a second program take the same port.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(64)
        listener.setblocking(False)
    except OSError:
        listener.close()
        raise
    return listener
