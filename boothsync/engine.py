"""Wires the watcher, the outbox and the uploader together, and takes them apart.

The stages never call each other: the watcher writes rows, the uploader claims
them, and the engine only connects the wake-up signal between the two. It also
owns what happens to a picture once every destination has it
(``after_upload``: keep, move or delete) and the snapshot the CLI, the tray and
the service read.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from boothsync.config import Config, WatchConfig
from boothsync.destinations import Destination, create
from boothsync.errors import BoothsyncError
from boothsync.outbox import Job, Outbox, Stats
from boothsync.paths import outbox_path
from boothsync.triggers import DslrBoothTriggers, SparkboothStatus
from boothsync.uploader import DestinationHealth, Uploader, UploadReport
from boothsync.watcher import Watcher

__all__ = ["Engine", "Snapshot"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    stats: Stats
    health: dict[str, DestinationHealth]


class Engine:
    """One running boothsync: watch every folder, upload to every destination."""

    def __init__(
        self,
        config: Config,
        *,
        on_report: Callable[[UploadReport], None] | None = None,
        destinations: Mapping[str, Destination] | None = None,
    ) -> None:
        self.config = config
        self._on_report = on_report
        self._given_destinations = destinations
        self._watches = {str(w.path): w for w in config.watches}
        self._outbox: Outbox | None = None
        self._destinations: dict[str, Destination] = {}
        self._uploader: Uploader | None = None
        self._watcher: Watcher | None = None
        self._triggers: list[DslrBoothTriggers | SparkboothStatus] = []

    @property
    def outbox(self) -> Outbox:
        if self._outbox is None:
            raise RuntimeError("the engine is not started")
        return self._outbox

    def start(self) -> None:
        """Open the queue, put back what a crash left in flight, then upload and watch."""
        outbox = Outbox.open_or_rebuild(outbox_path(self.config))
        self._outbox = outbox
        outbox.recover()
        if self._given_destinations is not None:
            self._destinations = dict(self._given_destinations)
        else:
            self._destinations = {
                name: create(cfg) for name, cfg in self.config.destinations.items()
            }
        self._uploader = Uploader(
            outbox,
            self._destinations,
            tz=self.config.booth.tz,
            capture_options=self.config.booth.capture_options,
            concurrency=self.config.upload.concurrency,
            on_report=self._on_report,
            on_file_done=self._after_upload,
        )
        self._uploader.start()
        self._watcher = Watcher(
            self.config.watches,
            outbox,
            on_enqueued=self._uploader.wake,
        )
        self._watcher.start()
        self._start_triggers(self._watcher)

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
    def alive(self) -> bool:
        return self._uploader is not None and self._uploader.alive

    def snapshot(self) -> Snapshot:
        uploader = self._uploader
        return Snapshot(
            stats=self.outbox.stats(),
            health=uploader.health() if uploader is not None else {},
        )

    def scan(self) -> None:
        if self._watcher is not None:
            self._watcher.scan()

    def _after_upload(self, job: Job) -> None:
        watch = self._watches.get(job.watch)
        if watch is None or watch.after_upload == "keep":
            return
        try:
            current = job.path.stat()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("%s: uploaded, but cannot %s it: %s", job.path, watch.after_upload, exc)
            return
        if (current.st_size, current.st_mtime_ns) != (job.size, job.mtime_ns):
            # A newer version took its place since it was queued; that version
            # has jobs of its own, and their completion decides its fate.
            log.debug("%s changed since it was queued; left for its newer version", job.path)
            return
        try:
            if watch.after_upload == "delete":
                job.path.unlink(missing_ok=True)
                log.info("deleted %s after upload", job.path)
            else:
                # Keep the picture's place below the watched folder (a
                # recursive watch has subfolders); never overwrite anything.
                try:
                    relative = job.path.relative_to(watch.path)
                except ValueError:
                    relative = Path(job.path.name)
                target = _free_name(_move_dir(watch) / relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(job.path, target)
                log.info("moved %s to %s after upload", job.path.name, target.parent)
        except OSError as exc:
            log.error("%s: uploaded, but %s failed: %s", job.path, watch.after_upload, exc)


def _move_dir(watch: WatchConfig) -> Path:
    return watch.move_to if watch.move_to is not None else watch.path / "uploaded"


def _free_name(target: Path) -> Path:
    """``target``, or ``name (1).ext``, ``name (2).ext``... if it is taken."""
    candidate = target
    counter = 1
    while candidate.exists():
        candidate = target.with_name(f"{target.stem} ({counter}){target.suffix}")
        counter += 1
    return candidate
