"""The setup wizard's steps, as plain functions the dashboard's routes call.

Owns what each step needs from the rest of boothsync: the gallery types and the fields a
first config asks for (read off the option tables and ``boothsync init``'s choices, not
listed again here), the events a key reaches (as ``boothsync init`` lists them), a folder
picker over this machine's folders, the booth programs' usual output folders that exist here,
and the checks of ``boothsync check``.

Must not hold state between calls, serve HTTP or render a page (the routes do), nor put a
key's value into anything it returns or raises.
"""

from __future__ import annotations

import os
import re
import stat
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

import platformdirs

from boothsync.checks import run_checks
from boothsync.config import DESTINATION_TYPES, EVENT_KEYS
from boothsync.destinations import CheckItem, GalleryEvent
from boothsync.destinations.http import REDACTED, redact
from boothsync.errors import BoothsyncError, ConfigError, Unauthorized, UnknownTarget
from boothsync.first_config import (
    TYPED_EVENT,
    first_options,
    gallery_events,
    gallery_label,
    rejected,
)
from boothsync.web.configedit import coerce_value

__all__ = [
    "MAX_FOLDERS",
    "CheckLine",
    "Field",
    "Folder",
    "GalleryType",
    "Listing",
    "booth_folders",
    "browse",
    "gallery_types",
    "list_events",
    "run_checks",
]

#: One line of ``boothsync check``: ``ok``, ``label`` (what was checked), ``detail``.
CheckLine: TypeAlias = CheckItem

#: The most subfolders one listing holds; a folder with more says it was cut.
MAX_FOLDERS: Final = 500

#: The keys picked from what :func:`list_events` finds rather than typed: the event's id
#: and, for EventPics, its album.
_LISTED: Final = (*EVENT_KEYS, "album_id")

# A key this long cannot turn up in a message by chance (see _line).
_LONG_SECRET: Final = 8

# How a key's name reads as a field's label: api_key -> "API key".
_WORDS: Final = {"api": "API", "id": "ID", "url": "URL"}


# -- the gallery types -----------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One value a first config asks for.

    ``kind`` is the option's (``"str"``, ``"int"``, ``"path"``...); ``secret``: typed without
    being shown, never sent back to the page; ``listed``: picked from the events the key
    reaches (:func:`list_events`) instead of typed; ``default``: what applies when it is left
    empty (None: nothing, or it is required).
    """

    name: str
    label: str
    help: str
    kind: str
    secret: bool
    required: bool
    default: Any
    listed: bool


@dataclass(frozen=True)
class GalleryType:
    """A destination type as the wizard offers it: ``name`` as ``type =`` takes it, the
    service's ``label`` ("EventPics") and the fields its first config asks for."""

    name: str
    label: str
    fields: tuple[Field, ...]


def gallery_types() -> list[GalleryType]:
    """Every destination type, in the order ``boothsync init`` offers them, with the fields
    its first config asks for, in the order the reference config documents them."""
    return [
        GalleryType(kind, gallery_label(kind), tuple(_fields(kind))) for kind in DESTINATION_TYPES
    ]


def _fields(kind: str) -> list[Field]:
    return [
        Field(
            name=option.name,
            label=_label(option.name),
            help=option.help,
            kind=option.kind,
            secret=option.secret,
            required=option.required,
            default=option.default,
            # A service that cannot list a key's events has its event id typed.
            listed=option.name in _LISTED
            and not (kind in TYPED_EVENT and option.name in EVENT_KEYS),
        )
        for option in first_options(kind)
        if option.name != "type"
    ]


def _label(name: str) -> str:
    words = [_WORDS.get(word, word) for word in name.split("_")]
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]])


# -- the events a key reaches ----------------------------------------------------------------


