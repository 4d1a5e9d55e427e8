"""EventPics: ask the API for a presigned URL, then PUT the bytes there.

The protocol (DESIGN.md):

1. ``POST {base_url}/getuploadurl`` with ``{apiKey, linkId, fileName,
   takenAt?, albumId?}`` answers ``{"uploadUrl": ...}``, valid about 300 s.
2. ``PUT uploadUrl`` with the bytes, the file's ``Content-Type`` and a fixed
   ``Content-Length`` (never chunked).
3. ``GET {base_url}/geteventsandalbums`` with ``Authorization: Bearer KEY``
   lists events and albums.

Every upload attempt asks for a fresh URL: a URL is never reused after a
failure (rclone's b2 backend does the same). httpx errors are translated into
:mod:`boothsync.errors` here, so nothing above this module sees an httpx type.
The API key travels in the body or a header only and is never put in a
message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

import httpx

from boothsync import __version__
from boothsync.destinations.base import Album, CheckItem, GalleryEvent, UploadItem
from boothsync.errors import (
    NetworkError,
    RetryableError,
    ServerBusy,
    SourceFileError,
    Unauthorized,
    UnknownTarget,
    UploadError,
)
from boothsync.retry import Phase, classify_status, parse_retry_after

if TYPE_CHECKING:
    from boothsync.config import EventPicsConfig

__all__ = ["EventPicsDestination"]

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024
_MESSAGE_LIMIT = 200
# A probe only asks "is anyone there?": on a network that is down it must
# fail fast, so the uploader can probe again soon.
_PROBE_TIMEOUT = 5.0


class EventPicsDestination:
    """Uploads to one EventPics link (event), optionally into an album."""

    type = "eventpics"

    def __init__(
        self, config: EventPicsConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.name = config.name
        self._config = config
        self._host = urlsplit(config.base_url).netloc
        self._client = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(config.timeout, connect=min(10.0, config.timeout)),
            headers={"User-Agent": f"boothsync/{__version__}"},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"EventPicsDestination(name={self.name!r}, base_url={self._config.base_url!r})"

    def upload(self, item: UploadItem) -> None:
        upload_url = self._upload_url(item)
        self._put(upload_url, item)

    def events(self) -> list[GalleryEvent]:
        response = self._send(
            "list",
            "GET",
            f"{self._config.base_url}/geteventsandalbums",
            headers={"Authorization": f"Bearer {self._config.api_key}"},
        )
        return _parse_events(self._json(response, "geteventsandalbums"))

    def probe(self) -> None:
        """GET ``base_url``: any HTTP answer (even 401 or 404) means the API is reachable."""
        try:
            self._client.get(self._config.base_url, timeout=_PROBE_TIMEOUT)
        except httpx.HTTPError as exc:
            reason = _one_line(str(exc)) or type(exc).__name__
            raise NetworkError(f"cannot reach EventPics ({self._host}): {reason}") from exc

    def check(self, album_ids: Collection[str] = ()) -> list[CheckItem]:
        """Reach the API, then confirm the key, the link and every album named in the config."""
        wanted = [a for a in dict.fromkeys([self._config.album_id, *album_ids]) if a]
        try:
            events = self.events()
        except Unauthorized as exc:
            return [
                CheckItem(True, f"{self.name}: API reachable", self._host),
                CheckItem(False, f"{self.name}: API key accepted", str(exc)),
            ]
        except UploadError as exc:
            return [CheckItem(False, f"{self.name}: API reachable", str(exc))]
        items = [
            CheckItem(True, f"{self.name}: API reachable", self._host),
            CheckItem(True, f"{self.name}: API key accepted", f"{len(events)} event(s)"),
        ]
        link_id = self._config.link_id
        event = next((e for e in events if e.link_id == link_id), None)
        if event is None:
            known = ", ".join(e.link_id for e in events) or "none"
            items.append(
                CheckItem(
                    False,
                    f"{self.name}: link_id {link_id!r} exists",
                    f"not among this key's events (known: {known})",
                )
            )
            return items
        items.append(CheckItem(True, f"{self.name}: link_id {link_id!r} exists", event.title))
        albums = {a.id: a.title for a in event.albums}
        for album_id in wanted:
            title = albums.get(album_id)
            if title is None:
                known = ", ".join(albums) or "none"
                items.append(
                    CheckItem(
                        False,
                        f"{self.name}: album {album_id!r} exists",
                        f"not in event {event.title!r} (albums: {known})",
                    )
                )
            else:
                items.append(CheckItem(True, f"{self.name}: album {album_id!r} exists", title))
        return items

    def close(self) -> None:
        self._client.close()

    def _upload_url(self, item: UploadItem) -> str:
        body: dict[str, Any] = {
            "apiKey": self._config.api_key,
            "linkId": self._config.link_id,
            "fileName": item.file_name,
        }
        if item.taken_at_ms is not None:
            body["takenAt"] = item.taken_at_ms
        album_id = item.album_id or self._config.album_id
        if album_id:
            body["albumId"] = album_id
        response = self._send("url", "POST", f"{self._config.base_url}/getuploadurl", json=body)
        data = self._json(response, "getuploadurl")
        url = data.get("uploadUrl") if isinstance(data, dict) else None
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ServerBusy(f"EventPics ({self._host}) answered getuploadurl without an uploadUrl")
        return url

    def _put(self, url: str, item: UploadItem) -> None:
        # An explicit Content-Length makes httpx send the generator as a
        # fixed-length body instead of chunked, which presigned storage refuses.
        headers = {"Content-Type": item.content_type, "Content-Length": str(item.size)}
        self._send("put", "PUT", url, headers=headers, content=_read_exactly(item))

    def _send(self, phase: Phase, method: str, url: str, **kwargs: Any) -> httpx.Response:
        where = "the upload storage" if phase == "put" else f"EventPics ({self._host})"
        try:
            response = self._client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise NetworkError(f"{where} did not answer in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise NetworkError(
                f"cannot reach {where}: {_one_line(str(exc)) or type(exc).__name__}"
            ) from exc
        except httpx.HTTPError as exc:
            raise NetworkError(f"request to {where} failed: {type(exc).__name__}") from exc
        if response.is_success:
            return response
        self._raise_for(phase, where, response)

    def _raise_for(self, phase: Phase, where: str, response: httpx.Response) -> NoReturn:
        status = response.status_code
        message = _server_message(response)
        kind = classify_status(status, phase=phase)
        section = f"[destinations.{self.name}]"
        if kind is Unauthorized:
            raise Unauthorized(
                f"EventPics rejected the API key ({status}): check api_key in {section}",
                status=status,
            )
        if kind is UnknownTarget:
            album = f" or albumId {self._config.album_id!r}" if self._config.album_id else ""
            raise UnknownTarget(
                f"EventPics does not know linkId {self._config.link_id!r}{album} ({status}): "
                f"check link_id and album_id in {section}; `boothsync events` lists them",
                status=status,
            )
        text = f"{where} answered {status}" + (f": {message}" if message else "")
        if issubclass(kind, RetryableError):
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), date=response.headers.get("Date")
            )
            raise kind(text, status=status, retry_after=retry_after)
        raise kind(text, status=status)

    def _json(self, response: httpx.Response, endpoint: str) -> Any:
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ServerBusy(
                f"EventPics ({self._host}) answered {endpoint} with something that is not JSON"
            ) from exc


def _read_exactly(item: UploadItem) -> Iterator[bytes]:
    """Stream the file from disk, exactly ``item.size`` bytes, never all of it in memory."""
    remaining = item.size
    try:
        with item.path.open("rb") as handle:
            while remaining > 0:
                chunk = handle.read(min(_CHUNK, remaining))
                if not chunk:
                    raise SourceFileError(f"{item.path}: shrank while it was being uploaded")
                remaining -= len(chunk)
                yield chunk
    except OSError as exc:
        raise SourceFileError(f"{item.path}: cannot be read: {exc.strerror or exc}") from exc


def _parse_events(data: Any) -> list[GalleryEvent]:
    raw = data.get("events") if isinstance(data, Mapping) else data
    if not isinstance(raw, list):
        raise ServerBusy("EventPics answered geteventsandalbums without an events list")
    events = []
    for entry in raw:
        if not isinstance(entry, Mapping):
            continue
        link_id = entry.get("linkId")
        if link_id is None:
            continue
        albums = []
        for album in entry.get("albums") or ():
            if not isinstance(album, Mapping):
                continue
            album_id = album.get("id", album.get("albumId"))
            if album_id is None:
                continue
            albums.append(Album(id=str(album_id), title=str(album.get("title") or "")))
        events.append(
            GalleryEvent(
                title=str(entry.get("title") or ""), link_id=str(link_id), albums=tuple(albums)
            )
        )
    return events


def _server_message(response: httpx.Response) -> str:
    """The server's own words about an error, on one short line."""
    try:
        text = response.text
    except (UnicodeDecodeError, httpx.HTTPError):
        return ""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, Mapping):
        for key in ("error", "message", "detail", "code"):
            value = data.get(key)
            if isinstance(value, Mapping):
                value = value.get("message", value)
            if value:
                return _one_line(str(value))
    if "<Message>" in text and "</Message>" in text:
        return _one_line(text.split("<Message>", 1)[1].split("</Message>", 1)[0])
    return _one_line(text)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MESSAGE_LIMIT else line[: _MESSAGE_LIMIT - 1] + "…"
