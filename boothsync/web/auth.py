"""Who may use the dashboard: login links, sessions, CSRF tokens, allowed Host names, and the
slowing down of failed password logins.

A login link carries a one-time token. Whoever makes one (``boothsync dashboard``, the tray)
leaves the token's SHA-256 as an empty file in the state folder's ``web/logins`` (readable by
the state folder's account only, as the queue is); the running dashboard accepts a token whose
file is there and young, and deletes the file as it does, so a link works once. A web page in
the booth's browser cannot make such a file, and another local user cannot read the folder.

Must not know about Starlette or HTTP beyond header values: the app (:mod:`boothsync.web.app`)
applies these rules to requests.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "LOGIN_TOKEN_SECONDS",
    "SESSION_IDLE_SECONDS",
    "LoginThrottle",
    "Session",
    "Sessions",
    "allowed_host",
    "login_folder",
    "make_login_token",
    "take_login_token",
]

#: How long a login link works after it was made (seconds): long enough to open it, too short
#: to be of use to anyone who finds it in a browser's history later.
LOGIN_TOKEN_SECONDS: Final = 300.0
#: A session ends after this long without a request (seconds): a day of an event with the
#: dashboard left open keeps working, a phone forgotten at the venue does not.
SESSION_IDLE_SECONDS: Final = 12 * 3600.0
#: Sessions kept at most; the least recently used goes first.
MAX_SESSIONS: Final = 64
#: Each failed password login is answered this late (seconds), one at a time, so guesses go at
#: most one a second whatever the number of connections.
FAILED_LOGIN_DELAY: Final = 1.0
#: After this many failed password logins within LOCKOUT_SECONDS, password logins are refused
#: until that much time passed since the last failure (the login link still works).
MAX_FAILED_LOGINS: Final = 10
LOCKOUT_SECONDS: Final = 300.0


def login_folder(state: Path) -> Path:
    return state / "web" / "logins"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def make_login_token(state: Path) -> str:
    """A new one-time login token for the dashboard that keeps its queue in ``state``.

    Raises OSError when the folder cannot be written (another account's state folder).
    """
    folder = login_folder(state)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _sweep(folder)
    token = secrets.token_urlsafe(32)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    os.close(os.open(folder / _digest(token), flags, 0o600))
    return token


def take_login_token(state: Path, token: str, *, now: float | None = None) -> bool:
    """Whether ``token`` is a login token made for this state folder in the last
    LOGIN_TOKEN_SECONDS and not used yet; it is used up by this call either way."""
    if not token or len(token) > 200:
        return False
    path = login_folder(state) / _digest(token)
    try:
        made = path.lstat().st_mtime
        # Whoever deletes it first is the one who used it.
        path.unlink()
    except OSError:
        return False
    now = time.time() if now is None else now
    return -60.0 <= now - made <= LOGIN_TOKEN_SECONDS


def _sweep(folder: Path) -> None:
    """Delete the tokens nobody used in time."""
    cutoff = time.time() - LOGIN_TOKEN_SECONDS
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)


@dataclass
class Session:
    """A logged-in browser; ``data`` is what its pages keep between requests (the setup
    wizard's answers), never sent to it."""

    id: str
    csrf: str
    created: float
    seen: float
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sessions:
    """The logged-in browsers, in memory: a restart of boothsync logs everyone out."""

    idle: float = SESSION_IDLE_SECONDS
    limit: int = MAX_SESSIONS
    clock: Callable[[], float] = time.monotonic
    _sessions: OrderedDict[str, Session] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create(self) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._sessions[session.id] = session
            while len(self._sessions) > self.limit:
                self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The session with this id, if it has not expired; using it keeps it alive."""
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.seen > self.idle:
                del self._sessions[session_id]
                return None
            session.seen = now
            self._sessions.move_to_end(session_id)
            return session

    def end(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)


def csrf_matches(session: Session, sent: str | None) -> bool:
    return sent is not None and hmac.compare_digest(session.csrf.encode(), sent.encode())


def password_matches(expected: str, given: str) -> bool:
    # Compared as digests: equal lengths, so the time taken tells nothing of the password.
    want = hashlib.sha256(expected.encode()).digest()
    got = hashlib.sha256(given.encode("utf-8", "replace")).digest()
    return hmac.compare_digest(want, got)


class LoginThrottle:
    """Failed password logins, counted for the whole dashboard (an attacker has many
    addresses; the operator has the login link)."""

    def __init__(
        self,
        *,
        delay: float = FAILED_LOGIN_DELAY,
        limit: int = MAX_FAILED_LOGINS,
        lockout: float = LOCKOUT_SECONDS,
    ) -> None:
        self.delay = delay
        self._limit = limit
        self._lockout = lockout
        self._failures: list[float] = []
        self._lock = threading.Lock()

    def locked_for(self) -> float:
        """Seconds until password logins are taken again (0: they are)."""
        now = time.monotonic()
        with self._lock:
            self._failures = [t for t in self._failures if now - t < self._lockout]
            if len(self._failures) < self._limit:
                return 0.0
            return self._lockout - (now - self._failures[-1])

    def failed(self) -> None:
        with self._lock:
            self._failures.append(time.monotonic())

    def succeeded(self) -> None:
        with self._lock:
            self._failures.clear()


def allowed_host(host_header: str | None, listen_host: str, port: int) -> bool:
    """Whether a request's ``Host`` names this dashboard (DNS rebinding: a page of another
    site whose name was pointed at this computer sends its own name).

    On a loopback address: 127.0.0.1, localhost or [::1] with the port. On any other address:
    an IP address (a phone types the booth's), localhost, or this computer's own name, with
    the port. Never any other name.
    """
    if not host_header:
        return False
    name, port_given = _split_host(host_header.strip().lower())
    if port_given != port and not (port_given is None and port == 80):
        return False
    loopback_names = {"localhost", "127.0.0.1", "::1"}
    if ipaddress.ip_address(listen_host).is_loopback:
        return name in loopback_names
    if name in loopback_names:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        own = socket.gethostname().lower()
        return name in {own, f"{own}.local", own.split(".")[0]}
    return True


def _split_host(value: str) -> tuple[str, int | None]:
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return "", None
        name, rest = value[1:end], value[end + 1 :]
        port = rest[1:] if rest.startswith(":") else None
    else:
        name, sep, port_text = value.rpartition(":")
        if not sep:
            name, port = value, None
        else:
            port = port_text
    if port is None:
        return name, None
    return (name, int(port)) if port.isdigit() and len(port) <= 5 else ("", None)
