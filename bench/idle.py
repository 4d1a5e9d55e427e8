"""Idle cost: what a running ``boothsync run`` costs while no picture arrives.

Owns one measurement: a real ``python -m boothsync run`` process watching a folder of
already-uploaded pictures (10,000 by default), in native and in polling mode, and natively with
its dashboard served (``web``), and served with one page open on it (``web+page``), over an
idle window, against a baseline taken in the same run (the same daemon watching an empty folder),
because the machines are shared and noisy and only ratios within one run compare. For each
run it reports the process's CPU time during the window, its peak RSS, the time from start
to the "ready" log line, and how many uploads the receiver got (it must be 0: nothing known
is uploaded again). After the window a new picture is dropped in and must arrive, which
proves that the daemon measured was really watching and uploading.

The receiver is ``boothsync receiver`` in a process of its own, so its cost never counts
against the daemon. The pictures are made "already uploaded" through the public
:class:`~boothsync.outbox.Outbox` API (``add``, then ``claim`` and ``complete``), which leaves
exactly the rows real uploads leave.

Must not: change or monkeypatch boothsync, fail because a target is missed (targets are
printed beside the figures; the exit code only says whether the measurement is valid), or
leave processes or temporary folders behind.

Exit codes: 0 measured, 1 the measurement is invalid (a daemon did not start, uploaded a
known picture, missed the new one, or did not stop cleanly), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import http.client
import importlib
import json
import os
import platform
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import xxhash

from boothsync.config import load_config
from boothsync.demo import write_sample_jpeg
from boothsync.outbox import NewFile, Outbox
from boothsync.paths import outbox_path
from boothsync.receiver import DEMO_API_KEY

__all__ = ["main"]

BOOTHSYNC = [sys.executable, "-m", "boothsync"]

TARGET_NATIVE_CPU_PERCENT = 1.0
TARGET_RSS_MB = 80.0
# The dashboard: served and unused it must cost what no dashboard costs ("web" against
# "native"); with a page open, under 1 % of a core.
TARGET_PAGE_CPU_PERCENT = 1.0
# The daemon promises to exit within 10 s of SIGTERM (README, service units).
STOP_SECONDS = 10.0
# Generous: a slow shared machine starting Python and scanning 10,000 files.
READY_SECONDS = 120.0
RECEIVER_SECONDS = 30.0
CANARY_SECONDS = 30.0
SETTLE_SECONDS = 0.5

# "ready: every folder scanned"; \b keeps "already" from matching.
_READY = re.compile(r"\bready\b")
_RECEIVER_URL = re.compile(r"receiver on (http://\S+)")
SERVING = re.compile(r"dashboard on (http://\S+)")
_LINUX = sys.platform.startswith("linux")


class BenchError(Exception):
    """The measurement is invalid; the message says why."""


# -- processes ---------------------------------------------------------------------------------


class Child:
    """A boothsync subprocess whose output (stdout and stderr together) is read as it comes."""

    def __init__(self, args: Sequence[str], *, extra_env: Mapping[str, str] | None = None) -> None:
        # A daemon run by an operator's environment must not pick up their key or config,
        # nor a service manager's folders. ``extra_env`` is set on top (a benchmark's own
        # NOTIFY_SOCKET, say).
        environ = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("BOOTHSYNC_") and k not in ("STATE_DIRECTORY", "LOGS_DIRECTORY")
        }
        # As under systemd: the log lines come on stderr (with journal priorities, "<3>" for
        # an error) rather than only into a log file, so they can be read as they come.
        environ["INVOCATION_ID"] = "boothsync-bench"
        environ.pop("NOTIFY_SOCKET", None)
        environ.update(extra_env or {})
        flags = 0
        if sys.platform == "win32":
            # Ctrl+Break goes to a process group; without its own group it would hit us too.
            flags = subprocess.CREATE_NEW_PROCESS_GROUP
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [*BOOTHSYNC, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=environ,
            creationflags=flags,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="bench-reader", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        for line in stream:
            self.lines.append(line)
            self._new.put(line)
        self._new.put(None)  # end of output: the process is gone

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float, what: str) -> re.Match[str]:
        """The first new output line matching ``pattern``; BenchError at the deadline or exit."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError(f"no {what} within {timeout:.0f} s; output:\n{self.output}")
            try:
                line = self._new.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self._new.put(None)
                code = self.process.wait()
                raise BenchError(f"exited with {code} before {what}; output:\n{self.output}")
            found = pattern.search(line)
            if found is not None:
                return found

    def stop(self) -> tuple[int | None, float]:
        """Ask the process to stop as an operator or a service manager does.

        Returns its exit code (None: still running after STOP_SECONDS, then killed) and how
        long it took.
        """
        asked = time.monotonic()
        code: int | None = self.process.poll()
        if code is None:
            if sys.platform == "win32":
                self.process.send_signal(signal.CTRL_BREAK_EVENT)
            else:
                self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                code = None
        took = time.monotonic() - asked
        self._reader.join(5.0)
        return code, took


