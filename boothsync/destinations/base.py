"""The small contract every gallery service implements.

A destination takes one file at a time and either returns (the gallery has
it) or raises an :class:`~boothsync.errors.UploadError` subclass that says
what to do next. It lists the events and albums it knows, checks its own
configuration and answers a cheap reachability probe. It must not know about the queue.

Each service also describes itself to the registry as a :class:`Service`: its type name, its
:class:`DestinationConfig` subclass (the options of its table) and its factory.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, cast, runtime_checkable

from boothsync.bandwidth import Bandwidth
from boothsync.errors import SourceFileError
from boothsync.options import Option, options_of

__all__ = [
    "READ_CHUNK",
    "Album",
    "CheckItem",
    "Destination",
    "DestinationConfig",
    "DestinationContext",
    "GalleryEvent",
    "Listable",
    "SentPicture",
    "Service",
    "TimeBounded",
    "UploadItem",
    "Verifiable",
]

#: How much of a picture a destination reads (and sends) at a time.
READ_CHUNK = 256 * 1024


@dataclass(frozen=True)
class UploadItem:
    """One file to send, with everything the gallery needs to know about it.

    Destinations read the bytes only through :meth:`chunks` or :meth:`reader`: exactly
    ``size`` bytes, streamed from disk (never the whole file in memory), paced by the shared
    ``bandwidth`` limit when there is one. Before the last bytes are handed over, ``guard``
    (when given) checks that the picture is still what is being sent: if it changed, the read
    raises :class:`~boothsync.errors.SourceChanged` and the request never completes.
    """

    path: Path
    file_name: str
    size: int
    content_type: str
    taken_at_ms: int | None
    album_id: str | None
    bandwidth: Bandwidth | None = None
    # Called with the offset and the bytes of every read, so the uploader can hash what is
    # sent without reading the file a second time.
    on_read: Callable[[int, bytes], None] | None = field(default=None, compare=False)
    # Called before the last bytes are handed over; raises SourceChanged if the picture is no
    # longer what is being sent, so the request is cut off and the gallery keeps nothing.
    guard: Callable[[], None] | None = field(default=None, compare=False)

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, exactly ``size`` of them; SourceFileError if it cannot be read or
        shrank meanwhile."""
        reader = _ItemReader(self)
        try:
            while chunk := reader.read(READ_CHUNK):
                yield chunk
        finally:
            reader.close()

    def reader(self) -> BinaryIO:
        """A file object of exactly ``size`` bytes, for a multipart body (which asks its
        length with seek/tell and reads it in chunks). Close it when done."""
        return cast(BinaryIO, _ItemReader(self))


class _ItemReader(io.RawIOBase):
    """Reads ``item.path`` as if it were exactly ``item.size`` bytes long, paced by the
    item's bandwidth limit. No ``fileno()``: the length comes from ``item.size``, not from
    the file as it is at that moment."""

    def __init__(self, item: UploadItem) -> None:
        super().__init__()
        self._item = item
        self._handle: BinaryIO | None = None
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._item.size}
        self._position = max(0, min(self._item.size, base[whence] + offset))
        if self._handle is not None:
            self._handle.seek(self._position)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        left = self._item.size - self._position
        wanted = left if size is None or size < 0 else min(size, left)
        if wanted <= 0:
            return b""
        try:
            if self._handle is None:
                # Never through a link: the uploader names the file itself (a link it allows
                # is resolved first), so a file swapped for a link meanwhile is refused here.
                flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
                self._handle = os.fdopen(os.open(self._item.path, flags), "rb")
                self._handle.seek(self._position)
            data = self._handle.read(wanted)
            while data and len(data) < wanted:
                more = self._handle.read(wanted - len(data))
                if not more:
                    break
                data += more
        except OSError as exc:
            path = self._item.path
            raise SourceFileError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
        if len(data) < wanted:
            raise SourceFileError(f"{self._item.path}: shrank while it was being uploaded")
        if self._position + len(data) == self._item.size and self._item.guard is not None:
            # A body whose file changed while it was sent must never be taken for a picture.
            self._item.guard()
        if self._item.on_read is not None:
            self._item.on_read(self._position, data)
        self._position += len(data)
        if self._item.bandwidth is not None:
            self._item.bandwidth.take(len(data))
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        super().close()


