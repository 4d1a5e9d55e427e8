"""The booth software's own "this file is done" signals: dslrBooth triggers, Sparkbooth status.

Owns two optional listeners that turn the booth's signals into plain calls:

- :class:`DslrBoothTriggers`, a tiny HTTP endpoint on 127.0.0.1 for dslrBooth's URL
  triggers (Settings > General > Triggers). dslrBooth calls the URL with ``event_type``
  and ``param1``…``paramN``; every parameter of a file event that is an absolute file
  path goes to ``on_file``, and the end of a session goes to ``on_session_end``.
- :class:`SparkboothStatus`, which follows the file Sparkbooth writes its status lines to
  (Settings > Premium > General > "Write application status to") and hands each new
  ``SAVED_LAYOUT<TAB>path`` to ``on_file`` once.

Both are hints, like filesystem events: the caller checks that a path is in a watched
folder and still runs its completion check, and its folder scans stay the truth.

Must not: import the config (callers pass plain values), decide whether a file is
wanted, upload or touch the outbox, slow the booth down (dslrBooth gets its answer
before any callback runs), or write to stderr per request.

Threads: the endpoint runs ``triggers-dslrbooth`` (accepts), one
``triggers-dslrbooth-conn`` per connection and ``triggers-dslrbooth-calls`` (runs the
callbacks in the order the requests arrived); the status file has
``triggers-sparkbooth``. ``stop()`` joins every one of them.
"""

from __future__ import annotations

import contextlib
import http.server
import locale
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO, Final, cast
from urllib.parse import parse_qsl, urlsplit

from boothsync.errors import BoothsyncError
from boothsync.localserver import TrackedHTTPServer

__all__ = ["FILE_EVENTS", "SESSION_END_EVENTS", "DslrBoothTriggers", "SparkboothStatus"]

log = logging.getLogger(__name__)

#: dslrBooth events whose parameters name files (the rest of their parameters are
#: counts, printer names, URLs or album names, which are never absolute paths).
FILE_EVENTS: Final = frozenset({"file_download", "processing_start", "printing", "file_upload"})
#: dslrBooth events after which every file of the session is written: time to scan.
SESSION_END_EVENTS: Final = frozenset({"sharing_screen", "session_end"})
# Known events that name no finished file: only logged (at debug, as unknown ones are).
_OTHER_EVENTS: Final = frozenset({"session_start", "countdown_start", "countdown", "capture_start"})

_PATHS: Final = ("/", "/dslrbooth", "/dslrbooth/")
_SESSION_END: Final = "session_end"
_PARAM = re.compile(r"param(\d+)", re.IGNORECASE)
_MAX_BODY = 64 * 1024
# A client that connects and sends nothing holds a thread this long; stop() cuts it at once.
_IDLE_SECONDS = 10.0
_JOIN_SECONDS = 5.0

_STATUS_READ_LIMIT = 64 * 1024
# Bytes just before the processed end of the status file, kept to tell an append (they
# are still there) from an overwrite (they are not).
_STATUS_TAIL = 4 * 1024
_LINE_END = re.compile(rb"\r\n|\n|\r(?!\Z)")
_SAVED_LAYOUT = re.compile(r"\s*SAVED_LAYOUT[\t ]+(.*?)\s*", re.IGNORECASE)
_BOM = b"\xef\xbb\xbf"


def _file_path(value: str) -> Path | None:
    """``value`` as a path if it is an absolute path with a file extension, else None.

    Windows paths are recognised on every system: dslrBooth runs on Windows, and the
    caller, not this module, decides whether a path means anything here.
    """
    text = value.strip().strip('"').strip()
    if not text or "\0" in text or "://" in text:
        return None
    windows = PureWindowsPath(text)
    if windows.drive and windows.root and windows.suffix:
        return Path(text)
    posix = PurePosixPath(text)
    if posix.is_absolute() and posix.suffix:
        return Path(text)
    return None


