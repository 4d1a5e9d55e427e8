"""EventPics: ask the API for a presigned URL, then PUT the bytes there.

The protocol (DESIGN.md):

1. ``POST {base_url}/getuploadurl`` with ``{apiKey, linkId, fileName,
   takenAt?, albumId?}`` answers ``{"uploadUrl": ...}``, valid about 300 s.
2. ``PUT uploadUrl`` with the bytes, the file's ``Content-Type`` and a fixed
   ``Content-Length`` (never chunked).
3. ``GET {base_url}/geteventsandalbums`` with ``Authorization: Bearer KEY``
   lists events and albums.

Every upload attempt asks for a fresh URL: a URL is never reused after a
failure (rclone's b2 backend does the same). The API's redirects are refused
(its requests carry the key); the storage's 307/308 are followed, over https
only, a few times at most, each time sending the file again. Pictures never go
in clear text unless ``base_url`` itself is http:// (this machine): an http://
upload URL, or a redirect to one, pauses the destination. httpx errors are
translated into :mod:`boothsync.errors` here, so nothing above this module sees
an httpx type. The API key travels in the body or a header only and is never
put in a message.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn
from urllib.parse import urljoin, urlsplit

from boothsync.destinations.base import (
    Album,
    CheckItem,
    DestinationConfig,
    DestinationContext,
    GalleryEvent,
    SentPicture,
    Service,
    UploadItem,
)
from boothsync.destinations.http import LIST_LIMIT, HttpDestination
from boothsync.errors import (
    DestinationUnavailable,
    ServerBusy,
    Unauthorized,
    UnknownTarget,
)
from boothsync.options import (
    API_KEY_ENV,
    https_url,
    max_edge_option,
    option,
    quality_option,
    timeout_option,
    type_option,
)
from boothsync.retry import Phase, classify_status

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_BASE_URL", "SERVICE", "EventPicsConfig", "EventPicsDestination"]

log = logging.getLogger(__name__)

# Redirects of one upload followed at most (S3 answers 307 for a bucket in another region).
MAX_PUT_REDIRECTS = 3
# Statuses that keep the method and the body: the only redirects an upload may follow.
_KEEPS_THE_BODY = (307, 308)


DEFAULT_BASE_URL: Final = "https://api.eventpics.net"


@dataclass(frozen=True, kw_only=True)
class EventPicsConfig(DestinationConfig):
    """``[destinations.NAME]`` with ``type = "eventpics"``. The repr leaves out the API key."""

    type: Literal["eventpics"] = type_option("eventpics")
    api_key: str = option(
        "str",
        f"The EventPics API key. Required, here or in ${API_KEY_ENV}, which wins. Never logged.",
        required=True,
        env=API_KEY_ENV,
        secret=True,
    )
    link_id: str = option("str", "The gallery's link id. Required.", required=True)
    album_id: str | None = option(
        "str", "The album pictures go to. Default: none (the gallery itself)."
    )
    base_url: str = option(  # no trailing slash
        "str",
        "The API address; https://, or http:// for this machine only.",
        default=DEFAULT_BASE_URL,
        check=https_url,
    )
    timeout: float = timeout_option(30.0)
    max_edge: int | None = max_edge_option()
    quality: int = quality_option()


class EventPicsDestination(HttpDestination):
    """Uploads to one EventPics link (event), optionally into an album."""

    type = "eventpics"
    label = "EventPics"

    def __init__(
        self,
        config: EventPicsConfig,
        *,
        context: DestinationContext | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(
            config.name,
            config.base_url,
            config.timeout,
            transport=transport,
            secrets=(config.api_key,),
        )
        self._config = config

    def list_pictures(self) -> None:
        """EventPics has no endpoint that lists a link's pictures: only boothsync's own record
        can say what it holds."""
        return None

    def gallery_key(self, picture: SentPicture) -> str:
        return picture.file_name

    def __repr__(self) -> str:
        return f"EventPicsDestination(name={self.name!r}, base_url={self._config.base_url!r})"

    def upload(self, item: UploadItem) -> None:
        upload_url = self._upload_url(item)
        self._put(upload_url, item)

    def upload_deadline(self, size: int) -> float:
        """getuploadurl, then the PUT and each redirect it may follow."""
        put = self.request_deadline(size, None)
        return self.request_deadline() + (1 + MAX_PUT_REDIRECTS) * put

    def events(self) -> list[GalleryEvent]:
        response = self.send(
            "read",
            "GET",
            f"{self._config.base_url}/geteventsandalbums",
            what="geteventsandalbums",
            limit=LIST_LIMIT,
            headers={"Authorization": f"Bearer {self._config.api_key}"},
        )
        return _parse_events(self.json(response, "geteventsandalbums"))

    def verify(self, album_ids: Collection[str] = ()) -> None:
        """The key is accepted (one listing), the link is among its events and every album
        (the table's and ``album_ids``) in that event."""
        link_id = self._config.link_id
        event = self._linked(self.events())
        if event is None:
            raise UnknownTarget(
                f"EventPics has no event with link_id {link_id!r} for this key: check link_id "
                f"in {self.section}; `boothsync events` lists them"
            )
        albums = {a.id for a in event.albums}
        for album_id in self._wanted(album_ids):
            if album_id not in albums:
                raise UnknownTarget(
                    f"EventPics event {event.title!r} has no album {album_id!r}: check "
                    f"album_id in {self.section} and the [[watch]] tables; `boothsync events` "
                    "lists them"
                )

    def _linked(self, events: list[GalleryEvent]) -> GalleryEvent | None:
        """The event of the configured link, among the key's ``events``."""
        return next((e for e in events if e.link_id == self._config.link_id), None)

    def _wanted(self, album_ids: Collection[str]) -> list[str]:
        """The albums to confirm: the table's and ``album_ids``, each once."""
        return [a for a in dict.fromkeys([self._config.album_id, *album_ids]) if a]

    def check(self, album_ids: Collection[str] = ()) -> list[CheckItem]:
        """Reach the API, then confirm the key, the link and every album named in the config."""
        events, items = self.check_opening("API key")
        if events is None:
            return items
        items.append(CheckItem(True, f"{self.name}: API key accepted", f"{len(events)} event(s)"))
        link_id = self._config.link_id
        event = self._linked(events)
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
        for album_id in self._wanted(album_ids):
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
        response = self.send(
            "write",
            "POST",
            f"{self._config.base_url}/getuploadurl",
            what="getuploadurl",
            json=body,
        )
        data = self.json(response, "getuploadurl")
        url = data.get("uploadUrl") if isinstance(data, dict) else None
        if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
            raise ServerBusy(f"{self.where} answered getuploadurl without an uploadUrl")
        if urlsplit(url).scheme == "http" and not self.clear_text_allowed:
            # Every picture would get such a URL: pause rather than fail them one by one.
            raise DestinationUnavailable(
                f"{self.where} handed out an upload URL in clear text "
                f"({self.show_url(url, path=False)}): refused, as with base_url on https:// "
                "pictures go only over https"
            )
        return url

    def _put(self, url: str, item: UploadItem) -> None:
        # An explicit Content-Length makes httpx send the generator as a
        # fixed-length body instead of chunked, which presigned storage refuses.
        headers = {"Content-Type": item.content_type, "Content-Length": str(item.size)}
        for _ in range(MAX_PUT_REDIRECTS + 1):
            response = self.send(
                "storage",
                "PUT",
                url,
                what="the upload",
                where=self._storage(url),
                limit=None,
                body_size=item.size,
                redirects=True,
                headers=headers,
                # Read from the file again for every request: a redirect is sent the whole file.
                content=item.chunks(),
            )
            if response.is_success:
                return
            url = self._redirected(url, response)
        raise DestinationUnavailable(
            f"{self._storage(url)} redirected the upload more than {MAX_PUT_REDIRECTS} times "
            f"(last to {self.show_url(url, path=False)}): refused"
        )

    def _redirected(self, url: str, response: httpx.Response) -> str:
        """Where a redirect of the upload leads, if boothsync may follow it there."""
        status = response.status_code
        location = response.headers.get("Location")
        target = urljoin(url, location) if location else ""
        where = self._storage(url)
        to = f" to {self.show_url(target, path=False)}" if target else " without saying where to"
        if status not in _KEEPS_THE_BODY or not target:
            raise DestinationUnavailable(
                f"{where} answered the upload with a redirect ({status}){to}: refused, only "
                "307 and 308 keep an upload as it is",
                status=status,
            )
        scheme = urlsplit(target).scheme
        if scheme not in ("http", "https"):
            raise DestinationUnavailable(
                f"{where} redirected the upload{to}: refused, not a web address", status=status
            )
        if scheme == "http" and (urlsplit(url).scheme == "https" or not self.clear_text_allowed):
            raise DestinationUnavailable(
                f"{where} redirected the upload{to}: refused, as an upload that went over "
                "https never goes on in clear text",
                status=status,
            )
        log.debug("%s: the upload storage redirects (%d)%s", self.name, status, to)
        return target

    def _storage(self, url: str) -> str:
        return f"the upload storage ({urlsplit(url).netloc})"

    def raise_for(self, phase: Phase, where: str, response: httpx.Response) -> NoReturn:
        status = response.status_code
        kind = classify_status(status, phase=phase)
        if kind is Unauthorized:
            raise Unauthorized(
                f"EventPics rejected the API key ({status}): check api_key in {self.section}",
                status=status,
            )
        if kind is UnknownTarget:
            album = f" or albumId {self._config.album_id!r}" if self._config.album_id else ""
            raise UnknownTarget(
                f"EventPics does not know linkId {self._config.link_id!r}{album} ({status}): "
                f"check link_id and album_id in {self.section}; `boothsync events` lists them",
                status=status,
            )
        super().raise_for(phase, where, response)


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


SERVICE: Final = Service("eventpics", EventPicsConfig, EventPicsDestination)