class ReceiverProcess:
    """``boothsync receiver --port 0`` in its own process, and what it received."""

    def __init__(self, directory: Path) -> None:
        self.child = Child(["receiver", "--port", "0", "--dir", str(directory)])
        try:
            found = self.child.wait_for_line(_RECEIVER_URL, RECEIVER_SECONDS, "receiver address")
        except BaseException:
            self.child.stop()
            raise
        self.base_url = found.group(1)

    def uploads(self) -> int:
        """How many files the receiver has stored so far."""
        parts = urlsplit(self.base_url)
        # http.client rather than httpx: no proxy settings from the environment apply.
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        try:
            conn.request("GET", "/_control/received")
            response = conn.getresponse()
            body = response.read()
        except OSError as exc:
            raise BenchError(f"cannot ask the receiver what it got: {exc}") from exc
        finally:
            conn.close()
        if response.status != 200:
            raise BenchError(f"receiver answered {response.status} to /_control/received")
        return len(json.loads(body))

    def stop(self) -> None:
        self.child.stop()


class DashboardPage:
    """What an open dashboard page asks of boothsync: logged in through ``boothsync dashboard
    --print-url``, then its live part every second (the thumbnails once, as a browser keeps
    them). The browser's own cost is not boothsync's and is not measured."""

    def __init__(self, config_file: Path) -> None:
        url = subprocess.run(
            [*BOOTHSYNC, "dashboard", "-c", str(config_file), "--print-url"],
            capture_output=True,
            text=True,
            check=False,
            env={k: v for k, v in os.environ.items() if not k.startswith("BOOTHSYNC_")},
        )
        if url.returncode != 0:
            raise BenchError(f"no dashboard to open: {url.stderr.strip()}")
        self.login = urlsplit(url.stdout.strip())
        self.requests = 0
        self.failures = 0
        self._stop = threading.Event()
        self._looked = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="bench-page", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._looked.wait(READY_SECONDS):
            raise BenchError("the page's first look took too long")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self.failures:
            raise BenchError(f"the page's requests failed {self.failures} time(s)")

    def _poll(self) -> None:
        conn = http.client.HTTPConnection(
            self.login.hostname or "127.0.0.1", self.login.port, timeout=10
        )
        try:
            conn.request("GET", f"{self.login.path}?{self.login.query}")
            answer = conn.getresponse()
            answer.read()
            cookie = (answer.getheader("Set-Cookie") or "").split(";", 1)[0]
            host = f"{self.login.hostname}:{self.login.port}"
            fetched: set[str] = set()
            while not self._stop.is_set():
                conn.request("GET", "/live", headers={"Cookie": cookie, "Host": host})
                live = conn.getresponse()
                body = live.read().decode("utf-8", "replace")
                self.requests += 1
                self.failures += live.status != 200
                for thumb in set(re.findall(r'src="(/thumbs/\d+\.jpg)"', body)) - fetched:
                    conn.request("GET", thumb, headers={"Cookie": cookie, "Host": host})
                    conn.getresponse().read()
                    fetched.add(thumb)
                self._looked.set()
                self._stop.wait(1.0)
        except OSError:
            self.failures += 1
        finally:
            self._looked.set()
            conn.close()


def answering(base_url: str, timeout: float) -> None:
    """Wait until the dashboard at ``base_url`` answers (its thread has done its imports)."""
    parts = urlsplit(base_url)
    deadline = time.monotonic() + timeout
    while True:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
        try:
            conn.request("GET", "/mode")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        if time.monotonic() >= deadline:
            raise BenchError(f"the dashboard at {base_url} did not answer within {timeout:.0f} s")
        threading.Event().wait(0.05)


# -- what a process costs ----------------------------------------------------------------------


