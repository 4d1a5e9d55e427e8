"""What every destination that speaks HTTP shares: one client, bounded requests, errors, messages.

Owns the client (over :class:`~boothsync.destinations.transport.DeadlineTransport`, with the
environment's proxies), sending one request within an overall deadline (``timeout`` plus a
second for every :data:`FLOOR_RATE` bytes it sends or may read) and reading at most a bounded
part of its answer, refusing an API's redirects (its requests carry the key), turning httpx's
errors and a gallery's error answers into :mod:`boothsync.errors` (through
:func:`~boothsync.retry.classify_status`, which a service may refine), the server's own words
on one short line with the destination's key taken out, reading JSON that may be garbage, and
the reachability probe. Nothing above the destinations ever sees an httpx type. Must never
put a key or token into a message, nor read an answer whole without a bound.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote, urljoin, urlsplit

from boothsync import __version__
from boothsync.destinations.base import CheckItem, GalleryEvent
from boothsync.errors import (
    DestinationUnavailable,
    NetworkError,
    RetryableError,
    ServerBusy,
    Unauthorized,
    UploadError,
)
from boothsync.retry import Phase, classify_status, parse_retry_after

if TYPE_CHECKING:
    # Imported where a client is made or an answer read, not with this module: the config
    # loader reads each service's options from its module, and must stay quick to load.
    import ssl

    import httpx

    from boothsync.destinations.transport import Deadline

__all__ = [
    "ANSWER_LIMIT",
    "ERROR_LIMIT",
    "FLOOR_RATE",
    "LIST_LIMIT",
    "REDACTED",
    "HttpDestination",
    "one_line",
    "redact",
    "server_message",
]

ERROR_LIMIT = 16 * 1024
"""Bytes of an error answer read for its message; the rest is never read."""
ANSWER_LIMIT = 64 * 1024
"""Bytes a small success answer (an upload URL, the record of an uploaded photo) may have."""
LIST_LIMIT = 2 * 1024 * 1024
"""Bytes one listing (events and albums, a page of photos) may have: thousands of events."""
FLOOR_RATE = 16 * 1024
"""The slowest transfer, in bytes per second, that a request is given time for.

A request may take ``timeout`` plus one second for every this many bytes it sends or may
read; then it fails like a broken connection and is tried again later. A little over
128 kbit/s: a poor mobile uplink shared by two workers still gets a large picture through,
while a server that trickles its answer holds a worker for minutes, not for ever. Time spent
waiting for the shared bandwidth limit (or reading the picture) is not counted.
"""
REDACTED = "***"
"""What stands in a message where a server quoted the destination's key."""

_MESSAGE_LIMIT = 200
_URL_LIMIT = 120
# A multipart body is the file plus its part headers and boundaries (and a caption).
_FORM_SLACK = 4096
# A probe only asks "is anyone there?": on a network that is down it must
# fail fast, so the uploader can probe again soon.
PROBE_TIMEOUT = 5.0

# Headers that describe the answer as it came over the wire, not the bytes kept of it.
_FRAMING = frozenset({"content-length", "content-encoding", "transfer-encoding"})
# What OpenSSL says when the other end answers a TLS hello with something that is not TLS
# (a plain http server, or a network that intercepts the connection).
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL"}
)


