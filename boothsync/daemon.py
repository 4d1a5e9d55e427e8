"""The headless runner behind ``boothsync run``: logging, signals, the main loop.

Signal handlers only set a flag (huey's consumer does the same); the main
thread notices it, stops the engine with a bounded grace time and returns the
exit code. Must not import the tray.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from boothsync.config import Config, load_config
from boothsync.engine import Engine
from boothsync.errors import ConfigError

__all__ = [
    "GRACE_SECONDS",
    "LEVELS",
    "log_to_file",
    "parse_level",
    "redact",
    "run",
    "setup_logging",
    "stop_signals",
    "wait_for_stop",
]

log = logging.getLogger(__name__)

# How often the config file is looked at for changes (seconds).
CONFIG_CHECK_SECONDS = 2.0

# The whole graceful stop (watcher, then in-flight uploads) fits in this, below
# the 10 s promised to service managers and to the operator.
GRACE_SECONDS = 8.0

LEVELS = ("debug", "info", "warning", "error")


class _RedactingFormatter(logging.Formatter):
    """Formats a record, then blanks every secret it knows wherever it appears."""

    def __init__(self, fmt: str, datefmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt, datefmt)
        self._secrets: list[str] = []
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        # A "secret" of a letter or two is no key at all (a placeholder in a
        # test config); blanking it everywhere would garble every line.
        known = set(self._secrets) | {s for s in secrets if len(s) >= 4}
        self._secrets = sorted(known, key=len, reverse=True)

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


def log_to_file(
    path: Path, *, max_bytes: int = 1_000_000, backups: int = 5
) -> logging.handlers.RotatingFileHandler:
    """Also write the log lines, secrets blanked as on stderr, to a rotating file.

    Returns the handler, for the caller to remove and close when it is done.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
    )
    root = logging.getLogger()
    known = [h.formatter for h in root.handlers if isinstance(h.formatter, _RedactingFormatter)]
    handler.setFormatter(
        known[0]
        if known
        else _RedactingFormatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S", ())
    )
    root.addHandler(handler)
    return handler


def redact(secrets: Iterable[str]) -> None:
    """From now on, also blank these secrets in every log line (after a config reload)."""
    wanted = list(secrets)
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, _RedactingFormatter):
            handler.formatter.add_secrets(wanted)


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


class _ConfigFile:
    """Notices when the config file was changed (or asked to be reread with SIGHUP)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.reload = threading.Event()
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def changed(self) -> bool:
        stamp = self._stamp()
        asked = self.reload.is_set()
        self.reload.clear()
        if self.path is None or stamp is None or (stamp == self._seen and not asked):
            return False
        self._seen = stamp
        return True


@contextmanager
def _reload_signal(config_file: _ConfigFile) -> Iterator[None]:
    """SIGHUP (where there is one) rereads the config, as service managers expect."""
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(hangup, lambda signum, frame: config_file.reload.set())
    try:
        yield
    finally:
        signal.signal(hangup, previous)


def _reloaded(config: Config) -> Config | None:
    """The config file read again, or None (and one line) if it is broken now."""
    if config.source is None:
        return None
    try:
        fresh = load_config(config.source)
    except ConfigError as exc:
        log.error("%s; the config change is ignored, running on with the previous one", exc)
        return None
    redact(d.api_key for d in fresh.destinations.values())
    return fresh


def _started(config: Config, *, paused: bool = False) -> Engine:
    engine = Engine(config)
    if paused:
        # A pause is the operator's; a config reload must not lift it.
        engine.pause()
    engine.start()
    folders = ", ".join(str(w.path) for w in config.watches)
    targets = ", ".join(config.destinations)
    log.info("boothsync watching %s, uploading to %s", folders, targets)
    return engine


def run(config: Config, *, stop: threading.Event | None = None) -> int:
    """Watch and upload until ``stop`` is set (or a stop signal arrives); 0 on a clean stop.

    When the config file changes (or on SIGHUP) and still reads well, the
    engine is restarted with it: a fixed API key is tried at once, new folders
    are watched. In-flight uploads get the usual grace time first.
    """
    stop = stop if stop is not None else threading.Event()
    config_file = _ConfigFile(config.source)
    with stop_signals(stop), _reload_signal(config_file):
        engine = _started(config)
        try:
            ready = False
            next_check = time.monotonic() + CONFIG_CHECK_SECONDS
            while not stop.wait(0.2 if not ready else 1.0):
                if not ready and engine.wait_ready(0):
                    ready = True
                    log.info("ready: every folder scanned")
                if time.monotonic() < next_check and not config_file.reload.is_set():
                    continue
                next_check = time.monotonic() + CONFIG_CHECK_SECONDS
                if not config_file.changed():
                    continue
                fresh = _reloaded(config)
                if fresh is None:
                    continue
                log.info("the config changed; restarting with it")
                paused = engine.paused
                engine.stop(GRACE_SECONDS)
                config = fresh
                engine = _started(config, paused=paused)
                ready = False
            log.info("stopping: no new uploads; up to %.0f s for the ones in flight", GRACE_SECONDS)
        finally:
            engine.stop(GRACE_SECONDS)
    log.info("stopped")
    return 0
