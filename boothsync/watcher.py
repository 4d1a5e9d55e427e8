"""Finds every finished picture in the watched folders and records it in the outbox.

Owns the watchdog observers (native, or polling for network shares), the
folder scans (recursive ones skip folders that never hold pictures to send),
the completion detection (is the booth software done writing?), the name
filters and the album routing of subfolders. Filesystem events are only hints
that make things fast; the scans at start, every ``scan_interval`` of a watch
and on request are the truth, so a lost event delays a picture but never loses
it.

When a file is complete: a file renamed or moved into a folder is complete at
once (a rename is atomic); one closed by its writer (inotify) or named by the
booth software through ``notify()`` once it stood still for ``CLOSE_QUIET``
after the last close, because booth software often closes a file and reopens
it at once to append or add metadata; anything else once it stood still for
the watch's ``settle_seconds``. Whichever way, two more things must hold first:

- no process holds it open for writing, however long the writer pauses (up to
  ``OPEN_CAP``, after which the settle rules alone decide, with a warning naming
  the file). On Linux the kernel says so (:func:`writer_holds`: a read lease is
  refused while any process has the file open for writing), and inotify's events
  say it too (written since its last close); on Windows a writer that opened it
  without sharing is seen; elsewhere only the settle time and the content tell;
- its content looks whole (:func:`~boothsync.capture.looks_whole`: a JPEG ends
  with its end marker, an MP4 has its index, ...), or it has stood still for
  ``INCOMPLETE_WAIT`` looking cut short, after which it goes as it is, with a
  warning: a damaged picture still belongs in the gallery.

Must not upload, and must not touch SQLite except through ``Outbox.known``,
``Outbox.retry_unreadable`` and ``Outbox.add_many``.

Threads: one worker (``watcher``) does all the stat calls, scans and outbox
writes, so the pending files need no lock; the observers' threads and
``notify()`` callers only hand hints to it. Every thread started here is named
``watcher…`` (watchdog's inotify dispatcher keeps its own name), and ``stop()``
joins them all, within its timeout even if watchdog's own stop should block.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import os
import signal
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from boothsync.capture import looks_whole
from boothsync.config import SKIPPED_FOLDERS
from boothsync.errors import OutboxError
from boothsync.names import has_odd_name, upload_name
from boothsync.outbox import Known, NewFile

if sys.platform != "win32":
    import fcntl

if TYPE_CHECKING:
    from boothsync.config import WatchConfig
    from boothsync.outbox import Outbox

__all__ = [
    "BUILTIN_IGNORES",
    "CLOSE_QUIET",
    "INCOMPLETE_WAIT",
    "OPEN_CAP",
    "Watcher",
    "matches",
    "outside_link",
    "pictures_in",
    "writer_holds",
]

log = logging.getLogger(__name__)

#: Names that are never pictures, whatever the patterns say: partial downloads and
#: copies, editor lock files, hidden files, sync tools' temporaries, OS litter.
BUILTIN_IGNORES: tuple[str, ...] = (
    "*.tmp",
    "*.part",
    "*.partial",
    "*.crdownload",
    "~*",
    ".*",
    ".syncthing.*",
    "~syncthing~*",
    "Thumbs.db",
    ".DS_Store",
)

#: Seconds a file closed by its writer (or named by ``notify()``) must stand still before it is
#: queued: long enough to bridge a writer that closes and reopens a file to append, short
#: enough that nobody waits for it.
CLOSE_QUIET = 0.15
# An empty file goes only after standing empty this long (seconds), so that a
# placeholder the booth fills a moment later is not sent empty.
EMPTY_SETTLE = 10.0
#: Seconds a file may be held open for writing (by the kernel's word, or written since its
#: last close) before the settle rules alone decide: generous, for a video being recorded or
#: a writer that pauses, but a booth program that never closes its files still gets them out.
OPEN_CAP = 300.0
#: Seconds a file whose content looks cut short must stand still before it goes as it is:
#: longer than any pause between a writer's close and its reopening to append, short enough
#: that a damaged picture still reaches the gallery while the guest is at the booth.
INCOMPLETE_WAIT = 10.0
# Such files are re-checked this often, so one is queued at most a third of the window late.
QUIET_TICK = CLOSE_QUIET / 3

# How often a missing folder, or a dead observer, is looked for again.
FOLDER_CHECK_INTERVAL = 5.0
# Pending files are re-checked at least this often (and at least 4 times per settle time).
MAX_TICK = 0.25
MIN_TICK = 0.02
# After outbox.add failed, wait this long before trying that file again (doubling up to the
# cap), so a broken database costs one log line per file now and then, not four a second.
ADD_RETRY_FIRST = 1.0
ADD_RETRY_MAX = 30.0
# Files complete at the same moment (a burst renamed in) are queued this many to a transaction.
_ADD_BATCH = 100
# After an unexpected error in the worker's loop, pause at least this long.
ERROR_PAUSE = 1.0
# How many refused links are remembered (so each is said once) before the memory starts over.
_REFUSED_KEPT = 10_000

_LINUX = sys.platform.startswith("linux")
_WINDOWS = sys.platform == "win32"

# The events the watcher acts on. Asking only for these keeps the inotify mask small: without
# a filter every read of a picture (by the uploader, a viewer) would wake us twice.
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileMovedEvent,
    FileDeletedEvent,
    FileClosedEvent,
    DirDeletedEvent,
]
# A recursive watch also needs to hear of new subfolders, to look into them at once.
_RECURSIVE_EVENT_FILTER: list[type[FileSystemEvent]] = [
    *_EVENT_FILTER,
    DirCreatedEvent,
    DirMovedEvent,
]
_SKIPPED = frozenset(name.casefold() for name in SKIPPED_FOLDERS)


def matches(name: str, watch: WatchConfig) -> bool:
    """Whether a file called ``name`` (a base name) in ``watch``'s folder is a picture to upload.

    Case-insensitive on every platform: cameras and booth software write ``IMG_1.JPG``
    as often as ``img_1.jpg``.
    """
    folded = name.lower()
    for pattern in (*BUILTIN_IGNORES, *watch.ignore):
        if fnmatch.fnmatchcase(folded, pattern.lower()):
            return False
    return any(fnmatch.fnmatchcase(folded, pattern.lower()) for pattern in watch.patterns)


def _skipped(name: str) -> bool:
    """Whether a recursive watch never looks into a subfolder called ``name``."""
    return name.startswith(".") or name.casefold() in _SKIPPED


class _Hint(Enum):
    MOVED_IN = "moved in"  # renamed or moved into the folder: complete now
    CLOSED = "closed"  # closed by its writer, or named by notify(): complete once quiet
    WRITTEN = "written"  # data written: its writer is (back) at work
    CHANGED = "changed"  # created, or its attributes changed: complete once it has settled
    GONE = "gone"  # deleted or moved away
    CHECK_FOLDER = "check folder"  # the watched folder itself was deleted
    NEW_FOLDER = "new folder"  # a subfolder was created: look into it
    MOVED_FOLDER = "moved folder"  # a subfolder was moved in: its files are complete once quiet


@dataclass
class _Pending:
    """A file seen but not yet enqueued, with what it looked like and since when."""

    folder: _Folder
    size: int
    mtime_ns: int
    stable_since: float  # monotonic time the file was first seen with this size and mtime
    quiet: bool = False  # closed by its writer: waits CLOSE_QUIET rather than settle_seconds
    failures: int = 0  # consecutive outbox.add failures
    retry_at: float = 0.0  # monotonic time before which outbox.add is not tried again
    # Written to since its last close (inotify): its writer holds it open.
    writing: bool = False
    # Monotonic time it was first seen held open for writing, for OPEN_CAP; None while not.
    held_since: float | None = None
    # looks_whole() for (size, mtime_ns), so a file that stands still is read once.
    whole: tuple[int, int, bool | None] | None = None
    warned: bool = False  # said that it goes although held open or looking cut short

    @property
    def wait(self) -> float:
        """Seconds the file must stand still before it counts as complete."""
        settle = self.folder.watch.settle_seconds
        return min(CLOSE_QUIET, settle) if self.quiet else settle

    @property
    def tick(self) -> float:
        return min(QUIET_TICK, self.folder.tick) if self.quiet else self.folder.tick


@dataclass(eq=False)
class _Folder:
    """One watched folder and its observer; touched by the worker and, under the lock, stop()."""

    index: int
    watch: WatchConfig
    # normcase'd paths of subfolders never looked into: the move_to folder, and the folders of
    # other watches inside this one (their files are theirs).
    skip_keys: frozenset[str] = frozenset()
    observer: BaseObserver | None = None
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) the observer was started on
    missing: bool = False  # warned that it is missing
    unwatchable: str | None = None  # warned that the observer cannot start, with this reason
    restarts: int = 0  # observer restarts in a row without a healthy check in between
    next_scan: float = 0.0  # monotonic time of the next full scan
    key: str = field(init=False)
    root: tuple[str, ...] = field(init=False)  # the folder's path components, normcase'd
    albums: dict[str, str] = field(init=False)  # casefolded subfolder name -> album id

    def __post_init__(self) -> None:
        self.key = os.path.normcase(str(self.watch.path))
        self.root = tuple(map(os.path.normcase, self.watch.path.parts))
        self.albums = {name.casefold(): album for name, album in self.watch.albums.items()}

    @property
    def path(self) -> Path:
        return self.watch.path

    @property
    def fast_events(self) -> bool:
        # Only inotify tells us that a writer closed a file; everywhere else (and when polling)
        # completeness is judged by the file standing still.
        return _LINUX and not self.watch.poll

    @property
    def tick(self) -> float:
        return max(MIN_TICK, min(MAX_TICK, self.watch.settle_seconds / 4))

    def place(self, path: str, *, is_dir: bool = False) -> tuple[str, ...] | None:
        """Where ``path`` lies in this watch: its names below the folder, or None if it is not
        the watch's (outside the folder, in a skipped subfolder, or in any subfolder when the
        watch is not recursive). ``is_dir``: ``path`` is a subfolder, which must not be skipped.
        """
        parts = Path(path).parts
        root = len(self.root)
        if len(parts) <= root or tuple(map(os.path.normcase, parts[:root])) != self.root:
            return None
        names = parts[root:]
        folders = names if is_dir else names[:-1]
        if folders and not self.watch.recursive:
            return None
        below = str(self.path)
        for name in folders:
            below = os.path.join(below, name)
            if _skipped(name) or os.path.normcase(below) in self.skip_keys:
                return None
        return names

    def skips(self, folder: str, name: str) -> bool:
        """Whether a scan must not look into subfolder ``name`` of ``folder`` (inside the watch)."""
        return _skipped(name) or os.path.normcase(os.path.join(folder, name)) in self.skip_keys

    def album_for(self, path: Path) -> str | None:
        """The album for a picture: its first-level subfolder's, else the watch's."""
        names = self.place(str(path))
        if names is not None and len(names) > 1:
            return self.albums.get(names[0].casefold(), self.watch.album_id)
        return self.watch.album_id


class _Handler(FileSystemEventHandler):
    """Runs on an observer thread: turns events into hints for the worker, nothing more."""

    def __init__(self, watcher: Watcher, folder: _Folder) -> None:
        super().__init__()
        self._watcher = watcher
        self._folder = folder

    def dispatch(self, event: FileSystemEvent) -> None:
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path)
        if event.is_directory:
            self._directory(event, src, dest)
        else:
            self._file(event, src, dest)

    def _directory(self, event: FileSystemEvent, src: str, dest: str) -> None:
        folder = self._folder
        hint = self._watcher._hint
        if isinstance(event, DirDeletedEvent):
            if os.path.normcase(src) == folder.key:
                hint(_Hint.CHECK_FOLDER, folder, src)
        elif isinstance(event, DirMovedEvent):
            # Its files came along complete; those still being written are caught by the
            # events that follow.
            if dest:
                hint(_Hint.MOVED_FOLDER if folder.fast_events else _Hint.NEW_FOLDER, folder, dest)
        elif isinstance(event, DirCreatedEvent):
            hint(_Hint.NEW_FOLDER, folder, src)

    def _file(self, event: FileSystemEvent, src: str, dest: str) -> None:
        folder = self._folder
        hint = self._watcher._hint
        fast = folder.fast_events
        if isinstance(event, FileMovedEvent):
            # With inotify's full events, a move from an unwatched folder has no source and a
            # move out of the folder has no destination.
            if src:
                hint(_Hint.GONE, folder, src)
            if dest:
                hint(_Hint.MOVED_IN if fast else _Hint.CHANGED, folder, dest)
        elif isinstance(event, FileClosedEvent):
            # FileClosedEvent is IN_CLOSE_WRITE only; a reader's close is FileClosedNoWriteEvent,
            # a separate class that the event filter keeps out anyway.
            hint(_Hint.CLOSED if fast else _Hint.CHANGED, folder, src)
        elif isinstance(event, FileDeletedEvent):
            hint(_Hint.GONE, folder, src)
        elif isinstance(event, FileModifiedEvent):
            hint(_Hint.WRITTEN, folder, src)
        elif isinstance(event, FileCreatedEvent | FileAttribEvent):
            hint(_Hint.CHANGED, folder, src)


class Watcher:
    """Watches folders and puts every complete, matching picture into the outbox once.

    ``start()`` returns at once; ``ready`` is set when every folder has an observer (or is
    known to be missing) and has been scanned once. ``on_enqueued`` is called, on the
    worker thread, after ``add()`` created new jobs.
    """

    def __init__(
        self,
        watches: Sequence[WatchConfig],
        outbox: Outbox,
        *,
        on_enqueued: Callable[[], None] = lambda: None,
        open_cap: float = OPEN_CAP,
        incomplete_wait: float = INCOMPLETE_WAIT,
    ) -> None:
        self._open_cap = open_cap
        self._incomplete_wait = incomplete_wait
        self._folders = [
            _Folder(i, watch, _skip_keys(watch, watches)) for i, watch in enumerate(watches)
        ]
        self._outbox = outbox
        self._on_enqueued = on_enqueued
        self.ready = threading.Event()
        self._pending: dict[Path, _Pending] = {}  # the worker's alone
        self._hints: deque[tuple[_Hint, _Folder, str]] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._scan_requested = threading.Event()
        # Guards observer creation against stop(): whoever holds it sees _stopping.
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._enqueued_new = False
        # Guards the folders' ``missing`` marks, which missing_folders() reads from other threads.
        self._missing_lock = threading.Lock()
        # Links refused and said so (the worker's alone).
        self._refused: set[Path] = set()

    # -- public ---------------------------------------------------------------

    def start(self) -> None:
        """Start the worker, which starts the observers and scans every folder once."""
        with self._lock:
            if self._worker is not None or self._stopping.is_set():
                raise RuntimeError("a watcher can be started only once")
            self._worker = threading.Thread(target=self._run, name="watcher", daemon=True)
            self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the observers and the worker and join them; safe to call more than once."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
            if worker.is_alive():
                log.warning("the watcher thread did not stop within %.1f s", timeout)
        with self._lock:
            for folder in self._folders:
                self._stop_observer(folder, max(0.1, deadline - time.monotonic()))

    @property
    def alive(self) -> bool:
        """The worker runs (observers may come and go with their folders; the worker restarts
        them)."""
        worker = self._worker
        return worker is not None and worker.is_alive()

    def missing_folders(self) -> list[Path]:
        """The watched folders that are missing now (as last checked, at most
        ``FOLDER_CHECK_INTERVAL`` ago), in config order; any thread may call it."""
        with self._missing_lock:
            return [folder.path for folder in self._folders if folder.missing]

    def scan(self) -> None:
        """Ask for a scan of every folder now (returns at once; the worker does it)."""
        self._scan_requested.set()
        self._wake.set()

    def notify(self, path: Path | str) -> bool:
        """Tell the watcher that the booth software is done with ``path``; any thread may call it.

        True when ``path`` is a picture of a watched folder (absolute, matching the watch's
        patterns, in a subfolder only if the watch is recursive and does not skip it): it is
        then queued as soon as it has stood still for ``CLOSE_QUIET``, as after its writer
        closed it. False, and nothing happens, for anything else.
        """
        try:
            text = os.fspath(path)
        except TypeError:
            text = ""
        # Path semantics of this platform: "C:\\x\\y.jpg" is absolute on Windows only.
        if not isinstance(text, str) or not text or "\0" in text or not Path(text).is_absolute():
            log.debug("notified of %r, which is not an absolute path; ignored", path)
            return False
        text = os.path.normpath(text)
        for folder in self._folders:
            names = folder.place(text)
            if names is not None and matches(names[-1], folder.watch):
                # Spelled as the config spells the folder, like the events and scans do, so one
                # file is one pending entry.
                self._hints.append((_Hint.CLOSED, folder, os.path.join(str(folder.path), *names)))
                self._wake.set()
                return True
        log.debug("notified of %s, which is no picture in a watched folder; ignored", text)
        return False

    # -- observer threads -------------------------------------------------------

    def _hint(self, kind: _Hint, folder: _Folder, path: str) -> None:
        if kind is _Hint.CHECK_FOLDER:
            wanted = True
        elif kind in (_Hint.NEW_FOLDER, _Hint.MOVED_FOLDER):
            wanted = folder.place(path, is_dir=True) is not None
        else:
            names = folder.place(path)
            wanted = names is not None and matches(names[-1], folder.watch)
        if wanted:
            self._hints.append((kind, folder, path))
            self._wake.set()

    # -- the worker -------------------------------------------------------------

    def _run(self) -> None:
        now = time.monotonic()
        for folder in self._folders:
            folder.next_scan = now  # the first pass scans: that is how files already there arrive
        next_check = now
        while not self._stopping.is_set():
            # Cleared before the work, so a hint arriving during it makes the wait return at once.
            self._wake.clear()
            now = time.monotonic()
            try:
                scan_all = self._scan_requested.is_set()
                self._scan_requested.clear()
                due = [f for f in self._folders if scan_all or now >= f.next_scan]
                checked: list[_Folder] = []
                if due or now >= next_check:
                    checked = self._check_folders(self._folders)
                    next_check = now + FOLDER_CHECK_INTERVAL
                for folder in due:
                    folder.next_scan = now + max(MIN_TICK, folder.watch.scan_interval)
                for folder in self._folders:
                    if folder in due or folder in checked:
                        self._scan(folder)
                self._drain_hints()
                self._tick()
                failed = False
            except Exception:
                log.exception("the watcher hit an unexpected error; carrying on")
                failed = True
            finally:
                self.ready.set()
                self._flush_enqueued()
            timeout = min(next_check, *(f.next_scan for f in self._folders)) - time.monotonic()
            if self._pending:
                timeout = min(timeout, min(p.tick for p in self._pending.values()))
            if failed:
                # Whatever broke will likely break again: do not turn it into a log flood.
                timeout = max(timeout, ERROR_PAUSE)
            self._wake.wait(max(0.0, timeout))

    def _flush_enqueued(self) -> None:
        if self._enqueued_new:
            self._enqueued_new = False
            try:
                self._on_enqueued()
            except Exception:
                log.exception("waking the uploader failed")

    def _drain_hints(self) -> None:
        # Files renamed into place are queued together, in one transaction per batch: a burst
        # of hundreds would otherwise cost a transaction each while the uploads wait on them.
        renamed: list[tuple[Path, _Pending]] = []
        while self._hints and not self._stopping.is_set():
            kind, folder, raw = self._hints.popleft()
            if kind is not _Hint.MOVED_IN and renamed:
                self._enqueue_renamed(renamed)
            self._drain_one(kind, folder, raw, renamed)
            if len(renamed) >= _ADD_BATCH or (renamed and not self._hints):
                # The uploader starts on the first batch at once rather than after them all.
                self._enqueue_renamed(renamed)
        if renamed:
            self._enqueue_renamed(renamed)

    def _enqueue_renamed(self, renamed: list[tuple[Path, _Pending]]) -> None:
        for path, entry in self._enqueue(renamed, failed=True):
            # Whole already (renamed in): only the retry delay holds it back, not a settle time.
            entry.quiet = True
            self._pending[path] = entry
        renamed.clear()
        self._flush_enqueued()

    def _drain_one(
        self, kind: _Hint, folder: _Folder, raw: str, renamed: list[tuple[Path, _Pending]]
    ) -> None:
        if kind is _Hint.CHECK_FOLDER:
            for again in self._check_folders([folder]):
                self._scan(again)
            return
        path = Path(raw)
        if kind in (_Hint.NEW_FOLDER, _Hint.MOVED_FOLDER):
            self._walk(folder, path, closed=kind is _Hint.MOVED_FOLDER)
            return
        if kind is _Hint.GONE:
            if self._pending.pop(path, None) is not None:
                log.debug("%s went away before it was complete", path)
            return
        st = self._stat(path, folder)
        if st is None:
            return
        if kind is _Hint.MOVED_IN and st.st_size > 0:
            self._moved_in(folder, path, st, renamed)
        elif kind is _Hint.CLOSED:
            self._closed(folder, path, st)
        else:
            self._observe(folder, path, st, writing=kind is _Hint.WRITTEN)

    def _moved_in(
        self,
        folder: _Folder,
        path: Path,
        st: os.stat_result,
        renamed: list[tuple[Path, _Pending]],
    ) -> None:
        """Renamed into place: a rename is atomic, so the file is whole now (it joins
        ``renamed``), unless a writer still holds it or it was cut short before the rename."""
        now = time.monotonic()
        entry = self._pending.pop(path, None)
        if entry is None:
            entry = _Pending(folder, st.st_size, st.st_mtime_ns, now)
        elif (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
            entry.size, entry.mtime_ns, entry.stable_since = st.st_size, st.st_mtime_ns, now
        if self._complete(path, entry, now):
            renamed.append((path, entry))
        else:
            entry.quiet = True
            self._pending[path] = entry

    def _tick(self) -> None:
        settled: list[tuple[Path, _Pending]] = []
        for path, entry in list(self._pending.items()):
            if self._stopping.is_set():
                return
            if self._settled(path, entry):
                settled.append((path, entry))
        # Settled together (pictures written in place during a burst, a first scan): queued
        # in one transaction per batch.
        for start in range(0, len(settled), _ADD_BATCH):
            batch = settled[start : start + _ADD_BATCH]
            for path, _ in self._enqueue(batch):
                del self._pending[path]

    def _settled(self, path: Path, entry: _Pending) -> bool:
        """Whether a file not yet complete is now: it stood still long enough, it is not
        waiting for its next try, and :meth:`_complete` says so."""
        st = self._stat(path, entry.folder)
        if st is None:
            return False
        now = time.monotonic()
        if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
            entry.size, entry.mtime_ns, entry.stable_since = st.st_size, st.st_mtime_ns, now
            return False
        if now - entry.stable_since < entry.wait:
            return False
        if entry.size == 0 and not self._empty_may_go(path, entry, now):
            return False
        if now < entry.retry_at:
            return False
        return self._complete(path, entry, now)

    def _empty_may_go(self, path: Path, entry: _Pending, now: float) -> bool:
        if entry.quiet:
            # Closed while empty: maybe a placeholder about to be written; from here the
            # settle time decides.
            entry.quiet = False
            return False
        # Booth software may create a file empty and fill it a moment later; one that stays
        # empty much longer than that is what there is, and still goes.
        if now - entry.stable_since < max(entry.wait, EMPTY_SETTLE):
            return False
        if entry.failures == 0:
            log.warning("%s is empty (0 bytes); uploading it as it is", path)
        return True

    def _closed(self, folder: _Folder, path: Path, st: os.stat_result) -> None:
        """Its writer closed it: complete once it stands still for CLOSE_QUIET from now."""
        now = time.monotonic()
        entry = self._pending.get(path)
        if entry is None:
            # No known() lookup: a close means new content, and add() is idempotent anyway.
            self._pending[path] = _Pending(folder, st.st_size, st.st_mtime_ns, now, quiet=True)
            return
        entry.size, entry.mtime_ns, entry.stable_since, entry.quiet = (
            st.st_size,
            st.st_mtime_ns,
            now,
            True,
        )
        entry.writing = False

    def _complete(self, path: Path, entry: _Pending, now: float) -> bool:
        """The last word on a file that stood still long enough: no writer holds it open and
        its content looks whole (each up to its cap, then it goes with a warning)."""
        held = writer_holds(path)
        if held is False:
            # The kernel's word beats the events' (a missed close, a truncate by name).
            entry.writing = False
        elif held is None and entry.writing and entry.folder.fast_events:
            held = True
        if held:
            if entry.held_since is None:
                entry.held_since = now
            return _waited_out(
                path,
                entry,
                now - entry.held_since,
                self._open_cap,
                "is still open for writing",
                "%s has been open for writing for %.0f s; uploading it as it is now",
            )
        entry.held_since = None
        if entry.whole is None or entry.whole[:2] != (entry.size, entry.mtime_ns):
            entry.whole = (entry.size, entry.mtime_ns, looks_whole(path))
        if entry.whole[2] is False:
            return _waited_out(
                path,
                entry,
                now - entry.stable_since,
                self._incomplete_wait,
                "looks cut short; waiting for the rest",
                "%s looks cut short (its end is missing) and has not changed for %.0f s;"
                " uploading it as it is",
            )
        return True

    def _observe(
        self, folder: _Folder, path: Path, st: os.stat_result, *, writing: bool = False
    ) -> None:
        """Note a sighting: start its settle clock if new, restart it if the file changed.

        ``writing``: a write event, so a closed file was opened again. On inotify its next
        close is reported, so it waits for that (or the settle time) instead of a quiet
        window it could outlast while the writer still holds it open.
        """
        fast = folder.fast_events
        entry = self._pending.get(path)
        if entry is not None:
            if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
                entry.size, entry.mtime_ns = st.st_size, st.st_mtime_ns
                entry.stable_since = time.monotonic()
            if writing and fast:
                # On inotify a write means an open writer, whose close is reported.
                entry.writing = True
            if writing and entry.quiet:
                entry.stable_since = time.monotonic()
                if fast:
                    entry.quiet = False
            return
        if self._known(path, st):
            return
        self._pending[path] = _Pending(
            folder, st.st_size, st.st_mtime_ns, time.monotonic(), writing=writing and fast
        )

    def _known(self, path: Path, st: os.stat_result) -> bool:
        """Whether this version is queued already. One whose upload waits (or failed) because
        it could not be read is made due at once if it can be read now: a scan, or the event
        a change of its permissions sends, brings it back."""
        try:
            known = self._outbox.known(path, st.st_size, st.st_mtime_ns)
            if (
                known is Known.UNREADABLE
                and _readable(path)
                and self._outbox.retry_unreadable(path, st.st_size, st.st_mtime_ns)
            ):
                self._enqueued_new = True
        except Exception as exc:
            # Settling it anyway is safe: add() is idempotent.
            log.debug("could not look up %s in the outbox: %s", path, exc)
            return False
        return known is not Known.NEW

    def _enqueue(
        self, batch: Sequence[tuple[Path, _Pending]], *, failed: bool = False
    ) -> list[tuple[Path, _Pending]]:
        """Add the files to the outbox in one transaction. Returns those queued, or with
        ``failed`` those that were not (all of them, after one error line each)."""
        files = []
        for path, entry in batch:
            album = entry.folder.album_for(path)
            destinations = {name: album for name in entry.folder.watch.destinations}
            watch = str(entry.folder.path)
            files.append(NewFile(path, entry.size, entry.mtime_ns, watch, destinations))
        if self._outbox.failure is not None:
            # The queue cannot be written (a full disk, a failing drive): its owner stops
            # with one line saying so. The files stay where they are, found again by the
            # scan of the next start; an error line each until then would only bury that line.
            return list(batch) if failed else []
        try:
            counts = self._outbox.add_many(files) if files else []
        except Exception as exc:
            for path, entry in batch:
                entry.failures += 1
                delay = min(ADD_RETRY_MAX, ADD_RETRY_FIRST * 2 ** (entry.failures - 1))
                entry.retry_at = time.monotonic() + delay
                cause = str(exc) if isinstance(exc, OutboxError) else repr(exc)
                log.error("could not queue %s, trying again in %.0f s: %s", path, delay, cause)
            return list(batch) if failed else []
        for (path, entry), new in zip(batch, counts, strict=True):
            if new:
                log.info("queued %s (%d bytes)", path, entry.size)
                if has_odd_name(path.name):
                    log.warning(
                        "%s: the name is not valid UTF-8 or holds control characters;"
                        " it is uploaded as %s",
                        path,
                        upload_name(path.name),
                    )
                self._enqueued_new = True
            else:
                log.debug("%s was already queued", path)
        return [] if failed else list(batch)

    def _stat(self, path: Path, folder: _Folder) -> os.stat_result | None:
        """Stat a file; None (and it is no longer pending) when it is gone, not a file, or a
        link whose target the watch may not upload."""
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                if self._refused_link(folder, path):
                    self._pending.pop(path, None)
                    return None
                st = os.stat(path)
        except FileNotFoundError:
            if self._pending.pop(path, None) is not None:
                log.debug("%s vanished before it was complete", path)
            return None
        except OSError as exc:
            # A network share hiccup: keep it pending, the next tick or scan tries again.
            log.debug("cannot stat %s: %s", path, exc)
            return None
        if not stat.S_ISREG(st.st_mode):
            self._pending.pop(path, None)
            return None
        return st

    def _refused_link(self, folder: _Folder, path: Path) -> bool:
        """Whether ``path``, a symbolic link, leads outside every watched folder while its
        watch does not allow that; said once per link."""
        if folder.watch.allow_outside_links:
            return False
        target = outside_link(path, [f.path for f in self._folders])
        if target is None:
            return False
        if path not in self._refused:
            if len(self._refused) >= _REFUSED_KEPT:
                self._refused.clear()  # a folder full of links must not grow this for ever
            self._refused.add(path)
            log.warning(
                "%s is a link to %s, outside the watched folders: not uploaded"
                " (allow_outside_links = true in its [[watch]] allows it)",
                path,
                target,
            )
        return True

    def _scan(self, folder: _Folder) -> None:
        self._walk(folder, folder.path, closed=False)

    def _walk(self, folder: _Folder, top: Path, *, closed: bool) -> None:
        """Look at every matching file in ``top`` and, if the watch is recursive, below it.

        ``closed``: the files are complete once quiet (``top`` was moved in whole); otherwise
        each must settle. Iterative, so a deep tree cannot exhaust the stack; symlinked
        folders are not followed, so a link loop cannot make it endless.
        """
        later = [top]
        while later:
            here = later.pop()
            for name, is_folder in self._listing(folder, here):
                if self._stopping.is_set():
                    return
                if is_folder:
                    if folder.watch.recursive and not folder.skips(str(here), name):
                        later.append(here / name)
                    continue
                if not matches(name, folder.watch):
                    continue
                path = here / name
                st = self._walked_file(folder, path)
                if st is None:
                    continue
                if closed:
                    self._closed(folder, path, st)
                else:
                    self._observe(folder, path, st)

    def _listing(self, folder: _Folder, here: Path) -> list[tuple[str, bool]]:
        """The names in ``here``, each with whether it is a folder; none if it cannot be
        listed (the watched folder itself gone: marked missing)."""
        try:
            with os.scandir(here) as entries:
                # Listed first, statted after: the folder is not held open meanwhile.
                return [(e.name, _is_folder(e)) for e in entries]
        except (FileNotFoundError, NotADirectoryError):
            if here == folder.path:
                self._set_missing(folder)
        except OSError as exc:
            log.debug("cannot list %s: %s", here, exc)
        return []

    def _walked_file(self, folder: _Folder, path: Path) -> os.stat_result | None:
        """A listed file's stat, if it is a regular file (through a link only where links
        are allowed); None otherwise."""
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                if self._refused_link(folder, path):
                    return None
                st = os.stat(path)
        except OSError as exc:
            log.debug("cannot stat %s: %s", path, exc)
            return None
        return st if stat.S_ISREG(st.st_mode) else None

    # -- folders and observers --------------------------------------------------

    def _check_folders(self, folders: Sequence[_Folder]) -> list[_Folder]:
        """Start, restart or drop observers as the folders demand; return those to scan now."""
        to_scan = []
        for folder in folders:
            if self._stopping.is_set():
                break
            try:
                st = os.stat(folder.path)
            except OSError:
                st = None
            if st is None or not stat.S_ISDIR(st.st_mode):
                self._set_missing(folder)
                continue
            identity = (st.st_dev, st.st_ino)
            observer = folder.observer
            if observer is not None and folder.identity == identity and _alive(observer):
                folder.restarts = 0
                continue
            if folder.missing:
                with self._missing_lock:
                    folder.missing = False
                log.info("watched folder %s is there now; watching it", folder.path)
            elif observer is not None:
                folder.restarts += 1
                # Said once; an observer that keeps dying must not flood the log.
                level = logging.WARNING if folder.restarts == 1 else logging.DEBUG
                if folder.identity != identity:
                    log.log(
                        level, "watched folder %s was replaced; watching the new one", folder.path
                    )
                else:
                    log.log(level, "the observer for %s stopped; restarting it", folder.path)
            if self._start_observer(folder):
                folder.identity = identity
            # Scanned also when the observer could not start: then scans are all there is.
            to_scan.append(folder)
        return to_scan

    def _set_missing(self, folder: _Folder) -> None:
        with self._lock:
            self._stop_observer(folder, 1.0)
        folder.identity = None
        if not folder.missing:
            with self._missing_lock:
                folder.missing = True
            log.warning(
                "watched folder %s does not exist; checking again every %.0f s",
                folder.path,
                FOLDER_CHECK_INTERVAL,
            )

    def _start_observer(self, folder: _Folder) -> bool:
        with self._lock:
            self._stop_observer(folder, 1.0)
            if self._stopping.is_set():
                return False
            observer: BaseObserver | None = None
            name = f"watcher-{folder.index}"
            try:
                observer = _new_observer(folder.watch)
                observer.name = f"{name}-observer"
                observer.schedule(
                    _Handler(self, folder),
                    str(folder.path),
                    recursive=folder.watch.recursive,
                    event_filter=_RECURSIVE_EVENT_FILTER
                    if folder.watch.recursive
                    else _EVENT_FILTER,
                )
                for emitter in list(observer.emitters):
                    emitter.name = f"{name}-emitter"
                # The inotify reader thread is watchdog's own (started by the constructor up to
                # watchdog 7.0, by schedule() since 7.1, with a dispatcher thread of its own
                # that cannot be reached): named where it can be, joined by stop() either way.
                reader = getattr(observer, "_inotify_fd", None)
                if isinstance(reader, threading.Thread):
                    reader.name = f"{name}-inotify"
                observer.start()
            except OSError as exc:
                # Out of inotify watches or instances, no permission, gone in between.
                if observer is not None:
                    _shut(observer, 1.0)
                reason = str(exc)
                if folder.unwatchable != reason:
                    folder.unwatchable = reason
                    log.warning("cannot watch %s (scans still run): %s", folder.path, exc)
                return False
            folder.observer = observer
            if folder.unwatchable is not None:
                folder.unwatchable = None
                log.info("watching %s again", folder.path)
            return True

    def _stop_observer(self, folder: _Folder, timeout: float) -> None:
        """Stop and join ``folder``'s observer; the caller holds ``self._lock``."""
        observer, folder.observer = folder.observer, None
        if observer is not None:
            _shut(observer, timeout)


