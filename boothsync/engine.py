"""Wires the watcher, the outbox and the uploader together, and takes them apart.

The stages never call each other: the watcher writes rows, the uploader claims
them, and the engine only connects the wake-up signal between the two. It also
owns what happens to a picture once every destination has it
(``after_upload``: keep, move or delete) and the snapshot the CLI, the tray and
the service read. A picture is moved or deleted only after it has stayed quiet for
``AFTER_UPLOAD_GRACE`` after its upload, when no process holds it open for writing,
and only if it is still exactly what was uploaded (its size, time and content
hash); a picture that is not is uploaded again first, one still held open waits.
What a stop cut short is picked up again at the next start.

It is also where the operator's commands land: pause, resume, retry and reload, called
in-process (the tray) or sent through the queue database by another process
(``boothsync pause``, a tray attached to the service), which the
``engine-control`` thread takes every second. The same thread keeps the flags
other processes read (through :mod:`boothsync.status`) current: ``PAUSED_FLAG`` ("1"/"0")
and ``MISSING_FOLDERS_FLAG`` (a JSON list). A pause outlives a restart: it is read back
from the flag at start.

That thread also has the queue check its database file every second
(:meth:`~boothsync.outbox.Outbox.heal`): after a rebuild the folders are scanned at once, so
pictures whose jobs were lost are queued again. A queue that cannot be written or rebuilt
is the engine's :attr:`Engine.failure`: whoever runs it must stop it and exit non-zero.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from datetime import time as dt_time
from pathlib import Path

from boothsync.awake import Awake
from boothsync.awake import shared as shared_awake
from boothsync.bandwidth import Bandwidth
from boothsync.config import Config, WatchConfig, secrets
from boothsync.destinations import Destination, DestinationContext, create
from boothsync.errors import BoothsyncError, OutboxError
from boothsync.health import DestinationHealth
from boothsync.outbox import AWAKE_FLAG, MISSING_FOLDERS_FLAG, PAUSED_FLAG, Job, Outbox, Stats
from boothsync.paths import free_name, outbox_path
from boothsync.triggers import DslrBoothTriggers, SparkboothStatus
from boothsync.uploader import (
    Downscale,
    Uploader,
    UploadReport,
    content_hash,
)
from boothsync.watcher import Watcher, outside_link, writer_holds

__all__ = ["MISSING_FOLDERS_FLAG", "PAUSED_FLAG", "Engine", "Snapshot", "local_midnight"]

log = logging.getLogger(__name__)


# How often the control thread looks for commands and refreshes the flags (seconds).
CONTROL_INTERVAL = 1.0

#: Seconds a picture must stay untouched after its upload before it is moved or deleted:
#: booth software that closes a picture and reopens it to add to it does so well within it.
AFTER_UPLOAD_GRACE = 5.0


@dataclass
class _Uploaded:
    """A picture every destination has, waiting out the grace time before it leaves."""

    path: Path
    file_id: int
    size: int
    mtime_ns: int
    watch: WatchConfig
    due: float  # monotonic


@dataclass(frozen=True)
class Snapshot:
    stats: Stats
    health: dict[str, DestinationHealth]
    paused: bool = False
    missing_folders: tuple[str, ...] = ()
    uploaded_today: int = 0
    live: int = 0
    # Pictures some destination does not have yet (a job waits, uploads or failed).
    to_go: int = 0


def local_midnight(now: float | None = None) -> float:
    """Unix time of the start of today on this computer's clock."""
    today = datetime.fromtimestamp(time.time() if now is None else now).date()
    return datetime.combine(today, dt_time()).timestamp()