def _psutil() -> Any:
    try:
        return importlib.import_module("psutil")
    except ImportError:
        return None


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds of the process (all its threads); None if not measurable."""
    if _LINUX:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        # The command name (field 2) may hold spaces and parentheses: split after the last ")".
        fields = text[text.rindex(")") + 2 :].split()
        utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
        return (utime + stime) / os.sysconf("SC_CLK_TCK")
    psutil = _psutil()
    if psutil is None:
        return None
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set size so far, in MB; None if not measurable."""
    if _LINUX:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
        return None
    psutil = _psutil()
    if psutil is None:
        return None
    # Windows keeps the peak (peak_wset); macOS and the BSDs report no peak through psutil.
    peak = getattr(psutil.Process(pid).memory_info(), "peak_wset", None)
    return None if peak is None else float(peak) / (1024 * 1024)


# -- the setup ---------------------------------------------------------------------------------


def write_config(
    path: Path,
    *,
    watch: Path,
    state: Path,
    base_url: str,
    name: str = "bench-idle",
    poll: bool = False,
    poll_interval: float = 2.0,
    concurrency: int | None = 2,
    dashboard: bool = False,
    upload_order: str | None = None,
    bandwidth_limit: int | None = None,
) -> Path:
    """The config a benchmark's daemon runs with: one folder, the local receiver; the
    dashboard only when asked for (on a free port). ``upload_order``: ``[upload] order``,
    written only when given, so that the daemon's own default applies otherwise;
    ``concurrency`` None leaves boothsync's default; ``bandwidth_limit`` is in bytes per
    second."""

    def toml(value: Path) -> str:
        # A JSON string of a path is a valid TOML basic string.
        return json.dumps(value.as_posix())

    order = "" if upload_order is None else f"order = {json.dumps(upload_order)}\n"

    path.write_text(
        f"""\
[booth]
name = "{name}"
timezone = "UTC"

[[watch]]
path = {toml(watch)}
settle_seconds = {SETTLE_SECONDS}
poll = {"true" if poll else "false"}
poll_interval = {poll_interval}

[destinations.eventpics]
type = "eventpics"
api_key = "{DEMO_API_KEY}"
link_id = "demo"
album_id = "a1"
base_url = "{base_url}"

[upload]
{"" if concurrency is None else f"concurrency = {concurrency}"}
{order}
{"" if bandwidth_limit is None else f"bandwidth_limit = {json.dumps(str(bandwidth_limit))}"}

[state]
dir = {toml(state)}

[web]
enabled = {"true" if dashboard else "false"}
listen = "127.0.0.1:0"
""",
        encoding="utf-8",
    )
    return path


def unique_copy(jpeg: bytes, label: str) -> bytes:
    """``jpeg`` with a comment segment saying ``label``: still a valid JPEG, distinct bytes.

    Booth pictures all differ; identical copies would meet boothsync's duplicate detection
    (by content hash) instead of the path that 10,000 distinct pictures take.
    """
    text = label.encode("utf-8")
    # A COM segment (FF FE, then its length including the two length bytes) right after SOI.
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + jpeg[2:]


