"""Gallery services behind one small contract, and the registry that names them.

Each service is one module here that declares a :class:`~boothsync.destinations.base.Service`
(its type name, its config dataclass, whose fields are its options with their checks, and its
factory) as ``SERVICE``; :data:`REGISTRY` lists them, and :mod:`boothsync.config` learns the
destination types from it. Adding a service is one module here and one line in
:data:`REGISTRY`. Must not import :mod:`boothsync.config`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Final

from boothsync.destinations.base import (
    Album,
    CheckItem,
    Destination,
    DestinationConfig,
    DestinationContext,
    GalleryEvent,
    Listable,
    SentPicture,
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
    "Listable",
    "SentPicture",
    "Service",
    "UploadItem",
    "Verifiable",
    "create",
]


class _Registry(Mapping[str, Service]):
    """The services by type name, each module imported when its service is first asked for:
    reading a config imports only the services it names, and a command that reads none
    (``status``) pays for none."""

    def __init__(self, modules: Mapping[str, str]) -> None:
        self._modules = dict(modules)

    def __getitem__(self, type_name: str) -> Service:
        module = self._modules[type_name]  # KeyError for an unknown type, as a dict
        service = importlib.import_module(module).SERVICE
        assert isinstance(service, Service) and service.type_name == type_name, module
        return service

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._modules

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


#: Every gallery service by its type name, in the order ``boothsync init`` offers them: the
#: module that declares it as ``SERVICE``.
REGISTRY: Final[Mapping[str, Service]] = _Registry(
    {
        "eventpics": "boothsync.destinations.eventpics",
        "picsui": "boothsync.destinations.picsui",
        "picpeak": "boothsync.destinations.picpeak",
        "folder": "boothsync.destinations.folder",
    }
)


def create(config: DestinationConfig, *, context: DestinationContext | None = None) -> Destination:
    """Build the destination for one ``[destinations.NAME]`` table; ``context`` tells it about
    the booth (its name and time zone, for captions)."""
    return REGISTRY[config.type].factory(config, context=context)
