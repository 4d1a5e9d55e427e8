"""Picsui: one multipart POST per photo into an event, paced by the service's rate limit.

The protocol:

1. ``POST {base_url}/events/{event_id}/photos`` (``Authorization: Bearer KEY``),
   multipart/form-data with the file in ``photo`` and an optional ``caption``.
2. ``GET {base_url}/events/{event_id}/photos`` lists the event's photos.
3. ``GET {base_url}/events/{event_id}`` describes the event.

Owns the pacing by ``X-RateLimit-Limit/Remaining/Reset`` (read from every answer, shared
by the workers that use this object at once), the caption template, and the guard
against duplicates: a POST is not idempotent, so a file whose POST may have reached the
gallery is first looked for in the listing before it is sent again. Must not put the API
key into a message, and reads a picture's bytes only through :class:`UploadItem`.
"""

from __future__ import annotations

import logging
import math
import string
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Final, Literal, NoReturn
from urllib.parse import quote, urljoin, urlsplit

from boothsync.destinations.base import (
    CheckItem,
    DestinationConfig,
    DestinationContext,
    GalleryEvent,
    SentPicture,
    Service,
    UploadItem,
)
from boothsync.destinations.http import ANSWER_LIMIT, LIST_LIMIT, HttpDestination
from boothsync.errors import (
    DestinationUnavailable,
    FileRejected,
    NetworkError,
    ServerBusy,
    Unauthorized,
    UnknownTarget,
    UploadError,
)
from boothsync.options import (
    Invalid,
    https_url,
    max_edge_option,
    option,
    quality_option,
    timeout_option,
    type_option,
)
from boothsync.retry import RETRY_AFTER_CAP, Phase, http_date, parse_retry_after

if TYPE_CHECKING:
    import httpx

__all__ = [
    "CAPTION_FIELDS",
    "DEFAULT_PICSUI_URL",
    "SERVICE",
    "PicsuiConfig",
    "PicsuiDestination",
    "RateLimiter",
    "check_caption",
    "render_caption",
    "seconds_until_reset",
]

log = logging.getLogger(__name__)

CAPTION_FIELDS = ("booth", "file", "taken")
"""The names a caption template may use."""

# Listing pages followed at most while looking for a file that may have arrived.
_MAX_PAGES = 20
# Listing pages followed at most to list the whole event (``boothsync verify``).
_MAX_LIST_PAGES = 2000
_LIST_KEYS = ("photos", "data", "items")
_NAME_KEYS = ("filename", "file_name", "original_filename", "name")
_SIZE_KEYS = ("size", "size_bytes", "filesize")
# Waiting for the moment a spent window resets is a little late rather than a little early.
_RESET_MARGIN = 0.05
_TICKET = "boothsync.picsui.ticket"


def render_caption(template: str, *, booth: str, file: str, taken: datetime) -> str:
    """The caption for one picture: ``template`` formatted with ``booth``, ``file``, ``taken``."""
    return template.format(booth=booth, file=file, taken=taken)


def check_caption(template: str) -> None:
    """Raise ValueError (one line naming the problem) unless ``template`` renders."""
    allowed = ", ".join("{" + name + "}" for name in CAPTION_FIELDS)
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"caption {template!r} is not a valid template: {exc}") from None
    for name in fields:
        base = name.split(".", 1)[0].split("[", 1)[0]
        if base == "" or base.isdigit():
            raise ValueError(
                f"caption {template!r} has a positional field {{{name}}}; use {allowed}"
            )
        if base not in CAPTION_FIELDS:
            raise ValueError(f"caption {template!r} has an unknown field {{{base}}}; use {allowed}")
    try:
        render_caption(template, booth="booth", file="IMG_0001.JPG", taken=datetime.now(UTC))
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ValueError(f"caption {template!r} cannot be rendered: {exc}") from None


