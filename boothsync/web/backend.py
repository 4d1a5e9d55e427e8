"""What the dashboard reads and asks of the boothsync it runs in.

Owns the one door between the web app and a running engine: the status through the status
reader (:mod:`boothsync.status`), the commands through the engine's own methods (the tray's
in-process path), a config reload through the owner's reload request. Must not hold state of
its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boothsync import status as reader
from boothsync.paths import outbox_path, state_dir
from boothsync.web.thumbs import Thumbnails

if TYPE_CHECKING:
    from boothsync.config import Config, WebConfig
    from boothsync.engine import Engine
    from boothsync.outbox import RecentUpload
    from boothsync.uploader import UploadReport
    from boothsync.web.auth import Sessions
    from boothsync.web.server import DashboardServer
    from boothsync.web.setup_pages import FirstSetup

__all__ = ["EngineBackend", "NotRunning", "start_dashboard", "start_setup"]

log = logging.getLogger(__name__)

#: How long the page's lists and pace may be reused while no count changes (seconds).
PICTURES_SECONDS = 5.0
#: The pictures the page shows, and so the thumbnails worth making.
RECENT_PICTURES = 24
#: Thumbnails are made once no upload finished for THUMBNAIL_QUIET seconds, or at the latest
#: THUMBNAIL_DELAY_MAX seconds after the first one waiting (well inside the 5 s after which an
#: uploaded picture may be moved or deleted).
THUMBNAIL_QUIET = 0.5
THUMBNAIL_DELAY_MAX = 3.0


class NotRunning(Exception):
    """The engine is between a stop and a start (a config reload)."""


@dataclass
class EngineBackend:
    """The engine that ``engine()`` returns now (a reload replaces it), its config, and who
    rereads the config (None: nobody can, as in the demo)."""

    engine_of: Callable[[], Engine]
    config_of: Callable[[], Config]
    reload_request: Callable[[], None] | None = None
    _store: Thumbnails | None = field(default=None, init=False, repr=False)
    _pictures: tuple[object, float, reader.Pictures] | None = field(
        default=None, init=False, repr=False
    )
    _pending: deque[tuple[int, Path]] = field(
        default_factory=lambda: deque(maxlen=RECENT_PICTURES), init=False, repr=False
    )
    _pending_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _wake: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _closing: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _maker: threading.Thread | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        """Make the thumbnails of the pictures uploaded, as they are uploaded (on a thread of
        its own, asleep while nothing is uploaded): one moved or deleted after its upload has
        one all the same, whether a browser is open or not.

        Only the newest ones the page shows are made, once uploads pause for a moment (or
        every few seconds while they go on): decoding each of a burst of 300 pictures would
        take the CPU the uploads need, for thumbnails nobody sees.
        """
        self._maker = threading.Thread(target=self._make, name="dashboard-thumbnails", daemon=True)
        self._maker.start()

    def close(self) -> None:
        if self._maker is not None:
            self._closing.set()
            self._wake.set()
            self._maker.join(10)
            self._maker = None

    def uploaded(self, report: UploadReport) -> None:
        """An upload worker's report (keep it quick: it is the worker's time)."""
        if report.outcome in ("uploaded", "duplicate") and self._maker is not None:
            with self._pending_lock:
                self._pending.append((report.job.file_id, report.job.path))
            self._wake.set()

    def _make(self) -> None:
        while True:
            self._wake.wait()
            first = time.monotonic()
            # Wait for a pause in the uploads, but not for ever.
            while not self._closing.is_set() and time.monotonic() - first < THUMBNAIL_DELAY_MAX:
                self._wake.clear()
                if not self._wake.wait(THUMBNAIL_QUIET):
                    break
            self._wake.clear()
            if self._closing.is_set():
                return
            with self._pending_lock:
                batch = list(reversed(self._pending))
                self._pending.clear()
            for file_id, path in batch:
                if self._closing.is_set():
                    return
                try:
                    self._thumbs().get(file_id, path)
                except Exception:  # a thumbnail must never stop the next ones
                    log.exception("dashboard: the thumbnail of %s failed", path)

    @property
    def config(self) -> Config:
        return self.config_of()

    @property
    def state(self) -> Path:
        return state_dir(self.config)

    def engine(self) -> Engine:
        try:
            return self.engine_of()
        except RuntimeError as exc:
            raise NotRunning(str(exc)) from exc

    def status(self) -> reader.Status:
        return reader.from_engine(self.engine())

    def status_json(self) -> dict[str, Any]:
        """Exactly what ``boothsync status --json`` prints, read the way it reads it."""
        from boothsync.daemon import instance_state

        config = self.config
        database = outbox_path(config)
        return reader.report(config, database, instance_state(database.parent))

    def pictures(self, current: reader.Status) -> reader.Pictures:
        """The pictures of the page: read again when the counts or the latest events moved,
        else at most every PICTURES_SECONDS (the pace is a 5-minute average anyway), so a
        page open all evening costs next to nothing while nothing happens."""
        stats = current.stats
        key = (sorted(stats.totals.items()), stats.last_upload, stats.last_error)
        now = time.monotonic()
        cached = self._pictures
        if cached is not None and cached[0] == key and now - cached[1] < PICTURES_SECONDS:
            return cached[2]
        fresh = reader.pictures(self.engine().outbox)
        self._pictures = (key, now, fresh)
        return fresh

    def thumbnails(self, recent: Sequence[RecentUpload]) -> set[int]:
        """Make the thumbnails of ``recent`` pictures that have none yet (once each); the ids
        of those that have one."""
        store = self._thumbs()
        return {p.file_id for p in recent if store.get(p.file_id, p.path) is not None}

    def thumbnail(self, file_id: int) -> Path | None:
        """A thumbnail made already (the page asks only for those)."""
        return self._thumbs().made(file_id)

    def _thumbs(self) -> Thumbnails:
        folder = self.state / "thumbs"
        if self._store is None or self._store.folder != folder:
            self._store = Thumbnails(folder)
        return self._store

    def pause(self) -> None:
        self.engine().pause()

    def resume(self) -> None:
        self.engine().resume()

    def retry(self, job_id: int | None = None) -> int:
        """Queue failed pictures again: one job, or all of them; how many were."""
        engine = self.engine()
        if job_id is None:
            return engine.retry_failed()
        return engine.retry_job(job_id)

    def reload(self) -> bool:
        if self.reload_request is None:
            return False
        self.reload_request()
        return True


def start_dashboard(
    backend: EngineBackend, web: WebConfig, *, sessions: Sessions | None = None
) -> DashboardServer | None:
    """Serve the dashboard of ``backend`` on ``web.listen``; None when it cannot listen there
    (said in one log line). ``sessions`` carries the logged-in browsers over a restart."""
    return _serve(backend, web, backend.state, sessions=sessions)


def start_setup(
    target: Path, web: WebConfig, state: Path, *, saved: Callable[[], None]
) -> DashboardServer | None:
    """Serve the first setup's wizard, which writes ``target`` and then calls ``saved``."""
    from boothsync.web.setup_pages import FirstSetup

    return _serve(None, web, state, setup=FirstSetup(target, saved))


def _serve(
    backend: EngineBackend | None,
    web: WebConfig,
    state: Path,
    *,
    sessions: Sessions | None = None,
    setup: FirstSetup | None = None,
) -> DashboardServer | None:
    from boothsync.web.server import DashboardServer

    def make_app(served: WebConfig) -> object:
        from boothsync.web.app import Dashboard, create_app

        dashboard = Dashboard(backend, served, state, setup=setup)
        if sessions is not None:
            dashboard.sessions = sessions
        return create_app(dashboard)

    server = DashboardServer(make_app, web, state)
    return server if server.start() else None
