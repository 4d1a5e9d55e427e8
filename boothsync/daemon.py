"""The headless runner behind ``boothsync run``: logging, signals, the main loop.

Signal handlers only set a flag (huey's consumer does the same); the main
thread notices it, stops the engine with a bounded grace time and returns the
exit code. Must not import the tray.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType

from boothsync.config import Config
from boothsync.engine import Engine
from boothsync.errors import ConfigError

__all__ = [
    "GRACE_SECONDS",
    "LEVELS",
    "parse_level",
    "run",
    "setup_logging",
    "stop_signals",
    "wait_for_stop",
]

log = logging.getLogger(__name__)

# The whole graceful stop (watcher, then in-flight uploads) fits in this, below
# the 10 s promised to service managers and to the operator.
GRACE_SECONDS = 8.0

LEVELS = ("debug", "info", "warning", "error")


class _RedactingFormatter(logging.Formatter):
    """Formats a record, then blanks every secret it knows wherever it appears."""

    def __init__(self, fmt: str, datefmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt, datefmt)
        # A "secret" of a letter or two is no key at all (a placeholder in a
        # test config); blanking it everywhere would garble every line.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def parse_level(value: str | None, *, source: str) -> int:
    """The logging level for ``--log-level`` or ``$BOOTHSYNC_LOG_LEVEL``."""
    name = (value or "info").strip().lower()
    if name not in LEVELS:
        raise ConfigError(f"must be one of {', '.join(LEVELS)} (got {value!r})", key=source)
    return int(getattr(logging, name.upper()))


def setup_logging(level: int, *, secrets: Iterable[str] = ()) -> None:
    """Log lines with time and level to stderr; ``secrets`` never appear in them."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _RedactingFormatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S", secrets)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The HTTP libraries log every request at INFO; that is noise for an operator.
    quiet = logging.DEBUG if level <= logging.DEBUG else logging.WARNING
    for name in ("httpx", "httpcore", "watchdog"):
        logging.getLogger(name).setLevel(max(quiet, level))


@contextmanager
def stop_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM, SIGINT (Ctrl+C) and Ctrl+Break set ``stop``; a second one ends at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = ["SIGTERM", "SIGINT", "SIGBREAK"]
    signals = [getattr(signal, n) for n in names if hasattr(signal, n)]

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("stopping now; unfinished uploads resume at the next start")
            os._exit(1)
        stop.set()

    previous: list[tuple[int, Callable[[int, FrameType | None], object] | int | None]] = []
    for sig in signals:
        previous.append((sig, signal.getsignal(sig)))
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous:
            signal.signal(sig, old)


def wait_for_stop(stop: threading.Event, *, tick: float = 0.5) -> None:
    """Block until ``stop`` is set.

    In short waits, because on Windows a wait without a timeout is never
    interrupted by Ctrl+C, so the handler that sets ``stop`` would not run.
    """
    while not stop.wait(tick):
        pass


def run(config: Config, *, stop: threading.Event | None = None) -> int:
    """Watch and upload until ``stop`` is set (or a stop signal arrives); 0 on a clean stop."""
    stop = stop if stop is not None else threading.Event()
    with stop_signals(stop):
        engine = Engine(config)
        engine.start()
        try:
            folders = ", ".join(str(w.path) for w in config.watches)
            targets = ", ".join(config.destinations)
            log.info("boothsync watching %s, uploading to %s", folders, targets)
            ready = False
            while not stop.wait(0.2 if not ready else 1.0):
                if not ready and engine.wait_ready(0):
                    ready = True
                    log.info("ready: every folder scanned")
            log.info("stopping: no new uploads; up to %.0f s for the ones in flight", GRACE_SECONDS)
        finally:
            engine.stop(GRACE_SECONDS)
    log.info("stopped")
    return 0