def make_pictures(folder: Path, sample: Path, count: int) -> None:
    """``count`` copies of ``sample`` in ``folder`` under distinct names, each with distinct
    bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    data = sample.read_bytes()
    for index in range(count):
        name = f"IMG_{index:05d}.jpg"
        (folder / name).write_bytes(unique_copy(data, name))


def mark_uploaded(config_file: Path) -> int:
    """Record every picture in the watched folder as uploaded to every destination.

    Exactly the rows real uploads leave: the file version the watcher would record (its
    path as the watcher builds it, size and mtime_ns), a job per destination, claimed and
    completed with the XXH3-128 of the content as the uploader records it. Returns how many
    files; checks each is known the way the daemon asks.
    """
    config = load_config(config_file)
    (watch,) = config.watches
    outbox = Outbox(outbox_path(config))
    try:
        versions = []
        hashes: dict[Path, str] = {}
        with os.scandir(watch.path) as entries:
            for entry in entries:
                st = entry.stat()
                path = watch.path / entry.name
                versions.append((path, st.st_size, st.st_mtime_ns))
                hashes[path] = xxhash.xxh3_128(path.read_bytes()).hexdigest()
        destinations = {name: watch.album_id for name in watch.destinations}
        # As the watcher queues pictures that arrive together: in one transaction.
        outbox.add_many(
            [NewFile(p, size, mtime, str(watch.path), destinations) for p, size, mtime in versions]
        )
        while (job := outbox.claim()) is not None:
            outbox.complete(job.id, xxh128=hashes[job.path])
        unknown = [p for p, size, mtime in versions if not outbox.is_known(p, size, mtime)]
        if unknown:
            raise BenchError(f"{len(unknown)} seeded file(s) are not known, e.g. {unknown[0]}")
        stats = outbox.stats()
        expected = len(versions) * len(watch.destinations)
        if stats.totals["uploaded"] != expected:
            raise BenchError(f"seeding left {stats.totals}, expected {expected} uploaded")
    finally:
        outbox.close()
    return len(versions)


# -- one run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    mode: str
    files: int
    window: float  # seconds the window really lasted
    ready: float  # seconds from start to the ready line
    start_cpu: float | None  # CPU seconds from start to the ready line
    cpu: float | None  # CPU seconds during the window
    rss_mb: float | None
    uploads: int  # uploads the receiver got from start to the end of the window
    canary: float  # seconds for a new picture, dropped after the window, to arrive
    exit_code: int | None
    stop_seconds: float

    @property
    def percent(self) -> float | None:
        return None if self.cpu is None else 100.0 * self.cpu / self.window


def measure(
    mode: str,
    config_file: Path,
    folder: Path,
    files: int,
    sample: Path,
    receiver: ReceiverProcess,
    seconds: float,
    *,
    dashboard: bool = False,
    browser: bool = False,
) -> Result:
    """Start a daemon, wait for ready, measure an idle window, prove it still uploads, stop.
    ``dashboard``: the window starts once the dashboard serves (it starts after ready: its
    start is a start cost, not an idle one). ``browser``: during the window a logged-in page
    polls the dashboard's live part as the page in a browser does (every second)."""
    before = receiver.uploads()
    daemon = Child(["run", "-c", str(config_file)])
    page: DashboardPage | None = None
    try:
        daemon.wait_for_line(_READY, READY_SECONDS, "ready line")
        ready = time.monotonic() - daemon.started
        if dashboard:
            served = daemon.wait_for_line(SERVING, READY_SECONDS, "dashboard line")
            answering(served.group(1), READY_SECONDS)
        if browser:
            page = DashboardPage(config_file)
            # Opened before the window: the window measures a page left open, not its first
            # look (which makes the thumbnails these pictures, never uploaded here, lack).
            page.start()
        cpu_start = cpu_seconds(daemon.pid)
        window_start = time.monotonic()
        # The window itself: nothing to wait for, the daemon is meant to do nothing.
        threading.Event().wait(seconds)
        cpu_end = cpu_seconds(daemon.pid)
        if page is not None:
            page.stop()
        window = time.monotonic() - window_start
        rss = peak_rss_mb(daemon.pid)
        if daemon.process.poll() is not None:
            raise BenchError(f"{mode}: the daemon exited during the window:\n{daemon.output}")
        uploads = receiver.uploads() - before

        # A fresh picture renamed into place must arrive: the daemon measured was working.
        temporary = folder / f"canary-{mode}.jpg.tmp"
        temporary.write_bytes(unique_copy(sample.read_bytes(), f"canary {mode}"))
        dropped = time.monotonic()
        os.replace(temporary, folder / f"canary-{mode}.jpg")
        deadline = dropped + CANARY_SECONDS
        while receiver.uploads() - before <= uploads:
            if time.monotonic() >= deadline:
                raise BenchError(
                    f"{mode}: a new picture did not arrive within {CANARY_SECONDS:.0f} s;"
                    f" output:\n{daemon.output}"
                )
            threading.Event().wait(0.05)
        canary = time.monotonic() - dropped
    finally:
        if page is not None:
            page.stop()
        exit_code, stop_seconds = daemon.stop()
    if exit_code != 0:
        said = "did not stop within" if exit_code is None else f"exited with {exit_code} within"
        raise BenchError(
            f"{mode}: the daemon {said} {STOP_SECONDS:.0f} s of the stop signal;"
            f" output:\n{daemon.output}"
        )
    return Result(
        mode=mode,
        files=files,
        window=window,
        ready=ready,
        start_cpu=cpu_start,
        cpu=None if cpu_start is None or cpu_end is None else cpu_end - cpu_start,
        rss_mb=rss,
        uploads=uploads,
        canary=canary,
        exit_code=exit_code,
        stop_seconds=stop_seconds,
    )


