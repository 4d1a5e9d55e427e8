"""The option machinery every config table shares: one declaration per key.

Owns :class:`Option` (what a key holds, its default, its check), the value checks more than
one table refers to, and :func:`option`, which declares a key once as a dataclass field: the
option table of a gallery service is read off its config dataclass (:func:`options_of`), so
the two cannot drift apart. :mod:`boothsync.config` reads tables against these declarations;
each gallery service in :mod:`boothsync.destinations` declares its own.

Must not import a gallery service or an HTTP library: loading the config stays quick.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias
from urllib.parse import urlsplit

__all__ = [
    "API_KEY_ENV",
    "Invalid",
    "Kind",
    "Option",
    "https_url",
    "lan_url",
    "max_edge_option",
    "option",
    "options_of",
    "positive",
    "quality_option",
    "timeout_option",
    "type_option",
]

API_KEY_ENV: Final = "BOOTHSYNC_API_KEY"

Kind: TypeAlias = Literal["str", "bool", "int", "float", "path", "strings", "names"]
"""What a key holds: a string, true/false, a whole number, a number, a path, a list of strings,
or a table of names to strings (``{ Prints = "a1" }``)."""


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()


class Invalid(Exception):
    """A value failed a check; the table reader adds file and key and renders one line."""

    def __init__(self, problem: str, got: object = MISSING, *, at: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.got = got
        self.at = at  # a suffix for the key, e.g. "[2]" for one element of a list


@dataclass(frozen=True)
class Option:
    """One key of a config table: what it holds, its default, and how it is checked.

    ``default`` is used when the key is absent; ``None`` there means "none", or a default that
    depends on other values (the help text says which). ``check`` gets the value after the kind
    and ``choices`` checks and returns it, possibly normalised, or raises ``Invalid``.
    """

    name: str
    kind: Kind
    help: str
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    check: Callable[[Any], Any] | None = None
    env: str | None = None  # an environment variable whose value overrides the file's
    secret: bool = False  # the value never appears in a message
    line_breaks: bool = False  # a caption may be meant to span lines; no other text may


_OPTION: Final = "boothsync.option"


def option(
    kind: Kind,
    help: str,
    *,
    default: Any = None,
    required: bool = False,
    choices: tuple[str, ...] = (),
    check: Callable[[Any], Any] | None = None,
    env: str | None = None,
    secret: bool = False,
    line_breaks: bool = False,
) -> Any:
    """A dataclass field that is also a key of the config table, named after the field.

    A required key has no dataclass default; any other has the option's. A secret one is left
    out of the repr.
    """
    declared = Option("", kind, help, default, required, choices, check, env, secret, line_breaks)
    default_value = dataclasses.MISSING if required else default
    return dataclasses.field(default=default_value, repr=not secret, metadata={_OPTION: declared})


def type_option(name: str) -> Any:
    """The ``type`` key of a ``[destinations.NAME]`` table: required in the file, preset in
    code."""
    declared = Option(
        "", "str", "The kind of destination. Required.", required=True, choices=(name,)
    )
    return dataclasses.field(default=name, metadata={_OPTION: declared})


def options_of(cls: type[Any]) -> tuple[Option, ...]:
    """The option table a dataclass declares with :func:`option`, in field order."""
    return tuple(
        dataclasses.replace(f.metadata[_OPTION], name=f.name)
        for f in dataclasses.fields(cls)
        if _OPTION in f.metadata
    )


# -- value checks the gallery services share ----------------------------------------------------


def positive(value: float) -> float:
    if value <= 0:
        raise Invalid("must be greater than 0", value)
    return value


def max_edge(value: int) -> int:
    if value < 64:
        raise Invalid("must be at least 64 (pixels)", value)
    return value


def quality(value: int) -> int:
    if not 1 <= value <= 95:
        raise Invalid("must be between 1 and 95", value)
    return value


def https_url(value: str) -> str:
    url = value.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what validates it
    except ValueError:
        raise Invalid("is not a valid URL", value) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise Invalid("must be an https:// address", value)
    if parts.query or parts.fragment:
        raise Invalid("must not have a query (?) or fragment (#)", value)
    # The API key travels in every request: plain http only where it cannot leave the machine.
    if scheme == "http" and not _is_loopback(parts.hostname):
        raise Invalid("must use https:// (http:// only for localhost, 127.0.0.0/8 or ::1)", value)
    return url


def lan_url(value: str) -> str:
    """Like :func:`https_url`, but plain http is fine inside the venue's own network too: a
    self-hosted gallery on the LAN (192.168.x.x, 10.x, a .local name) often has no
    certificate."""
    try:
        return https_url(value)
    except Invalid:
        url = value.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme.lower() == "http" and parts.hostname and _is_private(parts.hostname):
            return url
        raise Invalid(
            "must use https:// (http:// only for this machine or the local network)", value
        ) from None


def _is_private(host: str) -> bool:
    if host.lower().endswith(".local") or "." not in host:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_link_local


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- keys more than one gallery service has -----------------------------------------------------


def timeout_option(default: float) -> Any:
    return option(
        "float",
        "Seconds to wait for the gallery at each step of a request (connecting, each read and "
        "write); a whole request may take this plus a second per 16 KiB it sends or may read. "
        "Greater than 0.",
        default=default,
        check=positive,
    )


def max_edge_option() -> Any:
    """``max_edge``: with ``quality``, the last two keys of every service's table."""
    return option(
        "int",
        "Send JPEGs shrunk to at most this many pixels on their longer edge (EXIF kept, the "
        "original untouched), for a slow venue link. Default: send the original.",
        check=max_edge,
    )


def quality_option() -> Any:
    return option(
        "int", "The JPEG quality of a shrunk picture, 1 to 95.", default=85, check=quality
    )