def _params(pairs: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """``(event_type, [param1, param2, ...])`` from decoded query or form pairs."""
    event = ""
    numbered: dict[int, str] = {}
    for key, value in pairs:
        # "?" too: a URL pasted with a "?" at its end gets dslrBooth's own "?" after it.
        name = key.strip().lstrip("?")
        if name.lower() == "event_type":
            event = event or value.strip()
            continue
        match = _PARAM.fullmatch(name)
        if match:
            numbered.setdefault(int(match.group(1)), value)
    return event.lower(), [numbered[n] for n in sorted(numbered)]


class DslrBoothTriggers:
    """Local endpoint for dslrBooth URL triggers on 127.0.0.1.

    Paste :attr:`url` into dslrBooth (Settings > General > Triggers, URL). Every request
    to ``/dslrbooth`` or ``/`` with an ``event_type`` is answered ``200 ok`` at once; the
    callbacks run afterwards on one thread, in the order the requests came in, and a
    callback that raises is logged and forgotten. ``port=0`` takes a free port (tests);
    :attr:`url` then names it once :meth:`start` has run.
    """

    def __init__(
        self,
        *,
        port: int,
        on_file: Callable[[Path], object],
        on_session_end: Callable[[], object],
        host: str = "127.0.0.1",
    ) -> None:
        self._host = host
        self._port = port
        self._on_file = on_file
        self._on_session_end = on_session_end
        self._lock = threading.Lock()
        # A path for on_file, _SESSION_END for on_session_end, None to stop.
        self._calls: queue.SimpleQueue[Path | str | None] = queue.SimpleQueue()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._call_thread: threading.Thread | None = None
        self._stopped = False

    @property
    def url(self) -> str:
        """The URL to paste into dslrBooth, e.g. ``http://127.0.0.1:8787/dslrbooth``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        port = self._server.server_port if self._server is not None else self._port
        return f"http://{host}:{port}/dslrbooth"

    def __repr__(self) -> str:
        return f"DslrBoothTriggers(url={self.url!r})"

    def start(self) -> None:
        """Listen and serve in the background; raises BoothsyncError if the port is taken."""
        with self._lock:
            if self._server is not None or self._stopped:
                raise RuntimeError("dslrBooth triggers can be started only once")
            try:
                server = _Server((self._host, self._port), self)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise BoothsyncError(
                    f"cannot listen for dslrBooth triggers on {self._host}:{self._port}: "
                    f"{reason}; change [triggers] port"
                ) from exc
            self._server = server
            self._call_thread = threading.Thread(
                target=self._run_calls, name="triggers-dslrbooth-calls", daemon=True
            )
            self._serve_thread = threading.Thread(
                # The poll interval bounds how long stop() waits for the loop to notice.
                target=lambda: server.serve_forever(poll_interval=0.05),
                name="triggers-dslrbooth",
                daemon=True,
            )
            self._call_thread.start()
            self._serve_thread.start()
        log.info("listening for dslrBooth triggers on %s", self.url)

    def stop(self) -> None:
        """Stop listening, cut open connections, run what was already asked, join every thread.

        Idempotent, and fine to call when :meth:`start` never ran or failed.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            server = self._server
        if server is None:
            return
        deadline = time.monotonic() + _JOIN_SECONDS
        # serve_forever is sure to run (its thread started with the server), so shutdown()
        # cannot wait forever.
        server.shutdown()
        threads = server.close_connections()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        server.server_close()
        # Last in the queue: the calls of every answered request run first.
        self._calls.put(None)
        others = [t for t in (self._serve_thread, self._call_thread) if t is not None]
        for thread in others:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in (*threads, *others) if t.is_alive()]
        if alive:
            log.warning("dslrBooth triggers stopped, but threads still run: %s", ", ".join(alive))

    # The handler's side

    def _accept(self, event: str, params: list[str]) -> None:
        """Queue the callbacks for one trigger (called before the booth gets its answer)."""
        if event in FILE_EVENTS:
            paths = [p for p in (_file_path(v) for v in params) if p is not None]
            log.debug("dslrBooth %s: %s", event, ", ".join(map(str, paths)) or "no file paths")
            for path in dict.fromkeys(paths):
                self._calls.put(path)
        elif event in SESSION_END_EVENTS:
            log.debug("dslrBooth %s", event)
            self._calls.put(_SESSION_END)
        elif event in _OTHER_EVENTS:
            log.debug("dslrBooth %s %s", event, params)
        else:
            log.debug("dslrBooth sent an event this version does not know: %r %s", event, params)

    def _run_calls(self) -> None:
        while (call := self._calls.get()) is not None:
            try:
                if isinstance(call, Path):
                    self._on_file(call)
                else:
                    self._on_session_end()
            except Exception as exc:
                what = f"file {call}" if isinstance(call, Path) else "end of session"
                log.warning(
                    "dslrBooth trigger (%s) was not handled: %s: %s", what, type(exc).__name__, exc
                )


