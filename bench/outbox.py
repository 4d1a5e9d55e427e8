"""The queue under load: claims and completions per second, and ``status --json``, on a
queue of 100,000 waiting jobs.

Owns one measurement: a real :class:`~boothsync.outbox.Outbox` on a temporary file holding N
waiting jobs (100,000 by default, one destination), then

* claim-and-complete cycles as the uploader does them (``claim(only=...)``, then
  ``complete(...)`` with the content hash and capture time), from one thread and from four
  threads sharing the outbox;
* ``boothsync status -c FILE --json`` as a subprocess (what an operator or a tray waits for),
  and, in-process, opening the queue read-only and the ``stats()`` query alone, because
  Python's start-up dominates the subprocess.

Baselines in the same run, because the machines are shared and noisy and only ratios within
one run compare: the same claim-and-complete shape as bare ``sqlite3`` statements with the
same PRAGMAs (WAL, synchronous=FULL, one transaction per claim and one per completion) on a
copy of the same queue; and ``status --json`` on a queue of 1,000 jobs.

The queue is filled the way the watcher queues a burst of pictures: ``add_many()``, a batch
of files per transaction; its rate is printed.

Must not: change or monkeypatch boothsync, fail because a target is missed (targets are
printed beside the figures), or leave temporary folders behind.

Exit codes: 0 measured, 1 the measurement is invalid (a cycle found no job, a job was handed
out twice, ``status`` failed or counted wrong), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.idle import BenchError, machine, positive, workspace, write_config
from boothsync.config import load_config
from boothsync.outbox import NewFile, Outbox
from boothsync.paths import outbox_path

__all__ = ["main"]

TARGET_CYCLES_PER_SECOND = 2_000.0
TARGET_STATUS_MS = 200.0
DESTINATION = "eventpics"  # the destination write_config configures
THREADS = 4
SMALL_QUEUE = 1_000
FILL_BATCH = 1_000
STATUS_RUNS = 5
STATS_RUNS = 5
XXH128 = "0" * 32
HEAD = "0" * 16
SYNC_DELAY = 0.2  # the uploader's: a completion reaches the disk at most this long after
LIVE_WINDOW = 120.0  # [upload] live_window's default
# The newest tenth of the queue was just written (live pictures atop a backlog): both turns
# of the live claim order are taken.
LIVE_SHARE = 0.1


# -- the queue ---------------------------------------------------------------------------------


def fill(path: Path, jobs: int) -> None:
    """Put ``jobs`` waiting jobs (one file each, one destination) into the queue at ``path``,
    the way the watcher queues pictures that arrive together: :meth:`Outbox.add_many`, a
    batch per transaction."""
    outbox = Outbox(path)
    live_from = jobs - int(jobs * LIVE_SHARE)
    now_ns = time.time_ns()
    try:
        for start in range(1, jobs + 1, FILL_BATCH):
            outbox.add_many(
                [
                    NewFile(
                        Path(f"/booth/pictures/IMG_{i:06d}.jpg"),
                        34_000 + i % 1000,
                        now_ns + i if i > live_from else 1_700_000_000 + i,
                        "/booth/pictures",
                        {DESTINATION: "a1"},
                    )
                    for i in range(start, min(start + FILL_BATCH, jobs + 1))
                ]
            )
    finally:
        outbox.close()


# -- claims and completions --------------------------------------------------------------------


def cycles_outbox(path: Path, cycles: int, threads: int) -> float:
    """Claim-and-complete cycles per second through one :class:`Outbox` shared by ``threads``
    threads; every job must be handed out once."""
    outbox = Outbox(path)
    # The claim order a config without [upload] order has.
    outbox.order_live(LIVE_WINDOW)
    seen: list[int] = []
    errors: list[BaseException] = []
    share = [cycles // threads + (1 if t < cycles % threads else 0) for t in range(threads)]

    def work(count: int) -> None:
        try:
            for _ in range(count):
                job = outbox.claim(only=(DESTINATION,))
                if job is None:
                    raise BenchError("claim() found no waiting job")
                # As the uploader's workers complete a job: without a sync of its own, and
                # one sync for all of them at most every SYNC_DELAY seconds.
                outbox.complete(
                    job.id,
                    taken_at_ms=1_780_000_000_000,
                    taken_at_source="exif:DateTimeOriginal",
                    xxh128=XXH128,
                    head=HEAD,
                    synced=False,
                )
                outbox.sync(older_than=SYNC_DELAY)
                seen.append(job.id)
        except BaseException as exc:
            errors.append(exc)

    try:
        workers = [threading.Thread(target=work, args=(n,)) for n in share]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        outbox.sync()  # the last completions reach the disk within the time measured
        took = time.perf_counter() - started
    finally:
        outbox.close()
    if errors:
        raise BenchError(f"a claim-and-complete cycle failed: {errors[0]!r}")
    if len(set(seen)) != len(seen):
        raise BenchError(f"{len(seen) - len(set(seen))} job(s) handed out twice")
    return cycles / took


def cycles_bare(path: Path, cycles: int) -> float:
    """The same shape as bare sqlite3: WAL, synchronous=FULL, a transaction for the claim (pick
    the due job, mark it uploading) and one for the completion (mark it uploaded)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        started = time.perf_counter()
        for _ in range(cycles):
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT id FROM jobs WHERE state = 'waiting' AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at, id LIMIT 1",
                (now,),
            ).fetchone()
            if row is None:
                raise BenchError("the bare loop found no waiting job")
            conn.execute(
                "UPDATE jobs SET state = 'uploading', attempts = attempts + 1,"
                " claimed_at = ?, updated_at = ? WHERE id = ?",
                (now, now, row[0]),
            )
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "UPDATE jobs SET state = 'uploaded', finished_at = ?, updated_at = ?,"
                " xxh128 = ? WHERE id = ? AND state = 'uploading'",
                (now, now, XXH128, row[0]),
            )
            conn.execute("COMMIT")
        return cycles / (time.perf_counter() - started)
    finally:
        conn.close()


