"""A Picsui-like local server for the tests, with rate limits and fault injection.

Owns the far side of the Picsui API as boothsync uses it, under a path prefix (``/v1``):
``POST /events/<id>/photos`` (multipart, the file in ``photo``, an optional ``caption``)
stores the bytes under ``directory/<event_id>/`` and answers 201 with ``{"id", "filename",
"size"}``; ``GET /events/<id>/photos`` lists what is stored (paged, with a ``next`` URL);
``GET /events/<id>`` describes the event; ``GET <prefix>`` answers anyone. Every API call
needs ``Authorization: Bearer <api_key>``. A fixed-window rate limit counts every request
and answers 429 with ``Retry-After`` once it is spent; every answer carries
``X-RateLimit-Limit/Remaining/Reset`` (the reset as delta seconds, epoch seconds or epoch
milliseconds) and a ``Date`` from the server's own clock, which ``clock_skew`` can put off
on purpose. Faults (forced statuses, redirects, dropping the connection after storing an
upload, delays, error bodies that quote the key) come from :class:`boothsync.receiver.Faults`,
which tests change while the server runs, under the one endpoint :data:`ENDPOINT`: every API
request (under ``/events``) draws from it, so a forced answer goes to the next API request
whatever it asks, after the rate limit had its say. Of its fields ``delay``,
``redirect_next``, ``fail_next``, ``retry_after``, ``echo_key``, ``drop_after_store`` and the
rates are used.

Must not: import the rest of boothsync except the local-server plumbing and
:func:`boothsync.paths.free_name` (it stands in for the other end of the network), write to
stderr per request, or let one bad request stop the server. Uploads are read into memory whole
(capped at :data:`MAX_UPLOAD_BYTES`) and parsed by :mod:`tests.fakes.multipart`: it serves
tests, not real weddings.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.server
import json
import logging
import math
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, cast
from urllib.parse import parse_qs, urlsplit

from boothsync.localserver import LocalServer, Rejected, TrackedHTTPServer
from boothsync.paths import free_name
from boothsync.receiver import Faults
from tests.fakes.multipart import MultipartError, parse_multipart

__all__ = [
    "DEMO_API_KEY",
    "DEMO_EVENT_ID",
    "ENDPOINT",
    "MAX_UPLOAD_BYTES",
    "PicsuiServer",
    "ReceivedPhoto",
    "ResetStyle",
]

logger = logging.getLogger(__name__)

DEMO_API_KEY: Final = "demo-key"
DEMO_EVENT_ID: Final = "demo-event"
MAX_UPLOAD_BYTES: Final = 64 * 1024 * 1024
PAGE_SIZE: Final = 50
ENDPOINT: Final = "api"
"""The endpoint every API request draws its faults from (``Faults.fail_next`` entries name it)."""

ResetStyle = Literal["delta", "epoch", "epoch_ms"]

_IDLE_SECONDS = 30.0
_EVENT_PATH = re.compile(r"/events/([^/]+)(/photos)?/?")


@dataclass(frozen=True)
class ReceivedPhoto:
    """One upload the server stored."""

    id: str
    event_id: str
    file_name: str
    """The name the client sent; ``path`` may carry a `` (n)`` suffix."""
    caption: str | None
    content_type: str
    size: int
    sha256: str
    path: Path
    received_at: float


class PicsuiServer(LocalServer):
    """A Picsui-like API on a local port; see the module docstring.

    ``limit`` is ``(requests, window_seconds)`` for a fixed window that starts with the first
    request after the previous one ended; None means no limit (the headers still come, with
    a limit of 1000 per hour). ``clock_skew`` seconds are added to the server's clock (its
    ``Date`` and epoch resets).
    """

    thread_name = "picsui-server"

    def __init__(
        self,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEMO_API_KEY,
        event_id: str = DEMO_EVENT_ID,
        event_name: str = "Demo Event",
        limit: tuple[int, float] | None = None,
        reset_style: ResetStyle = "delta",
        prefix: str = "/v1",
        clock_skew: float = 0.0,
        faults: Faults | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.api_key = api_key
        self.event_id = event_id
        self.event_name = event_name
        self.limit = limit
        self.reset_style: ResetStyle = reset_style
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.clock_skew = clock_skew
        self.faults = faults if faults is not None else Faults()
        self._lock = threading.Lock()
        self._received: list[ReceivedPhoto] = []
        self._requests = 0
        self._answered_429 = 0
        self._rate_limited = 0
        self._window_start: float | None = None
        self._window_count = 0
        self._serve_with(_Server((host, port), self))
        self.base_url = self.origin + self.prefix

    def received(self) -> list[ReceivedPhoto]:
        """Every stored upload, in the order they were stored."""
        with self._lock:
            return list(self._received)

    def remove(self, file_name: str) -> bool:
        """Delete the first stored photo sent as ``file_name``, as the gallery's owner can in
        Picsui's web app: it leaves the listing. Returns whether there was one."""
        with self._lock:
            for index, record in enumerate(self._received):
                if record.file_name == file_name:
                    del self._received[index]
                    record.path.unlink(missing_ok=True)
                    return True
        return False

    @property
    def requests_seen(self) -> int:
        """Every request the server read, whatever the answer."""
        with self._lock:
            return self._requests

    @property
    def answered_429(self) -> int:
        """429 answers given: the rate limit's and forced ones."""
        with self._lock:
            return self._answered_429

    @property
    def rate_limited(self) -> int:
        """429 answers the rate limit gave (forced ones not included)."""
        with self._lock:
            return self._rate_limited

    def now(self) -> float:
        """The server's clock: Unix time plus ``clock_skew``."""
        return time.time() + self.clock_skew

    # The handler's side: state and rules, no HTTP.

    def _admit(self) -> tuple[bool, list[tuple[str, str]]]:
        """Count one request against the window: (allowed, rate-limit headers)."""
        now = self.now()
        with self._lock:
            self._requests += 1
            limit, window = self.limit if self.limit is not None else (1000, 3600.0)
            if self._window_start is None or now >= self._window_start + window:
                self._window_start = now
                self._window_count = 0
            self._window_count += 1
            allowed = self.limit is None or self._window_count <= limit
            if not allowed:
                self._rate_limited += 1
            remaining = max(0, limit - self._window_count)
            reset_at = self._window_start + window
        if self.reset_style == "epoch":
            reset = str(math.ceil(reset_at))
        elif self.reset_style == "epoch_ms":
            reset = str(math.ceil(reset_at * 1000))
        else:
            reset = str(math.ceil(reset_at - now))
        headers = [
            ("X-RateLimit-Limit", str(limit)),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", reset),
        ]
        if not allowed:
            headers.append(("Retry-After", str(max(1, math.ceil(reset_at - now)))))
        return allowed, headers

    def _counted_429(self) -> None:
        with self._lock:
            self._answered_429 += 1

    def _redirect(self) -> tuple[int, str] | None:
        with self._lock:
            return self.faults.redirect(ENDPOINT)

    def _forced(self) -> tuple[int, str | None] | None:
        with self._lock:
            return self.faults.draw(ENDPOINT, errors_apply=True)

    def _take_drop(self) -> bool:
        with self._lock:
            if self.faults.drop_after_store > 0:
                self.faults.drop_after_store -= 1
                return True
        return False

    def _store(
        self, file_name: str, caption: str | None, content_type: str, data: bytes
    ) -> ReceivedPhoto:
        folder = self.directory / self.event_id
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            target = free_name(folder, file_name)
            target.write_bytes(data)
            record = ReceivedPhoto(
                id=f"p{len(self._received) + 1}",
                event_id=self.event_id,
                file_name=file_name,
                caption=caption,
                content_type=content_type,
                size=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                path=target,
                received_at=time.time(),
            )
            self._received.append(record)
        return record


