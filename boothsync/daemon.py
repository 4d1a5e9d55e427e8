"""The headless runner behind ``boothsync run``: logging, signals, the main loop, systemd.

Signal handlers only set a flag (huey's consumer does the same); the main
thread notices it, stops the engine with a bounded grace time and returns the
exit code. The main loop is also what tells systemd how boothsync is (``READY=1``,
``STATUS=``, ``WATCHDOG=1``, ``STOPPING=1``), and it holds the state folder's lock so
only one boothsync works on a queue. A queue that cannot be written (a full disk) ends the
run with one line and exit code 1, for the service manager to start boothsync again.

Logging must never fail loudly or loop: a log file that cannot be written (a full disk, an
I/O error, permissions) is said once on stderr and its lines dropped until it can be written
again. The state folder, the log folder and the files in them are this account's only.
Must not import the tray.
"""

from __future__ import annotations

import contextlib
import glob
import io
import logging
import logging.handlers
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

from boothsync.config import Config, load_config, secrets
from boothsync.errors import AlreadyRunning, BoothsyncError, ConfigError, OutboxError
from boothsync.names import printable
from boothsync.paths import log_file, open_private, private_file, private_folder, state_dir

if TYPE_CHECKING:
    # Imported where an engine is built: `boothsync status` and friends import this module for
    # its logging set-up and must not pay for the HTTP and watching stack.
    from boothsync.engine import Engine
    from boothsync.uploader import UploadReport
    from boothsync.web.auth import Sessions
    from boothsync.web.backend import EngineBackend
    from boothsync.web.server import DashboardServer

__all__ = [
    "GRACE_SECONDS",
    "INTERRUPTED_EXIT",
    "JOURNAL_PRIORITIES",
    "LEVELS",
    "InstanceState",
    "Service",
    "SystemdNotify",
    "instance_lock",
    "instance_state",
    "log_to_file",
    "parse_level",
    "redact",
    "run",
    "run_service",
    "service_logging",
    "setup_logging",
    "stop_signals",
    "under_journal",
    "wait_for_stop",
]

log = logging.getLogger(__name__)

# How often the config file is looked at for changes (seconds).
CONFIG_CHECK_SECONDS = 2.0

#: The exit code when a second stop signal (Ctrl+C) cuts the graceful stop short.
INTERRUPTED_EXIT = 130

# The whole graceful stop (watcher, then in-flight uploads) fits in this, below
# the 10 s promised to service managers and to the operator.
GRACE_SECONDS = 8.0

LEVELS = ("debug", "info", "warning", "error")


#: syslog priorities as sd-daemon(3) prefixes: journald reads "<3>" as an error, and so on.
JOURNAL_PRIORITIES = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}

_TIMED = "%(asctime)s %(levelname)-7s %(message)s"
_DATE = "%Y-%m-%d %H:%M:%S"


