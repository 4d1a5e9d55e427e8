"""The tray's two ways to a running boothsync, behind one :class:`Controller`.

:class:`EngineController` runs boothsync in this process (a
:class:`~boothsync.daemon.Service`, which rereads a changed config as ``boothsync run`` does)
and calls it directly. :class:`AttachedController` shows a boothsync running as a service:
it reads the service's queue database read-only through :mod:`boothsync.status` and sends
menu commands through the same database.
"""

from __future__ import annotations

import logging
from typing import Protocol

from boothsync.config import Config
from boothsync.daemon import Service
from boothsync.engine import Engine, Snapshot
from boothsync.errors import OutboxError
from boothsync.outbox import Outbox
from boothsync.paths import outbox_path
from boothsync.status import empty_stats, read_database

__all__ = ["AttachedController", "Controller", "EngineController"]

log = logging.getLogger(__name__)


class Controller(Protocol):
    """What the tray needs from a running boothsync, wherever it runs."""

    def start(self) -> None: ...

    def snapshot(self) -> Snapshot: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def retry_failed(self) -> None: ...

    def forget_failed(self) -> None:
        """Drop the failed pictures from the queue for good (the icon turns red no more)."""
        ...

    def reload(self) -> None: ...

    def tick(self) -> float:
        """Do what is due now; return how long until the next tick may be (seconds)."""
        ...

    def stop(self, timeout: float) -> bool: ...


class EngineController:
    """Runs boothsync in this process (engine and config reloads) and calls it directly."""

    def __init__(self, config: Config) -> None:
        self.service = Service(config)
        self._started = False

    @property
    def engine(self) -> Engine:
        return self.service.engine

    def start(self) -> None:
        self.service.start()
        self._started = True

    def tick(self) -> float:
        self.service.step()
        return self.service.tick

    def reload(self) -> None:
        self.service.request_reload()

    def snapshot(self) -> Snapshot:
        return self.engine.snapshot()

    def pause(self) -> None:
        self.engine.pause()

    def resume(self) -> None:
        self.engine.resume()

    def retry_failed(self) -> None:
        count = self.engine.retry_failed()
        log.info("%d failed upload(s) queued again", count)

    def forget_failed(self) -> None:
        forgotten = self.engine.outbox.forget_failed()
        log.info("%d failed upload(s) forgotten", len(forgotten))

    def stop(self, timeout: float) -> bool:
        if not self._started:
            return True
        self._started = False
        self.service.stop()
        return True


class AttachedController:
    """Shows a boothsync service's state from its queue database and commands it through it."""

    def __init__(self, config: Config) -> None:
        self.database = outbox_path(config)
        self._reader: Outbox | None = None
        self._last = Snapshot(stats=empty_stats(), health={})

    def start(self) -> None:
        log.info("boothsync tray attached to %s", self.database)

    def snapshot(self) -> Snapshot:
        """The service's state now; the last one read while the database cannot be read."""
        if not self.database.exists():
            return self._last
        try:
            if self._reader is None:
                self._reader = Outbox(self.database, readonly=True)
            status = read_database(self._reader)
        except OutboxError as exc:
            log.warning("cannot read the service's state: %s", exc)
            self._close_reader()
            return self._last
        self._last = status.snapshot()
        return self._last

    def _send(self, command: str) -> None:
        outbox = Outbox(self.database)
        try:
            outbox.send_command(command)
        finally:
            outbox.close()
        log.info("asked the service to %s", command)

    def pause(self) -> None:
        self._send("pause")

    def resume(self) -> None:
        self._send("resume")

    def retry_failed(self) -> None:
        self._send("retry")

    def forget_failed(self) -> None:
        # Straight into the database: the service has nothing to do for it, and a picture
        # forgotten is gone from the snapshot at the next refresh.
        outbox = Outbox(self.database)
        try:
            forgotten = outbox.forget_failed()
        finally:
            outbox.close()
        log.info("%d failed upload(s) forgotten", len(forgotten))

    def reload(self) -> None:
        self._send("reload")

    def tick(self) -> float:
        return 1.0

    def stop(self, timeout: float) -> bool:
        self._close_reader()
        return True

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except OutboxError as exc:
                log.debug("closing the read-only queue: %s", exc)