class HttpDestination:
    """The base of an HTTP gallery: ``label`` names the service in messages ("EventPics").

    ``secrets`` are the destination's key or token: taken out of every message built from
    a server's words.
    """

    type = ""
    label = ""

    def __init__(
        self,
        name: str,
        base_url: str,
        timeout: float,
        *,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: Collection[str] = (),
    ) -> None:
        import httpx

        from boothsync.destinations.transport import DeadlineTransport, proxy_mounts

        self.name = name
        self.base_url = base_url
        self.timeout = timeout
        self.host = urlsplit(base_url).netloc
        self.section = f"[destinations.{name}]"
        self._secrets = _variants(secrets)
        if transport is None:
            transport = DeadlineTransport()
            mounts: dict[str, httpx.BaseTransport | None] | None = proxy_mounts()
        else:
            mounts = None
        self.client = httpx.Client(
            transport=transport,
            mounts=mounts,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            headers={
                "User-Agent": f"boothsync/{__version__}",
                # Answers are read with a bound on their size: a compressed one could unpack
                # to far more than the bytes that came.
                "Accept-Encoding": "identity",
                **(headers or {}),
            },
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    @property
    def where(self) -> str:
        return f"{self.label} ({self.host})"

    @property
    def clear_text_allowed(self) -> bool:
        """Whether plain http is fine: only when base_url itself says http:// (this machine,
        or a server on the venue's own network)."""
        return urlsplit(self.base_url).scheme == "http"

    def request_deadline(self, body_size: int = 0, limit: int | None = ANSWER_LIMIT) -> float:
        """Seconds one request that sends ``body_size`` bytes and reads at most ``limit`` may
        take (``None``: an answer whose body is not needed)."""
        answer = max(limit or 0, ERROR_LIMIT)
        return self.timeout + (body_size + answer) / FLOOR_RATE

    def events(self) -> list[GalleryEvent]:
        """The events the key can upload to (each service reads its own listing)."""
        raise NotImplementedError

    def reached(self) -> CheckItem:
        """The check's line for an API that answered."""
        return CheckItem(True, f"{self.name}: API reachable", self.host)

    def check_opening(self, credential: str) -> tuple[list[GalleryEvent] | None, list[CheckItem]]:
        """What every service's check starts with: list the key's events. The events and the
        line that the API is reachable; or None and the lines of what failed: the API out of
        reach, or reached with the ``credential`` ("API key") refused."""
        try:
            events = self.events()
        except Unauthorized as exc:
            refused = CheckItem(False, f"{self.name}: {credential} accepted", str(exc))
            return None, [self.reached(), refused]
        except UploadError as exc:
            return None, [CheckItem(False, f"{self.name}: API reachable", str(exc))]
        return events, [self.reached()]

    def upload_deadline(self, size: int) -> float:
        """Seconds one ``upload()`` of a ``size``-byte file may take, every request of it
        together (waits for the shared bandwidth limit not counted). Services with more than
        one request per upload override this."""
        return self.request_deadline(size + _FORM_SLACK)

    def probe(self) -> None:
        """GET ``base_url``: any HTTP answer (even 401 or 404) means the service is reachable.
        The answer's body is never read."""
        import httpx

        from boothsync.destinations.transport import DEADLINE, Deadline

        deadline = Deadline(PROBE_TIMEOUT)
        try:
            with self.client.stream(
                "GET", self.base_url, timeout=PROBE_TIMEOUT, extensions={DEADLINE: deadline}
            ):
                pass
        except httpx.HTTPError as exc:
            raise self._network_error(exc, self.where, deadline) from exc

    def close(self) -> None:
        self.client.close()

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
        """One request within its deadline; a success comes back, anything else is raised as
        an UploadError.

        ``what`` names the request in messages ("getuploadurl"). A success answer is read
        whole up to ``limit`` bytes, and one that is longer is a ServerBusy naming the limit;
        ``limit=None``: the caller needs no body, and at most :data:`ERROR_LIMIT` of it is
        read. An error answer is read up to :data:`ERROR_LIMIT`, for its message. A redirect
        is refused (DestinationUnavailable: the request carried the key) unless
        ``redirects``: then it comes back for the caller to judge. ``body_size`` is the
        request body's length, for the deadline.
        """
        import httpx

        from boothsync.destinations.transport import DEADLINE, Deadline

        where = where or self.where
        deadline = Deadline(self.request_deadline(body_size, limit))
        extensions = {**kwargs.pop("extensions", {}), DEADLINE: deadline}
        if body_size and "timeout" not in kwargs:
            # The body's last bytes leave boothsync long before they cross a slow link: the
            # system's send buffer holds seconds of a poor uplink, more with several uploads
            # sharing it. The answer can only come once they arrived, so its wait gets the
            # time the body may take at the floor rate too (the deadline bounds it all).
            kwargs["timeout"] = httpx.Timeout(
                self.timeout,
                connect=min(10.0, self.timeout),
                read=self.timeout + body_size / FLOOR_RATE,
            )
        try:
            with self.client.stream(method, url, extensions=extensions, **kwargs) as streamed:
                status = streamed.status_code
                if 300 <= status < 400 and not redirects:
                    raise self._redirect_refused(what, where, streamed)
                if streamed.is_success and limit is not None:
                    body = self._read(streamed, limit, what=what, where=where)
                else:
                    body = self._read(streamed, ERROR_LIMIT, what=what, where=where, strict=False)
                response = _kept(streamed, body)
        except httpx.HTTPError as exc:
            raise self._network_error(exc, where, deadline) from exc
        if response.is_success or 300 <= response.status_code < 400:
            return response
        try:
            self.raise_for(phase, where, response)
        except UploadError as exc:
            # Services build messages from the server's words in many places: none of them
            # may carry the key out of here, whatever a service forgot.
            self._scrub(exc)
            raise

    def raise_for(self, phase: Phase, where: str, response: httpx.Response) -> NoReturn:
        """Raise the error an answer that is not a success means; services override this to
        say what an operator should fix, and call it for the rest."""
        status = response.status_code
        message = self.error_message(response)
        kind = classify_status(status, phase=phase)
        text = f"{where} answered {status}" + (f": {message}" if message else "")
        if issubclass(kind, RetryableError):
            retry_after = parse_retry_after(
                response.headers.get("Retry-After"), date=response.headers.get("Date")
            )
            raise kind(text, status=status, retry_after=retry_after)
        raise kind(text, status=status)

    def error_message(self, response: httpx.Response) -> str:
        """The server's words about an error, on one line, without the key (services with
        their own error bodies override this)."""
        return server_message(response, self._secrets)

    def redact(self, text: str) -> str:
        """``text`` with this destination's key or token replaced by :data:`REDACTED`."""
        return redact(text, self._secrets)

    def json(self, response: httpx.Response, what: str) -> Any:
        """The answer's JSON; something else is a server in trouble (retried later)."""
        try:
            return response.json()
        except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, nested too deep
            raise ServerBusy(
                f"{self.where} answered {what} with something that is not JSON"
            ) from exc

    def show_url(self, url: str, *, path: bool = True) -> str:
        """Where ``url`` points, for a message: scheme, host and (``path``) path, never a query
        (which may hold a signature), user or the key. Leave the path out of a presigned URL:
        it may be the grant itself."""
        parts = urlsplit(url)
        shown = f"{parts.scheme}://{parts.hostname or ''}"
        if parts.port is not None:
            shown += f":{parts.port}"
        shown = self.redact(shown + (parts.path if path else ""))
        return shown if len(shown) <= _URL_LIMIT else shown[: _URL_LIMIT - 1] + "…"

    def _read(
        self, response: httpx.Response, limit: int, *, what: str, where: str, strict: bool = True
    ) -> bytes:
        """At most ``limit`` bytes of the answer's body, read as they come. ``strict``: a longer
        answer (or one compressed, so of unknown size) is a ServerBusy; else it is cut."""
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            if strict:
                raise ServerBusy(
                    f"{where} answered {what} compressed ({one_line(encoding)[:40]}), which "
                    "boothsync did not ask for"
                )
            return b""
        declared = response.headers.get("Content-Length", "").strip()
        if strict and declared.isdigit() and int(declared) > limit:
            raise self._too_large(what, where, limit)
        parts: list[bytes] = []
        size = 0
        for part in response.iter_bytes():
            if size + len(part) > limit:
                if strict:
                    raise self._too_large(what, where, limit)
                parts.append(part[: limit - size])
                break
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    def _too_large(self, what: str, where: str, limit: int) -> ServerBusy:
        return ServerBusy(
            f"{where} answered {what} with more than {_size(limit)}, the most boothsync reads "
            "of that answer"
        )

    def _redirect_refused(
        self, what: str, where: str, response: httpx.Response
    ) -> DestinationUnavailable:
        status = response.status_code
        location = response.headers.get("Location")
        target = (
            f"to {self.show_url(urljoin(str(response.url), location))}"
            if location
            else "without saying where to"
        )
        return DestinationUnavailable(
            f"{where} answered {what} with a redirect ({status}) {target}, which boothsync does "
            f"not follow as the request carries the key: check base_url in {self.section} "
            f"(now {self.show_url(self.base_url)})",
            status=status,
        )

    def _network_error(self, exc: httpx.HTTPError, where: str, deadline: Deadline) -> NetworkError:
        import httpx

        # Failures after which the whole request had been sent: the server may have acted on it.
        after_sending = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)
        maybe_delivered = isinstance(exc, after_sending)
        if deadline.expired:
            text = (
                f"{where} did not complete the request within {deadline.seconds:.0f} s, its "
                "deadline: the server or the network is far too slow, or trickles its answer"
            )
        elif isinstance(exc, httpx.TimeoutException):
            text = f"{where} did not answer in time ({type(exc).__name__})"
        elif isinstance(exc, httpx.TransportError):
            text = f"cannot reach {where}: {self._reason(exc, where)}"
        else:
            text = f"request to {where} failed: {type(exc).__name__}"
        return NetworkError(self.redact(text), maybe_delivered=maybe_delivered)

    def _reason(self, exc: httpx.HTTPError, where: str) -> str:
        """Why a connection failed, in words where the bare error would puzzle an operator."""
        import ssl

        tls = _ssl_error(exc)
        if isinstance(tls, ssl.SSLCertVerificationError):
            said = one_line(str(tls.verify_message or tls.reason or "not valid"))
            return (
                f"its TLS certificate is not accepted ({said}): a network that intercepts "
                "https (a Wi-Fi login page) or a wrong clock on this computer"
            )
        if tls is not None and tls.reason in _NOT_TLS:
            hint = ""
            if where == self.where and not self.clear_text_allowed:
                hint = "; if it is a plain http server, base_url must say http://"
            return f"it does not answer in TLS (https){hint} (SSL: {tls.reason})"
        return one_line(self.redact(str(exc))) or type(exc).__name__

    def _scrub(self, exc: UploadError) -> None:
        if exc.args and isinstance(exc.args[0], str):
            exc.args = (self.redact(exc.args[0]), *exc.args[1:])


