"""Burst throughput: a whole folder of pictures renamed in at once, against the bare floor.

Owns one measurement: N booth-sized JPEGs (about 3 MB each, real EXIF, every one distinct;
300 by default) are prepared in a sibling folder, then renamed into the folder a real
``python -m boothsync run`` process watches, in one tight loop, with ``[upload] concurrency
= 4``. The figure is the time from the first rename to the last upload completed (the
receiver's ``received_at``).

The floor, against the same receiver (``boothsync receiver``, a process of its own) in the
same run: the same two requests per file (POST getuploadurl with a JSON body like
boothsync's, then PUT the bytes read from disk with a Content-Length) from a bare httpx loop
in 4 threads, one client per thread, timed the same way (first request to the last
``received_at``). Runs alternate, never at the same time: floor, boothsync, floor, ...,
floor (``--rounds`` boothsync runs, each with a fresh queue); the figure is the ratio of the
medians, because the machines are shared and noisy. The receiver stores in memory where it
can, so the disk writing back one run's files does not slow the next.

Must not: change or monkeypatch boothsync, fail because a target is missed (the target is
printed beside the figures), or leave processes or temporary folders behind.

Exit codes: 0 measured, 1 the measurement is invalid (the daemon did not start, a picture
did not arrive, the daemon did not stop cleanly), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.idle import (
    READY_SECONDS,
    SERVING,
    STOP_SECONDS,
    BenchError,
    Child,
    ReceiverProcess,
    answering,
    cpu_seconds,
    machine,
    positive,
    workspace,
)
from bench.idle import write_config as _write_config
from bench.latency import Gallery, bare_upload, picture_bytes, sample_jpeg

__all__ = ["main"]

TARGET_RATIO = 1.2
CONCURRENCY = 4
# Generous: a slow shared machine; a healthy run needs a small fraction of this.
SECONDS_PER_FILE = 1.0
MIN_WAIT = 60.0


@dataclass(frozen=True)
class Run:
    name: str
    seconds: float
    megabytes: float
    client_cpu: float | None  # CPU seconds of the uploading side (harness or daemon)
    receiver_cpu: float | None  # CPU seconds of the receiver process

    @property
    def rate(self) -> float:
        return self.megabytes / self.seconds if self.seconds > 0 else float("inf")


def make_files(folder: Path, sample: bytes, count: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"IMG_{index:05d}.jpg"
        path.write_bytes(picture_bytes(sample, size))
        paths.append(path)
    return paths


def clear_stored(received: Path) -> None:
    """Delete what the receiver stored (between runs, while it is idle), so every run stores
    its files under their own names into an empty folder, then flush the disk cache: the
    previous run's writes still being written back would slow the next run's."""
    # The receiver stores under <link>/<album>/ subfolders.
    for entry in sorted(received.rglob("*"), reverse=True):
        if entry.is_dir():
            entry.rmdir()
        else:
            entry.unlink()
    flush()


def flush() -> None:
    if hasattr(os, "sync"):
        os.sync()


def _finished(gallery: Gallery, before: int, count: int, timeout: float, what: str) -> float:
    """The last ``received_at`` once ``count`` more uploads than ``before`` arrived."""
    records = gallery.wait_for(before + count, timeout, what)
    return max(float(r["received_at"]) for r in records[before:])


def upload_all(
    base_url: str, paths: Sequence[Path], threads: int, *, name: str, timeout: float
) -> float:
    """The bare loop: ``threads`` threads, one httpx client each, the two requests per file
    to ``base_url``; returns when it started (Unix time). BenchError if an upload failed."""
    lock = threading.Lock()
    todo = list(reversed(paths))
    errors: list[BaseException] = []

    def work() -> None:
        with httpx.Client(trust_env=False, timeout=timeout) as client:
            while True:
                with lock:
                    if not todo or errors:
                        return
                    path = todo.pop()
                try:
                    bare_upload(client, base_url, path)
                except BaseException as exc:
                    with lock:
                        errors.append(exc)
                    return

    workers = [threading.Thread(target=work, name=f"{name}-{i}") for i in range(threads)]
    started = time.time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if errors:
        raise BenchError(f"{name}: a bare upload failed: {errors[0]!r}")
    return started


def floor(gallery: Gallery, paths: Sequence[Path], name: str) -> Run:
    """The bare loop with 4 threads, straight to the receiver."""
    before = len(gallery.records())
    receiver_cpu = cpu_seconds(gallery.receiver.child.pid)
    client_cpu = time.process_time()
    started = upload_all(gallery.receiver.base_url, paths, CONCURRENCY, name=name, timeout=60.0)
    timeout = max(MIN_WAIT, SECONDS_PER_FILE * len(paths))
    last = _finished(gallery, before, len(paths), timeout, f"{name} uploads")
    client_cpu = time.process_time() - client_cpu
    receiver_cpu = _used(receiver_cpu, cpu_seconds(gallery.receiver.child.pid))
    size = sum(p.stat().st_size for p in paths)
    return Run(name, last - started, size / 1e6, client_cpu, receiver_cpu)


def _used(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def burst(
    gallery: Gallery,
    config: Path,
    staging: Sequence[Path],
    watched: Path,
    name: str,
    *,
    dashboard: bool = False,
) -> tuple[Run, Child]:
    """Start the daemon, rename every file in at once, wait until all arrived. With the
    dashboard, the files come once it answers (it starts after ready: its start is not what
    a burst measures)."""
    daemon = Child(["run", "-c", str(config)])
    daemon.wait_for_line(re.compile(r"\bready\b"), READY_SECONDS, "ready line")
    if dashboard:
        served = daemon.wait_for_line(SERVING, READY_SECONDS, "dashboard line")
        answering(served.group(1), READY_SECONDS)
    before = len(gallery.records())
    size = sum(p.stat().st_size for p in staging)
    targets = [watched / p.name for p in staging]
    receiver_cpu = cpu_seconds(gallery.receiver.child.pid)
    daemon_cpu = cpu_seconds(daemon.pid)
    started = time.time()
    for source, target in zip(staging, targets, strict=True):
        source.replace(target)
    timeout = max(MIN_WAIT, SECONDS_PER_FILE * len(staging))
    try:
        last = _finished(gallery, before, len(staging), timeout, "the daemon's uploads")
    except BenchError as exc:
        daemon.stop()
        raise BenchError(f"{exc}; output:\n{daemon.output}") from exc
    daemon_cpu = _used(daemon_cpu, cpu_seconds(daemon.pid))
    receiver_cpu = _used(receiver_cpu, cpu_seconds(gallery.receiver.child.pid))
    return Run(name, last - started, size / 1e6, daemon_cpu, receiver_cpu), daemon


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def write_config(
    root: Path, watched: Path, base_url: str, round_: int, *, dashboard: bool = False
) -> Path:
    # A fresh state folder per round: the same pictures come back, and must be new to it.
    return _write_config(
        root / f"burst-{round_}.toml",
        watch=watched,
        state=root / f"state-{round_}",
        base_url=base_url,
        name="bench-burst",
        concurrency=CONCURRENCY,
        dashboard=dashboard,
    )


@contextmanager
def receiver_folder(root: Path) -> Iterator[Path]:
    """Where the receiver stores: in memory (/dev/shm) where there is such a folder, so the
    disk writing back one run's 900 MB never slows the next run (both sides store the same
    bytes; it is noise, not a cost of either)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        with tempfile.TemporaryDirectory(prefix="boothsync-bench-received-", dir=shm) as folder:
            yield Path(folder)
    else:
        yield root / "received"