# -- status ------------------------------------------------------------------------------------


def _median_seconds(action: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return float(statistics.median(times))


def status_subprocess(config: Path, waiting: int) -> float:
    """Median wall seconds of ``python -m boothsync status -c CONFIG --json``; checks its
    count."""

    def once() -> None:
        result = subprocess.run(
            [sys.executable, "-m", "boothsync", "status", "-c", str(config), "--json"],
            capture_output=True,
            text=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise BenchError(f"status exited with {result.returncode}: {result.stderr}")
        report = json.loads(result.stdout)
        if report["totals"]["waiting"] != waiting:
            raise BenchError(f"status counted {report['totals']}, expected {waiting} waiting")

    return _median_seconds(once, STATUS_RUNS)


def python_start() -> float:
    """Median wall seconds of starting this Python and importing the status command."""

    def once() -> None:
        subprocess.run([sys.executable, "-c", "import boothsync.cli"], check=True)

    return _median_seconds(once, STATUS_RUNS)


def stats_in_process(path: Path) -> tuple[float, float]:
    """Median seconds to open the queue read-only (a schema check: the full page check is the
    writer's), and of ``stats()`` alone."""

    def opening() -> None:
        Outbox(path, readonly=True).close()

    outbox = Outbox(path, readonly=True)
    try:
        query = _median_seconds(outbox.stats, STATS_RUNS)
    finally:
        outbox.close()
    return _median_seconds(opening, STATS_RUNS), query


# -- the command -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.outbox",
        description="Claims and completions per second, and status --json, on a large queue.",
    )
    parser.add_argument(
        "--jobs",
        type=positive(int),
        default=100_000,
        help="waiting jobs in the queue (default: %(default)s)",
    )
    parser.add_argument(
        "--cycles",
        type=positive(int),
        default=2_000,
        help="claim-and-complete cycles per measurement (default: %(default)s)",
    )
    return parser


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def run(jobs: int, cycles: int) -> int:
    say = print
    # Three measurements take cycles each; keep them within the queue.
    cycles = min(cycles, max(1, jobs // 3))
    say(f"boothsync outbox: {jobs} waiting job(s), {cycles} claim-and-complete cycle(s) each")
    say(f"machine: {machine()}")
    with workspace("boothsync-bench-outbox-") as root:
        config = write_config(
            root / "bench.toml",
            watch=root / "pictures",
            state=root / "state",
            base_url="http://127.0.0.1:9",
            name="bench-outbox",
        )
        small_config = write_config(
            root / "small.toml",
            watch=root / "pictures",
            state=root / "state-small",
            base_url="http://127.0.0.1:9",
            name="bench-outbox",
        )
        database = outbox_path(load_config(config))
        small = outbox_path(load_config(small_config))

        started = time.perf_counter()
        fill(database, jobs)
        filled = time.perf_counter() - started
        fill(small, SMALL_QUEUE)
        say(
            f"setup: {jobs} job(s) queued with add_many(), {FILL_BATCH} per transaction, in"
            f" {filled:.1f} s ({jobs / filled:.0f} files/s); queue"
            f" {database.stat().st_size / 1e6:.1f} MB"
        )
        say(
            f"targets: >= {TARGET_CYCLES_PER_SECOND:.0f} claims+completions per second;"
            f" status --json <= {TARGET_STATUS_MS:.0f} ms"
        )
        say("")

        # status first, on the untouched queue: every job waiting.
        status_s = status_subprocess(config, jobs)
        small_status_s = status_subprocess(small_config, SMALL_QUEUE)
        start_s = python_start()
        open_s, stats_s = stats_in_process(database)
        small_open_s, small_stats_s = stats_in_process(small)

        bare_copy = root / "bare.sqlite3"
        shutil.copyfile(database, bare_copy)
        single = cycles_outbox(database, cycles, 1)
        threaded = cycles_outbox(database, cycles, THREADS)
        bare = cycles_bare(bare_copy, cycles)

    say(f"claims+completions per second ({cycles} cycles each; x bare = rate / bare sqlite3)")
    say(f"{'how':<22}{'per s':>9}{'x bare':>8}  target")
    for label, rate in (("outbox, 1 thread", single), (f"outbox, {THREADS} threads", threaded)):
        ok = _verdict(rate >= TARGET_CYCLES_PER_SECOND)
        say(
            f"{label:<22}{rate:>9.0f}{rate / bare:>8.2f}  >= {TARGET_CYCLES_PER_SECOND:.0f}/s: {ok}"
        )
    say(f"{'bare sqlite3, 1 thread':<22}{bare:>9.0f}{1.0:>8.2f}  (reference)")
    say("")
    say(f"status --json (median of {STATUS_RUNS}; x small = time / the {SMALL_QUEUE}-job queue's)")
    say(f"{'what':<30}{'jobs':>8}{'ms':>9}{'x small':>9}  target")
    rows = (
        ("status --json, subprocess", jobs, status_s, small_status_s),
        ("status --json, subprocess", SMALL_QUEUE, small_status_s, small_status_s),
        ("open read-only", jobs, open_s, small_open_s),
        ("open read-only", SMALL_QUEUE, small_open_s, small_open_s),
        ("stats() alone", jobs, stats_s, small_stats_s),
        ("stats() alone", SMALL_QUEUE, small_stats_s, small_stats_s),
        ("python start + import cli", 0, start_s, start_s),
    )
    for label, count, seconds, reference in rows:
        target = ""
        if label.startswith("status") and count == jobs:
            ok = _verdict(seconds * 1000 <= TARGET_STATUS_MS)
            target = f"  <= {TARGET_STATUS_MS:.0f} ms: {ok}"
        say(
            f"{label:<30}{count:>8}{seconds * 1000:>9.1f}"
            f"{seconds / reference if reference > 0 else 0:>9.2f}{target}"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args.jobs, args.cycles)
    except BenchError as exc:
        print(f"bench.outbox: invalid measurement: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