def list_events(kind: str, values: Mapping[str, Any]) -> list[GalleryEvent]:
    """The events (and albums) the key in ``values`` reaches in the gallery of ``kind``, as
    ``boothsync init`` lists them: ``values`` are the fields of :func:`gallery_types` as a
    form sends them, the event's id optional (a Picsui event id is needed: Picsui lists no
    key's events, only the one asked about).

    Raises ConfigError whose ``key`` names the field (``base_url``) for a value that cannot
    be used, BoothsyncError for what the gallery answered (a rejected key, no answer). Each
    is one line for the page, and never holds the key.
    """
    table, secrets = _table(kind, values)
    try:
        return gallery_events(kind, table)
    except ConfigError as exc:
        raise ConfigError(_line(exc.message, secrets), key=exc.key) from None
    except Unauthorized as exc:
        raise BoothsyncError(f"{rejected(kind, exc)}; check it in your account") from None
    except UnknownTarget as exc:
        # The typed event id is what the gallery does not know: the field to look at.
        options = DESTINATION_TYPES[kind][0]
        typed = next(
            (o.name for o in options if kind in TYPED_EVENT and o.name in EVENT_KEYS), None
        )
        if typed is not None:
            raise ConfigError(_line(str(exc), secrets), key=typed) from None
        raise BoothsyncError(_line(str(exc), secrets)) from None
    except BoothsyncError as exc:
        raise BoothsyncError(_line(str(exc), secrets)) from None