@dataclass(frozen=True)
class Album:
    id: str
    title: str


@dataclass(frozen=True)
class GalleryEvent:
    """One event the account can upload to; ``id_key`` is the config key its id goes in."""

    title: str
    link_id: str
    albums: tuple[Album, ...]
    id_key: str = "link_id"


@dataclass(frozen=True, kw_only=True)
class DestinationConfig:
    """Any ``[destinations.NAME]`` table: its name, and the ``type`` that picks the service.

    Each service subclasses it with its own keys, declared once with
    :func:`boothsync.options.option`.
    """

    name: str
    type: str
    if TYPE_CHECKING:
        # Every service has these two keys (the picture shrunk before it is sent), the last of
        # its table: each declares them itself, so that they stay last.
        max_edge: int | None
        quality: int


@dataclass(frozen=True)
class DestinationContext:
    """What a destination may know about the booth besides its own table (for captions)."""

    booth: str = ""
    tz: tzinfo = UTC


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


@runtime_checkable
class TimeBounded(Protocol):
    """A destination that says how long one upload may take at most (the services that speak
    HTTP, whose every request has a deadline). The uploader holds a worker that takes far
    longer for stuck."""

    def upload_deadline(self, size: int) -> float:
        """Seconds one ``upload()`` of a ``size``-byte file may take, every request of it
        together, not counting waits for the shared bandwidth limit."""


@runtime_checkable
class Verifiable(Protocol):
    """A destination that can confirm its settings with the one cheap request ``check``
    makes (a gallery's events listing, or its event), so that a wrong key, event or album is
    known at start, before a guest's picture finds it out."""

    def verify(self, album_ids: Collection[str] = ()) -> None:
        """Return if the gallery accepts the key and knows the event and every album.

        Raise :class:`~boothsync.errors.DestinationUnavailable` (Unauthorized, UnknownTarget)
        only when the gallery's answer says so clearly; no answer is a
        :class:`~boothsync.errors.NetworkError`, a server in trouble a RetryableError.
        """


@dataclass(frozen=True)
class SentPicture:
    """A picture boothsync uploaded, as ``boothsync verify`` looks for it in a gallery's list:
    the name it was sent under, its album, and the size of the version that was sent."""

    file_name: str
    album_id: str | None
    size: int


@runtime_checkable
class Listable(Protocol):
    """A destination that may be able to say which pictures it holds (``boothsync verify``)."""

    def list_pictures(self) -> list[str] | None:
        """The pictures the gallery holds now, each by the key :meth:`gallery_key` gives it
        (one entry per picture, a key as often as it is there); None when the service has no
        way to list them. Raises :class:`~boothsync.errors.UploadError` when it cannot be asked
        (unreachable, the key refused)."""

    def gallery_key(self, picture: SentPicture) -> str | None:
        """The key ``picture`` has in that list (the name the gallery keeps it under, or what
        else tells it apart); None when the list cannot tell it from the others, and then only
        how many there are counts."""


@dataclass(frozen=True)
class Service:
    """One gallery service as the registry knows it: the ``type`` its tables name, its config
    dataclass (whose fields declare its options and their checks) and the factory that builds
    it, called as ``factory(config, context=context)``."""

    type_name: str
    config: type[DestinationConfig]
    factory: Callable[..., Destination]

    @property
    def options(self) -> tuple[Option, ...]:
        """The keys of its ``[destinations.NAME]`` table, in the order they are documented."""
        return options_of(self.config)