# -- output ------------------------------------------------------------------------------------

NOT_MEASURED = "not measured on this platform"
# Below this, the baseline's CPU time is a handful of clock ticks and ratios against it are
# mostly rounding.
COARSE_CPU_SECONDS = 0.1


def _ticks(cpu: float) -> str:
    if not _LINUX:
        return "a few clock ticks"
    count = round(cpu * os.sysconf("SC_CLK_TCK"))
    return f"{count} clock tick{'' if count == 1 else 's'}"


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def ratio(result: Result, baseline: Result) -> float | None:
    if result.cpu is None or baseline.cpu is None or baseline.cpu <= 0:
        return None
    return result.cpu / baseline.cpu


def _times(result: Result, baseline: Result) -> str:
    times = ratio(result, baseline)
    if times is not None:
        return f"{times:.1f}x baseline"
    if result.cpu is not None and baseline.cpu is not None:
        return "baseline used no measurable CPU"
    return "no ratio"


def target(result: Result, baseline: Result) -> str:
    """The target for this mode and whether the figures meet it."""
    if result.mode == "baseline":
        return "(reference)"
    pct = result.percent
    if result.mode == "polling":
        return f"low: {_num(pct, '.2f')} % of a core, {_times(result, baseline)}"
    if result.mode == "web+page":
        page_ok = "n/a" if pct is None else ("met" if pct < TARGET_PAGE_CPU_PERCENT else "MISSED")
        return f"< {TARGET_PAGE_CPU_PERCENT:g} % core with a page open: {page_ok}"
    cpu_ok = "n/a" if pct is None else ("met" if pct <= TARGET_NATIVE_CPU_PERCENT else "MISSED")
    rss = result.rss_mb
    rss_ok = "n/a" if rss is None else ("met" if rss <= TARGET_RSS_MB else "MISSED")
    return (
        f"<= {TARGET_NATIVE_CPU_PERCENT:g} % core: {cpu_ok};"
        f" RSS <= {TARGET_RSS_MB:.0f} MB: {rss_ok}"
    )


def describe(result: Result, baseline: Result | None) -> str:
    """The figures of one run, in one paragraph."""
    if result.cpu is None:
        cpu = f"CPU {NOT_MEASURED}"
    else:
        vs = "" if baseline is None else f", {_times(result, baseline)}"
        cpu = f"CPU {result.cpu:.2f} s = {result.percent:.3f} % of one core{vs}"
    rss = NOT_MEASURED if result.rss_mb is None else f"{result.rss_mb:.1f} MB"
    start_cpu = "" if result.start_cpu is None else f" (start used {result.start_cpu:.2f} s CPU)"
    lines = [
        f"{result.mode}: {result.files} file(s)",
        f"  start to ready: {result.ready:.2f} s{start_cpu}",
        f"  idle {result.window:.1f} s: {cpu}",
        f"  peak RSS: {rss}",
        f"  uploads during start and idle: {result.uploads} (0 expected: nothing re-uploaded)",
        f"  new picture dropped after the window arrived in {result.canary:.2f} s",
        f"  stop: exit code {result.exit_code} after {result.stop_seconds:.2f} s",
    ]
    if baseline is not None:
        lines.append(f"  target: {target(result, baseline)}")
    return "\n".join(lines)


def table(results: Sequence[Result], baseline: Result) -> str:
    header = (
        f"{'mode':<9}{'files':>7}{'CPU s':>8}{'% core':>9}{'x base':>8}"
        f"{'peak RSS MB':>13}{'ready s':>9}{'uploads':>9}  target"
    )
    rows = [header]
    for r in results:
        rows.append(
            f"{r.mode:<9}{r.files:>7}{_num(r.cpu, '.2f'):>8}{_num(r.percent, '.3f'):>9}"
            f"{_num(ratio(r, baseline), '.1f'):>8}{_num(r.rss_mb, '.1f'):>13}"
            f"{r.ready:>9.2f}{r.uploads:>9}  {target(r, baseline)}"
        )
    return "\n".join(rows)


def machine() -> str:
    model = platform.processor() or platform.machine()
    if _LINUX:
        try:
            for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPU(s), {model};"
        f" Python {platform.python_version()}"
    )


