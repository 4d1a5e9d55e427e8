"""What every destination that speaks HTTP shares: one client, error translation, messages.

Owns turning httpx's errors and a gallery's error answers into :mod:`boothsync.errors`
(through :func:`~boothsync.retry.classify_status`, which a service may refine), the server's
own words on one short line, reading JSON that may be garbage, and the reachability probe.
Nothing above the destinations ever sees an httpx type. Must never put a key or token into a
message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx

from boothsync import __version__
from boothsync.errors import NetworkError, RetryableError, ServerBusy
from boothsync.retry import Phase, classify_status, parse_retry_after

__all__ = ["HttpDestination", "one_line", "server_message"]

_MESSAGE_LIMIT = 200
# A probe only asks "is anyone there?": on a network that is down it must
# fail fast, so the uploader can probe again soon.
PROBE_TIMEOUT = 5.0

# Failures after which the whole request had been sent: the server may have acted on it.
_AFTER_SENDING = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)


class HttpDestination:
    """The base of an HTTP gallery: ``label`` names the service in messages ("EventPics")."""

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
    ) -> None:
        self.name = name
        self.base_url = base_url
        self.host = urlsplit(base_url).netloc
        self.section = f"[destinations.{name}]"
        self.client = httpx.Client(
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            headers={"User-Agent": f"boothsync/{__version__}", **(headers or {})},
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.base_url!r})"

    @property
    def where(self) -> str:
        return f"{self.label} ({self.host})"

    def probe(self) -> None:
        """GET ``base_url``: any HTTP answer (even 401 or 404) means the service is reachable."""
        try:
            self.client.get(self.base_url, timeout=PROBE_TIMEOUT)
        except httpx.HTTPError as exc:
            reason = one_line(str(exc)) or type(exc).__name__
            raise NetworkError(f"cannot reach {self.where}: {reason}") from exc

    def close(self) -> None:
        self.client.close()

    def send(
        self, phase: Phase, method: str, url: str, *, where: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request; a success comes back, anything else is raised as an UploadError."""
        where = where or self.where
        try:
            response = self.client.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise NetworkError(
                f"{where} did not answer in time ({type(exc).__name__})",
                maybe_delivered=isinstance(exc, _AFTER_SENDING),
            ) from exc
        except httpx.TransportError as exc:
            raise NetworkError(
                f"cannot reach {where}: {one_line(str(exc)) or type(exc).__name__}",
                maybe_delivered=isinstance(exc, _AFTER_SENDING),
            ) from exc
        except httpx.HTTPError as exc:
            raise NetworkError(f"request to {where} failed: {type(exc).__name__}") from exc
        if response.is_success:
            return response
        self.raise_for(phase, where, response)

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
        """The server's words about an error, on one line (services with their own error
        bodies override this)."""
        return server_message(response)

    def json(self, response: httpx.Response, what: str) -> Any:
        """The answer's JSON; something else is a server in trouble (retried later)."""
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ServerBusy(
                f"{self.where} answered {what} with something that is not JSON"
            ) from exc


def server_message(response: httpx.Response) -> str:
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
                return one_line(str(value))
    if "<Message>" in text and "</Message>" in text:
        return one_line(text.split("<Message>", 1)[1].split("</Message>", 1)[0])
    return one_line(text)


def one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MESSAGE_LIMIT else line[: _MESSAGE_LIMIT - 1] + "…"