class _RedactingFormatter(logging.Formatter):
    """Formats a record, then blanks every secret it knows wherever it appears; the message
    itself is made printable first (:func:`~boothsync.names.printable`).

    For the journal (``journal=True``) there is no time stamp (journald adds its own) and
    every line carries its priority prefix, tracebacks' lines too.
    """

    def __init__(self, secrets: Iterable[str], *, journal: bool = False) -> None:
        super().__init__("%(message)s" if journal else _TIMED, None if journal else _DATE)
        self._journal = journal
        self._secrets: list[str] = []
        self.add_secrets(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        # A "secret" of a letter or two is no key at all (a placeholder in a
        # test config); blanking it everywhere would garble every line.
        known = set(self._secrets) | {s for s in secrets if len(s) >= 4}
        self._secrets = sorted(known, key=len, reverse=True)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # A file name with a newline or a terminal escape code must not forge a log line or
        # recolour a terminal, and one that is not UTF-8 must not break the log file's encoder:
        # the message is made printable (tracebacks, added after it, keep their lines).
        record.message = printable(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        if self._journal:
            priority = JOURNAL_PRIORITIES.get(record.levelno)
            if priority is None:
                priority = 3 if record.levelno >= logging.ERROR else 6
            text = "\n".join(f"<{priority}>{line}" for line in text.splitlines())
        return text


def parse_level(value: str | None, *, source: str) -> int:
    """The logging level for ``--log-level`` or ``$BOOTHSYNC_LOG_LEVEL``."""
    name = (value or "info").strip().lower()
    if name not in LEVELS:
        raise ConfigError(f"must be one of {', '.join(LEVELS)} (got {value!r})", key=source)
    return int(getattr(logging, name.upper()))


def under_journal(environ: Mapping[str, str] | None = None) -> bool:
    """Whether systemd runs this process, so stderr goes to the journal."""
    env = os.environ if environ is None else environ
    return bool(env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"))


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Log lines to stderr; a stderr that cannot be written drops them quietly.

    The default ``handleError`` prints a traceback to stderr for each line that failed (while
    ``logging.raiseExceptions`` is True, its default): on the stderr that just failed, there
    is nothing better to do than go on.
    """

    def handleError(self, record: logging.LogRecord) -> None:
        if not isinstance(sys.exc_info()[1], OSError):
            super().handleError(record)  # a bug in a log call: its traceback names it


class _LogFile(logging.handlers.RotatingFileHandler):
    """The rotating log file: this account's only (the file and the ones rotated from it), and
    one that cannot be written costs one line on stderr, not a traceback per log line.

    After a failed write the file is closed (what it could not take is dropped) and opened
    again for the next line: once there is room again, logging goes on by itself, and the
    first line written says how many were lost.
    """

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        self._failing = False
        self._failures = 0
        self._dropped = 0
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")

    def _open(self) -> io.TextIOWrapper:
        fd = open_private(self.baseFilename, os.O_WRONLY | os.O_APPEND)
        return os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)

    def emit(self, record: logging.LogRecord) -> None:
        failures = self._failures
        super().emit(record)
        if self._dropped and self._failures == failures:
            dropped, self._dropped = self._dropped, 0
            self._failing = False  # a later failure is said again
            super().emit(
                logging.LogRecord(
                    __name__,
                    logging.WARNING,
                    __file__,
                    0,
                    "%d log line(s) were dropped while the log file could not be written",
                    (dropped,),
                    None,
                )
            )

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)  # a bug in a log call: its traceback names it
            return
        self._failures += 1
        self._dropped += 1
        stream = self.stream
        # As logging.FileHandler.close() does (older type stubs do not let it be None).
        vars(self)["stream"] = None
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        if not self._failing:
            self._failing = True
            reason = error.strerror or str(error)
            _say(
                f"boothsync: cannot write the log file {self.baseFilename}: {reason};"
                " log lines are dropped until it can be written again"
            )


def _say(line: str) -> None:
    """One line on stderr from logging's own error path: the log cannot say that it cannot be
    written, so this is the one place outside cli.py that prints. A stderr that fails too is
    left alone."""
    stderr = sys.stderr
    if stderr is not None:
        with contextlib.suppress(OSError, ValueError):
            print(line, file=stderr, flush=True)


def setup_logging(level: int, *, secrets: Iterable[str] = (), journal: bool = False) -> None:
    """Log lines to stderr (time and level, or journal priorities); ``secrets`` never appear."""
    handler = _Stderr(sys.stderr)
    handler.setFormatter(_RedactingFormatter(secrets, journal=journal))
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
    path: Path, *, max_bytes: int = 2_000_000, backups: int = 5
) -> logging.handlers.RotatingFileHandler:
    """Also write the log lines, secrets blanked as on stderr, to a rotating file, this
    account's only (its folder too, and the files rotated before).

    A file that cannot be written later on is said once on stderr, and its lines are dropped
    until it can be written again. Returns the handler, for the caller to remove and close
    when it is done.
    """
    private_folder(path.parent)
    for old in path.parent.glob(f"{glob.escape(path.name)}*"):
        private_file(old)
    handler = _LogFile(path, max_bytes=max_bytes, backups=backups)
    root = logging.getLogger()
    known = [h.formatter for h in root.handlers if isinstance(h.formatter, _RedactingFormatter)]
    handler.setFormatter(known[0] if known else _RedactingFormatter(()))
    root.addHandler(handler)
    return handler


def service_logging(
    config: Config, level: int, *, environ: Mapping[str, str] | None = None
) -> logging.Handler | None:
    """Send ``boothsync run``'s log lines where an operator looks for them.

    Under systemd: stderr with journal priorities, nothing else. Otherwise: a rotating log
    file in the log folder, plus stderr when it is a terminal (a service manager that
    captures stderr would otherwise get every line twice). Returns the file handler, for the
    caller to remove and close at the end.
    """
    hidden = secrets(config)
    if under_journal(environ):
        setup_logging(level, secrets=hidden, journal=True)
        return None
    setup_logging(level, secrets=hidden)
    path = log_file(config, environ=environ)
    try:
        handler = log_to_file(path)
    except OSError as exc:
        log.warning(
            "cannot write the log file %s: %s; logging to stderr", path, exc.strerror or exc
        )
        return None
    stderr = sys.stderr
    if stderr is not None and not stderr.isatty():
        root = logging.getLogger()
        for other in list(root.handlers):
            if other is not handler:
                root.removeHandler(other)
        _say(f"boothsync: logging to {path}")
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
            # The shell's code for a program Ctrl+C cut short: the stop was not graceful.
            os._exit(INTERRUPTED_EXIT)
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
def _reload_signal(request: Callable[[], None]) -> Iterator[None]:
    """SIGHUP (where there is one) rereads the config, as service managers expect."""
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(hangup, lambda signum, frame: request())
    try:
        yield
    finally:
        signal.signal(hangup, previous)


# -- systemd's notify protocol ---------------------------------------------------------------------


class SystemdNotify:
    """``sd_notify`` without libsystemd: datagrams to ``$NOTIFY_SOCKET``.

    Does nothing when boothsync was not started by systemd with ``Type=notify``. The socket
    may be a path or an abstract address (``@name``); ``vsock:`` addresses (systemd 254, for
    virtual machines) are not spoken. A failed send is logged once and never stops anything.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address: str | None = None
        if address.startswith("@"):
            self._address = "\0" + address[1:]
        elif address.startswith("/"):
            self._address = address
        elif address:
            log.warning("NOTIFY_SOCKET %r is not a socket path; not notifying systemd", address)
        self.watchdog_seconds = _watchdog_seconds(env) if self._address else None
        self._socket: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """Send ``READY=1``, ``STATUS=...`` and the like in one datagram; False if not sent."""
        if self._address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                # Never block the main loop on a full receive queue.
                self._socket.setblocking(False)
            self._socket.sendto("\n".join(fields).encode("utf-8"), self._address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("cannot notify systemd at %s: %s", self._address, exc.strerror or exc)
            return False
        return True

    def close(self) -> None:
        sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """``WatchdogSec=`` as systemd passes it, if it is meant for this process."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None


# -- one instance per state folder -----------------------------------------------------------------

LOCK_FILE_NAME = "boothsync.lock"

# What the lock file says after a clean stop (below the pid); its time is then the stop's.
_STOPPED = "stopped"

# How long a start waits for the lock: `status` and friends take it for a moment to see
# whether anyone holds it (seconds).
_LOCK_PATIENCE = 0.5


@dataclass(frozen=True)
class InstanceState:
    """Whether a boothsync holds a state folder, read from its lock (:func:`instance_state`).

    ``pid`` is the holder's, or the last holder's. ``since`` is when the one running
    started, or when the last one stopped; None when that is not known: none ever ran here,
    or the last one ended without stopping (killed, crashed, a power cut), in which case
    ``started`` is when it had started.
    """

    running: bool
    pid: int | None = None
    since: float | None = None
    started: float | None = None


def instance_state(folder: Path) -> InstanceState:
    """Whether a boothsync runs with the state folder ``folder``, without creating anything.

    Takes the lock shared for a moment (a start waits that moment out, see
    :func:`instance_lock`). Raises :class:`BoothsyncError` when the lock cannot be read.
    """
    path = folder / LOCK_FILE_NAME
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except (FileNotFoundError, NotADirectoryError):
        return InstanceState(running=False)
    except OSError as exc:
        raise BoothsyncError(
            f"{path}: cannot tell whether boothsync runs: {exc.strerror or exc};"
            " run this as the account boothsync runs as"
        ) from exc
    with open(fd, "rb") as handle:
        held = not _probe(handle.fileno())
        mtime = os.fstat(handle.fileno()).st_mtime
        words = _lock_words(handle)
    pid = int(words[0]) if words and words[0].isdigit() else None
    if held:
        return InstanceState(running=True, pid=pid, since=mtime)
    if _STOPPED in words[1:2]:
        return InstanceState(running=False, pid=pid, since=mtime)
    return InstanceState(running=False, pid=pid, started=mtime if pid is not None else None)


def _probe(fd: int) -> bool:
    """Whether the lock on ``fd``'s file is free: taken shared and let go at once."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import msvcrt

        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True


@contextmanager
def instance_lock(folder: Path) -> Iterator[None]:
    """Hold the state folder for this process; a second boothsync on it is refused.

    The lock is the operating system's (``flock``, or a locked byte on Windows), so it goes
    with the process, however it ends: a killed boothsync never leaves a stale lock behind.
    A clean end writes ``stopped`` under the pid, so the file's time says when it stopped.
    """
    path = folder / LOCK_FILE_NAME
    try:
        private_folder(folder)
        fd = open_private(path, os.O_RDWR | os.O_APPEND)
        handle = open(fd, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole run
    except (NotADirectoryError, FileExistsError) as exc:
        raise BoothsyncError(f"{folder}: cannot be the state folder: a file is in the way") from exc
    except OSError as exc:
        raise BoothsyncError(
            f"{folder}: cannot be the state folder: {exc.strerror or exc}"
        ) from exc
    try:
        if not _take_lock(handle):
            holder = _lock_holder(path)
            raise AlreadyRunning(
                f"another boothsync{holder} already runs with the queue in {folder}; "
                "stop it first, or use `boothsync tray --attach` to see it"
            )
        _write_lock(handle, f"\n{os.getpid()}\n")
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                _write_lock(handle, f"\n{os.getpid()}\n{_STOPPED}\n")
    finally:
        handle.close()


def _write_lock(handle: IO[str], text: str) -> None:
    handle.seek(0)
    handle.truncate()
    # Byte 0 stays a newline: on Windows it is the locked byte, which nobody else can read.
    handle.write(text)
    handle.flush()


def _take_lock(handle: IO[str]) -> bool:
    """Take the lock, waiting out a look by `status` (:func:`instance_state`) at most."""
    deadline = time.monotonic() + _LOCK_PATIENCE
    pause = threading.Event()
    while not _try_lock(handle):
        if time.monotonic() >= deadline:
            return False
        pause.wait(0.05)
    return True


def _try_lock(handle: IO[str]) -> bool:
    if sys.platform == "win32":  # pragma: no cover - Windows only
        import msvcrt

        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _lock_words(handle: IO[bytes]) -> list[str]:
    """What the lock file says (the pid, then ``stopped`` after a clean end); read from
    byte 1: on Windows byte 0 is the locked one, which nobody else can read."""
    try:
        handle.seek(1)
        return handle.read(200).decode("utf-8").split()
    except (OSError, UnicodeDecodeError):
        return []


def _lock_holder(path: Path) -> str:
    """`` (pid 1234)`` from the lock file, or nothing when it cannot be read."""
    try:
        with path.open("rb") as handle:
            words = _lock_words(handle)
    except OSError:
        return ""
    return f" (pid {words[0]})" if words and words[0].isdigit() else ""


# -- the running service ---------------------------------------------------------------------------

# How often the systemd status line is brought up to date (seconds).
STATUS_SECONDS = 2.0

# Without a watchdog to restart the process, dead workers are restarted in-process, but not
# more often than this (seconds).
REVIVE_SECONDS = 10.0


class Service:
    """One running boothsync with its config: the engine, config reloads, and what systemd hears.

    Driven by its owner's loop (the daemon's main thread, the tray's stop watcher): ``start()``,
    then ``step()`` every ``tick`` seconds, then ``stop()``. The main loop is the one place that
    pings systemd's watchdog, and only while every worker thread is alive, so a hung loop or a
    dead worker both end in a restart by systemd. Without a watchdog, dead workers are restarted
    here.
    """

    def __init__(
        self,
        config: Config,
        *,
        notify: SystemdNotify | None = None,
        sessions: Sessions | None = None,
    ) -> None:
        self.config = config
        self._notify = notify if notify is not None else SystemdNotify(environ={})
        self._config_file = _ConfigFile(config.source)
        self._engine: Engine | None = None
        self._since: float | None = None
        self._ready = False
        self._next_check = 0.0
        self._next_status = 0.0
        self._status = ""
        self._next_ping = 0.0
        self._workers_dead = False
        self._revived_at = -REVIVE_SECONDS
        self._web: DashboardServer | None = None
        self._backend: EngineBackend | None = None
        # The dashboard's logged-in browsers, kept when it starts again ([web] changed).
        self._sessions: Sessions | None = sessions
        self._web_revived_at = -REVIVE_SECONDS
        self._web_started = False
        watchdog = self._notify.watchdog_seconds
        # Half the timeout is systemd's advice; a quarter leaves room for a busy machine.
        self._ping_every = watchdog / 4 if watchdog else None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the service is not started")
        return self._engine

    @property
    def tick(self) -> float:
        """How long the owner's loop may wait between two ``step()`` calls."""
        wait = 1.0 if self._ready else 0.2
        return min(wait, self._ping_every) if self._ping_every else wait

    def request_reload(self) -> None:
        """Reread the config at the next step (SIGHUP, the tray's menu, ``reload`` command)."""
        self._config_file.reload.set()

    def start(self) -> None:
        # Commands sent from now on are for this run, also while a reload restarts the engine.
        self._since = time.time()
        self._engine = self._started(self.config)
        self._next_check = time.monotonic() + CONFIG_CHECK_SECONDS

    @property
    def dashboard(self) -> DashboardServer | None:
        """The dashboard this boothsync serves, if it does."""
        return self._web

    def _start_web(self) -> None:
        if not self.config.web.enabled:
            return
        from boothsync.web.auth import Sessions
        from boothsync.web.backend import EngineBackend, start_dashboard

        if self._sessions is None:
            self._sessions = Sessions()
        backend = EngineBackend(lambda: self.engine, lambda: self.config, self.request_reload)
        self._web = start_dashboard(backend, self.config.web, sessions=self._sessions)
        if self._web is not None:
            backend.start()
            self._backend = backend

    def _report(self, report: UploadReport) -> None:
        backend = self._backend
        if backend is not None:
            backend.uploaded(report)

    def _stop_web(self) -> None:
        web, self._web = self._web, None
        if web is not None:
            web.stop()
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.close()

    def _dead_web(self, now: float) -> None:
        """The dashboard's thread ended (it logged why): serve it again, now and then."""
        if now - self._web_revived_at >= REVIVE_SECONDS:
            self._web_revived_at = now
            log.warning("dashboard: starting it again")
            self._stop_web()
            self._start_web()

    def _started(self, config: Config, *, paused: bool = False) -> Engine:
        from boothsync.engine import Engine

        engine = Engine(
            config,
            on_reload=self.request_reload,
            commands_since=self._since,
            on_report=self._report,
        )
        if paused:
            # A pause is the operator's; a config reload must not lift it.
            engine.pause()
        engine.start()
        folders = ", ".join(str(w.path) for w in config.watches)
        targets = ", ".join(config.destinations)
        log.info("boothsync watching %s, uploading to %s", folders, targets)
        return engine

    def step(self) -> None:
        """Everything the loop does once: ready, watchdog, status line, config changes.

        Raises :class:`OutboxError` when the queue cannot be written (a full disk, a failing
        drive) or rebuilt: going on would only log an error per picture. The owner stops and
        exits non-zero, and a service manager starts boothsync again, which then works as soon
        as the disk does.
        """
        engine = self.engine
        failure = engine.failure
        if failure is not None:
            raise OutboxError(str(failure)) from failure
        now = time.monotonic()
        if not self._ready and engine.wait_ready(0):
            self._became_ready(now)
        if engine.alive:
            self._workers_dead = False
            if self._ping_every is not None and now >= self._next_ping:
                self._notify.send("WATCHDOG=1")
                self._next_ping = now + self._ping_every
        else:
            self._dead_workers(now)
        if self._notify.enabled and self._ready and now >= self._next_status:
            self._next_status = now + STATUS_SECONDS
            line = self._status_line()
            if line != self._status:
                self._status = line
                self._notify.send(f"STATUS={line}")
        if self._web is not None and not self._web.alive:
            self._dead_web(now)
        if now >= self._next_check or self._config_file.reload.is_set():
            self._next_check = now + CONFIG_CHECK_SECONDS
            if self._config_file.changed():
                self._reload()

    def _became_ready(self, now: float) -> None:
        self._ready = True
        log.info("ready: every folder scanned")
        if not self._web_started:
            # Once the first scan is done: its imports and its thread cost the start of the
            # uploads nothing.
            self._web_started = True
            self._start_web()
        self._status = self._status_line()
        self._notify.send("READY=1", f"STATUS={self._status}")
        self._next_status = now + STATUS_SECONDS

    def _dead_workers(self, now: float) -> None:
        if not self._workers_dead:
            self._workers_dead = True
            where = "systemd restarts boothsync" if self._ping_every else "restarting them"
            log.error("a boothsync worker thread stopped or is stuck; %s", where)
            self._notify.send(
                "STATUS=a worker thread stopped or is stuck; waiting for the watchdog"
            )
        if self._ping_every is None and now - self._revived_at >= REVIVE_SECONDS:
            # No watchdog will restart the process: restart the engine here. The queue is
            # durable, so the job the dead worker held is put back by the new start.
            self._revived_at = now
            self._restart(self.config)

    def _rejecting(self) -> list[str]:
        """The destinations that rejected the key, the link or an album (unauthorized)."""
        from boothsync.health import Health

        health = self.engine.health()
        return sorted(name for name, h in health.items() if h.health is Health.UNAUTHORIZED)

    def _status_line(self) -> str:
        """What ``systemctl status`` shows: "120 uploaded, 3 waiting, online"."""
        engine = self.engine
        try:
            counts = engine.outbox.counts()
        except (OutboxError, RuntimeError) as exc:
            return f"queue unreadable: {exc}"
        waiting = counts.get("waiting", 0) + counts.get("uploading", 0)
        parts = [f"{counts.get('uploaded', 0)} uploaded", f"{waiting} waiting"]
        if counts.get("failed"):
            parts.append(f"{counts['failed']} failed")
        health = engine.health()
        if len(health) == 1:
            parts.extend(h.health.value for h in health.values())
        else:
            parts.extend(f"{name} {h.health.value}" for name, h in sorted(health.items()))
        if engine.paused:
            parts.append("paused")
        return ", ".join(parts)

    def _reload(self) -> None:
        fresh = _reloaded(self.config)
        if fresh is None:
            return
        if fresh == self.config:
            # Saved without a change, or only comments and spacing changed: restarting would
            # only hold up the uploads in flight. Unless a gallery rejected the key or the link:
            # it may have been put right at the gallery's end, and a reload is how the operator
            # asks again now rather than at the next try minutes later.
            rejected = self._rejecting()
            if not rejected:
                log.info("the config was read again: nothing in it changed")
                return
            log.info(
                "the config was read again: nothing in it changed; starting again to ask %s "
                "once more",
                " and ".join(rejected),
            )
        else:
            log.info("the config changed; restarting with it")
        self._notify.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        if fresh.web != self.config.web:
            # Served again with the new [web] once the restarted engine is ready.
            self._stop_web()
            self._web_started = False
        self._restart(fresh)

    def _restart(self, config: Config) -> None:
        """Stop the engine (in-flight uploads get the grace time) and start one on ``config``,
        pinging the watchdog meanwhile: waiting for uploads is not hanging."""
        old = self.engine
        paused = old.paused

        def restart() -> None:
            old.stop(GRACE_SECONDS)
            self._engine = None
            self._engine = self._started(config, paused=paused)

        self._ready = False
        self.config = config
        self._pinging(restart)

    def _pinging(self, work: Callable[[], None]) -> None:
        if self._ping_every is None:
            work()
            return
        failure: list[BaseException] = []

        def target() -> None:
            try:
                work()
            except BaseException as exc:  # handed to the calling thread
                failure.append(exc)

        worker = threading.Thread(target=target, name="service-restart", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(self._ping_every)
            self._notify.send("WATCHDOG=1")
        if failure:
            raise failure[0]

    def stop(self) -> None:
        """Tell systemd, stop watching, give in-flight uploads the grace time."""
        self._notify.send("STOPPING=1", "STATUS=stopping")
        log.info("stopping: no new uploads; up to %.0f s for the ones in flight", GRACE_SECONDS)
        self._stop_web()
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.stop(GRACE_SECONDS)
        self._notify.close()


def _reloaded(config: Config) -> Config | None:
    """The config file read again, or None (and one line) if it is broken now."""
    if config.source is None:
        return None
    try:
        fresh = load_config(config.source)
    except ConfigError as exc:
        log.error("%s; the config change is ignored, running on with the previous one", exc)
        return None
    redact(secrets(fresh))
    if state_dir(fresh) != state_dir(config):
        # The running process holds the old state folder (its lock, its queue).
        log.warning(
            "[state] dir changes take effect at the next start; keeping %s", state_dir(config)
        )
        fresh = replace(fresh, state=config.state)
    return fresh


def run(
    config: Config,
    *,
    stop: threading.Event | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Watch and upload until ``stop`` is set (or a stop signal arrives); 0 on a clean stop.

    When the config file changes (or on SIGHUP) and still reads well, the
    engine is restarted with it: a fixed API key is tried at once, new folders
    are watched. In-flight uploads get the usual grace time first. ``environ``
    is where systemd's variables are read (default: this process's environment).
    """
    stop = stop if stop is not None else threading.Event()
    service = Service(config, notify=SystemdNotify(environ))
    with stop_signals(stop), _reload_signal(service.request_reload):
        service.start()
        try:
            while not stop.wait(service.tick):
                service.step()
        finally:
            service.stop()
    log.info("stopped")
    return 0


def first_setup(
    target: Path,
    *,
    on_serving: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """No config yet: serve the dashboard's setup wizard until it saved ``target`` (True) or a
    stop signal came (False). ``on_serving`` gets the login link once it serves (``boothsync
    setup`` opens it in the browser). The state folder is the default one, held meanwhile."""
    from boothsync.config import setup_web
    from boothsync.paths import default_state_dir
    from boothsync.web.backend import start_setup
    from boothsync.web.server import login_link

    stop = stop if stop is not None else threading.Event()
    web = setup_web(os.environ if environ is None else environ)
    state = default_state_dir(environ=environ)
    saved = threading.Event()
    with instance_lock(state), stop_signals(stop):
        server = start_setup(target, web, state, saved=saved.set)
        if server is None:
            raise BoothsyncError(
                f"no config yet, and the setup cannot be served on {web.listen}; write one with"
                " `boothsync init`, or free that port"
            )
        try:
            log.info(
                "no config yet (%s): the setup is served; `boothsync dashboard` opens it in"
                " the browser (or `boothsync init` asks in the terminal)",
                target,
            )
            if on_serving is not None:
                on_serving(login_link(state))
            while not saved.is_set() and not stop.wait(0.2):
                pass
        finally:
            server.stop()
    if saved.is_set():
        log.info("config saved to %s; starting", target)
    return saved.is_set()


def run_service(config: Config, level: int) -> int:
    """``boothsync run``: take the state folder (or refuse, :class:`AlreadyRunning`), send the
    log lines where they belong, then :func:`run`."""
    with instance_lock(state_dir(config)):
        handler = service_logging(config, level)
        try:
            return run(config)
        finally:
            if handler is not None:
                logging.getLogger().removeHandler(handler)
                handler.close()
