"""boothsync: gets every photo booth picture into the event's online gallery.

The public surface is small on purpose: the version and the error tree, here; the config
loader is :func:`boothsync.config.load_config` (not imported here: every ``boothsync.*``
import runs this file first, and most of them need no config). Everything else is reached
through the ``boothsync`` command.
"""

from __future__ import annotations

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

# The one place the version is written; pyproject.toml reads it from here. A literal rather
# than importlib.metadata, which costs a noticeable part of every short command's start.
__version__ = "0.1.0"

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
