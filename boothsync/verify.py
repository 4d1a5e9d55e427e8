"""Is every picture of this event in the gallery? (``boothsync verify``, "safe to pack up").

Owns the check, destination by destination: the pictures that should be there (every file the
watch folders hold now that a scan takes for a picture, by the watcher's own filters, and every
file the queue recorded, moved or deleted ones included) against what the queue says was
uploaded there; then, where the service can list what it holds (the folder's files, Picsui's
photo list, the photos of PicPeak's gallery), the uploaded ones against that list, by the key
the destination gives each (the name the upload used; for PicPeak, which renames what it
keeps, the size of what was sent). EventPics cannot list what it holds: there boothsync's own
record is all there is, and :class:`DestinationCheck` says so.

Reads the queue read-only (it works while boothsync runs) and must not print, write to the
queue or upload anything: the CLI words and prints what :func:`verify` finds.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from boothsync.destinations.base import SentPicture
from boothsync.errors import BoothsyncError
from boothsync.names import upload_name
from boothsync.outbox import JobState, Outbox, QueueNotCreated, RecordedFile

if TYPE_CHECKING:
    from boothsync.config import Config
    from boothsync.destinations import Destination

__all__ = [
    "NOT_QUEUED",
    "SHOWN_NAMES",
    "DestinationCheck",
    "Shortfall",
    "describe",
    "verify",
]

log = logging.getLogger(__name__)

#: What a picture that no job of a destination stands for waits for (a :class:`Shortfall`).
NOT_QUEUED = "not queued"

#: How many names one line of :func:`describe` lists before "and N more".
SHOWN_NAMES = 20

# "IMG_1 (2).jpg": the name a folder (or a gallery) gives a copy when the name is taken.
_VARIANT = re.compile(r"(?P<stem>.*) \((?P<n>\d+)\)(?P<suffix>(\.[^./]*)?)")


@dataclass(frozen=True)
class Shortfall:
    """One picture a destination does not have: ``state`` is its job's (waiting, uploading,
    failed), :data:`NOT_QUEUED`, or ``"not in the gallery"`` (uploaded, but no longer there)."""

    path: Path
    state: str


@dataclass(frozen=True)
class DestinationCheck:
    """What :func:`verify` found for one destination.

    ``total`` pictures should be there; ``missing`` are those boothsync has not uploaded there
    (by its record), ``absent`` those it uploaded that the gallery's list lacks, and
    ``absent_unnamed`` how many more it lacks where the list cannot tell which (a count only:
    pictures the gallery keeps neither by name nor by size). ``listed``: the
    gallery's list was read and compared; False where the service cannot list (EventPics) or
    could not be asked (``error`` then says why, and the destination is not verified).
    """

    name: str
    type: str
    total: int
    missing: tuple[Shortfall, ...]
    absent: tuple[Shortfall, ...] = ()
    absent_unnamed: int = 0
    listed: bool = False
    can_list: bool = True
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether this destination verifiably has every picture."""
        return (
            self.error is None and not self.missing and not self.absent and not self.absent_unnamed
        )


@dataclass(frozen=True)
class _Expected:
    path: Path
    state: str  # a JobState value, or NOT_QUEUED
    size: int  # of the version the state is about
    album_id: str | None
    duplicate: bool  # uploaded without sending: the gallery has it under another name


def verify(
    config: Config,
    database: Path,
    *,
    create: Callable[[str], Destination] | None = None,
    list_galleries: bool = True,
) -> list[DestinationCheck]:
    """Check every destination of ``config`` against the queue at ``database`` (opened
    read-only) and, with ``list_galleries``, against the gallery's own list where it has one.
    ``create`` builds a destination by name (default: from the config). Raises OutboxError
    when the queue cannot be read."""
    from boothsync.watcher import pictures_in

    records = _recorded(database)
    on_disk: dict[str, list[Path]] = {}
    for watch in config.watches:
        on_disk[str(watch.path)] = pictures_in(watch, config.watches)
    checks = []
    for name, cfg in config.destinations.items():
        routed = [w for w in config.watches if name in w.destinations]
        files = [path for w in routed for path in on_disk[str(w.path)]]
        expected = _expected(name, files, records)
        missing = tuple(
            Shortfall(e.path, e.state) for e in expected if e.state != JobState.UPLOADED.value
        )
        check = DestinationCheck(name=name, type=cfg.type, total=len(expected), missing=missing)
        if list_galleries:
            check = _against_gallery(check, expected, config, create)
        checks.append(check)
    return checks


def _recorded(database: Path) -> list[RecordedFile]:
    try:
        outbox = Outbox(database, readonly=True)
    except QueueNotCreated:
        return []
    try:
        return outbox.recorded_files()
    finally:
        outbox.close()


def _expected(
    destination: str, files: Iterable[Path], records: Sequence[RecordedFile]
) -> list[_Expected]:
    """The pictures ``destination`` should have, each with where its upload stands: every
    file on disk (by its current version), and every recorded one that is not on disk any
    more (by its latest version) whose picture was meant for it."""
    latest: dict[Path, RecordedFile] = {}
    versions: dict[tuple[Path, int, int], RecordedFile] = {}
    for record in records:
        latest[record.path] = record  # oldest first: the last one is the latest
        versions[(record.path, record.size, record.mtime_ns)] = record
    found: dict[Path, _Expected] = {}
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue  # gone since it was listed: the queue's record speaks for it below
        version = versions.get((path, st.st_size, st.st_mtime_ns))
        job = None if version is None else version.jobs.get(destination)
        found[path] = _entry(path, st.st_size, job)
    for path, record in latest.items():
        if path in found or destination not in record.jobs:
            continue
        found[path] = _entry(path, record.size, record.jobs[destination])
    return sorted(found.values(), key=lambda e: (e.path.name, str(e.path)))


