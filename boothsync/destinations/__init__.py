"""Gallery services behind one small contract, and the registry that names them.

Adding a service is one module here and one line in :data:`REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from boothsync.destinations.base import Album, CheckItem, Destination, GalleryEvent, UploadItem
from boothsync.destinations.eventpics import EventPicsDestination

__all__ = [
    "REGISTRY",
    "Album",
    "CheckItem",
    "Destination",
    "GalleryEvent",
    "UploadItem",
    "create",
]

REGISTRY: dict[str, Callable[[Any], Destination]] = {
    "eventpics": EventPicsDestination,
}


def create(config: Any) -> Destination:
    """Build the destination for one ``[destinations.NAME]`` table."""
    return REGISTRY[config.type](config)