def _kept(response: httpx.Response, body: bytes) -> httpx.Response:
    """The answer with the bytes read of it as its content (already read, in memory)."""
    import httpx

    headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _FRAMING]
    return httpx.Response(
        response.status_code, headers=headers, content=body, request=response.request
    )


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    import ssl

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _size(limit: int) -> str:
    if limit >= 1024 * 1024 and limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    if limit >= 1024 and limit % 1024 == 0:
        return f"{limit // 1024} KiB"
    return f"{limit} bytes"


def _variants(secrets: Collection[str]) -> tuple[str, ...]:
    """Each secret as a server may quote it: as it is, and URL-encoded; longest first."""
    found = set()
    for secret in secrets:
        if secret:
            found.add(secret)
            found.add(quote(secret, safe=""))
    return tuple(sorted(found, key=len, reverse=True))


def redact(text: str, secrets: Collection[str]) -> str:
    """``text`` with every one of ``secrets`` (and its URL-encoded form) replaced by
    :data:`REDACTED`."""
    for secret in _variants(secrets):
        text = text.replace(secret, REDACTED)
    return text


def server_message(response: httpx.Response, secrets: Collection[str] = ()) -> str:
    """The server's own words about an error, on one short line, without ``secrets``
    (taken out before the line is cut short, so no part of one is left either)."""
    import httpx

    try:
        text = response.text
    except (UnicodeDecodeError, httpx.HTTPError):
        return ""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, Mapping):
        for key in ("error", "message", "detail", "code"):
            value = data.get(key)
            if isinstance(value, Mapping):
                value = value.get("message", value)
            if value:
                return one_line(redact(str(value), secrets))
    if "<Message>" in text and "</Message>" in text:
        return one_line(redact(text.split("<Message>", 1)[1].split("</Message>", 1)[0], secrets))
    return one_line(redact(text, secrets))


def one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MESSAGE_LIMIT else line[: _MESSAGE_LIMIT - 1] + "…"
