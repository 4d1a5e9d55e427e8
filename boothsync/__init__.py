"""boothsync: gets every photo booth picture into the event's online gallery.

The public surface is small on purpose: the version, the error tree and the
config loader. Everything else is reached through the ``boothsync`` command.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from boothsync.errors import (
    BoothsyncError,
    ConfigError,
    DestinationUnavailable,
    FileRejected,
    NetworkError,
    OutboxError,
    RetryableError,
    ServerBusy,
    SourceFileError,
    Unauthorized,
    UnknownTarget,
    UploadError,
    UploadUrlRejected,
)

try:
    __version__ = version("boothsync")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "BoothsyncError",
    "ConfigError",
    "DestinationUnavailable",
    "FileRejected",
    "NetworkError",
    "OutboxError",
    "RetryableError",
    "ServerBusy",
    "SourceFileError",
    "Unauthorized",
    "UnknownTarget",
    "UploadError",
    "UploadUrlRejected",
    "__version__",
]