def pictures_in(watch: WatchConfig, watches: Sequence[WatchConfig]) -> list[Path]:
    """Every file a scan of ``watch`` (one of ``watches``) takes for a picture now, finished or
    not: its patterns and ignores, the built-in ignores, the subfolders a recursive watch
    skips (hidden ones, the move folder, other watches' folders) and links that lead outside
    the watched folders where the watch does not allow them. Reads only the filesystem (for
    ``boothsync verify``); a folder that cannot be listed holds none."""
    folder = _Folder(0, watch, _skip_keys(watch, watches))
    roots = [w.path for w in watches]
    found: list[Path] = []
    later = [watch.path]
    while later:
        here = later.pop()
        try:
            with os.scandir(here) as entries:
                listed = [(e.name, _is_folder(e)) for e in entries]
        except OSError:
            continue
        for name, is_folder in listed:
            if is_folder:
                if watch.recursive and not folder.skips(str(here), name):
                    later.append(here / name)
                continue
            if not matches(name, watch):
                continue
            path = here / name
            if _regular_within(path, watch, roots):
                found.append(path)
    return sorted(found)


def _regular_within(path: Path, watch: WatchConfig, roots: Sequence[Path]) -> bool:
    """Whether ``path`` is a regular file, through a link only where the watch allows it."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            if not watch.allow_outside_links and outside_link(path, roots) is not None:
                return False
            st = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode)


def _waited_out(
    path: Path, entry: _Pending, waited: float, cap: float, waiting: str, going: str
) -> bool:
    """Whether a file that is not done (``waiting`` says how) has waited its ``cap`` out: then
    it goes anyway, and ``going`` (a format taking the path and the seconds) says so once."""
    if waited < cap:
        log.debug("%s %s", path, waiting)
        return False
    if not entry.warned:
        entry.warned = True
        log.warning(going, path, waited)
    return True


def _skip_keys(watch: WatchConfig, watches: Sequence[WatchConfig]) -> frozenset[str]:
    """The normcase'd subfolders a recursive ``watch`` must not look into, besides skipped names."""
    keys = {os.path.normcase(str(other.path)) for other in watches}
    if watch.after_upload == "move":
        keys.add(os.path.normcase(str(watch.move_to or watch.path / "uploaded")))
    keys.discard(os.path.normcase(str(watch.path)))
    return frozenset(keys)


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _new_observer(watch: WatchConfig) -> BaseObserver:
    if watch.poll:
        return PollingObserver(timeout=watch.poll_interval)
    if _LINUX:
        from watchdog.observers.inotify import InotifyObserver

        # Full events: a file moved in from an unwatched folder arrives as a FileMovedEvent
        # (without a source) rather than as a FileCreatedEvent, so it takes the fast path.
        return InotifyObserver(generate_full_events=True)
    return Observer()