# -- the command -------------------------------------------------------------------------------


def positive(kind: type[float] | type[int]) -> Any:
    """An argparse type: a number of ``kind`` greater than 0."""

    def parse(text: str) -> float | int:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0 (got {text})")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.idle",
        description="What an idle boothsync costs with many already-uploaded pictures.",
    )
    parser.add_argument(
        "--seconds",
        type=positive(float),
        default=60.0,
        help="idle window per run (default: %(default)s)",
    )
    parser.add_argument(
        "--files",
        type=positive(int),
        default=10_000,
        help="already-uploaded pictures in the folder (default: %(default)s)",
    )
    parser.add_argument(
        "--poll-interval",
        type=positive(float),
        default=2.0,
        help="poll_interval of the polling run (default: %(default)s)",
    )
    return parser


@contextmanager
def workspace(prefix: str) -> Iterator[Path]:
    """A temporary folder for one benchmark, removed afterwards whatever happens."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(seconds: float, files: int, poll_interval: float) -> int:
    say = print
    say(f"boothsync idle cost: {files} already-uploaded file(s), {seconds:g} s idle per run")
    say(f"machine: {machine()}")
    with workspace("boothsync-bench-idle-") as root:
        sample = root / "sample.jpg"
        write_sample_jpeg(sample, datetime(2026, 6, 1, 20, 0), "bench", (46, 134, 193))
        started = time.monotonic()
        pictures = root / "pictures"
        make_pictures(pictures, sample, files)
        written = time.monotonic() - started
        empty = root / "empty"
        empty.mkdir()

        receiver = ReceiverProcess(root / "received")
        try:
            url = receiver.base_url

            def config(name: str, watch: Path, state: str, **more: Any) -> Path:
                return write_config(
                    root / f"{name}.toml",
                    watch=watch,
                    state=root / state,
                    base_url=url,
                    poll_interval=poll_interval,
                    **more,
                )

            base_cfg = config("baseline", empty, "state-baseline")
            # The other runs share the folder and the queue: the same 10,000 known files.
            native_cfg = config("native", pictures, "state")
            dashboard_cfg = config("dashboard", pictures, "state", dashboard=True)
            polling_cfg = config("polling", pictures, "state", poll=True)
            started = time.monotonic()
            seeded = mark_uploaded(native_cfg)
            seeding = time.monotonic() - started
            say(
                f"setup: {files} file(s) written in {written:.1f} s; {seeded} marked uploaded"
                f" through the outbox in {seeding:.1f} s; receiver at {url}"
            )
            say(
                f"targets: native <= {TARGET_NATIVE_CPU_PERCENT:g} % of one core and peak RSS"
                f" <= {TARGET_RSS_MB:.0f} MB; web (the dashboard served, no page open): as"
                f" native; web+page (one page open): < {TARGET_PAGE_CPU_PERCENT:g} % of one"
                f" core; polling (every {poll_interval:g} s): low"
            )
            say("")

            baseline = measure("baseline", base_cfg, empty, 0, sample, receiver, seconds)
            say(describe(baseline, None))
            results = [baseline]
            runs = (
                ("native", native_cfg, False),
                ("web", dashboard_cfg, False),
                ("web+page", dashboard_cfg, True),
                ("polling", polling_cfg, False),
            )
            for mode, cfg, page in runs:
                served = cfg == dashboard_cfg
                result = measure(
                    mode,
                    cfg,
                    pictures,
                    files,
                    sample,
                    receiver,
                    seconds,
                    dashboard=served,
                    browser=page,
                )
                say(describe(result, baseline))
                results.append(result)
        finally:
            receiver.stop()

    say("")
    say(f"idle cost over {seconds:g} s per run; x base = CPU time / the baseline's CPU time")
    say(table(results, baseline))
    if baseline.cpu is not None and 0 < baseline.cpu < COARSE_CPU_SECONDS:
        ticks = _ticks(baseline.cpu)
        say(
            f"note: the baseline used {baseline.cpu:.2f} s of CPU ({ticks}), so the ratios are"
            " coarse: read them as 'about the same' or 'many times more'"
        )
    reuploads = sum(r.uploads for r in results)
    if reuploads:
        say(f"INVALID: {reuploads} upload(s) of already-uploaded files during start or idle")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args.seconds, args.files, args.poll_interval)
    except BenchError as exc:
        print(f"bench.idle: invalid measurement: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