def seconds_until_reset(
    value: str | None, *, date: str | None = None, now: float | None = None
) -> float | None:
    """Seconds until a rate-limit window resets, from ``X-RateLimit-Reset``.

    The unit is guessed from the size: above 10**12 epoch milliseconds, above 10**9 epoch
    seconds, else seconds from now. Epoch values are read against the answer's ``Date`` (the
    server's clock) when it has a usable one, else against ``now`` (local time). None when
    the value is absent or unreadable; clamped to ``[0, RETRY_AFTER_CAP]``.
    """
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    if number > 10**12:
        epoch: float | None = number / 1000.0
    elif number > 10**9:
        epoch = number
    else:
        epoch = None
    if epoch is None:
        seconds = number
    else:
        reference = http_date(date)
        if reference is None:
            reference = time.time() if now is None else now
        seconds = epoch - reference
    return max(0.0, min(RETRY_AFTER_CAP, seconds))


@dataclass(frozen=True)
class _Window:
    remaining: int
    seconds: float  # until the reset


def _read_window(headers: httpx.Headers) -> _Window | None:
    """The rate-limit state an answer tells, or None when it tells none."""
    raw = headers.get("X-RateLimit-Remaining")
    if raw is None:
        return None
    try:
        remaining = int(float(raw.strip()))
    except ValueError:
        return None
    seconds = seconds_until_reset(headers.get("X-RateLimit-Reset"), date=headers.get("Date"))
    if seconds is None:
        return None
    return _Window(max(0, remaining), seconds)


