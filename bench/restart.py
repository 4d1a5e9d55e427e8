"""Restart: how long ``boothsync run`` takes to be ready with many pictures already uploaded.

Owns one measurement: a real ``python -m boothsync run`` process started on a folder of N
pictures (10,000 by default) that the queue already records as uploaded, timed from the
process start to its systemd ``READY=1`` (sent once every folder is scanned), against a
baseline taken in the same run (the same daemon on an empty folder: Python start, imports,
opening the queue), because the machines are shared and noisy and only ratios within one run
compare. It also checks from the outside that no known picture is hashed again: the jobs the
queue holds after the run (every picture the daemon takes for new gets a job, and only a job's
picture is ever read and hashed, whether it is then uploaded or found a duplicate), the uploads
the receiver got (both must add nothing), and, as an upper bound, the bytes the daemon read
(``rchar`` in ``/proc/PID/io``) beyond the baseline's and its queue database's.

The pictures are made "already uploaded" exactly as :mod:`bench.idle` does (through the
public :class:`~boothsync.outbox.Outbox` API), and its process, receiver and config helpers
are reused.

Must not: change or monkeypatch boothsync, fail because a target is missed (targets are
printed beside the figures; the exit code only says whether the measurement is valid), or
leave processes or temporary folders behind.

Exit codes: 0 measured, 1 the measurement is invalid (a daemon did not become ready, uploaded
a known picture again, or did not stop cleanly), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.idle import (
    STOP_SECONDS,
    BenchError,
    Child,
    ReceiverProcess,
    machine,
    make_pictures,
    mark_uploaded,
    positive,
    workspace,
    write_config,
)
from boothsync.config import load_config
from boothsync.demo import write_sample_jpeg
from boothsync.outbox import Outbox
from boothsync.paths import outbox_path

__all__ = ["main"]

TARGET_READY_SECONDS = 3.0
# Generous: a slow shared machine starting Python and scanning 10,000 files.
READY_TIMEOUT = 120.0
# After ready, long enough for a picture the scan took for new to settle (settle_seconds 0.5)
# and be queued, read and sent: a re-hash or re-upload would show in this window.
AFTER_READY_SECONDS = 2.0

_READY_LINE = re.compile(r"\bready\b")
_LINUX = sys.platform.startswith("linux")


class ReadyListener:
    """A systemd-style notify socket (an abstract address, Linux): when ``READY=1`` came."""

    def __init__(self) -> None:
        self.address = f"@boothsync-bench-{uuid.uuid4().hex}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + self.address[1:])
        self._sock.settimeout(0.05)
        self._ready_at: float | None = None
        self._got = threading.Event()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name="bench-notify", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            at = time.monotonic()
            if "READY=1" in data.decode("utf-8", "replace").splitlines() and not self._got.is_set():
                self._ready_at = at
                self._got.set()

    def wait(self, daemon: Child, timeout: float) -> float:
        """The monotonic time READY=1 arrived; BenchError at the deadline or if the daemon exits."""
        deadline = time.monotonic() + timeout
        while not self._got.wait(0.05):
            if daemon.process.poll() is not None:
                raise BenchError(f"the daemon exited before READY=1; output:\n{daemon.output}")
            if time.monotonic() >= deadline:
                raise BenchError(f"no READY=1 within {timeout:.0f} s; output:\n{daemon.output}")
        assert self._ready_at is not None
        return self._ready_at

    def close(self) -> None:
        self._stop.set()
        self._reader.join(2.0)
        self._sock.close()


def read_bytes(pid: int) -> int | None:
    """Bytes the process has read through read(2) and the like (``rchar``, page cache
    included, so a cached file still counts); None where /proc/PID/io is not there."""
    if not _LINUX:
        return None
    try:
        text = Path(f"/proc/{pid}/io").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return None


@dataclass(frozen=True)
class Run:
    mode: str
    files: int
    ready: float  # seconds from process start to READY=1 (or the ready line)
    read: int | None  # bytes read from start to the end of the after-ready window
    uploads: int  # uploads the receiver got from start to the end of that window
    jobs: int  # jobs in the queue after the run
    how: str  # "READY=1" or "ready line"


def queue_jobs(config: Path) -> int:
    """Jobs in the queue, every state, read-only through the public Outbox API."""
    outbox = Outbox(outbox_path(load_config(config)), readonly=True)
    try:
        return sum(outbox.stats().totals.values())
    finally:
        outbox.close()


def one_run(mode: str, config: Path, files: int, receiver: ReceiverProcess) -> Run:
    """Start a daemon, time it to ready, watch it a moment longer, stop it."""
    before = receiver.uploads()
    listener = ReadyListener() if _LINUX else None
    try:
        extra = {} if listener is None else {"NOTIFY_SOCKET": listener.address}
        daemon = Child(["run", "-c", str(config)], extra_env=extra)
        try:
            if listener is not None:
                ready = listener.wait(daemon, READY_TIMEOUT) - daemon.started
                how = "READY=1"
            else:
                daemon.wait_for_line(_READY_LINE, READY_TIMEOUT, "ready line")
                ready = time.monotonic() - daemon.started
                how = "ready line"
            threading.Event().wait(AFTER_READY_SECONDS)
            read = read_bytes(daemon.pid)
            if daemon.process.poll() is not None:
                raise BenchError(f"{mode}: the daemon exited after ready:\n{daemon.output}")
            uploads = receiver.uploads() - before
        finally:
            code, _ = daemon.stop()
    finally:
        if listener is not None:
            listener.close()
    if code != 0:
        said = "did not stop within" if code is None else f"exited with {code} within"
        raise BenchError(
            f"{mode}: the daemon {said} {STOP_SECONDS:.0f} s of the stop signal;"
            f" output:\n{daemon.output}"
        )
    return Run(
        mode=mode,
        files=files,
        ready=ready,
        read=read,
        uploads=uploads,
        jobs=queue_jobs(config),
        how=how,
    )


# -- output ------------------------------------------------------------------------------------


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 1e6:.1f}"


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _median_or_none(values: Sequence[int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return None if len(known) != len(values) or not known else _median(known)


def database_bytes(config: Path) -> int:
    """The queue database's size with its -wal: the daemon reads all of it once at open
    (``PRAGMA quick_check``), so it is subtracted before reading bytes as pictures."""
    path = outbox_path(load_config(config))
    return sum(
        Path(f"{path}{suffix}").stat().st_size
        for suffix in ("", "-wal")
        if Path(f"{path}{suffix}").exists()
    )


def pictures_worth(extra_read: float | None, picture_bytes: int, files: int) -> int | None:
    """How many pictures of the mean size the extra bytes read could at most be (rounded
    down; 0 when the extra is less than one picture)."""
    if extra_read is None or files == 0:
        return None
    mean = picture_bytes / files
    return max(0, int(extra_read // mean))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.restart",
        description="How long boothsync takes to be ready with many already-uploaded pictures.",
    )
    parser.add_argument(
        "--files",
        type=positive(int),
        default=10_000,
        help="already-uploaded pictures in the folder (default: %(default)s)",
    )
    parser.add_argument(
        "--runs",
        type=positive(int),
        default=3,
        help="starts of each kind; the median is reported (default: %(default)s)",
    )
    return parser


def run(files: int, runs: int) -> int:
    say = print
    say(f"boothsync restart: {files} already-uploaded file(s), {runs} run(s) of each kind")
    say(f"machine: {machine()}")
    with workspace("boothsync-bench-restart-") as root:
        sample = root / "sample.jpg"
        write_sample_jpeg(sample, datetime(2026, 6, 1, 20, 0), "bench", (46, 134, 193))
        pictures = root / "pictures"
        started = time.monotonic()
        make_pictures(pictures, sample, files)
        written = time.monotonic() - started
        picture_bytes = sum(p.stat().st_size for p in pictures.iterdir())
        empty = root / "empty"
        empty.mkdir()

        receiver = ReceiverProcess(root / "received")
        try:
            url = receiver.base_url
            base_cfg = write_config(
                root / "baseline.toml",
                watch=empty,
                state=root / "state-baseline",
                base_url=url,
                name="bench-restart",
            )
            known_cfg = write_config(
                root / "known.toml",
                watch=pictures,
                state=root / "state",
                base_url=url,
                name="bench-restart",
            )
            started = time.monotonic()
            seeded = mark_uploaded(known_cfg)
            seeding = time.monotonic() - started
            say(
                f"setup: {files} file(s), {picture_bytes / 1e6:.1f} MB, written in"
                f" {written:.1f} s; {seeded} marked uploaded through the outbox in"
                f" {seeding:.1f} s; receiver at {url}"
            )
            how = (
                "READY=1 on a NOTIFY_SOCKET the benchmark binds"
                if _LINUX
                else "the daemon's 'ready' log line (no NOTIFY_SOCKET on this platform)"
            )
            say(f"ready: from starting the process to {how}; the daemon checks every 0.2 s")
            say(
                "re-hashed: jobs the queue gained over the run (a picture taken for new gets a"
                " job before it is read and hashed) and uploads at the receiver; as an upper"
                f" bound, bytes the daemon read (rchar, /proc/PID/io) up to"
                f" {AFTER_READY_SECONDS:g} s after ready beyond the baseline's and the queue"
                " database's size"
            )
            say(f"target: ready <= {TARGET_READY_SECONDS:g} s with none re-hashed")
            say("")

            results: dict[str, list[Run]] = {"baseline": [], "known": []}
            for index in range(1, runs + 1):
                # Alternated, so a slow stretch of a shared machine hits both kinds alike.
                for mode, cfg, count in (
                    ("baseline", base_cfg, 0),
                    ("known", known_cfg, files),
                ):
                    result = one_run(mode, cfg, count, receiver)
                    results[mode].append(result)
                    say(
                        f"{mode} run {index}: ready {result.ready:.2f} s ({result.how}),"
                        f" read {_mb(result.read)} MB, uploads {result.uploads},"
                        f" jobs {result.jobs}"
                    )
            base_db = database_bytes(base_cfg)
            known_db = database_bytes(known_cfg)
        finally:
            receiver.stop()

    base = results["baseline"]
    known = results["known"]
    base_ready = _median([r.ready for r in base])
    known_ready = _median([r.ready for r in known])
    base_read = _median_or_none([r.read for r in base])
    known_read = _median_or_none([r.read for r in known])
    # What the known run read beyond the baseline and beyond its bigger queue database (read
    # in full at open by quick_check; SQLite's 2 MB page cache then reads some pages again).
    queue_extra = known_db - base_db
    extra = (
        None if base_read is None or known_read is None else known_read - base_read - queue_extra
    )
    at_most = pictures_worth(extra, picture_bytes, files)
    seeded_jobs = files  # one destination: one job per picture
    again = max(r.jobs for r in known) - seeded_jobs + (max(r.jobs for r in base))
    uploads = sum(r.uploads for r in known) + sum(r.uploads for r in base)

    say("")
    say(f"medians of {runs} run(s); x base = ready / the baseline's ready")
    say(
        f"{'mode':<9}{'files':>7}{'ready s':>9}{'x base':>8}{'read MB':>9}{'uploads':>9}{'jobs':>7}"
    )
    for mode, rows, ready, read in (
        ("baseline", base, base_ready, base_read),
        ("known", known, known_ready, known_read),
    ):
        ratio = ready / base_ready if base_ready > 0 else None
        say(
            f"{mode:<9}{rows[0].files:>7}{ready:>9.2f}{_fmt(ratio, '.1f'):>8}{_mb(read):>9}"
            f"{sum(r.uploads for r in rows):>9}{max(r.jobs for r in rows):>7}"
        )
    say(f"queue database: {_mb(known_db)} MB (baseline {_mb(base_db)} MB)")
    say(
        f"read beyond the baseline and the queue database: {_mb(extra)} MB, at most"
        f" {_fmt(at_most, 'd')} picture(s) of the {picture_bytes / 1e6:.1f} MB"
        " (an upper bound: it includes SQLite reading pages again)"
    )
    say(f"re-hashed: {again} picture(s) (jobs beyond the {seeded_jobs} seeded; target 0)")
    met = known_ready <= TARGET_READY_SECONDS and again == 0 and uploads == 0
    say(
        f"target: ready <= {TARGET_READY_SECONDS:g} s with none re-hashed:"
        f" {'met' if met else 'MISSED'} ({known_ready:.2f} s, {again} re-hashed,"
        f" {uploads} upload(s))"
    )
    if uploads:
        say(f"INVALID: {uploads} upload(s) of already-uploaded pictures")
        return 1
    return 0


def _fmt(value: Any, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args.files, args.runs)
    except BenchError as exc:
        print(f"bench.restart: invalid measurement: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