def _table(kind: str, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A form's ``values`` as a destination table of ``kind``, and the secrets in it."""
    if kind not in DESTINATION_TYPES:
        raise ConfigError(f"unknown gallery type {kind!r}", key="type")
    options = {option.name: option for option in DESTINATION_TYPES[kind][0]}
    table: dict[str, Any] = {}
    secrets: list[str] = []
    for key, value in values.items():
        if key == "type":
            continue
        if key not in options:
            raise ConfigError("is no field of this gallery type", key=key)
        coerced = coerce_value(options[key], value, key)
        if coerced is not None:
            table[key] = coerced
            if options[key].secret:
                secrets.append(str(coerced))
    return table, secrets


def _line(message: str, secrets: Sequence[str]) -> str:
    """``message`` on one line, without any of ``secrets``.

    The destinations take the key out of what a server says already; this is the second
    lock. A long key is taken out wherever it stands; a short one only where it stands as a
    word of its own, so that a key "k" does not turn every "key" into "***ey"."""
    for secret in secrets:
        if len(secret) >= _LONG_SECRET:
            message = redact(message, [secret])
        else:
            word = rf"(?<![\w-]){re.escape(secret)}(?![\w-])"
            message = re.sub(word, REDACTED, message)
    return " ".join(message.split())


# -- the folder picker ------------------------------------------------------------------------


@dataclass(frozen=True)
class Folder:
    """A folder on this machine: its name and its full path."""

    name: str
    path: str


@dataclass(frozen=True)
class Listing:
    """One folder's subfolders, for a folder picker.

    ``path``: the folder listed (absolute); ``parent``: the folder above, None at a root;
    ``folders``: its subfolders but the hidden ones, sorted by name whatever the case, at most
    :data:`MAX_FOLDERS` (``cut`` says there were more); ``roots``: where else to start (the
    drive letters on Windows, ``/`` elsewhere); ``error``: why it could not be listed (one
    line naming it), None when it could.
    """

    path: str
    parent: str | None
    folders: tuple[Folder, ...]
    roots: tuple[Folder, ...]
    cut: bool = False
    error: str | None = None


def browse(path: str | None, *, home: Path | None = None) -> Listing:
    """The subfolders of ``path`` (None or empty: the home folder; ``~`` and relative paths
    from the home folder), for a folder picker. A folder that is missing or cannot be read
    gives a listing with ``error`` set and no folders."""
    start = Path.home() if home is None else Path(home)
    text = (path or "").strip()
    if text == "~" or text.startswith(("~/", "~\\")):
        text = str(start / text[2:]) if len(text) > 1 else str(start)
    folder = Path(text) if text else start
    if not folder.is_absolute():
        folder = start / folder
    # normpath, not resolve(): resolving would turn a mapped network drive into its UNC path.
    folder = Path(os.path.normpath(folder))
    parent = str(folder.parent) if folder.parent != folder else None
    roots = _roots()
    try:
        found = _subfolders(folder)
    except OSError as exc:
        return Listing(str(folder), parent, (), roots, error=_unreadable(folder, exc))
    found.sort(key=lambda f: (f.name.casefold(), f.name))
    return Listing(
        str(folder), parent, tuple(found[:MAX_FOLDERS]), roots, cut=len(found) > MAX_FOLDERS
    )


def _subfolders(folder: Path) -> list[Folder]:
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                if _hidden(entry) or not entry.is_dir():
                    continue
            except OSError:
                # Vanished, or a link to nowhere: not a folder to offer.
                continue
            found.append(Folder(entry.name, str(folder / entry.name)))
    return found


def _hidden(entry: os.DirEntry[str]) -> bool:
    """A dot-name, or (on Windows) a folder with the hidden attribute."""
    if entry.name.startswith("."):
        return True
    attributes = getattr(entry.stat(follow_symlinks=False), "st_file_attributes", 0)
    return bool(attributes & getattr(stat, "FILE_ATTRIBUTE_HIDDEN", 0))


def _unreadable(folder: Path, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{folder}: no such folder"
    if isinstance(exc, NotADirectoryError):
        return f"{folder}: not a folder"
    if isinstance(exc, PermissionError):
        return f"{folder}: cannot be read (no permission)"
    return f"{folder}: cannot be read ({exc.strerror or exc})"


def _roots() -> tuple[Folder, ...]:
    if os.name != "nt":
        return (Folder("/", "/"),)
    listdrives = getattr(os, "listdrives", None)  # Python 3.12
    if listdrives is not None:
        drives = [str(drive) for drive in listdrives()]
    else:
        drives = [f"{letter}:\\" for letter in string.ascii_uppercase]
        drives = [drive for drive in drives if os.path.exists(drive)]
    return tuple(Folder(drive.rstrip("\\"), drive) for drive in drives)


# -- the booth programs' output folders -------------------------------------------------------

# Where each booth program saves its pictures unless told otherwise, under the user's Pictures
# folder (Windows and macOS alike; the Pictures folder itself is the system's):
#
# - dslrBooth: Pictures/dslrBooth, the finished layouts in "Prints", the camera's shots in
#   "Originals". Found in operators' scripts in public repositories: an AutoHotkey watcher of
#   C:\Users\<name>\Pictures\dslrBooth\Originals (Windows) and a Node.js helper whose default
#   is ~/Pictures/dslrBooth/prints (macOS). Lumasoft's own pages found (Triggers, Webhooks and
#   API) do not name the folder.
# - Sparkbooth: Pictures/Sparkbooth. The search found Sparkbooth's pages on its status file
#   and counters but none naming where it saves: this is the well-known place, not confirmed.
# - Breeze (DSLR Remote Pro, Breeze Booth for Windows): the search found Breeze's help on its
#   photo booth screens folder (C:\Users\<name>\PhotoboothImages, the screens, not the output)
#   and on Downloader Pro (C:\Photos\{d}), but no default output folder of the booth programs:
#   these are the usual names under Pictures, not confirmed.
#
# Only the folders that exist are offered, so a wrong guess shows nothing.
_BOOTH_FOLDERS: Final = (
    ("dslrBooth prints", ("dslrBooth", "Prints")),
    ("dslrBooth originals", ("dslrBooth", "Originals")),
    ("Sparkbooth", ("Sparkbooth",)),
    ("Breeze DSLR Remote Pro", ("DSLRRemotePro",)),
    ("Breeze Booth", ("Breeze Booth",)),
)


def booth_folders(*, home: Path | None = None) -> list[tuple[str, Path]]:
    """The booth programs' default output folders that exist on this machine: (what it is,
    where), under ``home``'s Pictures folder, or the user's Pictures folder when None."""
    pictures = Path(platformdirs.user_pictures_dir()) if home is None else Path(home) / "Pictures"
    found = []
    for label, parts in _BOOTH_FOLDERS:
        folder = pictures.joinpath(*parts)
        if folder.is_dir():
            found.append((label, folder))
    return found