class RateLimiter:
    """What the server said about its rate limit, shared by every worker (thread-safe).

    A request is reserved before it is sent: the remembered ``Remaining`` goes down at
    once, so two workers cannot both spend the last request; with none left,
    :meth:`reserve` raises ServerBusy (429) with the seconds until the reset. An answer's
    ``Remaining`` is read as "minus the requests of ours still unanswered" (the server may
    not have counted them yet); within one window the lower of the two counts wins, as
    answers can arrive out of order. Before the first answer, and once a window's reset has
    passed, nothing is known: one request goes alone (the others wait for its answer) and
    what it brings back sets the pace. A server that sends no rate-limit headers is not paced.
    """

    def __init__(
        self,
        *,
        wait: float = 30.0,
        tz: tzinfo = UTC,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wait = wait
        self._tz = tz
        self._clock = clock
        self._cond = threading.Condition()
        self._paced: bool | None = None  # None: no answer yet
        self._remaining: int | None = None  # None: unknown in this window
        self._reset_at: float | None = None  # on ``clock``
        self._next_ticket = 0
        self._tickets: set[int] = set()  # requests under way
        self._unanswered: set[int] = set()  # tickets whose answer has not come yet

    def reserve(self) -> int:
        """A ticket for one request, to hand to :meth:`observe` and :meth:`done`."""
        with self._cond:
            deadline = self._clock() + self._wait
            while True:
                now = self._clock()
                if self._reset_at is not None and now >= self._reset_at:
                    self._remaining = self._reset_at = None
                if self._paced is False:
                    break
                if self._remaining is None:
                    # Unknown: one request goes and finds out; the rest wait for its answer.
                    if not self._tickets or now >= deadline:
                        break
                    self._cond.wait(max(0.01, deadline - now))
                    continue
                if self._remaining > 0:
                    self._remaining -= 1
                    break
                assert self._reset_at is not None
                raise self.busy(self._reset_at - now + _RESET_MARGIN)
            self._next_ticket += 1
            self._tickets.add(self._next_ticket)
            self._unanswered.add(self._next_ticket)
            return self._next_ticket

    def observe(self, headers: httpx.Headers, ticket: int | None = None) -> None:
        """Take in what one answer's headers say (any answer, success or error)."""
        window = _read_window(headers)
        with self._cond:
            if window is None:
                if self._paced is None:
                    self._paced = False
                self._cond.notify_all()
                return
            self._paced = True
            # Only requests still unanswered may be missing from the server's count: one
            # answered already was counted, even while its body is still being read.
            others = len(self._unanswered) - (1 if ticket in self._unanswered else 0)
            if ticket is not None:
                self._unanswered.discard(ticket)
            remaining = max(0, window.remaining - others)
            now = self._clock()
            if self._remaining is None or self._reset_at is None:
                self._remaining = remaining
                self._reset_at = now + window.seconds
            else:
                # Same window as far as we know: keep the lower count and the earlier reset
                # (once it passes, the next answer tells the new window).
                self._remaining = min(self._remaining, remaining)
            self._cond.notify_all()

    def spent(self, seconds: float) -> None:
        """The server said 429: nothing goes for ``seconds``."""
        with self._cond:
            self._paced = True
            self._remaining = 0
            until = self._clock() + seconds
            self._reset_at = until if self._reset_at is None else max(self._reset_at, until)
            self._cond.notify_all()

    def done(self, ticket: int) -> None:
        """The request of ``ticket`` is over (answered or failed)."""
        with self._cond:
            if ticket in self._tickets:
                self._tickets.discard(ticket)
                self._unanswered.discard(ticket)
                self._cond.notify_all()

    def busy(self, seconds: float) -> ServerBusy:
        """The error that makes the queue wait ``seconds`` for the window to reset."""
        seconds = max(0.0, seconds)
        until = datetime.now(self._tz) + timedelta(seconds=seconds)
        return ServerBusy(
            f"Picsui's rate limit is used up until {until:%H:%M:%S}",
            status=429,
            retry_after=seconds,
        )


DEFAULT_PICSUI_URL: Final = "https://api.picsui.com/v1"


def _caption(value: str) -> str:
    try:
        check_caption(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return value


@dataclass(frozen=True, kw_only=True)
class PicsuiConfig(DestinationConfig):
    """``[destinations.NAME]`` with ``type = "picsui"``. The repr leaves out the API key."""

    type: Literal["picsui"] = type_option("picsui")
    api_key: str = option(
        "str",
        "The Picsui API key (sent as a Bearer token). Required. Never logged.",
        required=True,
        secret=True,
    )
    event_id: str = option("str", "The Picsui event the pictures go to. Required.", required=True)
    base_url: str = option(  # no trailing slash
        "str",
        "The API address, with its version path; https://, or http:// for this machine only.",
        default=DEFAULT_PICSUI_URL,
        check=https_url,
    )
    caption: str | None = option(
        "str",
        "A caption for each picture: {booth} (the booth's name), {file} (the file name) and "
        "{taken} (the capture time, e.g. {taken:%H:%M}). Default: no caption.",
        check=_caption,
        line_breaks=True,
    )
    timeout: float = timeout_option(30.0)
    max_edge: int | None = max_edge_option()
    quality: int = quality_option()


class PicsuiDestination(HttpDestination):
    """Uploads to one Picsui event; workers may share one object."""

    type = "picsui"
    label = "Picsui"

    def __init__(
        self,
        config: PicsuiConfig,
        *,
        context: DestinationContext | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base_url = config.base_url.rstrip("/")
        super().__init__(
            config.name,
            base_url,
            config.timeout,
            transport=transport,
            headers={"Authorization": f"Bearer {config.api_key}", "Accept": "application/json"},
            secrets=(config.api_key,),
        )
        self._config = config
        self._context = context if context is not None else DestinationContext()
        self._event_url = f"{base_url}/events/{quote(str(config.event_id), safe='')}"
        self._limits = RateLimiter(wait=config.timeout, tz=self._context.tz)
        self.client.event_hooks = {"response": [self._on_response]}
        # (path, size) of files whose POST may have reached the gallery without an answer.
        self._maybe_sent: set[tuple[str, int]] = set()
        self._maybe_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PicsuiDestination(name={self.name!r}, base_url={self.base_url!r})"

    def upload(self, item: UploadItem) -> None:
        key = (str(item.path), item.size)
        with self._maybe_lock:
            unsure = key in self._maybe_sent
        if unsure and self._in_gallery(item):
            log.info(
                "%s: %s is already in the gallery (an earlier upload got there unanswered)",
                self.name,
                item.file_name,
            )
            with self._maybe_lock:
                self._maybe_sent.discard(key)
            return
        caption = self.caption(item)
        data = {"caption": caption} if self._config.caption else None
        reader = item.reader()
        try:
            self.send(
                "write",
                "POST",
                f"{self._event_url}/photos",
                what="the photo upload",
                limit=None,
                body_size=item.size + len(caption.encode()),
                files={"photo": (item.file_name, reader, item.content_type)},
                data=data,
            )
        except NetworkError as exc:
            if exc.maybe_delivered:
                with self._maybe_lock:
                    self._maybe_sent.add(key)
            raise
        finally:
            reader.close()
        with self._maybe_lock:
            self._maybe_sent.discard(key)

    def list_pictures(self) -> list[str]:
        """The names of the event's photos, every page of ``GET /events/{id}/photos``."""
        names: list[str] = []
        url: str | None = f"{self._event_url}/photos"
        seen: set[str] = set()
        while url is not None and url not in seen and len(seen) < _MAX_LIST_PAGES:
            seen.add(url)
            response = self.send("read", "GET", url, what="the photo list", limit=LIST_LIMIT)
            data = self.json(response, "the photo list")
            entries = _photo_list(data)
            if entries is None:
                raise ServerBusy(f"{self.where} answered the photo list in an unknown shape")
            names.extend(name for entry in entries if (name := _entry_name(entry)) is not None)
            url = _next_page(data, url)
        return names

    def gallery_key(self, picture: SentPicture) -> str:
        return picture.file_name

    def caption(self, item: UploadItem) -> str:
        """The caption the config's template gives this picture ("" without a template)."""
        template = self._config.caption
        if not template:
            return ""
        tz = self._context.tz
        if item.taken_at_ms is None:
            taken = datetime.now(tz)
        else:
            taken = datetime.fromtimestamp(item.taken_at_ms / 1000.0, tz=tz)
        try:
            return render_caption(
                template, booth=self._context.booth, file=item.file_name, taken=taken
            )
        except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
            raise FileRejected(
                f"the caption template in {self.section} cannot be rendered: {exc}"
            ) from None

    def events(self) -> list[GalleryEvent]:
        if not self._config.event_id:
            # Picsui's API describes one event by its id; it has no list of a key's events.
            raise UnknownTarget(
                f"Picsui cannot list the events of a key: set event_id in {self.section} to "
                "your event's id (Picsui shows it with the event), then this shows its name"
            )
        response = self.send("read", "GET", self._event_url, what="the event")
        data = self.json(response, "the event")
        if isinstance(data, Mapping):
            inner = data.get("event", data.get("data"))
            if isinstance(inner, Mapping):
                data = inner
        if not isinstance(data, Mapping):
            raise ServerBusy(f"{self.where} answered the event with something that is not one")
        title = data.get("name") or data.get("title") or ""
        return [
            GalleryEvent(
                title=str(title),
                link_id=str(self._config.event_id),
                albums=(),
                id_key="event_id",
            )
        ]

    def verify(self, album_ids: Collection[str] = ()) -> None:
        """The key is accepted and the event exists: one look at the event (Picsui has no
        albums)."""
        self.events()

    def check(self, album_ids: Collection[str] = ()) -> list[CheckItem]:
        """Reach the API, then confirm the key and the event."""
        event_id = self._config.event_id
        reachable = self.reached()
        exists = f"{self.name}: event_id {event_id!r} exists"
        items: list[CheckItem]
        try:
            events = self.events()
        except Unauthorized as exc:
            items = [reachable, CheckItem(False, f"{self.name}: API key accepted", str(exc))]
        except UnknownTarget as exc:
            items = [
                reachable,
                CheckItem(True, f"{self.name}: API key accepted", "the event lookup got past it"),
                CheckItem(False, exists, str(exc)),
            ]
        except UploadError as exc:
            return [CheckItem(False, f"{self.name}: API reachable", str(exc))]
        else:
            items = [
                reachable,
                CheckItem(True, f"{self.name}: API key accepted"),
                CheckItem(True, exists, events[0].title),
            ]
        if album_ids:
            items.append(
                CheckItem(
                    True,
                    f"{self.name}: albums",
                    "Picsui has no albums; album ids are ignored for this destination",
                )
            )
        return items

    def send(
        self,
        phase: Phase,
        method: str,
        url: str,
        *,
        what: str,
        where: str | None = None,
        limit: int | None = ANSWER_LIMIT,
        body_size: int = 0,
        redirects: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """As HttpDestination.send, paced: a request is reserved before it goes."""
        ticket = self._limits.reserve()
        try:
            extensions = {**kwargs.pop("extensions", {}), _TICKET: ticket}
            return super().send(
                phase,
                method,
                url,
                what=what,
                where=where,
                limit=limit,
                body_size=body_size,
                redirects=redirects,
                extensions=extensions,
                **kwargs,
            )
        finally:
            self._limits.done(ticket)

    def upload_deadline(self, size: int) -> float:
        """A wait for the rate limit, the listing of a file that may have arrived, the POST."""
        pace = self.timeout
        listing = _MAX_PAGES * (pace + self.request_deadline(0, LIST_LIMIT))
        return listing + pace + super().upload_deadline(size)

    def raise_for(self, phase: Phase, where: str, response: httpx.Response) -> NoReturn:
        status = response.status_code
        if status in (401, 403):
            raise Unauthorized(
                f"Picsui rejected the API key ({status}): check api_key in {self.section}",
                status=status,
            )
        if status == 404:
            raise UnknownTarget(
                f"Picsui does not know event_id {self._config.event_id!r} (404): "
                f"check event_id in {self.section}",
                status=status,
            )
        if status == 413:
            raise FileRejected("Picsui refused the file as too large (413)", status=status)
        if status == 429:
            headers = response.headers
            wait = parse_retry_after(headers.get("Retry-After"), date=headers.get("Date"))
            if wait is None:
                window = _read_window(headers)
                wait = window.seconds if window is not None else None
            if wait is None:
                raise ServerBusy("Picsui's rate limit is used up (429)", status=429)
            self._limits.spent(wait)
            raise self._limits.busy(wait)
        if 400 <= status < 500 and status not in (408, 425):
            message = self.error_message(response)
            raise FileRejected(
                f"Picsui refused the file ({status})" + (f": {message}" if message else ""),
                status=status,
            )
        super().raise_for(phase, where, response)

    def _on_response(self, response: httpx.Response) -> None:
        ticket = response.request.extensions.get(_TICKET)
        self._limits.observe(response.headers, ticket if isinstance(ticket, int) else None)

    def _in_gallery(self, item: UploadItem) -> bool:
        """Whether the listing shows ``item`` (name, and size when listed); False when the
        listing cannot tell (then the file is sent again)."""
        url: str | None = f"{self._event_url}/photos"
        pages = 0
        while url is not None and pages < _MAX_PAGES:
            pages += 1
            try:
                response = self.send("read", "GET", url, what="the photo list", limit=LIST_LIMIT)
                data = self.json(response, "the photo list")
            except DestinationUnavailable:
                raise
            except UploadError as exc:
                if isinstance(exc, ServerBusy) and exc.status == 429:
                    raise
                log.debug("%s: cannot list the event's photos (%s); sending again", self.name, exc)
                return False
            entries = _photo_list(data)
            if entries is None:
                log.debug("%s: the photo list has no usable shape; sending again", self.name)
                return False
            if any(_same_file(entry, item) for entry in entries):
                return True
            url = _next_page(data, url)
        return False


def _photo_list(data: Any) -> list[Any] | None:
    if isinstance(data, list):
        return data
    if isinstance(data, Mapping):
        for key in _LIST_KEYS:
            value = data.get(key)
            if isinstance(value, list):
                return value
    return None


def _entry_name(entry: Any) -> str | None:
    """The name a listed photo was uploaded under, if the entry says."""
    if isinstance(entry, Mapping):
        for key in _NAME_KEYS:
            value = entry.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _same_file(entry: Any, item: UploadItem) -> bool:
    if not isinstance(entry, Mapping):
        return False
    if not any(entry.get(key) == item.file_name for key in _NAME_KEYS):
        return False
    for key in _SIZE_KEYS:
        size = entry.get(key)
        if size is not None:
            try:
                return int(size) == item.size
            except (TypeError, ValueError):
                return False
    return True


def _next_page(data: Any, url: str) -> str | None:
    """The next page's URL when the listing says so plainly (a ``next`` link), else None."""
    if not isinstance(data, Mapping):
        return None
    candidates = [data.get("next"), data.get("next_page_url")]
    links = data.get("links")
    if isinstance(links, Mapping):
        candidates.append(links.get("next"))
    for candidate in candidates:
        if isinstance(candidate, str) and candidate:
            absolute = urljoin(url, candidate)
            if urlsplit(absolute).netloc == urlsplit(url).netloc and absolute != url:
                return absolute
    return None


SERVICE: Final = Service("picsui", PicsuiConfig, PicsuiDestination)
