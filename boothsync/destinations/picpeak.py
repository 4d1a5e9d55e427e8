"""PicPeak (self-hosted): one multipart POST per photo to its public API v1.

The protocol, as PicPeak's own v1 routes answer it:

1. ``POST {base_url}/api/v1/events/{event_id}/photos``, ``Authorization: Bearer pp_live_...``,
   multipart with the picture in the single file field ``photo``. Success is ``201`` with
   ``{"id", "filename", "path", "thumbnail_path", "size_bytes", "category_id"}``. The token
   needs the ``write`` scope (``admin`` implies it). Only ``image/*`` parts are accepted.
2. ``GET {base_url}/api/v1/events?page=N&limit=100`` (``read`` scope, which ``write``
   implies) answers ``{"events": [{"id", "slug", "event_name", ...}], "pagination":
   {"page", "limit", "total"}}``.
3. What the event holds (``boothsync verify``; v1 lists no photos): ``GET
   /api/v1/events/{event_id}/share-link`` (``read``) answers ``{"slug", "share_token",
   "share_url"}``; ``POST /api/auth/gallery/share-login`` with ``{"slug", "token"}`` logs in
   as a guest with the share link (no gallery password needed) and answers ``{"token": JWT,
   "event"}``; ``GET /api/gallery/{slug}/photos`` with ``Authorization: Bearer JWT`` answers
   ``{"event", "categories", "photos": [{"id", "filename", "size", "uploaded_at", ...}]}``,
   every photo guests see, at once: ``filename`` is the server's own name for it, ``size``
   its bytes as they were sent.

Errors come as ``{"error": ..., "code": ...}`` (either key may be missing): 401 for a missing,
malformed, unknown, revoked or expired token; 403 for a token without the scope (or an event
of another owner); 404 for an unknown event; 400 for a file over the server's size setting;
429 from the rate limiter; 500 for anything else. This module turns them into
:mod:`boothsync.errors` with messages naming the config key to fix. It reads the picture only
through :meth:`UploadItem.reader` and never puts the token into a message.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn
from urllib.parse import quote

from boothsync.destinations.base import (
    CheckItem,
    DestinationConfig,
    DestinationContext,
    GalleryEvent,
    SentPicture,
    Service,
    UploadItem,
)
from boothsync.destinations.http import (
    LIST_LIMIT,
    HttpDestination,
    one_line,
    redact,
    server_message,
)
from boothsync.errors import (
    FileRejected,
    ServerBusy,
    Unauthorized,
    UnknownTarget,
)
from boothsync.options import (
    lan_url,
    max_edge_option,
    option,
    positive,
    quality_option,
    timeout_option,
    type_option,
)
from boothsync.retry import Phase

if TYPE_CHECKING:
    import httpx

__all__ = [
    "MAX_FILE_BYTES",
    "SERVICE",
    "PicPeakConfig",
    "PicPeakDestination",
    "picpeak_message",
]

MAX_FILE_BYTES = 100 * 1024 * 1024
"""Files above this are refused before sending: PicPeak's v1 upload cap (its size setting
may be lower; the server then answers 400 with its limit, which fails the one file)."""

_PAGE_SIZE = 100  # the largest ``limit`` the events listing accepts
# The gallery's photo list comes in one answer of about 1 KB per photo: up to about 30,000.
_GALLERY_LIMIT = 32 * 1024 * 1024
_MAX_PAGES = 20


@dataclass(frozen=True, kw_only=True)
class PicPeakConfig(DestinationConfig):
    """``[destinations.NAME]`` with ``type = "picpeak"``. The repr leaves out the token."""

    type: Literal["picpeak"] = type_option("picpeak")
    api_token: str = option(
        "str",
        "The PicPeak API token (pp_live_...) with the write scope. Required. Never logged.",
        required=True,
        secret=True,
    )
    event_id: int = option(
        "int",
        "The PicPeak event's number; `boothsync events` lists them. Required.",
        required=True,
        check=positive,
    )
    base_url: str = option(  # no trailing slash
        "str",
        "Your PicPeak server, e.g. https://photos.example.com; http:// only for this machine or "
        "the local network. Required.",
        required=True,
        check=lan_url,
    )
    timeout: float = timeout_option(60.0)
    max_edge: int | None = max_edge_option()
    quality: int = quality_option()


class PicPeakDestination(HttpDestination):
    """Uploads to one PicPeak event with an API token."""

    type = "picpeak"
    label = "PicPeak"

    def __init__(
        self,
        config: PicPeakConfig,
        *,
        context: DestinationContext | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            config.name,
            config.base_url.rstrip("/"),
            config.timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {config.api_token}"},
            secrets=(config.api_token,),
        )
        self._config = config
        self._context = context if context is not None else DestinationContext()
        self._api = f"{self.base_url}/api/v1"

    def upload(self, item: UploadItem) -> None:
        if item.size > MAX_FILE_BYTES:
            raise FileRejected(
                f"{item.file_name} ({item.size / 1024 / 1024:.1f} MB) is larger than "
                f"PicPeak's {MAX_FILE_BYTES // (1024 * 1024)} MB limit"
            )
        if not item.content_type.lower().startswith("image/"):
            raise FileRejected(
                f"{item.file_name} is {item.content_type}: PicPeak's API takes only images"
            )
        url = f"{self._api}/events/{self._config.event_id}/photos"
        reader = item.reader()
        try:
            response = self.send(
                "write",
                "POST",
                url,
                what="the photo upload",
                body_size=item.size,
                files={"photo": (item.file_name, reader, item.content_type)},
            )
        finally:
            reader.close()
        data = self.json(response, "the photo upload")
        if not isinstance(data, Mapping) or data.get("id") is None:
            raise ServerBusy(f"{self.where} answered the photo upload without a photo id")
        stored = data.get("size_bytes")
        if stored is not None and stored != item.size:
            # The gallery kept something other than what was sent: send it again.
            raise ServerBusy(
                f"{self.where} stored {stored} bytes of {item.file_name}, but {item.size} were sent"
            )

    def events(self) -> list[GalleryEvent]:
        """Every event this token may see, following the pages (at most 2,000 events)."""
        events: list[GalleryEvent] = []
        for page in range(1, _MAX_PAGES + 1):
            response = self.send(
                "read",
                "GET",
                f"{self._api}/events",
                what="the events listing",
                limit=LIST_LIMIT,
                params={"page": page, "limit": _PAGE_SIZE},
            )
            batch, more = _parse_page(self.json(response, "the events listing"), page)
            events.extend(batch)
            if not more or not batch:
                break
        return events

    def list_pictures(self) -> list[str]:
        """The event's photos as its guests' gallery lists them, each by its size in bytes
        (see :meth:`gallery_key`). PicPeak's API v1 lists no photos, and the gallery keeps
        them under names of its own; so: the event's share link (``GET
        /api/v1/events/{id}/share-link``, the token's ``read`` scope), a guest's login with it
        (``POST /api/auth/gallery/share-login``, which needs no gallery password), then ``GET
        /api/gallery/{slug}/photos`` with that login: every photo it shows, with its
        ``size``."""
        link = self._ask(
            "GET",
            f"{self._api}/events/{self._config.event_id}/share-link",
            "the event's share link",
        )
        slug = link.get("slug") if isinstance(link, Mapping) else None
        share = link.get("share_token") if isinstance(link, Mapping) else None
        if not isinstance(slug, str) or not slug or not isinstance(share, str) or not share:
            raise ServerBusy(
                f"{self.where} answered the share link of event {self._config.event_id}"
                " without its slug and share token"
            )
        try:
            login = self._ask(
                "POST",
                f"{self.base_url}/api/auth/gallery/share-login",
                "the gallery's share login",
                json={"slug": slug, "token": share},
            )
            guest = login.get("token") if isinstance(login, Mapping) else None
            if not isinstance(guest, str) or not guest:
                raise ServerBusy(f"{self.where} answered the gallery's share login without a token")
            photos = self._ask(
                "GET",
                f"{self.base_url}/api/gallery/{quote(slug, safe='')}/photos",
                "the gallery's photo list",
                limit=_GALLERY_LIMIT,
                headers={"Authorization": f"Bearer {guest}"},
            )
        except (Unauthorized, UnknownTarget) as exc:
            raise UnknownTarget(
                f"PicPeak does not show the gallery of event {self._config.event_id} to its"
                f" guests ({exc.status}): is it archived, inactive or a draft?",
                status=exc.status,
            ) from exc
        listed = photos.get("photos") if isinstance(photos, Mapping) else None
        if not isinstance(listed, list):
            raise ServerBusy(f"{self.where} answered the gallery's photo list without photos")
        return [_size_key(photo.get("size")) for photo in listed if isinstance(photo, Mapping)]

    def _ask(self, method: str, url: str, what: str, **kwargs: Any) -> Any:
        """The JSON answer of one request of the ``read`` phase."""
        return self.json(self.send("read", method, url, what=what, **kwargs), what)

    def gallery_key(self, picture: SentPicture) -> str | None:
        """Its size: the gallery keeps a photo under a name of its own, but byte for byte as
        it was sent (two pictures of one size stand for each other). None with ``max_edge``:
        a picture sent shrunk has a size boothsync does not keep, so only the count tells."""
        if self._config.max_edge is not None:
            return None
        return _size_key(picture.size)

    def verify(self, album_ids: Collection[str] = ()) -> None:
        """The token may list events and the event is among them (PicPeak has no albums)."""
        events = self.events()
        event_id = str(self._config.event_id)
        # A listing cut off at its last page proves nothing about the events past it.
        complete = len(events) < _PAGE_SIZE * _MAX_PAGES
        if complete and not any(e.link_id == event_id for e in events):
            raise UnknownTarget(
                f"PicPeak has no event {event_id} for this token: check event_id in "
                f"{self.section}; `boothsync events` lists them"
            )

    def check(self, album_ids: Collection[str] = ()) -> list[CheckItem]:
        """Reach the API, then confirm the token and that the event is among its events."""
        events, items = self.check_opening("API token")
        if events is None:
            return items
        items.append(
            CheckItem(
                True,
                f"{self.name}: API token accepted",
                f"{len(events)} event(s); the write scope is checked by the first upload",
            )
        )
        event_id = str(self._config.event_id)
        event = next((e for e in events if e.link_id == event_id), None)
        label = f"{self.name}: event_id {self._config.event_id} exists"
        if event is None:
            known = ", ".join(e.link_id for e in events[:20]) or "none"
            more = ", …" if len(events) > 20 else ""
            detail = f"not among this token's events (known: {known}{more})"
            items.append(CheckItem(False, label, detail))
        else:
            items.append(CheckItem(True, label, event.title))
        wanted = [a for a in dict.fromkeys(album_ids) if a]
        if wanted:
            items.append(
                CheckItem(
                    True,
                    f"{self.name}: albums",
                    f"PicPeak has no albums; album_id {', '.join(map(repr, wanted))} is ignored",
                )
            )
        return items

    def raise_for(self, phase: Phase, where: str, response: httpx.Response) -> NoReturn:
        status = response.status_code
        message = self.error_message(response)
        said = f" ({message})" if message else ""
        if status == 401:
            raise Unauthorized(
                f"PicPeak rejected the API token (401): check api_token in {self.section}{said}",
                status=status,
            )
        if status == 403:
            scope = "read" if phase == "read" else "write"
            raise Unauthorized(
                f"PicPeak refused the API token (403: {message or 'forbidden'}): it needs the "
                f"`{scope}` scope and access to event {self._config.event_id}; "
                f"check api_token in {self.section}",
                status=status,
            )
        if status == 404:
            raise UnknownTarget(
                f"PicPeak has no event {self._config.event_id} (404): check event_id in "
                f"{self.section}; `boothsync events` lists them",
                status=status,
            )
        if status == 413:
            raise FileRejected(f"{where} refused the file as too large (413){said}", status=status)
        super().raise_for(phase, where, response)

    def error_message(self, response: httpx.Response) -> str:
        return picpeak_message(response, (self._config.api_token,))


def picpeak_message(response: httpx.Response, secrets: Collection[str] = ()) -> str:
    """PicPeak's own words about an error on one line: ``error``, else ``message``, else
    ``code`` (as any server's), else the first of its validation ``errors``; without
    ``secrets``."""
    import httpx

    message = server_message(response, secrets)
    try:
        data = json.loads(response.text)
    except (ValueError, RecursionError, httpx.HTTPError):
        return message
    if not isinstance(data, Mapping) or any(data.get(k) for k in ("error", "message", "code")):
        return message
    errors = data.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        first = errors[0]
        field = first.get("path") or first.get("param")
        msg = first.get("msg") or "invalid"
        return one_line(redact(f"{field}: {msg}" if field else str(msg), secrets))
    return message


def _size_key(size: object) -> str:
    """The key of a photo of ``size`` bytes in :meth:`PicPeakDestination.list_pictures`."""
    if isinstance(size, bool) or not isinstance(size, int):
        return "a photo of unknown size"
    return f"{size} bytes"


def _parse_page(data: Any, page: int) -> tuple[list[GalleryEvent], bool]:
    """One page of the events listing and whether another page follows."""
    raw = data.get("events") if isinstance(data, Mapping) else None
    if not isinstance(raw, list):
        raise ServerBusy("PicPeak answered the events listing without an events list")
    events = []
    for entry in raw:
        if not isinstance(entry, Mapping):
            continue
        event_id = entry.get("id")
        if isinstance(event_id, bool) or not isinstance(event_id, int | str) or event_id == "":
            continue
        title = entry.get("event_name") or entry.get("name") or entry.get("title") or ""
        events.append(
            GalleryEvent(title=str(title), link_id=str(event_id), albums=(), id_key="event_id")
        )
    return events, _has_more(data.get("pagination"), page, len(raw))


def _has_more(pagination: Any, page: int, count: int) -> bool:
    if not isinstance(pagination, Mapping):
        return False
    for key in ("has_more", "hasMore"):
        flag = pagination.get(key)
        if isinstance(flag, bool):
            return flag
    pages = _as_int(pagination.get("total_pages", pagination.get("pages")))
    if pages is not None:
        return page < pages
    total = _as_int(pagination.get("total"))
    if total is None:
        return False
    limit = _as_int(pagination.get("limit"))
    size = limit if limit is not None and limit > 0 else count
    return page * size < total


def _as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


SERVICE: Final = Service("picpeak", PicPeakConfig, PicPeakDestination)
