"""The one exception tree of boothsync.

Library errors (httpx, sqlite3, tomllib, OSError) are translated at the
boundary of the module that meets them (``raise X from exc``), so callers only
ever see these types::

    BoothsyncError
    ├── AlreadyRunning            another boothsync holds the same state folder
    ├── ConfigError               the config file is missing, unparsable or invalid
    │   └── NoConfigFile          none exists yet where boothsync looks (first setup)
    ├── OutboxError               the queue database cannot be opened or used
    ├── SourceFileError           a picture vanished or cannot be read
    │   └── SourceChanged         it changed while it was being sent: send it again
    └── UploadError               a destination did not take a file
        ├── RetryableError        try the same file again later
        │   ├── NetworkError      no answer: connect, read or write failed, timeout
        │   ├── ServerBusy        408, 429, 5xx (``retry_after`` from Retry-After)
        │   └── UploadUrlRejected the storage refused a presigned URL (expired, signature)
        ├── DestinationUnavailable  stop sending anything to this destination for a while
        │   ├── Unauthorized      401: the key is wrong
        │   └── UnknownTarget     404 on the link or album: the config names nothing
        └── FileRejected          any other 4xx: this file fails, the rest go on

Every message is one line an operator can act on; none ever contains a key.
"""

from __future__ import annotations

__all__ = [
    "AlreadyRunning",
    "BoothsyncError",
    "ConfigError",
    "DestinationUnavailable",
    "FileRejected",
    "NetworkError",
    "NoConfigFile",
    "OutboxError",
    "RetryableError",
    "ServerBusy",
    "SourceChanged",
    "SourceFileError",
    "Unauthorized",
    "UnknownTarget",
    "UploadError",
    "UploadUrlRejected",
]


class BoothsyncError(Exception):
    """Base of every error boothsync raises on purpose."""


class AlreadyRunning(BoothsyncError):
    """Another boothsync already runs with the same state folder (and so the same queue)."""


class ConfigError(BoothsyncError):
    """The configuration cannot be used.

    ``str()`` gives the whole line: ``FILE: KEY: problem`` (file and key where known).
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.message = message
        self.file = file
        self.key = key
        super().__init__(self._line())

    def _line(self) -> str:
        parts = [p for p in (self.file, self.key) if p]
        parts.append(self.message)
        return ": ".join(parts)


class NoConfigFile(ConfigError):
    """No config file exists where boothsync looks: ``run``, ``tray`` and ``setup`` then
    serve the setup wizard."""


class OutboxError(BoothsyncError):
    """The queue database cannot be opened, read or written."""


class SourceFileError(BoothsyncError):
    """A picture in a watched folder vanished or cannot be read."""


class SourceChanged(SourceFileError):
    """A picture changed (or was replaced) while it was being sent; the request was cut off
    before its last bytes, so the gallery keeps nothing of it, and the new version goes."""


class UploadError(BoothsyncError):
    """A destination did not take a file. ``status`` is the HTTP status where there was one."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RetryableError(UploadError):
    """The same file can be sent again later; ``retry_after`` is the server's wish in seconds."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status=status)


class NetworkError(RetryableError):
    """No usable answer: connecting, sending or reading failed or timed out.

    ``maybe_delivered``: the whole request had gone out when the answer failed to come, so the
    server may have taken it (what matters for a request that is not idempotent).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        maybe_delivered: bool = False,
    ) -> None:
        self.maybe_delivered = maybe_delivered
        super().__init__(message, status=status, retry_after=retry_after)


class ServerBusy(RetryableError):
    """The server answered 408, 429 or 5xx."""


class UploadUrlRejected(RetryableError):
    """The storage refused a presigned upload URL (expired or bad signature): ask for a new one."""


class DestinationUnavailable(UploadError):
    """Nothing can go to this destination until its configuration or account is fixed."""


class Unauthorized(DestinationUnavailable):
    """The destination rejected the API key (401)."""


class UnknownTarget(DestinationUnavailable):
    """The destination does not know the configured link or album (404)."""


class FileRejected(UploadError):
    """The destination refused this one file for good (a 4xx other than the above)."""
