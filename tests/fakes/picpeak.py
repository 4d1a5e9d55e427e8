"""A PicPeak-like local server for the tests: its public API v1, with fault injection.

Owns the far side of the PicPeak routes boothsync uses, answered as PicPeak's backend answers
them (``backend/src/routes/v1/events.js``, ``routes/auth.js``, ``routes/gallery.js``):

- ``POST /api/v1/events/<id>/photos`` (Bearer ``pp_live_`` token with the ``write`` scope,
  multipart with one file in field ``photo``, images only): ``201`` with ``{id, filename,
  path, thumbnail_path, size_bytes, category_id}``;
- ``GET /api/v1/events?page=&limit=`` (``read`` scope): ``{"events": [...], "pagination":
  {page, limit, total}}``;
- ``GET /api/v1/events/<id>/share-link`` (``read`` scope): ``{slug, share_token,
  share_url}``;
- ``POST /api/auth/gallery/share-login`` with JSON ``{slug, token}`` (no API token): ``400``
  without them, ``404`` for a gallery that is archived or unknown, ``401`` for another share
  token, else ``{token, event}`` with a guest's token (PicPeak's is a JWT);
- ``GET /api/gallery/<slug>/photos`` with ``Authorization: Bearer <guest token>``: ``401``
  without a valid one (PicPeak lets a gallery without a password be read without one; every
  gallery here has one), ``403`` for another gallery's, ``404`` for an archived one, else
  ``{"event", "categories", "photos": [{id, filename, url, thumbnail_url, size, uploaded_at,
  ...}]}``, newest first, all at once: ``filename`` is the server's own name, ``size`` the
  bytes that were sent.

Checks run in PicPeak's order: token, scope, event (404 before the body is read), then the
body (400 for a missing ``photo`` part or a file over the size setting). Error bodies are
PicPeak's ``{"error", "code"}`` shapes, or only one of the two keys when asked. Stored
pictures land at ``directory/<event slug>/<server name>``. Faults come from
:class:`boothsync.receiver.Faults` with the endpoints ``photos``, ``events`` and ``list`` (the
gallery's photo list); its ``error_rate`` applies to uploads only, and of the rest only
``delay``, ``fail_next``, ``redirect_next`` and ``echo_key`` are used.

Must not: import the client side of boothsync (it stands in for the other end of the network),
hold a whole upload in memory (the form is streamed through :mod:`tests.fakes.multipart`), or
let one bad request stop the server.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import os
import re
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePath
from typing import IO, Any, Final, Literal, cast
from urllib.parse import parse_qs, unquote, urlsplit

from boothsync.localserver import (
    ClientGone,
    LocalServer,
    TrackedHTTPServer,
    abort_connection,
    body_framing,
    linger_close,
)
from boothsync.receiver import Faults
from tests.fakes.multipart import CHUNK as _CHUNK
from tests.fakes.multipart import (
    MultipartError,
    MultipartReader,
    boundary,
    disposition_param,
)

__all__ = [
    "DEMO_TOKEN",
    "ENDPOINTS",
    "MAX_FILE_BYTES",
    "ErrorShape",
    "PicPeakFile",
    "PicPeakServer",
]

logger = logging.getLogger(__name__)

DEMO_TOKEN: Final = "pp_live_demo"
ENDPOINTS: Final = ("photos", "events", "list")
"""The endpoints faults apply to (``Faults.fail_next`` entries name one of these)."""
MAX_FILE_BYTES: Final = 100 * 1024 * 1024

ErrorShape = Literal["picpeak", "error", "code"]
"""``picpeak``: the bodies PicPeak sends (``error``, with ``code`` where PicPeak adds one);
``error``: only ``{"error": ...}``; ``code``: only ``{"code": ...}``."""

_TOKEN_PREFIX = "pp_live_"
_IDLE_SECONDS = 60.0
# A body nobody will use is read away (keeping the connection) only when it is this small.
_DRAIN_LIMIT = 1024 * 1024
_PHOTOS = re.compile(r"/api/v1/events/([^/]+)/photos/?")
_SHARE_LINK = re.compile(r"/api/v1/events/([^/]+)/share-link/?")
_GALLERY_PHOTOS = re.compile(r"/api/gallery/([^/]+)/photos/?")
_SHARE_LOGIN = "/api/auth/gallery/share-login"


@dataclass(frozen=True)
class PicPeakFile:
    """One photo the server stored."""

    event_id: int
    file_name: str
    """The name the client sent; ``path`` has the server's own name."""
    content_type: str
    size: int
    sha256: str
    path: Path
    photo_id: int
    uploaded_at: str


