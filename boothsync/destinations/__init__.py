"""Gallery services behind one small contract, and the registry that names them.

Adding a service is one module here and one line in :data:`REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from boothsync.destinations.base import (
    Album,
    CheckItem,
    Destination,
    DestinationContext,
    GalleryEvent,
    UploadItem,
    Verifiable,
)
from boothsync.destinations.eventpics import EventPicsDestination
from boothsync.destinations.folder import FolderDestination
from boothsync.destinations.picpeak import PicPeakDestination
from boothsync.destinations.picsui import PicsuiDestination

__all__ = [
    "REGISTRY",
    "Album",
    "CheckItem",
    "Destination",
    "DestinationContext",
    "GalleryEvent",
    "UploadItem",
    "Verifiable",
    "create",
]

# Each factory takes (config, *, context=None) and returns the destination.
REGISTRY: dict[str, Callable[..., Destination]] = {
    "eventpics": EventPicsDestination,
    "picpeak": PicPeakDestination,
    "picsui": PicsuiDestination,
    "folder": FolderDestination,
}


def create(config: Any, *, context: DestinationContext | None = None) -> Destination:
    """Build the destination for one ``[destinations.NAME]`` table; ``context`` tells it about
    the booth (its name and time zone, for captions)."""
    return REGISTRY[config.type](config, context=context)
