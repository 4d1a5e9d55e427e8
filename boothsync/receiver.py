"""An EventPics-compatible local server for the demo and the tests, with fault injection.

Owns the far side of the EventPics protocol (DESIGN.md), answered the way the
service and its storage answer: ``POST /getuploadurl`` hands out presigned
upload URLs, ``PUT /upload/<token>`` stores the bytes, ``GET
/geteventsandalbums`` lists a key's events. Every stored file lands at
``directory/<linkId>/<albumId or _no-album>/<fileName>`` with a
``<name>.json`` sidecar beside it. ``GET /`` is a small page for a person
with a browser, listing what arrived (every name escaped: it comes from
whoever sent it). Faults (forced answers, error and reset
rates, delays, short-lived URLs, huge or trickling answers, redirects, upload
URLs in clear text, error bodies that quote the key) are injected from
:class:`Faults`, which tests change while the server runs; the tests' fakes of the other
galleries take their faults from the same class. Given an SSL context
it serves https (for tests of a client's TLS side). A receiver in another process is driven through
``POST /_control/faults`` (fields merged in) and read through ``GET
/_control/received`` and ``GET /_control/counts``; faults never touch these.

Must not: import the client side of boothsync (it stands in for the other end of the
network, so it must not share the client's mistakes; it takes only the local-server plumbing
and :func:`boothsync.paths.free_name`), hold a whole upload in
memory, write to stderr per request, or let one bad request stop the server.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import html
import http.server
import json
import logging
import math
import os
import random
import re
import secrets
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, cast
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from boothsync.localserver import (
    ClientGone,
    Framing,
    LocalServer,
    Rejected,
    TrackedHTTPServer,
    abort_connection,
    body_framing,
    linger_close,
)
from boothsync.paths import free_name

__all__ = [
    "DEMO_API_KEY",
    "ENDPOINTS",
    "MAX_UPLOAD_BYTES",
    "OTHER",
    "AlbumSpec",
    "EventSpec",
    "Faults",
    "ReceivedFile",
    "Receiver",
    "demo_events",
]

logger = logging.getLogger(__name__)

DEMO_API_KEY: Final = "demo-key"
ENDPOINTS: Final = ("getuploadurl", "put", "geteventsandalbums")
"""The API endpoints faults apply to; also the keys of :meth:`Receiver.counts`."""
OTHER: Final = "other"
"""The :meth:`Receiver.counts` key for requests that no endpoint took (404)."""
MAX_UPLOAD_BYTES: Final = 200 * 1024 * 1024

_CHUNK = 256 * 1024
_MAX_JSON_BYTES = 1024 * 1024
_SPACES = b" " * _CHUNK
_NO_ALBUM = "_no-album"
_UPLOAD_PREFIX = "/upload/"
# A client that stops talking holds a thread; stop() cuts idle ones at once anyway.
_IDLE_SECONDS = 60.0
# The page at GET / lists this many uploads, newest first, and refreshes itself this often.
_PAGE_ROWS = 200
_PAGE_REFRESH_SECONDS = 5
_HOST_HEADER = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")
_S3_CODES: Final = {
    400: "BadRequest",
    403: "AccessDenied",
    404: "NoSuchKey",
    500: "InternalError",
    503: "SlowDown",
}


@dataclass(frozen=True)
class AlbumSpec:
    """An album inside a gallery event."""

    id: str
    title: str


@dataclass(frozen=True)
class EventSpec:
    """A gallery event (an EventPics link) and its albums."""

    title: str
    link_id: str
    albums: list[AlbumSpec] = field(default_factory=list)


def demo_events() -> list[EventSpec]:
    """The events that :data:`DEMO_API_KEY` sees unless a receiver is given other keys."""
    return [
        EventSpec("Demo Wedding", "demo", [AlbumSpec("a1", "Ceremony"), AlbumSpec("a2", "Party")])
    ]


@dataclass
class Faults:
    """What to get wrong on purpose. Mutable: change it while the receiver runs.

    Forced answers go first, then ``reset_rate``, then ``error_rate``; they apply to the
    three API endpoints only, never to ``/_control``. A ``fail_next`` entry is taken by the
    next request to its endpoint (the first entry naming that endpoint); status 0 closes the
    connection without an answer.
    """

    error_rate: float = 0.0
    """Share of getuploadurl and PUT requests answered with ``error_status``."""
    error_status: int = 503
    retry_after: str | None = None
    """Retry-After header sent with every injected error."""
    reset_rate: float = 0.0
    """Share of API requests where the connection is closed with no answer at all."""
    delay: float = 0.0
    """Seconds to wait after the headers arrive and before anything else; stop() cuts it."""
    stall_rate: float = 0.0
    """Share of the requests neither failed nor reset (any path, the probe's too) that stall:
    wait ``stall`` seconds before they are answered, as an overloaded server does."""
    stall: float = 0.0
    url_lifetime: float = 300.0
    """How long a presigned upload URL is valid, in seconds."""
    fail_next: list[tuple[str, int]] = field(default_factory=list)
    """Forced answers ``(endpoint, status)``, endpoint one of :data:`ENDPOINTS`."""
    seed: int | None = None
    """Seed of the random generator behind the rates; changing it reseeds."""
    answer_bytes: dict[str, int] = field(default_factory=dict)
    """Per endpoint, the size its answers' bodies (success or error) are padded to with spaces
    (after the JSON or XML, where they are allowed), sent in pieces: ``{"put": 10**8}``."""
    trickle: dict[str, float] = field(default_factory=dict)
    """Per endpoint, seconds before each byte of its answers, status line and headers
    included: ``{"getuploadurl": 0.5}``; stop() cuts it short."""
    answer_delay: dict[str, float] = field(default_factory=dict)
    """Per endpoint, seconds between reading a request's whole body and answering, as a
    gallery behind a slow uplink answers only once the last bytes crossed it while the
    sender's system took them at once: ``{"put": 2.0}``; stop() cuts it short."""
    redirect_next: list[tuple[str, int, str]] = field(default_factory=list)
    """Redirects ``(endpoint, status, location)`` for the next requests to an endpoint, taken
    like ``fail_next`` (and before it). ``{path}`` in the location stands for the request's
    own path; an empty location is the request's own URL."""
    upload_scheme: str | None = None
    """The scheme of the upload URLs handed out (``"http"`` from an https receiver: an upload
    URL in clear text); None: the receiver's own."""
    echo_key: bool = False
    """Error answers quote the API key the request carried, as some servers do."""
    drop_after_store: int = 0
    """The next this many uploads are stored, then the connection closes with no answer (the
    answer lost after the server kept the file). The tests' Picsui fake honours it; this
    receiver answers every upload it stored."""
    _rng: random.Random | None = field(default=None, init=False, repr=False, compare=False)
    _rng_seed: int | None = field(default=None, init=False, repr=False, compare=False)

    def redirect(self, endpoint: str) -> tuple[int, str] | None:
        """The redirect ``(status, location)`` due for one request to ``endpoint``, or None.
        The server calls it under its own lock."""
        for index, (name, status, location) in enumerate(self.redirect_next):
            if name == endpoint:
                del self.redirect_next[index]
                return status, location
        return None

    def draw(self, endpoint: str, *, errors_apply: bool) -> tuple[int, str | None] | None:
        """The injected answer for one request to ``endpoint``, ``(status, retry_after)``
        (status 0: close the connection), or None. ``errors_apply``: ``error_rate`` counts for
        this endpoint. The server calls it under its own lock."""
        for index, (name, status) in enumerate(self.fail_next):
            if name == endpoint:
                del self.fail_next[index]
                return status, self.retry_after
        if self._rng is None or self.seed != self._rng_seed:
            self._rng_seed = self.seed
            self._rng = random.Random(self.seed)
        if self.reset_rate > 0 and self._rng.random() < self.reset_rate:
            return 0, None
        if errors_apply and self.error_rate > 0 and self._rng.random() < self.error_rate:
            return self.error_status, self.retry_after
        return None

    def draw_stall(self) -> float:
        """Seconds this request stalls (0 for most); the server calls it under its own lock."""
        if self.stall_rate <= 0 or self.stall <= 0:
            return 0.0
        if self._rng is None or self.seed != self._rng_seed:
            self._rng_seed = self.seed
            self._rng = random.Random(self.seed)
        return self.stall if self._rng.random() < self.stall_rate else 0.0


@dataclass(frozen=True)
class ReceivedFile:
    """One upload the receiver stored."""

    file_name: str
    """The name the client asked for; ``path`` may carry a `` (n)`` suffix."""
    link_id: str
    album_id: str | None
    taken_at: int | None
    content_type: str
    size: int
    sha256: str
    path: Path
    received_at: float
    """Unix time in seconds."""

    def to_json(self) -> dict[str, Any]:
        """The record as ``/_control/received`` sends it (``path`` as a string)."""
        data = dataclasses.asdict(self)
        data["path"] = str(self.path)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReceivedFile:
        """The inverse of :meth:`to_json`."""
        values = dict(data)
        values["path"] = Path(values["path"])
        return cls(**values)


@dataclass
class _Grant:
    """What a presigned upload URL was issued for."""

    link_id: str
    album_id: str | None
    file_name: str
    taken_at: int | None
    expires_at: float  # time.monotonic()
    used: bool = False


class Receiver(LocalServer):
    """An EventPics-compatible server on a local port, storing uploads under ``directory``.

    The socket is bound by the constructor (port 0 picks a free one), so :attr:`base_url` is
    known before serving. Use :meth:`start` (or ``with``) for a background thread, or
    :meth:`serve_forever` to serve on the calling thread; :meth:`stop` ends either.
    """

    thread_name = "receiver"

    def __init__(
        self,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        keys: Mapping[str, Sequence[EventSpec]] | None = None,
        faults: Faults | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.faults = faults if faults is not None else Faults()
        if keys is None:
            keys = {DEMO_API_KEY: demo_events()}
        self._keys: dict[str, tuple[EventSpec, ...]] = {k: tuple(v) for k, v in keys.items()}
        self._lock = threading.Lock()
        self._grants: dict[str, _Grant] = {}
        self._received: list[ReceivedFile] = []
        self._counts: dict[str, dict[int, int]] = {}
        self._url_reuses = 0
        self.scheme = "http" if ssl_context is None else "https"
        self._serve_with(_Server((host, port), self, ssl_context))
        self.base_url = f"{self.scheme}:{self.origin.split(':', 1)[1]}"

    def received(self) -> list[ReceivedFile]:
        """Every stored upload, in the order they completed."""
        with self._lock:
            return list(self._received)

    def counts(self) -> dict[str, dict[int, int]]:
        """Answers given, ``{endpoint: {status: n}}``; injected faults included, 0 for resets.

        Keys are :data:`ENDPOINTS` and :data:`OTHER`; ``/_control`` requests are not counted.
        """
        with self._lock:
            return {endpoint: dict(statuses) for endpoint, statuses in self._counts.items()}

    def page(self) -> str:
        """The HTML page at ``GET /``: what arrived, newest first, every text escaped."""
        with self._lock:
            received = list(self._received)
            albums = {
                (event.link_id, album.id): album.title
                for events in self._keys.values()
                for event in events
                for album in event.albums
            }
        rows = []
        for record in reversed(received[-_PAGE_ROWS:]):
            name = record.file_name
            if record.path.name != name:
                name += f" (stored as {record.path.name})"
            if record.album_id is None:
                album = "no album"
            else:
                title = albums.get((record.link_id, record.album_id))
                album = record.album_id + (f" ({title})" if title else "")
            cells = (
                name,
                _page_time_ms(record.taken_at),
                album,
                record.link_id,
                f"{record.size:,} byte{'s' if record.size != 1 else ''}",
                _page_time_ms(int(record.received_at * 1000)),
            )
            rows.append("<tr>" + "".join(f"<td>{_text(cell)}</td>" for cell in cells) + "</tr>")
        count = len(received)
        if count == 0:
            summary = "Nothing received yet."
        elif count > _PAGE_ROWS:
            summary = f"{count} files received; the newest {_PAGE_ROWS} are listed."
        else:
            summary = f"{count} file{'s' if count != 1 else ''} received, newest first."
        table = ""
        if rows:
            heads = ("file", "takenAt", "album", "event", "size", "received")
            table = (
                "<table><thead><tr>"
                + "".join(f"<th>{head}</th>" for head in heads)
                + "</tr></thead><tbody>\n"
                + "\n".join(rows)
                + "\n</tbody></table>"
            )
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="refresh" content="{_PAGE_REFRESH_SECONDS}">'
            "<title>boothsync receiver</title><style>"
            "body{font-family:sans-serif;margin:2em}"
            "table{border-collapse:collapse}"
            "th,td{border-bottom:1px solid #ccc;padding:.3em .8em;text-align:left}"
            "</style></head><body>\n"
            "<h1>EventPics-compatible receiver</h1>\n"
            f"<p>{_text(summary)} Files are stored in <code>{_text(str(self.directory))}"
            "</code>, each with a <code>.json</code> record. This page shows the uploads since "
            "the receiver started and refreshes itself.</p>\n"
            f"{table}\n</body></html>\n"
        )

    @property
    def url_reuses(self) -> int:
        """PUTs to an upload URL that had already taken a successful PUT."""
        with self._lock:
            return self._url_reuses

    # The handler's side: state and rules, no HTTP.

    def _count(self, endpoint: str, status: int) -> None:
        with self._lock:
            statuses = self._counts.setdefault(endpoint, {})
            statuses[status] = statuses.get(status, 0) + 1

    def _fault_delay(self) -> float:
        with self._lock:
            return float(self.faults.delay)

    def _answer_delay(self, endpoint: str) -> float:
        with self._lock:
            return float(self.faults.answer_delay.get(endpoint, 0.0))

    def _draw_stall(self) -> float:
        with self._lock:
            return self.faults.draw_stall()

    def _draw_fault(self, endpoint: str) -> tuple[int, str | None] | None:
        """The injected answer for this request, ``(status, retry_after)``, or None."""
        with self._lock:
            return self.faults.draw(endpoint, errors_apply=endpoint != "geteventsandalbums")

    def _draw_redirect(self, endpoint: str) -> tuple[int, str] | None:
        with self._lock:
            return self.faults.redirect(endpoint)

    def _answer_faults(self, endpoint: str) -> tuple[int, float]:
        """``(answer_bytes, trickle)`` for an answer of ``endpoint``, as they are now."""
        with self._lock:
            faults = self.faults
            return faults.answer_bytes.get(endpoint, 0), faults.trickle.get(endpoint, 0.0)

    def _echo_key(self) -> bool:
        with self._lock:
            return self.faults.echo_key

    def _upload_scheme(self) -> str:
        with self._lock:
            return self.faults.upload_scheme or self.scheme

    def _update_faults(self, changes: Any) -> dict[str, Any]:
        if not isinstance(changes, dict):
            raise Rejected(400, "faults must be a JSON object")
        checked = {str(name): _check_fault(str(name), value) for name, value in changes.items()}
        with self._lock:
            for name, value in checked.items():
                setattr(self.faults, name, value)
            faults = self.faults
            return {
                f.name: copy.deepcopy(getattr(faults, f.name))
                for f in dataclasses.fields(faults)
                if f.init
            }

    def _events_for(self, key: str | None) -> tuple[EventSpec, ...] | None:
        return None if key is None else self._keys.get(key)

    def _issue_upload_url(self, request: Any) -> str:
        """Check a getuploadurl body and return the token of a new upload URL."""
        if not isinstance(request, dict):
            raise Rejected(400, "request body must be a JSON object")
        api_key = request.get("apiKey")
        events = self._events_for(api_key) if isinstance(api_key, str) else None
        if events is None:
            raise Rejected(401, "missing or unknown apiKey")
        link_id = request.get("linkId")
        event = next((e for e in events if e.link_id == link_id), None)
        if event is None:
            raise Rejected(404, f"unknown linkId {link_id!r}")
        album_id = request.get("albumId")
        if album_id is not None and not any(a.id == album_id for a in event.albums):
            raise Rejected(404, f"unknown albumId {album_id!r} in event {event.link_id!r}")
        file_name = request.get("fileName")
        if not isinstance(file_name, str) or not file_name:
            raise Rejected(400, "fileName must be a non-empty string")
        if any(c in file_name for c in "/\\\0") or file_name in (".", ".."):
            raise Rejected(400, f"fileName {file_name!r} must be a plain file name")
        taken_at = request.get("takenAt")
        if "takenAt" in request and (not isinstance(taken_at, int) or isinstance(taken_at, bool)):
            raise Rejected(400, f"takenAt must be an integer (Unix milliseconds), not {taken_at!r}")
        token = secrets.token_urlsafe(24)
        with self._lock:
            expires_at = time.monotonic() + self.faults.url_lifetime
            self._grants[token] = _Grant(event.link_id, album_id, file_name, taken_at, expires_at)
        return token

    def _grant_for(self, token: str) -> _Grant | None:
        """The grant behind an upload URL; counts the PUT as a reuse if it already succeeded."""
        with self._lock:
            grant = self._grants.get(token)
            if grant is not None and grant.used:
                self._url_reuses += 1
            return grant

    def _store(
        self, temp: Path, grant: _Grant, *, content_type: str, size: int, sha256: str
    ) -> ReceivedFile:
        """Move a complete upload into place under a free name and record it."""
        received_at = time.time()
        with self._lock:
            # Naming, renaming and the sidecar happen under the lock so that two uploads of
            # the same name never pick the same free name.
            final = free_name(temp.parent, grant.file_name, sidecar=".json")
            os.replace(temp, final)
            grant.used = True
            sidecar = {
                "fileName": grant.file_name,
                "linkId": grant.link_id,
                "albumId": grant.album_id,
                "takenAt": grant.taken_at,
                "contentType": content_type,
                "size": size,
                "sha256": sha256,
                "receivedAt": received_at,
            }
            final.with_name(final.name + ".json").write_text(
                json.dumps(sidecar, indent=2) + "\n", encoding="utf-8"
            )
            record = ReceivedFile(
                file_name=grant.file_name,
                link_id=grant.link_id,
                album_id=grant.album_id,
                taken_at=grant.taken_at,
                content_type=content_type,
                size=size,
                sha256=sha256,
                path=final,
                received_at=received_at,
            )
            self._received.append(record)
        logger.debug("receiver stored %s (%d bytes)", final, size)
        return record


def _text(value: str) -> str:
    """``value`` safe inside HTML text or a quoted attribute."""
    return html.escape(value, quote=True)


def _page_time_ms(ms: int | None) -> str:
    """Unix milliseconds as local time with its offset; "not sent" for None, the number itself
    when it is no time a calendar has (a client may send anything)."""
    if ms is None:
        return "not sent"
    try:
        moment = datetime.fromtimestamp(ms / 1000).astimezone()
    except (OverflowError, OSError, ValueError):
        return f"{ms} (not a time)"
    return moment.isoformat(sep=" ", timespec="milliseconds")


def _as_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise Rejected(400, f"{name} must be a number")
    return float(value)


def _as_status(name: str, value: Any, *, allow_reset: bool) -> int:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if is_int and (200 <= value <= 599 or (allow_reset and value == 0)):
        return cast(int, value)
    raise Rejected(400, f"{name} must be an HTTP status 200-599" + (" or 0" if allow_reset else ""))


def _check_fault(name: str, value: Any) -> Any:
    """A value for ``Faults.<name>`` from JSON, checked; raises Rejected."""
    check = _FAULT_CHECKS.get(name)
    if check is None:
        raise Rejected(400, f"unknown fault {name!r}")
    return check(name, value)


def _rate(name: str, value: Any) -> float:
    rate = _as_number(name, value)
    if not 0.0 <= rate <= 1.0:
        raise Rejected(400, f"{name} must be between 0 and 1")
    return rate


def _seconds(name: str, value: Any) -> float:
    seconds = _as_number(name, value)
    if seconds < 0:
        raise Rejected(400, f"{name} must not be negative")
    return seconds


def _by_endpoint(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or any(key not in ENDPOINTS for key in value):
        raise Rejected(400, f"{name} must map endpoints to numbers")
    return value


def _trickle(name: str, value: Any) -> dict[str, float]:
    delays = {key: _as_number(name, v) for key, v in _by_endpoint(name, value).items()}
    if any(v < 0 for v in delays.values()):
        raise Rejected(400, f"{name} must not be negative")
    return delays


def _answer_bytes(name: str, value: Any) -> dict[str, int]:
    counts = _by_endpoint(name, value)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in counts.values()):
        raise Rejected(400, "answer_bytes must map endpoints to byte counts")
    return dict(counts)


def _echo_key(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise Rejected(400, "echo_key must be true or false")


def _upload_scheme(name: str, value: Any) -> str | None:
    if value in (None, "http", "https"):
        return cast("str | None", value)
    raise Rejected(400, 'upload_scheme must be "http", "https" or null')


def _redirect_next(name: str, value: Any) -> list[tuple[str, int, str]]:
    if not isinstance(value, list):
        raise Rejected(400, "redirect_next must be a list of [endpoint, status, location]")
    redirects: list[tuple[str, int, str]] = []
    for entry in value:
        if (
            not isinstance(entry, list)
            or len(entry) != 3
            or entry[0] not in ENDPOINTS
            or not isinstance(entry[2], str)
        ):
            raise Rejected(400, f"redirect_next entry {entry!r} is not [endpoint, status, url]")
        status = entry[1]
        if isinstance(status, bool) or not isinstance(status, int) or not 300 <= status < 400:
            raise Rejected(400, "a redirect_next status must be 300-399")
        redirects.append((entry[0], status, entry[2]))
    return redirects


def _error_status(name: str, value: Any) -> int:
    return _as_status(name, value, allow_reset=False)


def _retry_after(name: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise Rejected(400, "retry_after must be a string or null")


def _seed(name: str, value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise Rejected(400, "seed must be an integer or null")


def _fail_next(name: str, value: Any) -> list[tuple[str, int]]:
    if not isinstance(value, list):
        raise Rejected(400, "fail_next must be a list of [endpoint, status] pairs")
    entries: list[tuple[str, int]] = []
    for entry in value:
        if not isinstance(entry, list) or len(entry) != 2 or entry[0] not in ENDPOINTS:
            raise Rejected(400, f"fail_next entry {entry!r} is not [endpoint, status]")
        entries.append((entry[0], _as_status("fail_next status", entry[1], allow_reset=True)))
    return entries


# Each fault that /_control may set, with the check of its value.
_FAULT_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "error_rate": _rate,
    "reset_rate": _rate,
    "stall_rate": _rate,
    "delay": _seconds,
    "url_lifetime": _seconds,
    "stall": _seconds,
    "answer_bytes": _answer_bytes,
    "trickle": _trickle,
    "answer_delay": _trickle,
    "echo_key": _echo_key,
    "upload_scheme": _upload_scheme,
    "redirect_next": _redirect_next,
    "error_status": _error_status,
    "retry_after": _retry_after,
    "seed": _seed,
    "fail_next": _fail_next,
}


def _s3_error(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    ).encode()


def _s3_code(status: int) -> str:
    if status in _S3_CODES:
        return _S3_CODES[status]
    try:
        return HTTPStatus(status).phrase.replace(" ", "")
    except ValueError:
        return "InjectedFault"


def _event_json(event: EventSpec) -> dict[str, Any]:
    return {
        "title": event.title,
        "linkId": event.link_id,
        "albums": [{"id": album.id, "title": album.title} for album in event.albums],
    }


class _Server(TrackedHTTPServer):
    """The receiver's server: can also reset or linger-close a connection on purpose."""

    connection_thread_name = "receiver-conn"
    label = "receiver"
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], receiver: Receiver, ssl_context: ssl.SSLContext | None
    ) -> None:
        self.receiver = receiver
        self.ssl_context = ssl_context
        self._resets: set[socket.socket] = set()
        self._lingers: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        if self.ssl_context is not None:
            # The handshake happens in the connection's own thread (see _Handler.setup), so a
            # client that never completes one cannot hold up the accepting loop.
            conn = self.ssl_context.wrap_socket(
                conn, server_side=True, do_handshake_on_connect=False
            )
        return conn, address

    def mark_reset(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._resets.add(conn)

    def mark_linger(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._lingers.add(conn)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        conn = cast(socket.socket, request)
        with self._conn_lock:
            reset = conn in self._resets
            linger = conn in self._lingers
            self._resets.discard(conn)
            self._lingers.discard(conn)
        if reset:
            abort_connection(conn)
        elif linger:
            linger_close(conn, self.receiver._stopping)
        else:
            super().shutdown_request(request)


class _Trickle:
    """A writer that sends one byte at a time, ``delay`` seconds apart (a fault)."""

    def __init__(self, raw: Any, delay: float, stopping: threading.Event) -> None:
        self._raw = raw
        self._delay = delay
        self._stopping = stopping

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        for index in range(len(view)):
            if self._stopping.wait(self._delay):
                raise ConnectionAbortedError("the receiver is stopping")
            self._raw.write(view[index : index + 1])
            self._raw.flush()
        return len(view)

    def flush(self) -> None:
        self._raw.flush()


class _Handler(http.server.BaseHTTPRequestHandler):
    """One connection: answers its requests in turn while the client keeps it open."""

    protocol_version = "HTTP/1.1"
    server_version = "boothsync-receiver"
    sys_version = ""
    # An answer is two writes (headers, body); Nagle would hold the second back.
    disable_nagle_algorithm = True
    timeout = _IDLE_SECONDS

    _framing: Framing
    _length: int
    _body_pending: bool
    _body_partial: bool
    _answered: bool

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self._scratch = memoryview(bytearray(_CHUNK))
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("receiver: %s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    @property
    def _server(self) -> _Server:
        return cast(_Server, self.server)

    @property
    def _receiver(self) -> Receiver:
        return self._server.receiver

    # Routing and errors

    def _dispatch(self) -> None:
        self._answered = False
        self._body_partial = False
        self._framing, self._length = body_framing(self.headers)
        self._body_pending = self._framing != "none" and not (
            self._framing == "length" and self._length == 0
        )
        path = urlsplit(self.path).path
        endpoint: str | None = OTHER
        try:
            endpoint, action = self._route(self.command, path)
            if endpoint in ENDPOINTS and self._inject_fault(endpoint):
                return
            if endpoint is not None and self._stall():
                return
            action()
        except (ClientGone, ConnectionError, TimeoutError) as exc:
            logger.debug("receiver: %s %s: the client went away (%r)", self.command, path, exc)
            self.close_connection = True
        except Exception as exc:
            logger.exception("receiver: unexpected error answering %s %s", self.command, path)
            self._internal_error(endpoint, exc)

    def _route(self, method: str, path: str) -> tuple[str | None, Callable[[], None]]:
        """(counts key or None for /_control, action) for a request."""
        if method == "POST" and path == "/getuploadurl":
            return "getuploadurl", self._get_upload_url
        if method == "PUT" and path.startswith(_UPLOAD_PREFIX):
            token = path[len(_UPLOAD_PREFIX) :]
            return "put", lambda: self._put(token)
        if method == "GET" and path == "/geteventsandalbums":
            return "geteventsandalbums", self._events
        if method in ("GET", "HEAD") and path == "/":
            # Counted (and slowed by stalls and trickles) as before it had a page: a client's
            # reachability probe asks for its base URL, which is this.
            return OTHER, self._page
        if method == "POST" and path == "/_control/faults":
            return None, self._control_faults
        if method == "GET" and path == "/_control/received":
            return None, self._control_received
        if method == "GET" and path == "/_control/counts":
            return None, self._control_counts
        return OTHER, self._not_found

    def _internal_error(self, endpoint: str | None, exc: Exception) -> None:
        if self._answered:
            self.close_connection = True
            return
        try:
            error = f"internal error: {type(exc).__name__}: {exc}"
            self._reply_json(endpoint, 500, {"error": error})
        except (ClientGone, OSError):
            self.close_connection = True

    def _stall(self) -> bool:
        """Wait out a stall if one is drawn; True when the receiver is stopping meanwhile (the
        request is then dropped unanswered)."""
        stall = self._receiver._draw_stall()
        if stall > 0 and self._receiver._stopping.wait(stall):
            self._reset(None)
            return True
        return False

    def _inject_fault(self, endpoint: str) -> bool:
        """Answer with an injected fault if one is due; True when the request is done."""
        receiver = self._receiver
        delay = receiver._fault_delay()
        if delay > 0 and receiver._stopping.wait(delay):
            self._reset(None)  # shutting down: no answer, and none counted
            return True
        redirect = receiver._draw_redirect(endpoint)
        if redirect is not None:
            status, location = redirect
            target = (
                location.replace("{path}", self.path) if location else self._origin() + self.path
            )
            self._reply(endpoint, status, headers=[("Location", target)])
            return True
        fault = receiver._draw_fault(endpoint)
        if fault is None:
            return False
        status, retry_after = fault
        if status == 0:
            self._reset(endpoint)
            return True
        headers = [] if retry_after is None else [("Retry-After", retry_after)]
        if endpoint == "put":
            message = self._echo("Injected fault")
            self._reply_xml(endpoint, status, _s3_code(status), message, headers)
        else:
            request = self._key_body() if endpoint == "getuploadurl" else None
            error = self._echo(f"injected fault {status}", request)
            self._reply_json(endpoint, status, {"error": error}, headers)
        return True

    # Endpoints

    def _get_upload_url(self) -> None:
        request: Any = None
        try:
            request = self._read_json()
            token = self._receiver._issue_upload_url(request)
        except Rejected as exc:
            self._reply_json(
                "getuploadurl", exc.status, {"error": self._echo(exc.message, request)}
            )
            return
        origin = self._origin(self._receiver._upload_scheme())
        self._reply_json("getuploadurl", 200, {"uploadUrl": f"{origin}{_UPLOAD_PREFIX}{token}"})

    def _put(self, token: str) -> None:
        grant = self._receiver._grant_for(token)
        if grant is None:
            self._reply_xml(
                "put",
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
            return
        if time.monotonic() >= grant.expires_at:
            self._reply_xml("put", 403, "AccessDenied", "Request has expired")
            return
        if self._framing in ("chunked", "none"):
            message = "You must provide the Content-Length HTTP header."
            self._reply_xml("put", 411, "MissingContentLength", message)
            return
        if self._framing == "invalid":
            self._reply_xml("put", 400, "InvalidArgument", "Content-Length is not a byte count.")
            return
        content_type = (self.headers.get("Content-Type") or "").strip()
        if not content_type:
            self._reply_xml("put", 400, "InvalidArgument", "A Content-Type header is required.")
            return
        if self._length > MAX_UPLOAD_BYTES:
            message = "Your proposed upload exceeds the maximum allowed size."
            self._reply_xml("put", 413, "EntityTooLarge", message)
            return
        folder = self._receiver.directory / grant.link_id / (grant.album_id or _NO_ALBUM)
        folder.mkdir(parents=True, exist_ok=True)
        # Received into a hidden temp file beside the target and renamed when complete, so a
        # broken upload never shows up as a file.
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=".", suffix=".part")
        temp = Path(temp_name)
        try:
            with open(fd, "wb") as out:
                sha256 = self._receive_body(out)
            record = self._receiver._store(
                temp, grant, content_type=content_type, size=self._length, sha256=sha256
            )
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        late = self._receiver._answer_delay("put")
        if late > 0 and self._receiver._stopping.wait(late):
            return
        self._reply("put", 200, headers=[("ETag", f'"{record.sha256}"')])

    def _events(self) -> None:
        key = self._api_key()
        events = self._receiver._events_for(key)
        if events is None:
            error = self._echo("missing API key" if key is None else "unknown API key")
            headers = [("WWW-Authenticate", "Bearer")]
            self._reply_json("geteventsandalbums", 401, {"error": error}, headers)
            return
        body = {"events": [_event_json(event) for event in events]}
        self._reply_json("geteventsandalbums", 200, body)

    def _control_faults(self) -> None:
        try:
            faults = self._receiver._update_faults(self._read_json())
        except Rejected as exc:
            self._reply_json(None, exc.status, {"error": exc.message})
            return
        self._reply_json(None, 200, faults)

    def _control_received(self) -> None:
        self._reply_json(None, 200, [record.to_json() for record in self._receiver.received()])

    def _control_counts(self) -> None:
        counts = {
            endpoint: {str(status): n for status, n in statuses.items()}
            for endpoint, statuses in self._receiver.counts().items()
        }
        self._reply_json(None, 200, {"counts": counts, "urlReuses": self._receiver.url_reuses})

    def _page(self) -> None:
        body = self._receiver.page().encode("utf-8")
        headers = [
            # Belt and braces behind the escaping: no script, no outside resource ever runs.
            ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
            ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "no-store"),
        ]
        self._reply(OTHER, 200, body, "text/html; charset=utf-8", headers)

    def _not_found(self) -> None:
        self._reply_json(OTHER, 404, {"error": f"no such endpoint: {self.command} {self.path}"})

    # Request bodies

    def _read_json(self) -> Any:
        if self._framing == "chunked":
            raise Rejected(411, "send the body with a Content-Length, not chunked")
        if self._framing == "invalid":
            raise Rejected(400, "invalid Content-Length")
        if self._length > _MAX_JSON_BYTES:
            raise Rejected(413, "request body too large")
        self._body_partial = True
        try:
            raw = self.rfile.read(self._length)
        except OSError as exc:
            raise ClientGone(str(exc)) from exc
        if len(raw) < self._length:
            raise ClientGone("body ended early")
        self._body_pending = self._body_partial = False
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise Rejected(400, "request body is not valid JSON") from None

    def _receive_body(self, out: Any) -> str:
        """Copy the declared body to ``out`` chunk by chunk; its sha256 in hex."""
        digest = hashlib.sha256()
        self._body_partial = True
        remaining = self._length
        while remaining:
            chunk = self._read_chunk(remaining)
            digest.update(chunk)
            out.write(chunk)
            remaining -= len(chunk)
        self._body_pending = self._body_partial = False
        return digest.hexdigest()

    def _read_chunk(self, remaining: int) -> memoryview:
        view = self._scratch[: min(_CHUNK, remaining)]
        try:
            n = self.rfile.readinto(view)
        except OSError as exc:
            raise ClientGone(str(exc)) from exc
        if not n:
            raise ClientGone("body ended early")
        return view[:n]

    def _settle_body(self) -> None:
        """Before answering: read away a body nobody used, or give up the connection."""
        if not self._body_pending:
            return
        if self._body_partial or self._framing != "length" or self._length > MAX_UPLOAD_BYTES:
            self.close_connection = True
            self._server.mark_linger(self.connection)
            return
        self._body_partial = True
        remaining = self._length
        while remaining:
            remaining -= len(self._read_chunk(remaining))
        self._body_pending = self._body_partial = False

    # Answers

    def _reply(
        self,
        endpoint: str | None,
        status: int,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._settle_body()
        # Counted before sending, so a client that has the answer also sees it counted.
        answer_bytes, trickle = 0, 0.0
        if endpoint is not None:
            self._receiver._count(endpoint, status)
            answer_bytes, trickle = self._receiver._answer_faults(endpoint)
        padding = max(0, answer_bytes - len(body))
        self._answered = True
        plain = self.wfile
        if trickle > 0:
            self.wfile = cast(Any, _Trickle(plain, trickle, self._receiver._stopping))
        try:
            self.send_response(status)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body) + padding))
            for name, value in headers:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                if body:
                    self.wfile.write(body)
                spaces = memoryview(_SPACES)
                while padding:
                    piece = min(padding, len(spaces))
                    self.wfile.write(spaces[:piece])
                    padding -= piece
        finally:
            self.wfile = plain

    def _reply_json(
        self,
        endpoint: str | None,
        status: int,
        data: Any,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        body = json.dumps(data).encode()
        self._reply(endpoint, status, body, "application/json", headers)

    def _reply_xml(
        self,
        endpoint: str,
        status: int,
        code: str,
        message: str,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._reply(endpoint, status, _s3_error(code, message), "application/xml", headers)

    def _reset(self, endpoint: str | None) -> None:
        """Leave the request unanswered and the connection reset."""
        if endpoint is not None:
            self._receiver._count(endpoint, 0)
        self._answered = True
        self.close_connection = True
        self._server.mark_reset(self.connection)

    # Helpers

    def _api_key(self) -> str | None:
        authorization = self.headers.get("Authorization")
        if authorization:
            scheme, _, value = authorization.strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
        key = self.headers.get("X-API-Key")
        return key.strip() if key and key.strip() else None

    def _origin(self, scheme: str | None = None) -> str:
        # Upload URLs point where the client reached us, so a receiver bound to 0.0.0.0
        # hands out URLs that work from the booth PC, not http://0.0.0.0/...
        scheme = scheme or self._receiver.scheme
        host = (self.headers.get("Host") or "").strip()
        if _HOST_HEADER.fullmatch(host):
            return f"{scheme}://{host}"
        return f"{scheme}:{self._receiver.base_url.split(':', 1)[1]}"

    def _key_body(self) -> Any:
        """The JSON body (for the key it carries), or None when it is not readable."""
        try:
            return self._read_json()
        except Rejected:
            return None

    def _echo(self, message: str, request: Any = None) -> str:
        """``message``, quoting the key the request carried when ``echo_key`` is on."""
        if not self._receiver._echo_key():
            return message
        key = self._api_key()
        if key is None and isinstance(request, dict) and isinstance(request.get("apiKey"), str):
            key = request["apiKey"]
        return message if key is None else f"{message} (key {key!r})"
