"""Finds every finished picture in the watched folders and records it in the outbox.

Owns the watchdog observers (native, or polling for network shares), the
folder scans, the settle detection (is the booth software done writing?) and
the name filters. Filesystem events are only hints that make things fast; the
scans at start, every ``rescan_interval`` and on request are the truth, so a
lost event delays a picture but never loses it.

Must not upload, and must not touch SQLite except through ``Outbox.is_known``
and ``Outbox.add``.

Threads: one worker (``watcher``) does all the stat calls, scans and outbox
writes, so the pending files need no lock; the observers' threads only hand hints
to it. Every thread is named ``watcher…`` and is joined by ``stop()``.
"""

from __future__ import annotations

import fnmatch
import logging
import os
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
    DirDeletedEvent,
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

from boothsync.errors import OutboxError

if TYPE_CHECKING:
    from boothsync.config import WatchConfig
    from boothsync.outbox import Outbox

__all__ = ["BUILTIN_IGNORES", "Watcher", "matches"]

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

# How often a missing folder, or a dead observer, is looked for again.
FOLDER_CHECK_INTERVAL = 5.0
# Pending files are re-checked at least this often (and at least 4 times per settle time).
MAX_TICK = 0.25
MIN_TICK = 0.02
# After outbox.add failed, wait this long before trying that file again (doubling up to the
# cap), so a broken database costs one log line per file now and then, not four a second.
ADD_RETRY_FIRST = 1.0
ADD_RETRY_MAX = 30.0
# After an unexpected error in the worker's loop, pause at least this long.
ERROR_PAUSE = 1.0

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


class _Hint(Enum):
    FINISHED = "finished"  # closed after writing, or moved in: complete now
    CHANGED = "changed"  # created or modified: complete once it has settled
    GONE = "gone"  # deleted or moved away
    CHECK_FOLDER = "check folder"  # the folder itself was deleted


@dataclass
class _Pending:
    """A file seen but not yet enqueued, with what it looked like and since when."""

    folder: _Folder
    size: int
    mtime_ns: int
    stable_since: float  # monotonic time the file was first seen with this size and mtime
    failures: int = 0  # consecutive outbox.add failures
    retry_at: float = 0.0  # monotonic time before which outbox.add is not tried again


@dataclass(eq=False)
class _Folder:
    """One watched folder and its observer; touched by the worker and, under the lock, stop()."""

    index: int
    watch: WatchConfig
    observer: BaseObserver | None = None
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) the observer was started on
    missing: bool = False  # warned that it is missing
    unwatchable: str | None = None  # warned that the observer cannot start, with this reason
    restarts: int = 0  # observer restarts in a row without a healthy check in between
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = os.path.normcase(str(self.watch.path))

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

    def owns(self, path: str) -> bool:
        """Whether ``path`` lies directly in this folder (the watch is not recursive)."""
        return os.path.normcase(os.path.dirname(path)) == self.key