class Engine:
    """One running boothsync: watch every folder, upload to every destination."""

    def __init__(
        self,
        config: Config,
        *,
        on_report: Callable[[UploadReport], None] | None = None,
        destinations: Mapping[str, Destination] | None = None,
        on_reload: Callable[[], None] | None = None,
        after_upload_grace: float = AFTER_UPLOAD_GRACE,
        commands_since: float | None = None,
        awake: Awake | None = None,
    ) -> None:
        self.config = config
        # Commands sent before this (wall clock) are dropped at start (see _restored_pause).
        self._commands_since = commands_since
        self._grace = after_upload_grace
        # Pictures waiting to be moved or deleted, by path: added by the upload workers,
        # taken by the control thread.
        self._uploaded: dict[Path, _Uploaded] = {}
        self._uploaded_lock = threading.Lock()
        self._on_report = on_report
        # Who rereads the config when the "reload" command comes (the daemon or the tray).
        self._on_reload = on_reload
        self._given_destinations = destinations
        self._watches = {str(w.path): w for w in config.watches}
        self._outbox: Outbox | None = None
        self._destinations: dict[str, Destination] = {}
        self._uploader: Uploader | None = None
        self._watcher: Watcher | None = None
        self._triggers: list[DslrBoothTriggers | SparkboothStatus] = []
        # None until pause() or resume() says otherwise: then start() takes the flag.
        self._paused: bool | None = None
        # Serializes pause, resume and their flag writes (tray thread, control thread).
        self._control_lock = threading.Lock()
        self._control_stop = threading.Event()
        self._control: threading.Thread | None = None
        # The missing_folders flag as last written, so it is written only when it changes.
        self._missing_written: str | None = None
        self._control_error: str | None = None
        # Set when the queue could not be rebuilt (see failure).
        self._failure: OutboxError | None = None
        # The process's way to keep the computer awake, and the flag as last written.
        self._awake = awake if awake is not None else shared_awake()
        self._awake_written: str | None = None

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            raise RuntimeError("the engine is not started")
        return self._outbox

    def start(self) -> None:
        """Open the queue, put back what a crash left in flight, then upload and watch."""
        # The config's keys never reach the database: a server that echoes one in an error
        # message would otherwise leave it in a job's last error.
        outbox = Outbox.open_or_rebuild(outbox_path(self.config), secrets=secrets(self.config))
        self._outbox = outbox
        self._failure = None
        outbox.order_live(self.config.upload.live)
        outbox.recover()
        if self._given_destinations is not None:
            self._destinations = dict(self._given_destinations)
        else:
            context = DestinationContext(booth=self.config.booth.name, tz=self.config.booth.tz)
            self._destinations = {
                name: create(cfg, context=context) for name, cfg in self.config.destinations.items()
            }
        limit = self.config.upload.bandwidth_limit
        self._uploader = Uploader(
            outbox,
            self._destinations,
            tz=self.config.booth.tz,
            capture_options=self.config.booth.capture_options,
            concurrency=self.config.upload.concurrency,
            on_report=self._on_report,
            on_file_done=self._after_upload,
            bandwidth=Bandwidth(limit) if limit else None,
            downscale={
                name: Downscale(cfg.max_edge, cfg.quality)
                for name, cfg in self.config.destinations.items()
                if cfg.max_edge
            },
            refuse=self._refused_source,
            # A wrong key, event or album shows within seconds of a start or a reload.
            check_at_start=_albums_by_destination(self.config),
        )
        paused = self._restored_pause(outbox)
        if paused:
            self._uploader.pause()
        self._uploader.start()
        self._watcher = Watcher(
            self.config.watches,
            outbox,
            on_enqueued=self._uploader.wake,
        )
        self._watcher.start()
        self._start_triggers(self._watcher)
        self._resume_after_uploads(outbox)
        self._control_stop.clear()
        self._missing_written = None
        self._control = threading.Thread(
            target=self._control_loop, name="engine-control", daemon=True
        )
        self._control.start()

    def _restored_pause(self, outbox: Outbox) -> bool:
        """Whether to start paused: only if pause() was called before start.

        A fresh start always uploads: a pause left over from another day must
        never hold back tonight's pictures after a reboot. (The daemon carries
        a pause over a config reload itself.) Commands sent while nothing ran
        are old news and are dropped for the same reason: those sent before
        ``commands_since``, or before this start. Those sent since (while a config
        reload restarts the engine) are applied.
        """
        with self._control_lock:
            if self._paused is None:
                self._paused = False
            try:
                since = self._commands_since
                stale = outbox.drop_commands(sent_before=time.time() if since is None else since)
            except OutboxError as exc:
                log.error("%s", exc)
            else:
                if stale:
                    log.info("ignoring %s sent while boothsync was not running", ", ".join(stale))
            self._write_flag(outbox, PAUSED_FLAG, "1" if self._paused else "0")
            return self._paused

    def _start_triggers(self, watcher: Watcher) -> None:
        """Listen to the booth software's own "file done" signals, where configured.

        They only make pictures go sooner (the folder is watched either way),
        so one that cannot start is reported and the rest carries on.
        """
        triggers = self.config.triggers
        if triggers.dslrbooth:
            listener = DslrBoothTriggers(
                port=triggers.port, on_file=watcher.notify, on_session_end=watcher.scan
            )
            try:
                listener.start()
            except BoothsyncError as exc:
                log.error("%s", exc)
            else:
                self._triggers.append(listener)
                log.info("dslrBooth triggers: %s", listener.url)
        if triggers.sparkbooth_status is not None:
            follower = SparkboothStatus(triggers.sparkbooth_status, on_file=watcher.notify)
            follower.start()
            self._triggers.append(follower)
            log.info("following Sparkbooth's status file %s", triggers.sparkbooth_status)

    @property
    def trigger_urls(self) -> list[str]:
        return [t.url for t in self._triggers if isinstance(t, DslrBoothTriggers)]

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until every folder is watched and has been scanned once."""
        watcher = self._watcher
        return watcher is not None and watcher.ready.wait(timeout)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop watching and claiming; everything must be done within ``timeout`` seconds.

        In-flight uploads get what is left of it after the watcher stopped.
        Returns True when every upload finished in time.
        """
        deadline = time.monotonic() + timeout
        self._control_stop.set()
        if self._control is not None:
            self._control.join(max(0.1, min(2.0, timeout)))
            self._control = None
        for trigger in self._triggers:
            trigger.stop()
        self._triggers = []
        if self._watcher is not None:
            self._watcher.stop(timeout=min(2.0, timeout))
            self._watcher = None
        finished = True
        if self._uploader is not None:
            finished = self._uploader.stop(max(0.0, deadline - time.monotonic()))
            self._uploader = None
        self._awake.release()
        if self._outbox is not None and self._awake_written == "1":
            self._write_flag(self._outbox, AWAKE_FLAG, "0")
        if finished:
            # Closing under a running upload would turn its "done" into an
            # error; a process that exits lets the next start recover it.
            for destination in self._destinations.values():
                destination.close()
            if self._outbox is not None:
                self._outbox.close()
        self._outbox = None
        return finished

    @property
    def failure(self) -> OutboxError | None:
        """Why this engine cannot go on, or None: its queue cannot be written (a full disk, a
        failing or read-only drive) or could not be rebuilt. Its owner then stops it and exits
        non-zero, so that a service manager starts boothsync again."""
        if self._failure is not None:
            return self._failure
        outbox = self._outbox
        return outbox.failure if outbox is not None else None

    @property
    def alive(self) -> bool:
        """Every thread that does the work is running: the upload workers and the watcher."""
        uploader, watcher = self._uploader, self._watcher
        return uploader is not None and uploader.alive and watcher is not None and watcher.alive

    def snapshot(self) -> Snapshot:
        uploader = self._uploader
        return Snapshot(
            stats=self.outbox.stats(),
            health=uploader.health() if uploader is not None else {},
            paused=self.paused,
            missing_folders=tuple(str(path) for path in self.missing_folders()),
            uploaded_today=self.outbox.uploaded_since(local_midnight()),
            live=self._live_count(),
            to_go=self.outbox.to_go(),
        )

    def _live_count(self) -> int:
        window = self.config.upload.live
        return self.outbox.live_count(window) if window is not None else 0

    def health(self) -> dict[str, DestinationHealth]:
        """Each destination's health now (cheaper than a whole :meth:`snapshot`)."""
        uploader = self._uploader
        return uploader.health() if uploader is not None else {}

    @property
    def keeping_awake(self) -> bool:
        """Whether this engine keeps the computer from sleeping now (pictures wait)."""
        return self._awake.held

    @property
    def paused(self) -> bool:
        return bool(self._paused)

    def pause(self) -> None:
        """Start no more uploads until :meth:`resume` (uploads in flight finish); pictures are
        still watched and queued. Shown to other processes through the ``paused`` flag."""
        self._set_paused(True)

    def resume(self) -> None:
        """Upload again, at once."""
        self._set_paused(False)

    def retry_failed(self) -> int:
        """Queue every failed upload again and wake the uploader; returns how many."""
        count = self.outbox.retry_failed()
        uploader = self._uploader
        if uploader is not None:
            uploader.wake()
        return count

    def retry_job(self, job_id: int) -> int:
        """Queue one failed upload again (the dashboard's Retry); 1 if it was failed, else 0."""
        retried = self.outbox.retry_job(job_id)
        uploader = self._uploader
        if retried and uploader is not None:
            uploader.wake()
        return int(retried)

    def missing_folders(self) -> list[Path]:
        """The watched folders that are missing now."""
        watcher = self._watcher
        return watcher.missing_folders() if watcher is not None else []

    def _set_paused(self, paused: bool) -> None:
        with self._control_lock:
            changed = self._paused is not paused
            self._paused = paused
            uploader = self._uploader
            if uploader is not None:
                if paused:
                    uploader.pause()
                else:
                    uploader.resume()
            if self._outbox is not None:
                self._write_flag(self._outbox, PAUSED_FLAG, "1" if paused else "0")
        if changed:
            if paused:
                log.info("uploads paused; pictures are still queued and go when resumed")
            else:
                log.info("uploads resumed")

    def _write_flag(self, outbox: Outbox, name: str, value: str) -> None:
        try:
            outbox.set_flag(name, value)
        except OutboxError as exc:
            log.error("%s", exc)

    def _control_loop(self) -> None:
        """Apply the commands other processes sent, keep the flags they read current, and move
        or delete the pictures whose grace time after their upload is over."""
        while True:
            try:
                self._control_step()
                self._finish_uploads()
                self._control_error = None
            except OutboxError as exc:
                # Said once, not every second while the database is unusable.
                if str(exc) != self._control_error:
                    self._control_error = str(exc)
                    log.error("%s", exc)
            except Exception:
                log.exception("the engine's control thread hit an unexpected error")
            if self._control_stop.wait(self._control_wait()):
                return

    def _control_wait(self) -> float:
        with self._uploaded_lock:
            due = min((u.due for u in self._uploaded.values()), default=math.inf)
        return max(0.01, min(CONTROL_INTERVAL, due - time.monotonic()))

    def _control_step(self) -> None:
        outbox = self._outbox
        if outbox is None or self._control_stop.is_set():
            return
        self._heal(outbox)
        # stop() joins this thread before it takes anything apart, so a command
        # taken here is always applied.
        for command in outbox.take_commands():
            self._apply(command)
        watcher = self._watcher
        if watcher is None or not watcher.ready.is_set():
            # Which folders are missing is known after the watcher's first look.
            return
        missing = json.dumps([str(path) for path in self.missing_folders()])
        if missing != self._missing_written:
            outbox.set_flag(MISSING_FOLDERS_FLAG, missing)
            self._missing_written = missing
        self._keep_awake(outbox)

    def _keep_awake(self, outbox: Outbox) -> None:
        """Keep the computer from sleeping while pictures wait; say so to other processes."""
        held = "1" if self._awake.update(outbox.busy()) else "0"
        if held != self._awake_written:
            outbox.set_flag(AWAKE_FLAG, held)
            self._awake_written = held

    def _heal(self, outbox: Outbox) -> None:
        """Have the queue repair a database file deleted, replaced or damaged under it; then
        queue again at once what it could not keep."""
        try:
            rebuilt = outbox.heal()
        except OutboxError as exc:
            self._failure = exc
            raise
        if rebuilt:
            self.scan()
            uploader = self._uploader
            if uploader is not None:
                uploader.wake()

    def _apply(self, command: str) -> None:
        log.info("%s command received", command)
        if command == "pause":
            self.pause()
        elif command == "resume":
            self.resume()
        elif command == "retry":
            count = self.retry_failed()
            if count:
                log.info("%d failed upload(s) queued again", count)
            else:
                log.info("no failed uploads to retry")
        elif command == "reload" and self._on_reload is not None:
            self._on_reload()
        else:
            log.warning("unknown command %r ignored", command)

    def scan(self) -> None:
        if self._watcher is not None:
            self._watcher.scan()

    def _refused_source(self, job: Job) -> str | None:
        """Why a job's file must not be sent: it leads, through a symbolic link, outside the
        watched folders (its own watch's folder counts, even if the config no longer has it),
        and its watch does not allow that."""
        watch = self._watches.get(job.watch)
        if watch is not None and watch.allow_outside_links:
            return None
        folders = [Path(job.watch), *(w.path for w in self.config.watches)]
        target = outside_link(job.path, folders)
        if target is None:
            return None
        return (
            f"{job.path} leads to {target}, outside the watched folders: not uploaded"
            " (allow_outside_links = true in its [[watch]] allows it)"
        )

    def _after_upload(self, job: Job) -> None:
        """Every destination has this picture (an upload worker calls it): after the grace
        time it is moved or deleted, if its watch says so."""
        watch = self._watches.get(job.watch)
        if watch is None or watch.after_upload == "keep":
            return
        self._hold(job.path, job.file_id, job.size, job.mtime_ns, watch)

    def _hold(self, path: Path, file_id: int, size: int, mtime_ns: int, watch: WatchConfig) -> None:
        due = time.monotonic() + self._grace
        with self._uploaded_lock:
            self._uploaded[path] = _Uploaded(path, file_id, size, mtime_ns, watch, due)

    def _resume_after_uploads(self, outbox: Outbox) -> None:
        """Pictures uploaded before a stop that came within their grace time are still in
        their folders: they get theirs now."""
        for watch in self.config.watches:
            if watch.after_upload == "keep":
                continue
            try:
                settled = outbox.settled_files(str(watch.path))
            except OutboxError as exc:
                log.error("%s", exc)
                continue
            for file_id, path, size, mtime_ns in settled:
                try:
                    st = path.stat()
                except OSError:
                    continue  # moved or deleted already, as it should be
                if (st.st_size, st.st_mtime_ns) == (size, mtime_ns):
                    self._hold(path, file_id, size, mtime_ns, watch)

    def _finish_uploads(self) -> None:
        """Move or delete the pictures whose grace time is over (the control thread)."""
        now = time.monotonic()
        with self._uploaded_lock:
            due = [u for u in self._uploaded.values() if u.due <= now]
            for uploaded in due:
                del self._uploaded[uploaded.path]
        for uploaded in due:
            if self._control_stop.is_set():
                return
            self._finish(uploaded)

    def _finish(self, uploaded: _Uploaded) -> None:
        path, action = uploaded.path, uploaded.watch.after_upload
        if not self._unchanged_and_closed(uploaded):
            return
        outbox = self._outbox
        if outbox is None:
            return
        try:
            if not self._still_what_was_uploaded(outbox, uploaded):
                again = outbox.send_file_again(uploaded.file_id)
                log.warning(
                    "%s is not what was uploaded (same size and time, other content);"
                    " uploading it again before it is %s",
                    path,
                    _DONE[action],
                )
                if again and self._uploader is not None:
                    self._uploader.wake()
                return
            # The picture leaves its folder only once its upload is on the disk: a queue
            # that a power cut took back to before the upload would look for it in vain.
            outbox.sync()
        except OutboxError as exc:
            log.error(
                "%s: uploaded, but left in place (the queue could not be read or saved): %s",
                path,
                exc,
            )
            return
        try:
            if action == "delete":
                path.unlink(missing_ok=True)
                log.info("deleted %s after upload", path)
            else:
                target = _moved_place(path, uploaded.watch)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, target)
                log.info("moved %s to %s after upload", path.name, target.parent)
        except OSError as exc:
            log.error("%s: uploaded, but %s failed: %s", path, action, exc)

    def _unchanged_and_closed(self, uploaded: _Uploaded) -> bool:
        """Whether the uploaded picture is still there as it was uploaded (size and time),
        with no writer holding it; one that a writer holds is looked at again later."""
        path, action = uploaded.path, uploaded.watch.after_upload
        try:
            current = path.stat()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("%s: uploaded, but cannot %s it: %s", path, action, exc)
            return False
        if (current.st_size, current.st_mtime_ns) != (uploaded.size, uploaded.mtime_ns):
            # Written to since: that version is queued by the watcher, and its upload decides.
            log.debug("%s changed since it was uploaded; left for its new version", path)
            return False
        if writer_holds(path):
            # Never while a writer may still add to it: look again after another grace time.
            log.debug("%s is open for writing; not %s yet", path, _DONE[action])
            self._hold(path, uploaded.file_id, uploaded.size, uploaded.mtime_ns, uploaded.watch)
            return False
        return True

    @staticmethod
    def _still_what_was_uploaded(outbox: Outbox, uploaded: _Uploaded) -> bool:
        """Whether the picture's content is what every destination recorded receiving."""
        hashes = outbox.uploaded_hashes(uploaded.file_id)
        if not hashes or any(digest is None for digest in hashes):
            # Uploaded before content hashes were recorded: the size and time must do.
            return True
        try:
            digest = content_hash(uploaded.path)
        except BoothsyncError:
            return False
        return all(recorded == digest for recorded in hashes)


_DONE = {"move": "moved", "delete": "deleted"}


def _albums_by_destination(config: Config) -> dict[str, list[str]]:
    """Every destination with the album ids its watches send pictures to (``album_id``, and
    the albums of subfolders), for the check at start."""
    albums: dict[str, list[str]] = {name: [] for name in config.destinations}
    for watch in config.watches:
        for name in watch.destinations:
            for album in (watch.album_id, *watch.albums.values()):
                if album and name in albums and album not in albums[name]:
                    albums[name].append(album)
    return albums


def _moved_place(path: Path, watch: WatchConfig) -> Path:
    """Where an uploaded picture moves to: its place below the watched folder (a recursive
    watch has subfolders) kept in the move folder, under a free name (nothing is ever
    overwritten)."""
    try:
        relative = path.relative_to(watch.path)
    except ValueError:
        relative = Path(path.name)
    wanted = _move_dir(watch) / relative
    return free_name(wanted.parent, wanted.name)


def _move_dir(watch: WatchConfig) -> Path:
    return watch.move_to if watch.move_to is not None else watch.path / "uploaded"
