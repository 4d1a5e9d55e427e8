"""The HTTP transport of every gallery client: httpx over httpcore, each request with a deadline.

httpx's timeouts bound each connect, read and write, not a request: a server that trickles its
answer a byte at a time, headers included, holds a worker for ever. This module owns the fix:

* :class:`Deadline`, the time a whole request may take, handed to httpx as a request extension
  (:data:`DEADLINE`). Time the request spends producing its own body (reading the picture,
  waiting for the shared bandwidth limit) is added to it: the deadline bounds the network and
  the server, not boothsync's own pacing.
* an httpcore network backend whose streams cap every connect, TLS handshake, read and write
  by the time left until the deadline of the request the calling thread is working on, so a
  read blocked on a trickling server ends when the deadline passes;
* :class:`DeadlineTransport`, an ``httpx.BaseTransport`` over ``httpcore.ConnectionPool`` (or
  ``httpcore.HTTPProxy``) with that backend, built from public API only, which maps httpcore's
  errors to httpx's as httpx's own transport does;
* :func:`proxy_mounts`: the proxies the environment names, as httpx would use them by itself
  (httpx ignores them once a client is given its own transport).

A request that runs out of time fails with httpx's ``ConnectTimeout``, ``ReadTimeout`` or
``WriteTimeout`` and sets :attr:`Deadline.expired`. Must not know about galleries or
boothsync's errors: :mod:`boothsync.destinations.http` translates what this raises.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import httpcore
import httpx

__all__ = ["DEADLINE", "Deadline", "DeadlineTransport", "proxy_mounts"]

log = logging.getLogger(__name__)

DEADLINE = "boothsync.deadline"
"""The request extension that carries a request's :class:`Deadline`."""

# A write is handed to the socket in pieces, each bounded by the time left: one large write
# to a server that reads slowly could otherwise block for much longer than the deadline. As
# large as the chunks a picture is read in, so a chunk goes in one piece: each extra piece is
# one more system call and lock hand-over per chunk, which a burst of pictures pays for.
_WRITE_PIECE = 256 * 1024

# What httpx's own transport keeps open (httpx.Limits' defaults).
_MAX_CONNECTIONS = 100
_MAX_KEEPALIVE = 20
_KEEPALIVE_EXPIRY = 5.0

# httpcore's errors and the httpx errors they become, as httpx's own transport maps them.
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
)


class Deadline:
    """The time one request may take, all of it: connecting, sending, the answer to its end.

    ``seconds`` is the allowance; :meth:`extend` adds the time the request spent on its own
    side (producing its body). ``expired`` turns True once the deadline cut the request short.
    """

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.expired = False
        self._clock = clock
        self._at = clock() + seconds

    def __repr__(self) -> str:
        return f"Deadline(seconds={self.seconds!r}, left={self.left():.3f})"

    def left(self) -> float:
        """Seconds until the deadline (negative once it passed)."""
        return self._at - self._clock()

    def extend(self, seconds: float) -> None:
        """Move the deadline ``seconds`` later (time the request was busy on this side)."""
        self._at += max(0.0, seconds)

    def cap(self, timeout: float | None, error: type[httpcore.TimeoutException]) -> float:
        """``timeout`` shortened to the time left; ``error`` (and ``expired``) once none is."""
        left = self.left()
        if left <= 0:
            self.expired = True
            raise error(f"the request took longer than its deadline of {self.seconds:.0f} s")
        return left if timeout is None else min(timeout, left)

    def check(self) -> None:
        """Mark the deadline expired if it has passed (after a capped wait timed out)."""
        if self.left() <= 0:
            self.expired = True


class _Current(threading.local):
    deadline: Deadline | None = None


# The deadline of the request the calling thread is sending or reading. Sync httpcore does
# every read and write of a request on the thread that made it, so a connection reused by
# another worker's request is bounded by that request's deadline, not by the first one's.
_current = _Current()


@contextlib.contextmanager
def _working_on(deadline: Deadline | None) -> Iterator[None]:
    before = _current.deadline
    _current.deadline = deadline
    try:
        yield
    finally:
        _current.deadline = before


def _capped(
    timeout: float | None, error: type[httpcore.TimeoutException]
) -> tuple[float | None, Deadline | None]:
    deadline = _current.deadline
    if deadline is None:
        return timeout, None
    return deadline.cap(timeout, error), deadline


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every wait ends at the current request's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        capped, deadline = _capped(timeout, httpcore.ReadTimeout)
        try:
            return self._stream.read(max_bytes, capped)
        except httpcore.TimeoutException:
            if deadline is not None:
                deadline.check()
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # Pieces are views, not copies of the bytes (the socket takes any bytes-like object).
        whole = buffer if len(buffer) <= _WRITE_PIECE else memoryview(buffer)
        for start in range(0, len(buffer), _WRITE_PIECE):
            capped, deadline = _capped(timeout, httpcore.WriteTimeout)
            piece = whole if whole is buffer else whole[start : start + _WRITE_PIECE]
            try:
                self._stream.write(cast(bytes, piece), capped)
            except httpcore.TimeoutException:
                if deadline is not None:
                    deadline.check()
                raise

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        capped, deadline = _capped(timeout, httpcore.ConnectTimeout)
        try:
            return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, capped))
        except httpcore.TimeoutException:
            if deadline is not None:
                deadline.check()
            raise

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sync backend, its connections bounded by the current request's deadline."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        capped, deadline = _capped(timeout, httpcore.ConnectTimeout)
        try:
            stream = self._backend.connect_tcp(
                host, port, capped, local_address=local_address, socket_options=socket_options
            )
        except httpcore.TimeoutException:
            if deadline is not None:
                deadline.check()
            raise
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        capped, _ = _capped(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_unix_socket(path, capped, socket_options=socket_options)
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's errors raised as httpx's (the most specific match), as httpx's transport does."""
    try:
        yield
    except Exception as exc:
        mapped: type[httpx.HTTPError] | None = None
        for source, target in _ERRORS:
            if isinstance(exc, source) and (mapped is None or issubclass(target, mapped)):
                mapped = target
        if mapped is None:
            raise
        raise mapped(str(exc)) from exc


class _TimedBody:
    """A request body whose production time (the file, the bandwidth limit) extends the
    request's deadline."""

    def __init__(self, body: Iterable[bytes], deadline: Deadline) -> None:
        self._body = body
        self._deadline = deadline

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._body)
        clock = time.monotonic
        while True:
            started = clock()
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            finally:
                self._deadline.extend(clock() - started)
            yield chunk