class _Reject(Exception):
    """An answer other than success: status, message and PicPeak's code."""

    def __init__(self, status: int, error: str, code: str, **extra: Any) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.code = code
        self.extra = extra
        # PicPeak sends a code only from the token middleware; elsewhere just ``error``.
        self.picpeak_code = bool(extra.pop("with_code", False))


class PicPeakServer(LocalServer):
    """A PicPeak-like API on a local port, storing photos under ``directory``.

    ``tokens`` maps each token to its scopes (``admin`` implies ``write``, ``write`` implies
    ``read``); ``events`` maps event ids to names. The socket is bound by the constructor, so
    :attr:`base_url` is known before :meth:`start`.
    """

    thread_name = "picpeak-server"

    def __init__(
        self,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Mapping[str, Collection[str]] | None = None,
        events: Mapping[int, str] | None = None,
        faults: Faults | None = None,
        max_file_bytes: int = MAX_FILE_BYTES,
        error_shape: ErrorShape = "picpeak",
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.faults = faults if faults is not None else Faults()
        self.max_file_bytes = max_file_bytes
        self.error_shape: ErrorShape = error_shape
        if tokens is None:
            tokens = {DEMO_TOKEN: {"write", "read"}}
        self._tokens = {token: frozenset(scopes) for token, scopes in tokens.items()}
        if events is None:
            events = {1: "Demo wedding"}
        self._events = dict(events)
        created = datetime(2024, 1, 1, tzinfo=UTC)
        self._created = {
            event_id: (created + timedelta(minutes=n)).isoformat().replace("+00:00", "Z")
            for n, event_id in enumerate(self._events)
        }
        self._share_tokens = {event_id: secrets.token_hex(16) for event_id in self._events}
        self._guests: dict[str, int] = {}  # guest token -> event id
        #: Events whose gallery is archived: PicPeak shows it to nobody.
        self.archived: set[int] = set()
        self._lock = threading.Lock()
        self._received: list[PicPeakFile] = []
        self._requests: dict[str, int] = {}
        self._next_photo = 1
        self._serve_with(_Server((host, port), self))
        self.base_url = self.origin

    def received(self) -> list[PicPeakFile]:
        """Every stored photo, in the order they completed."""
        with self._lock:
            return list(self._received)

    def remove(self, file_name: str) -> bool:
        """Delete the first stored photo sent as ``file_name``, as PicPeak's admin can: it
        leaves the gallery. Returns whether there was one."""
        with self._lock:
            for index, record in enumerate(self._received):
                if record.file_name == file_name:
                    del self._received[index]
                    record.path.unlink(missing_ok=True)
                    return True
        return False

    def requests(self) -> dict[str, int]:
        """How many requests reached each endpoint (``photos``, ``events``, ``other``)."""
        with self._lock:
            return dict(self._requests)

    # The handler's side: state and rules, no HTTP.

    def _count(self, endpoint: str) -> None:
        with self._lock:
            self._requests[endpoint] = self._requests.get(endpoint, 0) + 1

    def _draw_fault(self, endpoint: str) -> tuple[int, str | None] | None:
        with self._lock:
            return self.faults.draw(endpoint, errors_apply=endpoint == "photos")

    def _fault_delay(self) -> float:
        with self._lock:
            return float(self.faults.delay)

    def _draw_redirect(self, endpoint: str) -> tuple[int, str] | None:
        with self._lock:
            return self.faults.redirect(endpoint)

    def _echo_key(self) -> bool:
        with self._lock:
            return self.faults.echo_key

    def _authorize(self, authorization: str | None, scope: str) -> None:
        """PicPeak's token middleware, then its scope check; raises _Reject."""
        header = authorization or ""
        if not header.startswith("Bearer "):
            raise _Reject(401, "Missing API token", "NO_TOKEN", with_code=True)
        token = header[len("Bearer ") :].strip()
        if not token.startswith(_TOKEN_PREFIX):
            raise _Reject(401, "Invalid token format", "INVALID_TOKEN", with_code=True)
        scopes = self._tokens.get(token)
        if scopes is None:
            raise _Reject(401, "Invalid token", "INVALID_TOKEN", with_code=True)
        have = set(scopes)
        if "admin" in have:
            have |= {"write", "read"}
        if "write" in have:
            have.add("read")
        if scope not in have:
            raise _Reject(
                403,
                f"Token lacks required scope: {scope}",
                "INSUFFICIENT_SCOPE",
                with_code=True,
                required=scope,
                granted=sorted(scopes),
            )

    def _event(self, raw_id: str) -> tuple[int, str]:
        event_id = int(raw_id) if raw_id.isascii() and raw_id.isdigit() else None
        if event_id is None or event_id not in self._events:
            raise _Reject(404, "Event not found", "EVENT_NOT_FOUND")
        return event_id, self._events[event_id]

    def _event_json(self, event_id: int) -> dict[str, Any]:
        return {
            "id": event_id,
            "slug": _slug(self._events[event_id], event_id),
            "event_name": self._events[event_id],
            "event_type": "other",
            "event_date": None,
            "expires_at": None,
            "is_active": True,
            "is_archived": False,
            "is_draft": False,
            "created_at": self._created[event_id],
        }

    def _list_events(self, query: str) -> dict[str, Any]:
        params = parse_qs(query)
        page = _query_int(params, "page", 1, low=1, high=None)
        limit = _query_int(params, "limit", 25, low=1, high=100)
        newest_first = sorted(self._events, key=lambda i: self._created[i], reverse=True)
        chosen = newest_first[(page - 1) * limit : page * limit]
        return {
            "events": [self._event_json(event_id) for event_id in chosen],
            "pagination": {"page": page, "limit": limit, "total": len(self._events)},
        }

    def _share_link(self, event_id: int) -> dict[str, Any]:
        slug = _slug(self._events[event_id], event_id)
        token = self._share_tokens[event_id]
        return {"slug": slug, "share_token": token, "share_url": f"{self.origin}/gallery/{token}"}

    def _open_gallery(self, slug: str) -> int:
        """The event whose gallery ``slug`` names, if guests may see it; else 404."""
        for event_id, name in self._events.items():
            if _slug(name, event_id) == slug and event_id not in self.archived:
                return event_id
        raise _Reject(404, "Gallery not found", "NOT_FOUND")

    def _share_login(self, body: bytes) -> dict[str, Any]:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise _Reject(400, "Invalid JSON", "BAD_REQUEST") from None
        slug = data.get("slug") if isinstance(data, dict) else None
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(slug, str) or not slug.strip() or not token:
            field = {
                "type": "field",
                "msg": "Invalid value",
                "path": "slug" if not slug else "token",
            }
            raise _Reject(400, "Invalid value", "VALIDATION_ERROR", errors=[field])
        event_id = self._open_gallery(slug.strip())
        if token != self._share_tokens[event_id]:
            raise _Reject(401, "Invalid or expired share link", "INVALID_SHARE")
        guest = secrets.token_urlsafe(24)
        with self._lock:
            self._guests[guest] = event_id
        event = {"id": event_id, "event_name": self._events[event_id], "require_password": True}
        return {"token": guest, "event": event}

    def _gallery_photos(self, slug: str, authorization: str | None) -> dict[str, Any]:
        header = authorization or ""
        guest = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""
        with self._lock:
            allowed = self._guests.get(guest) if guest else None
        if not guest:
            self._open_gallery(slug)  # an archived or unknown one is 404 first
            raise _Reject(401, "No token provided", "NO_TOKEN")
        if allowed is None:
            raise _Reject(401, "Invalid token", "INVALID_TOKEN")
        event_id = self._open_gallery(slug)
        if event_id != allowed:
            raise _Reject(403, "Token does not match requested gallery", "FORBIDDEN")
        with self._lock:
            held = [r for r in self._received if r.event_id == event_id]
        photos = [
            {
                "id": r.photo_id,
                "filename": r.path.name,
                "url": f"/api/gallery/{slug}/photo/{r.photo_id}",
                "thumbnail_url": None,
                "type": "individual",
                "category_id": None,
                "size": r.size,
                "uploaded_at": r.uploaded_at,
                "width": None,
                "height": None,
                "captured_at": None,
                "media_type": "image",
                "mime_type": r.content_type,
            }
            for r in reversed(held)
        ]
        event = {"id": event_id, "event_name": self._events[event_id]}
        return {"event": event, "categories": [], "photos": photos}

    def _store(
        self, temp: Path, event_id: int, file_name: str, content_type: str, size: int, sha: str
    ) -> tuple[PicPeakFile, str]:
        slug = _slug(self._events[event_id], event_id)
        folder = self.directory / slug
        folder.mkdir(parents=True, exist_ok=True)
        final_name = f"{int(time.time() * 1000)}_{secrets.token_hex(4)}{PurePath(file_name).suffix}"
        final = folder / final_name
        os.replace(temp, final)
        with self._lock:
            photo_id = self._next_photo
            self._next_photo += 1
            uploaded = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            record = PicPeakFile(
                event_id, file_name, content_type, size, sha, final, photo_id, uploaded
            )
            self._received.append(record)
        return record, f"{slug}/{final_name}"

    def _error_body(self, reject: _Reject) -> dict[str, Any]:
        if self.error_shape == "error":
            return {"error": reject.error}
        if self.error_shape == "code":
            return {"code": reject.code}
        if "errors" in reject.extra:  # express-validator's shape, as PicPeak sends it
            return {"errors": reject.extra["errors"]}
        body: dict[str, Any] = {"error": reject.error}
        if reject.picpeak_code:
            body["code"] = reject.code
        body.update(reject.extra)
        return body


def _query_int(
    params: Mapping[str, list[str]], name: str, default: int, *, low: int, high: int | None
) -> int:
    values = params.get(name)
    if not values:
        return default
    value = values[0]
    number = int(value) if value.isascii() and value.isdigit() else None
    if number is None or number < low or (high is not None and number > high):
        field = {"type": "field", "value": value, "msg": "Invalid value", "path": name}
        raise _Reject(400, f"Invalid value for {name}", "VALIDATION_ERROR", errors=[field])
    return number


def _slug(name: str, event_id: int) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return f"{words or 'event'}-{event_id}"


class _Server(TrackedHTTPServer):
    connection_thread_name = "picpeak-conn"
    label = "picpeak server"
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], owner: PicPeakServer) -> None:
        self.owner = owner
        self._ends: dict[socket.socket, str] = {}
        super().__init__(address, _Handler)

    def mark(self, conn: socket.socket, how: str) -> None:
        with self._conn_lock:
            self._ends[conn] = how

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        conn = cast(socket.socket, request)
        with self._conn_lock:
            how = self._ends.pop(conn, "")
        if how == "reset":
            abort_connection(conn)
        elif how == "linger":
            linger_close(conn, self.owner._stopping)
        else:
            super().shutdown_request(request)