def _photo_json(record: ReceivedPhoto) -> dict[str, Any]:
    return {
        "id": record.id,
        "filename": record.file_name,
        "size": record.size,
        "caption": record.caption,
        "created_at": email.utils.formatdate(record.received_at, usegmt=True),
    }


class _Server(TrackedHTTPServer):
    connection_thread_name = "picsui-conn"
    label = "picsui server"
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], picsui: PicsuiServer) -> None:
        self.picsui = picsui
        super().__init__(address, _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "picsui-local"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = _IDLE_SECONDS

    _rate_headers: list[tuple[str, str]]
    _body: bytes

    def version_string(self) -> str:
        return self.server_version

    def date_time_string(self, timestamp: float | None = None) -> str:
        return email.utils.formatdate(self._picsui.now(), usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("picsui server: %s " + format, self.client_address[0], *args)

    @property
    def _picsui(self) -> PicsuiServer:
        return cast(_Server, self.server).picsui

    def do_GET(self) -> None:
        self._rate_headers = []
        self._body = b""
        try:
            self._dispatch()
        except (ConnectionError, TimeoutError) as exc:
            logger.debug("picsui server: the client went away (%r)", exc)
            self.close_connection = True
        except Exception as exc:
            logger.exception("picsui server: unexpected error answering %s", self.path)
            self.close_connection = True
            self._reply(500, {"error": f"internal error: {type(exc).__name__}"})

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    # The fake's route table: one branch per endpoint and method it serves.
    def _dispatch(self) -> None:  # noqa: C901
        picsui = self._picsui
        split = urlsplit(self.path)
        allowed, self._rate_headers = picsui._admit()
        # The body is read before any answer: answering and closing with a body still
        # unread makes the kernel reset the connection, which can destroy the answer.
        try:
            self._body = self._read_body()
        except Rejected as exc:
            self._reply(exc.status, {"error": exc.message})
            return
        if not allowed:
            self._reply(429, {"error": "rate limit exceeded"})
            return
        if not split.path.startswith(picsui.prefix):
            self._reply(404, {"error": f"no such endpoint: {split.path}"})
            return
        path = split.path[len(picsui.prefix) :]
        if path in ("", "/"):
            self._reply(200, {"service": "picsui-local"})
            return
        match = _EVENT_PATH.fullmatch(path)
        if match is None:
            self._reply(404, {"error": f"no such endpoint: {split.path}"})
            return
        if picsui.faults.delay > 0 and picsui._stopping.wait(picsui.faults.delay):
            self.close_connection = True
            return
        redirect = picsui._redirect()
        if redirect is not None:
            self._reply(redirect[0], {}, [("Location", redirect[1])])
            return
        forced = picsui._forced()
        if forced is not None:
            status, retry_after = forced
            if status == 0:
                self.close_connection = True
                return
            extra = [] if retry_after is None else [("Retry-After", retry_after)]
            error = f"injected fault {status}"
            key = self._api_key()
            if picsui.faults.echo_key and key is not None:
                error += f" (key {key!r})"
            self._reply(status, {"error": error}, extra)
            return
        if self._api_key() != picsui.api_key:
            self._reply(401, {"message": "Unauthenticated."}, [("WWW-Authenticate", "Bearer")])
            return
        if match.group(1) != picsui.event_id:
            self._reply(404, {"error": f"event {match.group(1)!r} not found"})
            return
        photos = match.group(2) is not None
        if self.command == "GET" and not photos:
            self._reply(200, {"data": {"id": picsui.event_id, "name": picsui.event_name}})
        elif self.command == "GET":
            self._list(parse_qs(split.query))
        elif self.command == "POST" and photos:
            self._upload()
        else:
            self._reply(405, {"error": f"{self.command} is not allowed here"})

    def _list(self, query: dict[str, list[str]]) -> None:
        try:
            page = max(1, int(query.get("page", ["1"])[0]))
        except ValueError:
            self._reply(422, {"error": "page must be a number"})
            return
        records = self._picsui.received()
        chunk = records[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        more = len(records) > page * PAGE_SIZE
        next_url = f"{self._picsui.base_url}/events/{self._picsui.event_id}/photos?page={page + 1}"
        body = {"data": [_photo_json(r) for r in chunk], "next": next_url if more else None}
        self._reply(200, body)

    def _upload(self) -> None:
        try:
            parts = parse_multipart(self._body, self.headers.get("Content-Type") or "")
        except MultipartError as exc:
            self._reply(422, {"message": str(exc)})
            return
        fields = {params.get("name"): (f, t, d) for params, f, t, d in parts}
        if "photo" not in fields or not fields["photo"][0]:
            self._reply(422, {"message": "The photo field is required."})
            return
        file_name, part_type, data = fields["photo"]
        assert file_name is not None
        if any(c in file_name for c in "/\\\0") or file_name in (".", ".."):
            self._reply(422, {"message": f"filename {file_name!r} is not a plain name"})
            return
        caption = fields["caption"][2].decode("utf-8", "replace") if "caption" in fields else None
        record = self._picsui._store(
            file_name, caption, part_type or "application/octet-stream", data
        )
        if self._picsui._take_drop():
            self.close_connection = True
            return
        self._reply(201, {"id": record.id, "filename": record.file_name, "size": record.size})

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding") is not None:
            self.close_connection = True
            raise Rejected(411, "send the body with a Content-Length")
        value = (self.headers.get("Content-Length") or "0").strip()
        if not (value.isascii() and value.isdigit()):
            self.close_connection = True
            raise Rejected(400, "invalid Content-Length")
        length = int(value)
        if length > MAX_UPLOAD_BYTES:
            self.close_connection = True
            raise Rejected(413, "the photo is too large")
        data = self.rfile.read(length)
        if len(data) < length:
            raise ConnectionError("the body ended early")
        return data

    def _api_key(self) -> str | None:
        scheme, _, value = (self.headers.get("Authorization") or "").strip().partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    def _reply(self, status: int, data: Any, extra: Sequence[tuple[str, str]] = ()) -> None:
        if status == 429:
            self._picsui._counted_429()
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (*self._rate_headers, *extra):
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