def _alive(observer: BaseObserver) -> bool:
    emitters = list(observer.emitters)
    return observer.is_alive() and bool(emitters) and all(e.is_alive() for e in emitters)


def _shut(observer: BaseObserver, timeout: float) -> bool:
    """Stop an observer, started or not, and join every thread it owns, within ``timeout``.

    ``observer.stop()`` joins the emitters and inotify's reader threads itself, without a
    time limit of its own; it runs on a helper thread so that a watchdog release whose stop
    blocks costs this stop ``timeout`` seconds and one warning, never a daemon that cannot
    stop (or a tray that cannot quit). Returns whether everything ended in time; what did
    not is left behind as daemon threads, which do not hold up the process's exit.
    """
    deadline = time.monotonic() + timeout

    def stop() -> None:
        try:
            observer.stop()
        except Exception:
            log.debug("stopping an observer failed", exc_info=True)

    stopper = threading.Thread(target=stop, name=f"{observer.name}-stop", daemon=True)
    stopper.start()
    stopper.join(timeout)
    if observer.is_alive():
        observer.join(max(0.0, deadline - time.monotonic()))
    if stopper.is_alive() or observer.is_alive():
        log.warning(
            "the file watcher (%s) did not stop within %.1f s; leaving it behind",
            observer.name,
            timeout,
        )
        return False
    return True