class _Handler(FileSystemEventHandler):
    """Runs on an observer thread: turns events into hints for the worker, nothing more."""

    def __init__(self, watcher: Watcher, folder: _Folder) -> None:
        super().__init__()
        self._watcher = watcher
        self._folder = folder

    def dispatch(self, event: FileSystemEvent) -> None:
        folder = self._folder
        hint = self._watcher._hint
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(event.dest_path)
        if event.is_directory:
            if isinstance(event, DirDeletedEvent) and os.path.normcase(src) == folder.key:
                hint(_Hint.CHECK_FOLDER, folder, src)
            return
        if isinstance(event, FileMovedEvent):
            # With inotify's full events, a move from an unwatched folder has no source and a
            # move out of the folder has no destination.
            if src:
                hint(_Hint.GONE, folder, src)
            if dest:
                hint(_Hint.FINISHED if folder.fast_events else _Hint.CHANGED, folder, dest)
        elif isinstance(event, FileClosedEvent):
            # FileClosedEvent is IN_CLOSE_WRITE only; a reader's close is FileClosedNoWriteEvent,
            # a separate class that the event filter keeps out anyway.
            hint(_Hint.FINISHED if folder.fast_events else _Hint.CHANGED, folder, src)
        elif isinstance(event, FileDeletedEvent):
            hint(_Hint.GONE, folder, src)
        elif isinstance(event, FileCreatedEvent | FileModifiedEvent | FileAttribEvent):
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
        rescan_interval: float = 300.0,
    ) -> None:
        self._folders = [_Folder(i, watch) for i, watch in enumerate(watches)]
        self._outbox = outbox
        self._on_enqueued = on_enqueued
        self._rescan_interval = rescan_interval
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

    def scan(self) -> None:
        """Ask for a scan of every folder now (returns at once; the worker does it)."""
        self._scan_requested.set()
        self._wake.set()

    # -- observer threads -------------------------------------------------------

    def _hint(self, kind: _Hint, folder: _Folder, path: str) -> None:
        if kind is _Hint.CHECK_FOLDER or (
            folder.owns(path) and matches(os.path.basename(path), folder.watch)
        ):
            self._hints.append((kind, folder, path))
            self._wake.set()

    # -- the worker -------------------------------------------------------------

    def _run(self) -> None:
        now = time.monotonic()
        next_scan = now  # the first pass scans: that is how files already there get uploaded
        next_check = now
        while not self._stopping.is_set():
            # Cleared before the work, so a hint arriving during it makes the wait return at once.
            self._wake.clear()
            now = time.monotonic()
            try:
                scan_all = self._scan_requested.is_set() or now >= next_scan
                to_scan: list[_Folder] = []
                if scan_all or now >= next_check:
                    to_scan = self._check_folders(self._folders)
                    next_check = now + FOLDER_CHECK_INTERVAL
                if scan_all:
                    self._scan_requested.clear()
                    next_scan = now + max(MIN_TICK, self._rescan_interval)
                    to_scan = self._folders
                for folder in to_scan:
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
            timeout = min(next_scan, next_check) - time.monotonic()
            if self._pending:
                timeout = min(timeout, min(p.folder.tick for p in self._pending.values()))
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
        while self._hints and not self._stopping.is_set():
            kind, folder, raw = self._hints.popleft()
            if kind is _Hint.CHECK_FOLDER:
                for again in self._check_folders([folder]):
                    self._scan(again)
                continue
            path = Path(raw)
            if kind is _Hint.GONE:
                if self._pending.pop(path, None) is not None:
                    log.debug("%s went away before it was complete", path)
                continue
            st = self._stat(path)
            if st is None:
                continue
            if kind is _Hint.FINISHED and st.st_size > 0:
                # The writer closed it (or it was renamed into place): no need to wait.
                entry = self._pending.pop(path, None)
                if entry is None:
                    entry = _Pending(folder, st.st_size, st.st_mtime_ns, time.monotonic())
                else:
                    entry.size, entry.mtime_ns = st.st_size, st.st_mtime_ns
                if not self._enqueue(path, entry):
                    self._pending[path] = entry
            else:
                self._observe(folder, path, st)

    def _tick(self) -> None:
        for path, entry in list(self._pending.items()):
            if self._stopping.is_set():
                return
            st = self._stat(path)
            if st is None:
                continue
            now = time.monotonic()
            if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
                entry.size, entry.mtime_ns, entry.stable_since = st.st_size, st.st_mtime_ns, now
                continue
            if now - entry.stable_since < entry.folder.watch.settle_seconds:
                continue
            if entry.size == 0:
                # An empty file that stays empty is a placeholder, not a picture; a later write
                # brings it back through an event or a scan.
                del self._pending[path]
                log.debug("%s stayed empty; not queued", path)
                continue
            if now < entry.retry_at:
                continue
            if _WINDOWS and _locked(path):
                log.debug("%s is still held open by its writer", path)
                continue
            if self._enqueue(path, entry):
                del self._pending[path]

    def _observe(self, folder: _Folder, path: Path, st: os.stat_result) -> None:
        """Note a sighting: start its settle clock if new, restart it if the file changed."""
        entry = self._pending.get(path)
        if entry is not None:
            if (st.st_size, st.st_mtime_ns) != (entry.size, entry.mtime_ns):
                entry.size, entry.mtime_ns = st.st_size, st.st_mtime_ns
                entry.stable_since = time.monotonic()
            return
        if self._known(path, st):
            return
        self._pending[path] = _Pending(folder, st.st_size, st.st_mtime_ns, time.monotonic())

    def _known(self, path: Path, st: os.stat_result) -> bool:
        try:
            return self._outbox.is_known(path, st.st_size, st.st_mtime_ns)
        except Exception as exc:
            # Settling it anyway is safe: add() is idempotent.
            log.debug("could not look up %s in the outbox: %s", path, exc)
            return False

    def _enqueue(self, path: Path, entry: _Pending) -> bool:
        """Add the file to the outbox; False (after one error line) when that failed."""
        watch = entry.folder.watch
        try:
            new = self._outbox.add(
                path,
                size=entry.size,
                mtime_ns=entry.mtime_ns,
                watch=str(watch.path),
                destinations={name: watch.album_id for name in watch.destinations},
            )
        except Exception as exc:
            entry.failures += 1
            delay = min(ADD_RETRY_MAX, ADD_RETRY_FIRST * 2 ** (entry.failures - 1))
            entry.retry_at = time.monotonic() + delay
            if isinstance(exc, OutboxError):
                log.error("could not queue %s, trying again in %.0f s: %s", path, delay, exc)
            else:
                log.error("could not queue %s, trying again in %.0f s: %r", path, delay, exc)
            return False
        if new:
            log.info("queued %s (%d bytes)", path, entry.size)
            self._enqueued_new = True
        else:
            log.debug("%s was already queued", path)
        return True

    def _stat(self, path: Path) -> os.stat_result | None:
        """Stat a file; None (and it is no longer pending) when it is gone or not a file."""
        try:
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

    def _scan(self, folder: _Folder) -> None:
        try:
            with os.scandir(folder.path) as entries:
                names = [e.name for e in entries]
        except (FileNotFoundError, NotADirectoryError):
            self._set_missing(folder)
            return
        except OSError as exc:
            log.debug("cannot list %s: %s", folder.path, exc)
            return
        for name in names:
            if self._stopping.is_set():
                return
            if not matches(name, folder.watch):
                continue
            path = folder.path / name
            try:
                st = os.stat(path)
            except OSError as exc:
                log.debug("cannot stat %s: %s", path, exc)
                continue
            if stat.S_ISREG(st.st_mode):
                self._observe(folder, path, st)

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
                # InotifyObserver starts its reader thread in __init__: it can only be renamed now.
                reader = getattr(observer, "_inotify_fd", None)
                if isinstance(reader, threading.Thread):
                    reader.name = f"{name}-inotify"
                observer.schedule(
                    _Handler(self, folder),
                    str(folder.path),
                    recursive=False,
                    event_filter=_EVENT_FILTER,
                )
                for emitter in list(observer.emitters):
                    emitter.name = f"{name}-emitter"
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


def _shut(observer: BaseObserver, timeout: float) -> None:
    """Stop an observer, started or not, and join every thread it owns."""
    try:
        observer.stop()  # stops and joins the emitters (and inotify's reader) right here
    except Exception:
        log.debug("stopping an observer failed", exc_info=True)
    if observer.is_alive():
        observer.join(timeout)


def _locked(path: Path) -> bool:
    """On Windows, whether a writer still holds ``path`` open without sharing it."""
    try:
        with open(path, "rb"):
            return False
    except PermissionError:
        return True
    except OSError:
        return False