def run(files: int, size_mb: float, rounds: int, *, dashboard: bool = False) -> int:
    say = print
    size = int(size_mb * 1_000_000)
    served = "with its dashboard served (a thumbnail per picture)" if dashboard else "no dashboard"
    say(
        f"boothsync burst: {files} file(s) of {size / 1e6:.1f} MB renamed in at once,"
        f" concurrency {CONCURRENCY}, {rounds} round(s), {served}"
    )
    say(f"machine: {machine()}")
    floors: list[Run] = []
    daemons: list[Run] = []
    with workspace("boothsync-bench-burst-") as root, receiver_folder(root) as received:
        staging = make_files(root / "staging", sample_jpeg(root), files, size)
        flush()
        watched = root / "hot"
        watched.mkdir()
        receiver = ReceiverProcess(received)
        gallery = Gallery(receiver)
        try:
            say(f"receiver at {receiver.base_url}, storing in {received}")
            floors.append(floor(gallery, staging, "floor 1"))
            say(f"floor 1: {floors[-1].seconds:.2f} s")
            for number in range(1, rounds + 1):
                clear_stored(received)
                config = write_config(root, watched, receiver.base_url, number, dashboard=dashboard)
                daemon_run, daemon = burst(
                    gallery, config, staging, watched, f"boothsync {number}", dashboard=dashboard
                )
                code, _ = daemon.stop()
                daemons.append(daemon_run)
                say(f"{daemon_run.name}: {daemon_run.seconds:.2f} s")
                if code != 0:
                    said = "did not stop within" if code is None else f"exited with {code} within"
                    raise BenchError(
                        f"the daemon {said} {STOP_SECONDS:.0f} s of the stop signal;"
                        f" output:\n{daemon.output}"
                    )
                # The same pictures go back, unchanged (a rename keeps their time stamps).
                for path in staging:
                    (watched / path.name).replace(path)
                clear_stored(received)
                floors.append(floor(gallery, staging, f"floor {number + 1}"))
                say(f"floor {number + 1}: {floors[-1].seconds:.2f} s")
        finally:
            gallery.close()
            receiver.stop()
    say("")
    say("time = first request (floor) or first rename (boothsync) to the last received_at")
    say(
        f"{'run':<16}{'files':>6}{'seconds':>9}{'MB/s':>8}"
        f"{'client CPU s':>14}{'receiver CPU s':>16}"
    )
    for item in [x for pair in zip(floors, [*daemons, None], strict=True) for x in pair if x]:
        say(
            f"{item.name:<16}{files:>6}{item.seconds:>9.2f}{item.rate:>8.1f}"
            f"{_num(item.client_cpu):>14}{_num(item.receiver_cpu):>16}"
        )
    floor_median = statistics.median(r.seconds for r in floors)
    daemon_median = statistics.median(r.seconds for r in daemons)
    ratio = daemon_median / floor_median
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    say(
        f"median of {len(daemons)} boothsync run(s) {daemon_median:.2f} s / median of"
        f" {len(floors)} floor run(s) {floor_median:.2f} s = {ratio:.2f}x;"
        f" target <= {TARGET_RATIO:g}x: {verdict}"
    )
    best = min(daemons, key=lambda r: r.seconds).seconds / min(r.seconds for r in floors)
    say(f"best boothsync run / best floor run: {best:.2f}x")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.burst",
        description="A folder of pictures renamed in at once, against a bare upload loop.",
    )
    parser.add_argument(
        "--files", type=positive(int), default=300, help="pictures (default: %(default)s)"
    )
    parser.add_argument(
        "--size-mb",
        type=positive(float),
        default=3.0,
        help="size of each picture in MB (default: %(default)s)",
    )
    parser.add_argument(
        "--rounds",
        type=positive(int),
        default=5,
        help="boothsync runs, each followed by a floor run (default: %(default)s)",
    )
    parser.add_argument(
        "--dashboard",
        action="store_true",
        help="serve the dashboard (as a default config does): its thumbnails count too",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args.files, args.size_mb, args.rounds, dashboard=args.dashboard)
    except BenchError as exc:
        print(f"bench.burst: invalid measurement: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
