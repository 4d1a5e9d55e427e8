"""Gallery services behind one small contract, and the registry that names them.

Each service is one module here that declares a :class:`~boothsync.destinations.base.Service`
(its type name, its config dataclass, whose fields are its options with their checks, and its
factory) as ``SERVICE``; :data:`REGISTRY` lists them, and :mod:`boothsync.config` learns the
destination types from it. Adding a service is one module here and one line in
:data:`REGISTRY`. Must not import :mod:`boothsync.config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from boothsync.destinations import eventpics, folder, picpeak, picsui
from boothsync.destinations.base import (
    Album,
    CheckItem,
    Destination,
    DestinationConfig,
    DestinationContext,
    GalleryEvent,
    Service,
    UploadItem,
    Verifiable,
)

__all__ = [
    "REGISTRY",
    "Album",
    "CheckItem",
    "Destination",
    "DestinationConfig",
    "DestinationContext",
    "GalleryEvent",
    "Service",
    "UploadItem",
    "Verifiable",
    "create",
]

#: Every gallery service by its type name, in the order ``boothsync init`` offers them.
REGISTRY: Final[Mapping[str, Service]] = MappingProxyType(
    {
        service.type_name: service
        for service in (
            eventpics.SERVICE,
            picsui.SERVICE,
            picpeak.SERVICE,
            folder.SERVICE,
        )
    }
)


def create(config: DestinationConfig, *, context: DestinationContext | None = None) -> Destination:
    """Build the destination for one ``[destinations.NAME]`` table; ``context`` tells it about
    the booth (its name and time zone, for captions)."""
    return REGISTRY[config.type].factory(config, context=context)