def _entry(path: Path, size: int, job: tuple[JobState, str | None, str | None] | None) -> _Expected:
    if job is None:
        return _Expected(path, NOT_QUEUED, size, None, duplicate=False)
    state, album_id, note = job
    return _Expected(path, state.value, size, album_id, duplicate=note is not None)


def _against_gallery(
    check: DestinationCheck,
    expected: Sequence[_Expected],
    config: Config,
    create: Callable[[str], Destination] | None,
) -> DestinationCheck:
    """``check`` with the gallery's own list compared, where the destination has one."""
    from boothsync.destinations import Listable

    try:
        destination = create(check.name) if create is not None else _create(config, check.name)
    except BoothsyncError as exc:
        return _replace(check, error=str(exc))
    try:
        if not isinstance(destination, Listable):
            return _replace(check, can_list=False)
        try:
            held = destination.list_pictures()
        except BoothsyncError as exc:
            return _replace(check, error=str(exc))
        if held is None:
            return _replace(check, can_list=False)
        uploaded = [e for e in expected if e.state == JobState.UPLOADED.value and not e.duplicate]
        keys = [
            destination.gallery_key(SentPicture(upload_name(e.path.name), e.album_id, e.size))
            for e in uploaded
        ]
        named = [i for i, key in enumerate(keys) if key is not None]
        lacking, left = _not_held([k for k in keys if k is not None], held)
        absent = tuple(Shortfall(uploaded[named[i]].path, "not in the gallery") for i in lacking)
        # What the keys could not tell apart is counted against what the list holds besides.
        unnamed = max(0, len(keys) - len(named) - left)
        return _replace(check, absent=absent, absent_unnamed=unnamed, listed=True)
    finally:
        destination.close()


def _create(config: Config, name: str) -> Destination:
    from boothsync.destinations import DestinationContext, create

    context = DestinationContext(booth=config.booth.name, tz=config.booth.tz)
    return create(config.destinations[name], context=context)


def _not_held(keys: Sequence[str], held: Iterable[str]) -> tuple[list[int], int]:
    """The indexes of ``keys`` the gallery's list ``held`` does not account for, each listed
    name standing for one picture: exact names first, then the names a taken name turns into
    ("IMG_1 (1).jpg" for a second "IMG_1.jpg"); and how many listed ones are left over."""
    left = Counter(held)
    unmatched = []
    for index, key in enumerate(keys):
        if left[key] > 0:
            left[key] -= 1
        else:
            unmatched.append(index)
    variants: dict[str, list[str]] = {}
    for name, count in left.items():
        match = _VARIANT.fullmatch(name)
        if match is not None and count > 0:
            base = match.group("stem") + match.group("suffix")
            variants.setdefault(base, []).extend([name] * count)
    lacking = []
    for index in unmatched:
        pool = variants.get(keys[index])
        if pool:
            pool.pop()
        else:
            lacking.append(index)
    return lacking, sum(left.values()) - (len(unmatched) - len(lacking))


def _replace(check: DestinationCheck, **changes: object) -> DestinationCheck:
    from dataclasses import replace

    return replace(check, **changes)  # type: ignore[arg-type]


def describe(check: DestinationCheck, *, shown: int = SHOWN_NAMES) -> str:
    """The one line ``boothsync verify`` prints for ``check`` (names as they are: the caller
    escapes the line)."""
    parts: list[str] = []
    if check.missing:
        parts.append(
            f"{len(check.missing)} of {check.total} missing: {_names(check.missing, shown)}"
        )
    if check.absent:
        parts.append(
            f"{len(check.absent)} uploaded but not in the gallery: {_names(check.absent, shown)}"
        )
    if check.absent_unnamed:
        parts.append(
            f"{check.absent_unnamed} more uploaded but not in the gallery (which ones, its list"
            " cannot tell: the pictures were sent shrunk)"
            if check.absent
            else f"{check.absent_unnamed} uploaded but not in the gallery (which ones, its list"
            " cannot tell: the pictures were sent shrunk)"
        )
    if check.error is not None:
        parts.insert(0, f"not verified: the gallery could not be asked ({check.error})")
    if parts:
        return f"{check.name}: " + "; ".join(parts)
    if check.total == 0:
        return f"{check.name}: no pictures yet"
    if check.listed:
        return f"{check.name}: all {check.total} pictures uploaded and in the gallery"
    label = _LABELS.get(check.type, check.type)
    return (
        f"{check.name}: all {check.total} pictures uploaded (boothsync's record; {label}"
        " cannot list what it holds)"
    )


_LABELS: Mapping[str, str] = {"eventpics": "EventPics"}


def _names(shortfalls: Sequence[Shortfall], shown: int) -> str:
    names = ", ".join(s.path.name for s in shortfalls[:shown])
    more = len(shortfalls) - shown
    return names + (f" and {more} more" if more > 0 else "")