class _ResponseStream(httpx.SyncByteStream):
    """httpcore's response body, read under the request's deadline, with httpx's errors."""

    def __init__(self, stream: Iterable[bytes], deadline: Deadline | None) -> None:
        self._stream = stream
        self._deadline = deadline

    def __iter__(self) -> Iterator[bytes]:
        parts = iter(self._stream)
        while True:
            with _httpx_errors(), _working_on(self._deadline):
                part = next(parts, None)
            if part is None:
                return
            yield part

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            with _httpx_errors(), _working_on(self._deadline):
                close()


class DeadlineTransport(httpx.BaseTransport):
    """HTTP/1.1 over httpcore, direct or through ``proxy`` (an ``http://`` or ``https://``
    proxy URL), every request bounded by the :class:`Deadline` in its extensions (requests
    without one have only httpx's timeouts)."""

    def __init__(
        self, *, proxy: str | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        context = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        backend = _DeadlineBackend(httpcore.SyncBackend())
        self._pool: httpcore.ConnectionPool | httpcore.HTTPProxy
        if proxy is None:
            self._pool = httpcore.ConnectionPool(
                ssl_context=context,
                max_connections=_MAX_CONNECTIONS,
                max_keepalive_connections=_MAX_KEEPALIVE,
                keepalive_expiry=_KEEPALIVE_EXPIRY,
                network_backend=backend,
            )
        else:
            parsed = httpx.Proxy(proxy)
            self._pool = httpcore.HTTPProxy(
                proxy_url=httpcore.URL(
                    scheme=parsed.url.raw_scheme,
                    host=parsed.url.raw_host,
                    port=parsed.url.port,
                    target=parsed.url.raw_path,
                ),
                proxy_auth=parsed.raw_auth,
                proxy_headers=parsed.headers.raw,
                ssl_context=context,
                max_connections=_MAX_CONNECTIONS,
                max_keepalive_connections=_MAX_KEEPALIVE,
                keepalive_expiry=_KEEPALIVE_EXPIRY,
                network_backend=backend,
            )

    def __enter__(self) -> DeadlineTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        found = request.extensions.get(DEADLINE)
        deadline = found if isinstance(found, Deadline) else None
        extensions = dict(request.extensions)
        body: Iterable[bytes] = request.stream
        with _httpx_errors(), _working_on(deadline):
            if deadline is not None:
                # Waiting for a free connection counts too.
                timeouts = dict(extensions.get("timeout") or {})
                timeouts["pool"] = deadline.cap(timeouts.get("pool"), httpcore.PoolTimeout)
                extensions["timeout"] = timeouts
                body = _TimedBody(body, deadline)
            core = httpcore.Request(
                method=request.method,
                url=httpcore.URL(
                    scheme=request.url.raw_scheme,
                    host=request.url.raw_host,
                    port=request.url.port,
                    target=request.url.raw_path,
                ),
                headers=request.headers.raw,
                content=body,
                extensions=extensions,
            )
            response = self._pool.handle_request(core)
        stream = response.stream
        assert isinstance(stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(stream, deadline),
            extensions=response.extensions,
        )

    def close(self) -> None:
        with _httpx_errors():
            self._pool.close()


def proxy_mounts() -> dict[str, httpx.BaseTransport | None]:
    """The proxies the environment names, as httpx client mounts over :class:`DeadlineTransport`.

    ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` (and, on Windows and macOS,
    the system's proxy settings), read as httpx reads them for a client that builds its own
    transport. Only http:// and https:// proxies: another kind (socks) is left out with a
    warning, and boothsync then connects directly.
    """
    found = urllib.request.getproxies()
    mounts: dict[str, httpx.BaseTransport | None] = {}
    for scheme in ("http", "https", "all"):
        value = found.get(scheme)
        if not value:
            continue
        url = value if "://" in value else f"http://{value}"
        kind = urlsplit(url).scheme.lower()
        if kind not in ("http", "https"):
            log.warning(
                "the %s proxy from the environment is a %s proxy, which boothsync cannot use; "
                "it connects directly",
                scheme,
                kind,
            )
            continue
        mounts[f"{scheme}://"] = DeadlineTransport(proxy=url)
    if not mounts:
        return mounts
    for host in (h.strip() for h in found.get("no", "").split(",")):
        if host == "*":
            for transport in mounts.values():
                if transport is not None:
                    transport.close()
            return {}
        if host:
            mounts[_direct_pattern(host)] = None
    return mounts


def _direct_pattern(host: str) -> str:
    """The httpx mount pattern of one ``NO_PROXY`` entry (as httpx reads them)."""
    if "://" in host:
        return host
    if _is_ip(host, ipaddress.IPv4Address) or host.lower() == "localhost":
        return f"all://{host}"
    if _is_ip(host, ipaddress.IPv6Address):
        return f"all://[{host}]"
    return f"all://*{host}"


def _is_ip(host: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    try:
        kind(host.split("/")[0])
    except ValueError:
        return False
    return True