class _Server(TrackedHTTPServer):
    """The trigger listener's server: a thread per connection, stoppable at once."""

    connection_thread_name = "triggers-dslrbooth-conn"
    label = "dslrBooth triggers"
    exclusive_port = True
    # Elsewhere SO_REUSEADDR allows a quick restart; on Windows the port is
    # taken exclusively instead (see TrackedHTTPServer.exclusive_port).
    allow_reuse_address = os.name != "nt"
    request_queue_size = 32

    def __init__(self, address: tuple[str, int], owner: DslrBoothTriggers) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    """One request per connection (HTTP/1.0): dslrBooth opens a new one for every trigger."""

    server_version = "boothsync-triggers"
    sys_version = ""
    timeout = _IDLE_SECONDS

    raw_requestline: bytes
    _answered: bool

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("dslrBooth triggers: %s " + format, self.client_address[0], *args)

    def parse_request(self) -> bool:
        # A caller that puts a Windows path into the URL without encoding it sends spaces in
        # the request line, which the standard parser refuses; encode them and carry on.
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = line.split(" ")
        if len(words) > 3 and words[-1].startswith("HTTP/"):
            target = "%20".join(words[1:-1])
            self.raw_requestline = f"{words[0]} {target} {words[-1]}\r\n".encode("iso-8859-1")
        return super().parse_request()

    def do_GET(self) -> None:
        self._answered = False
        try:
            self._handle()
        except (ConnectionError, TimeoutError) as exc:
            log.debug("dslrBooth triggers: the client went away (%r)", exc)
        except Exception as exc:
            log.warning(
                "dslrBooth triggers: unexpected error answering %s: %s: %s",
                self.command,
                type(exc).__name__,
                exc,
            )
            if not self._answered:
                with contextlib.suppress(OSError):
                    self._reply(500, "internal error")
        self.close_connection = True

    do_HEAD = do_POST = do_GET

    def _handle(self) -> None:
        target = self.path
        if not target.isascii():
            # Raw UTF-8 in the request line (not percent-encoded) arrives as Latin-1 text.
            with contextlib.suppress(UnicodeError):
                target = target.encode("iso-8859-1").decode("utf-8")
        parts = urlsplit(target)
        if parts.path.lower() not in _PATHS:
            self._reply(404, "not found: dslrBooth triggers go to /dslrbooth")
            return
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if self.command == "POST":
            body = self._form_body()
            if body is None:
                return
            pairs += body
        event, params = _params(pairs)
        if not event:
            self._reply(400, "missing event_type")
            return
        # Queued before the answer: once dslrBooth has its 200, the call is in line, so
        # callbacks run in the order the triggers were sent.
        cast(_Server, self.server).owner._accept(event, params)
        self._reply(200, "ok")

    def _form_body(self) -> list[tuple[str, str]] | None:
        """The pairs of a form body (None when the request was refused)."""
        if self.headers.get("Transfer-Encoding") is not None:
            self._reply(411, "send the body with a Content-Length")
            return None
        length_text = (self.headers.get("Content-Length") or "0").strip()
        if not length_text.isdigit():
            self._reply(400, "invalid Content-Length")
            return None
        length = int(length_text)
        if length > _MAX_BODY:
            self._reply(413, "request body too large")
            return None
        raw = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").lower()
        if "json" in content_type or "multipart" in content_type:
            return []  # only form fields and the query are read
        return parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)

    def _reply(self, status: int, text: str) -> None:
        self._answered = True
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True