class _Body:
    """The request body, length-delimited or chunked, read in pieces."""

    def __init__(self, rfile: IO[bytes], framing: str, length: int) -> None:
        self._rfile = rfile
        self._chunked = framing == "chunked"
        self._left = length if framing == "length" else 0
        self.done = framing not in ("length", "chunked") or (framing == "length" and length == 0)
        self.started = False

    def read(self, size: int) -> bytes:
        if self.done:
            return b""
        self.started = True
        if self._chunked and self._left == 0:
            self._left = self._next_chunk_size()
            if self._left == 0:
                self._trailer()
                self.done = True
                return b""
        data = self._rfile.read(min(size, self._left))
        if not data:
            raise ClientGone("body ended early")
        self._left -= len(data)
        if self._left == 0:
            if self._chunked:
                self._line()
            else:
                self.done = True
        return data

    def _line(self) -> bytes:
        line = self._rfile.readline(1024)
        if not line.endswith(b"\n"):
            raise ClientGone("chunked body ended early")
        return line

    def _next_chunk_size(self) -> int:
        text = self._line().split(b";", 1)[0].strip()
        try:
            return int(text, 16)
        except ValueError:
            raise _Reject(400, "Malformed chunked body", "BAD_REQUEST") from None

    def _trailer(self) -> None:
        while self._line() not in (b"\r\n", b"\n"):
            pass


