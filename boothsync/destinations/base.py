"""The small contract every gallery service implements.

A destination takes one file at a time and either returns (the gallery has
it) or raises an :class:`~boothsync.errors.UploadError` subclass that says
what to do next. It lists the events and albums it knows, checks its own
configuration and answers a cheap reachability probe. It must not know about the queue.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["Album", "CheckItem", "Destination", "GalleryEvent", "UploadItem"]


@dataclass(frozen=True)
class UploadItem:
    """One file to send, with everything the gallery needs to know about it."""

    path: Path
    file_name: str
    size: int
    content_type: str
    taken_at_ms: int | None
    album_id: str | None


@dataclass(frozen=True)
class Album:
    id: str
    title: str


@dataclass(frozen=True)
class GalleryEvent:
    title: str
    link_id: str
    albums: tuple[Album, ...]


@dataclass(frozen=True)
class CheckItem:
    """One line of ``boothsync check``: did it hold, what was checked, what was seen."""

    ok: bool
    label: str
    detail: str = ""


class Destination(Protocol):
    """A gallery service, as the uploader and the CLI see it."""

    name: str
    type: str

    def upload(self, item: UploadItem) -> None:
        """Send one file; return only once the gallery has accepted it."""

    def events(self) -> list[GalleryEvent]:
        """The events and albums this account can upload to."""

    def probe(self) -> None:
        """One cheap request: return if the service answers at all, whatever it says.

        Raise :class:`~boothsync.errors.NetworkError` when there is no answer
        (no route, refused, timed out). The uploader calls it while the
        destination is offline, to learn when to send again.
        """

    def check(self, album_ids: Collection[str] = ()) -> list[CheckItem]:
        """Reach the service and confirm the key, the event and each album exist."""

    def close(self) -> None:
        """Release connections; the destination is not used afterwards."""