def _split_lines(data: bytes) -> tuple[list[bytes], int]:
    """The complete lines in ``data`` (any of CRLF, LF, CR ends a line) and the bytes they use.

    A CR at the very end is not yet an ending: it may be the first half of a CRLF.
    """
    lines: list[bytes] = []
    used = 0
    for match in _LINE_END.finditer(data):
        lines.append(data[used : match.start()])
        used = match.end()
    return lines, used


def _decode(raw: bytes) -> str:
    raw = raw.removeprefix(_BOM)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Not UTF-8: the Windows "ANSI" code page is the other thing a booth PC writes.
        return raw.decode(locale.getpreferredencoding(False), "replace")


def _read_at(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


class SparkboothStatus:
    """Follows Sparkbooth's status file and reports each saved layout once.

    Every ``interval`` seconds the file's (size, mtime, inode) is compared with the last
    look; only a change makes it read the file (at most the last 64 KiB). Both ways of
    writing a status file are followed: appending a line per status (only new lines
    count) and overwriting the file with the current status (each new write of a
    ``SAVED_LAYOUT`` line counts, even with the same path as before). A line without a
    line break counts once the file has stayed the same for one interval, so a line still
    being appended is never cut short. Whatever the file holds when :meth:`start` runs is
    old news; a file that does not exist yet, or is replaced, is followed when it appears.
    """

    def __init__(
        self, path: Path, *, on_file: Callable[[Path], object], interval: float = 0.5
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, not {interval!r}")
        self.path = Path(path)
        self._on_file = on_file
        self._interval = interval
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # The polling thread's alone once started.
        self._sig: tuple[int, int, int] | None = None
        self._done = 0  # bytes of the file already looked at
        self._tail = b""  # the bytes just before _done
        self._held = b""  # the bytes after _done, a line without its break (yet)
        self._baseline_due = True  # the next read only records what is there
        self._missing = False
        self._problem: str | None = None

    def __repr__(self) -> str:
        return f"SparkboothStatus(path={str(self.path)!r})"

    def start(self) -> None:
        """Note what the file holds now (not reported), then follow it in the background."""
        with self._lock:
            if self._thread is not None or self._stopping.is_set():
                raise RuntimeError("a SparkboothStatus can be started only once")
            self._poll()
            self._thread = threading.Thread(
                target=self._run, name="triggers-sparkbooth", daemon=True
            )
            self._thread.start()
        log.info("following the Sparkbooth status file %s", self.path)

    def stop(self) -> None:
        """Stop following the file and join the thread; safe to call more than once."""
        self._stopping.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_SECONDS)
            if thread.is_alive():
                log.warning(
                    "the Sparkbooth status thread did not stop within %.0f s", _JOIN_SECONDS
                )

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self._poll()
            except Exception:
                log.exception("following the Sparkbooth status file failed; carrying on")

    def _poll(self) -> None:
        try:
            st = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            self._gone()
            return
        except OSError as exc:
            self._trouble(exc)
            return
        if self._missing:
            self._missing = False
            log.info("the Sparkbooth status file %s is there now", self.path)
        sig = (st.st_size, st.st_mtime_ns, st.st_ino)
        if sig == self._sig and not self._held:
            return
        try:
            with open(self.path, "rb") as f:
                self._read(f)
        except (FileNotFoundError, NotADirectoryError):
            self._gone()
            return
        except OSError as exc:
            # The state is unchanged, so the next poll tries again.
            self._trouble(exc)
            return
        self._problem = None

    def _gone(self) -> None:
        if not self._missing:
            self._missing = True
            what = "does not exist yet" if self._baseline_due else "is gone"
            log.info("the Sparkbooth status file %s %s; waiting for it", self.path, what)
        if self._held:
            self._report([self._held])  # the file's last word: a line without a break
        # Whatever appears at this path later is written after now: all of it is news.
        self._baseline_due = False
        self._sig, self._done, self._tail, self._held = None, 0, b"", b""

    def _trouble(self, exc: OSError) -> None:
        problem = f"{type(exc).__name__}: {exc.strerror or exc}"
        if problem != self._problem:
            self._problem = problem
            log.warning("cannot read the Sparkbooth status file %s: %s", self.path, problem)

    def _read(self, f: BinaryIO) -> None:
        st = os.fstat(f.fileno())
        size = st.st_size
        sig = (size, st.st_mtime_ns, st.st_ino)
        if self._baseline_due:
            self._baseline_due = False
            self._remember(f, sig, size)
            return
        if sig == self._sig:
            # Unchanged for a whole interval: the line without a break is complete.
            if self._held:
                data = _read_at(f, self._done, min(size - self._done, _STATUS_READ_LIMIT))
                lines, used = _split_lines(data)
                rest = data[used:]
                self._report(lines + ([rest] if rest else []))
                self._remember(f, sig, size)
            return
        start = self._done - len(self._tail)
        continues = size >= self._done and _read_at(f, start, len(self._tail)) == self._tail
        if self._held and not (
            continues and _read_at(f, self._done, len(self._held)) == self._held
        ):
            # The line without a break was replaced, not finished: in a file overwritten
            # with each status, it was a whole status, and this is the last chance to see it.
            self._report([self._held])
            self._held = b""
        if continues and size == self._done:
            # The same bytes in a new write: an overwrite with the same status again.
            self._report(self._single_line(f, size))
            self._remember(f, sig, size)
            return
        begin = self._done if continues else 0
        cut = size - begin > _STATUS_READ_LIMIT
        if cut:
            begin = size - _STATUS_READ_LIMIT
        data = _read_at(f, begin, size - begin)
        if cut:
            # The window starts mid-line: that line is older than what fits, and skipped.
            first = _LINE_END.search(data)
            skip = first.end() if first else len(data)
            begin, data = begin + skip, data[skip:]
        lines, used = _split_lines(data)
        self._report(lines)
        self._held = data[used:]
        self._sig = sig
        self._done = begin + used
        tail_start = max(0, self._done - _STATUS_TAIL)
        self._tail = _read_at(f, tail_start, self._done - tail_start)

    def _remember(self, f: BinaryIO, sig: tuple[int, int, int], size: int) -> None:
        """Everything up to ``size`` has been looked at."""
        self._sig, self._done, self._held = sig, size, b""
        tail_start = max(0, size - _STATUS_TAIL)
        self._tail = _read_at(f, tail_start, size - tail_start)

    def _single_line(self, f: BinaryIO, size: int) -> list[bytes]:
        """The file's only line, if it holds just one (an overwritten status file does)."""
        if size > _STATUS_READ_LIMIT:
            return []
        data = _read_at(f, 0, size)
        lines, used = _split_lines(data)
        lines += [data[used:]] if used < len(data) else []
        lines = [line for line in lines if line.strip()]
        return lines if len(lines) == 1 else []

    def _report(self, lines: list[bytes]) -> None:
        for raw in lines:
            text = _decode(raw).lstrip("\ufeff")
            if not text.strip():
                continue
            log.debug("Sparkbooth status: %s", text.strip())
            match = _SAVED_LAYOUT.fullmatch(text)
            if match is None:
                continue
            value = match.group(1).strip('"').strip()
            if not value:
                continue
            try:
                self._on_file(Path(value))
            except Exception as exc:
                log.warning(
                    "Sparkbooth saved layout %s was not handled: %s: %s",
                    value,
                    type(exc).__name__,
                    exc,
                )