def outside_link(path: Path, folders: Sequence[Path]) -> str | None:
    """Where ``path`` really is, if a symbolic link (the file itself, or a folder on its way)
    leads it outside every one of ``folders``; None when it lies inside one of them (another
    watch's included), links or not."""
    try:
        target = os.path.realpath(path)
    except (OSError, ValueError):
        return None
    where = os.path.normcase(target)
    for folder in folders:
        root = os.path.normcase(os.path.realpath(folder))
        if where == root or where.startswith(root.rstrip(os.sep) + os.sep):
            return None
    return target


def writer_holds(path: Path) -> bool | None:
    """Whether some process has ``path`` open for writing: True, False, or None where this
    cannot be told (macOS and other systems; on Linux a file of another owner without the
    lease capability, or a network filesystem). Windows sees only a writer that did not
    share the file (most booth software opens it that way), so there it is True or None."""
    if _LINUX:
        return _lease_refused(path)
    if _WINDOWS:
        return True if _locked(path) else None
    return None


def _lease_refused(path: Path) -> bool | None:
    """Linux: the kernel grants a read lease only while no process has the file open for
    writing (fcntl(2), F_SETLEASE), so asking for one and giving it back at once answers the
    question without reading anything or keeping the file open.

    O_NONBLOCK: if another process (Samba, with kernel oplocks) holds a write lease, the open
    fails at once instead of waiting for that lease to be broken: a writer, too. The lease
    break signal, sent to us if a writer opens the file in the microseconds we hold the lease,
    is SIGURG (ignored by default) rather than SIGIO, which would end the process.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except BlockingIOError:
        return True
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError as exc:
            # EAGAIN: open for writing somewhere. EACCES/EPERM: not our file; EINVAL: a
            # filesystem without leases. Those cannot tell.
            return True if exc.errno == errno.EAGAIN else None
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    except OSError:
        return None
    finally:
        os.close(fd)


def _readable(path: Path) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def _locked(path: Path) -> bool:
    """On Windows, whether a writer still holds ``path`` open without sharing it."""
    try:
        with open(path, "rb"):
            return False
    except PermissionError:
        return True
    except OSError:
        return False