class _TooLarge(Exception):
    pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "picpeak-local"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = _IDLE_SECONDS

    _body: _Body

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("picpeak server: %s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = do_GET

    @property
    def _owner(self) -> PicPeakServer:
        return cast(_Server, self.server).owner

    # The fake's route table: one branch per endpoint and method it serves.
    def _dispatch(self) -> None:  # noqa: C901
        framing, length = body_framing(self.headers)
        self._body = _Body(cast(IO[bytes], self.rfile), framing, length)
        self._framing_kind = framing
        self._length = length
        self._answered = False
        parts = urlsplit(self.path)
        photos = _PHOTOS.fullmatch(parts.path)
        share_link = _SHARE_LINK.fullmatch(parts.path)
        gallery = _GALLERY_PHOTOS.fullmatch(parts.path)
        endpoint = "other"
        if self.command == "POST" and photos:
            endpoint = "photos"
        elif self.command == "GET" and parts.path.rstrip("/") == "/api/v1/events":
            endpoint = "events"
        elif self.command == "GET" and gallery:
            endpoint = "list"
        elif self.command == "GET" and share_link:
            endpoint = "share-link"
        elif self.command == "POST" and parts.path == _SHARE_LOGIN:
            endpoint = "share-login"
        self._owner._count(endpoint)
        try:
            if framing == "invalid":
                raise _Reject(400, "Invalid Content-Length", "BAD_REQUEST")
            if endpoint in ENDPOINTS and self._inject_fault(endpoint):
                return
            if endpoint == "photos":
                assert photos is not None
                self._upload(photos.group(1))
            elif endpoint == "events":
                self._owner._authorize(self.headers.get("Authorization"), "read")
                self._reply(200, self._owner._list_events(parts.query))
            elif endpoint == "share-link":
                assert share_link is not None
                self._owner._authorize(self.headers.get("Authorization"), "read")
                event_id, _ = self._owner._event(share_link.group(1))
                self._reply(200, self._owner._share_link(event_id))
            elif endpoint == "share-login":
                self._reply(200, self._owner._share_login(self._small_body()))
            elif endpoint == "list":
                assert gallery is not None
                slug = unquote(gallery.group(1))
                authorization = self.headers.get("Authorization")
                self._reply(200, self._owner._gallery_photos(slug, authorization))
            else:
                raise _Reject(404, f"Route {parts.path} not found", "NOT_FOUND")
        except MultipartError as exc:
            reject = _Reject(400, str(exc), "BAD_REQUEST")
            self._reply(400, self._owner._error_body(reject))
        except _Reject as exc:
            self._reply(exc.status, self._owner._error_body(exc))
        except (ClientGone, ConnectionError, TimeoutError) as exc:
            logger.debug("picpeak server: client went away (%r)", exc)
            self.close_connection = True
        except Exception:
            logger.exception("picpeak server: unexpected error on %s %s", self.command, self.path)
            if self._answered:
                self.close_connection = True
            else:
                reject = _Reject(500, "An unexpected error occurred", "INTERNAL_ERROR")
                reject.picpeak_code = True
                self._reply(500, self._owner._error_body(reject))

    def _inject_fault(self, endpoint: str) -> bool:
        owner = self._owner
        delay = owner._fault_delay()
        if delay > 0 and owner._stopping.wait(delay):
            self._end("reset")
            return True
        redirect = owner._draw_redirect(endpoint)
        if redirect is not None:
            self._reply(redirect[0], {}, [("Location", redirect[1] or self.path)])
            return True
        fault = owner._draw_fault(endpoint)
        if fault is None:
            return False
        status, retry_after = fault
        if status == 0:
            self._end("reset")
            return True
        headers = [] if retry_after is None else [("Retry-After", retry_after)]
        error = f"injected fault {status}"
        _, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if owner._echo_key() and token.strip():
            error += f" (token {token.strip()!r})"
        reject = _Reject(status, error, f"INJECTED_{status}")
        self._reply(status, owner._error_body(reject), headers)
        return True

    def _upload(self, raw_id: str) -> None:
        owner = self._owner
        owner._authorize(self.headers.get("Authorization"), "write")
        event_id, _ = owner._event(raw_id)
        mark = boundary(self.headers.get("Content-Type") or "")
        if mark is None:
            raise _Reject(400, 'No file uploaded under field "photo"', "NO_FILE")
        form = MultipartReader(self._body.read, mark)
        stored: tuple[PicPeakFile, str] | None = None
        while (headers := form.next_part()) is not None:
            disposition = headers.get("content-disposition", "")
            name = disposition_param(disposition, "name")
            file_name = disposition_param(disposition, "filename")
            if file_name is None:
                form.skip_data()  # a plain field (category_id, ...): not used here
                continue
            if name != "photo" or stored is not None:
                raise _Reject(400, "Unexpected file field", "LIMIT_UNEXPECTED_FILE")
            content_type = headers.get("content-type", "application/octet-stream")
            if not content_type.lower().startswith("image/"):
                # PicPeak's file filter raises a plain error, which its handler answers as 500.
                reject = _Reject(500, "An unexpected error occurred", "INTERNAL_ERROR")
                reject.picpeak_code = True
                raise reject
            stored = self._receive_file(form, event_id, file_name, content_type)
        while self._body.read(_CHUNK):  # the epilogue after the last part
            pass
        if stored is None:
            raise _Reject(400, 'No file uploaded under field "photo"', "NO_FILE")
        record, rel_path = stored
        self._reply(
            201,
            {
                "id": record.photo_id,
                "filename": record.path.name,
                "path": rel_path,
                "thumbnail_path": None,
                "size_bytes": record.size,
                "category_id": None,
            },
        )

    def _receive_file(
        self, form: MultipartReader, event_id: int, file_name: str, content_type: str
    ) -> tuple[PicPeakFile, str]:
        owner = self._owner
        fd, temp_name = tempfile.mkstemp(dir=owner.directory, prefix=".", suffix=".part")
        temp = Path(temp_name)
        digest = hashlib.sha256()
        size = 0
        try:
            with open(fd, "wb") as out:

                def sink(data: bytes) -> None:
                    nonlocal size
                    size += len(data)
                    if size > owner.max_file_bytes:
                        raise _TooLarge
                    digest.update(data)
                    out.write(data)

                try:
                    form.copy_data(sink)
                except _TooLarge:
                    mb = owner.max_file_bytes // (1024 * 1024)
                    raise _Reject(
                        400, f"File too large. Maximum size is {mb} MB per file.", "FILE_TOO_LARGE"
                    ) from None
            return owner._store(temp, event_id, file_name, content_type, size, digest.hexdigest())
        finally:
            temp.unlink(missing_ok=True)

    # Bodies and answers

    def _small_body(self) -> bytes:
        """A JSON request's body (at most 64 KiB)."""
        data = bytearray()
        while chunk := self._body.read(_CHUNK):
            data += chunk
            if len(data) > 64 * 1024:
                raise _Reject(413, "request entity too large", "TOO_LARGE")
        return bytes(data)

    def _settle_body(self) -> None:
        """Before answering: read away a small unread body, or give up the connection."""
        body = self._body
        if body.done:
            return
        if body.started or self._framing_kind != "length" or self._length > _DRAIN_LIMIT:
            self.close_connection = True
            cast(_Server, self.server).mark(self.connection, "linger")
            return
        while body.read(_CHUNK):
            pass

    def _end(self, how: str) -> None:
        self._answered = True
        self.close_connection = True
        cast(_Server, self.server).mark(self.connection, how)

    def _reply(self, status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> None:
        self._settle_body()
        payload = json.dumps(data).encode()
        self._answered = True
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers or ():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
