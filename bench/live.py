"""Fresh picture under a backlog: how soon a guest's new picture is in the gallery while
boothsync works through a backlog over a slow uplink.

Owns one measurement (the "live gallery" issue): ``--backlog`` distinct booth-sized JPEGs
(1,000 of 3 MB by default) written in a folder next to the watched one and renamed in at
once, as a backlog that accumulated during an outage; a real ``python -m boothsync run`` on
a fresh queue uploading them to the local receiver (``boothsync receiver``, a process of
its own) through :class:`bench.link.Link`, a shaped uplink (10 Mbit/s up, 40 down, 80 ms
by default). Once the first backlog picture is in the gallery, a new picture is renamed in
every ``--every`` seconds, ``--fresh`` times; each one's latency is the receiver's
``received_at`` minus the moment of its rename. A picture not in the gallery within
``--cap`` seconds is reported as such: with the backlog claimed oldest first it waits for
the whole backlog (40 minutes for the default one).

Two figures in the same run make up each picture's target, "within the time of one backlog
upload plus its own":

- its own: the median latency of ``--baseline`` pictures of the same size dropped one at a
  time through the same link into an empty queue (another daemon, its own fresh queue);
- one backlog upload: how long one upload takes under the load, by Little's law, from the
  first fresh drop to the last backlog upload: the mean number of uploads in flight (upload
  URLs the receiver handed out less PUTs it answered) over the uploads completed per
  second. Counted rather than taken from ``concurrency``: through the link the uploader's
  spare workers start more uploads (see bench/README.md).

``--order`` writes ``[upload] order`` into the generated config; without it (or with
``default``) the daemon's own default order applies.

Must not: change or monkeypatch boothsync, fail because a target is missed (targets are
printed beside the figures), or leave processes, threads or temporary folders behind.

Exit codes: 0 measured, 1 the measurement is invalid (a daemon did not start or stopped,
a baseline picture did not arrive, the backlog did not start, a daemon did not stop
cleanly), 2 bad arguments (this boothsync refusing ``--order`` among them).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.idle import (
    READY_SECONDS,
    STOP_SECONDS,
    BenchError,
    Child,
    ReceiverProcess,
    machine,
    positive,
    workspace,
    write_config,
)
from bench.latency import Gallery, picture_bytes, sample_jpeg
from bench.link import PROFILES, Link, Profile, add_shape_options, shape_of
from boothsync.config import load_config
from boothsync.errors import ConfigError

__all__ = ["main"]

ORDERS = ("live", "oldest", "default")
# How often the harness asks the receiver how many uploads it stored; the figures come
# from the receiver's own received_at, so this only bounds how late a drop may be noticed.
POLL_SECONDS = 0.05
# Generous: a baseline picture alone on the link needs one transfer and a few round trips.
ARRIVAL_SECONDS = 30.0
# The backlog's first picture: the daemon's start and its scan of the folder come first.
FIRST_UPLOAD_SECONDS = 60.0
# "ready: every folder scanned"; \b keeps "already" from matching.
_READY = re.compile(r"\bready\b")
# Lines of a daemon's output quoted when a measurement goes wrong.
TAIL_LINES = 40


# -- pictures ----------------------------------------------------------------------------------


def write_pictures(folder: Path, sample: bytes, names: Sequence[str], size: int) -> list[Path]:
    """One distinct picture of ``size`` bytes per name in ``folder``, one in memory at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / name
        path.write_bytes(picture_bytes(sample, size))
        paths.append(path)
    return paths


def age(paths: Sequence[Path], hours: float) -> None:
    """Spread the files' times over the last ``hours``, the first oldest: a backlog that
    accumulated, whether the order judges a picture by its queue time or its file's time."""
    now = time.time()
    step = hours * 3600 / max(1, len(paths))
    for index, path in enumerate(paths):
        stamp = now - hours * 3600 + index * step
        os.utime(path, (stamp, stamp))


# -- the receiver's records --------------------------------------------------------------------


class Arrivals:
    """Every upload the receiver stored, read as they come, and how many were in flight.

    Each :meth:`update` asks for the receiver's small counts; the whole list of records
    only when the count of stored uploads grew (it grows with every upload of the
    backlog). The counts also say how many uploads were in flight at that moment: upload
    URLs handed out less PUTs answered.
    """

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self.records: list[dict[str, Any]] = gallery.records()
        # (Unix time, uploads in flight), one per update
        self.in_flight: list[tuple[float, int]] = []

    def update(self) -> list[dict[str, Any]]:
        """The records stored since the last call."""
        counts = self.gallery.counts()
        granted = int(counts.get("getuploadurl", {}).get("200", 0))
        answered = sum(counts.get("put", {}).values())
        self.in_flight.append((time.time(), granted - answered))
        if int(counts.get("put", {}).get("200", 0)) <= len(self.records):
            return []
        records = self.gallery.records()
        new = records[len(self.records) :]
        self.records = records
        return new

    def find(self, name: str) -> dict[str, Any] | None:
        """The record of ``name``, the latest if there are several."""
        return next((r for r in reversed(self.records) if r["file_name"] == name), None)


def _pause(seconds: float) -> None:
    threading.Event().wait(seconds)


def _tail(daemon: Child) -> str:
    return "".join(daemon.lines[-TAIL_LINES:])


def _stopped(daemon: Child, what: str) -> float:
    """Stop ``daemon``; BenchError unless it exited with 0 within STOP_SECONDS."""
    code, took = daemon.stop()
    if code != 0:
        said = "did not stop within" if code is None else f"exited with {code} within"
        raise BenchError(
            f"{what}: the daemon {said} {STOP_SECONDS:.0f} s of the stop signal;"
            f" output:\n{_tail(daemon)}"
        )
    return took


# -- the baseline: one picture at a time, the queue empty --------------------------------------


def own_uploads(
    arrivals: Arrivals, config: Path, pictures: Sequence[Path], hot: Path, timeout: float
) -> tuple[list[float], float]:
    """Each picture's drop-to-uploaded time with nothing else queued, and how long the
    daemon took to stop."""
    daemon = Child(["run", "-c", str(config)])
    latencies = []
    try:
        daemon.wait_for_line(_READY, READY_SECONDS, "ready line (baseline)")
        for path in pictures:
            os.replace(path, hot / path.name)
            dropped = time.time()
            deadline = time.monotonic() + timeout
            while (record := arrivals.find(path.name)) is None:
                if time.monotonic() >= deadline:
                    raise BenchError(
                        f"baseline: {path.name} did not arrive within {timeout:.0f} s;"
                        f" output:\n{_tail(daemon)}"
                    )
                _pause(POLL_SECONDS)
                arrivals.update()
            latencies.append(float(record["received_at"]) - dropped)
    except BaseException:
        daemon.stop()
        raise
    return latencies, _stopped(daemon, "baseline")


# -- the measurement: fresh pictures while the backlog goes ------------------------------------


@dataclass(frozen=True)
class Fresh:
    name: str
    dropped: float  # Unix time of its rename into the watched folder
    arrived: float | None  # the receiver's received_at; None: not within the cap

    @property
    def latency(self) -> float | None:
        return None if self.arrived is None else self.arrived - self.dropped


@dataclass(frozen=True)
class Measured:
    fresh: list[Fresh]
    backlog_arrivals: list[float]  # received_at of every backlog picture, in order
    stop_seconds: float


def _first_backlog(
    arrivals: Arrivals, daemon: Child, before: int, backlog: frozenset[str], timeout: float
) -> None:
    """Wait until a backlog picture is in the gallery: the daemon is working through it."""
    deadline = time.monotonic() + timeout
    while not any(r["file_name"] in backlog for r in arrivals.records[before:]):
        if time.monotonic() >= deadline or daemon.process.poll() is not None:
            raise BenchError(
                f"no backlog picture arrived within {timeout:.0f} s; output:\n{_tail(daemon)}"
            )
        _pause(POLL_SECONDS)
        arrivals.update()


def _drop_and_wait(
    arrivals: Arrivals,
    daemon: Child,
    fresh: Sequence[Path],
    hot: Path,
    every: float,
    cap: float,
) -> tuple[dict[str, float], dict[str, float]]:
    """Rename the fresh pictures in, one every ``every`` seconds, the first at once; wait
    until each is in the gallery or ``cap`` seconds passed since its rename. Returns when
    each was renamed and when each arrived (received_at), Unix times."""
    names = {path.name for path in fresh}
    dropped: dict[str, float] = {}
    arrived: dict[str, float] = {}
    first = time.monotonic()
    while True:
        due = len(dropped)
        if due < len(fresh) and time.monotonic() >= first + due * every:
            path = fresh[due]
            os.replace(path, hot / path.name)
            dropped[path.name] = time.time()
        for record in arrivals.update():
            if record["file_name"] in names:
                arrived[record["file_name"]] = float(record["received_at"])
        now = time.time()
        waiting = [n for n, at in dropped.items() if n not in arrived and now < at + cap]
        if len(dropped) == len(fresh) and not waiting:
            return dropped, arrived
        if daemon.process.poll() is not None:
            raise BenchError(f"the daemon exited while measured; output:\n{_tail(daemon)}")
        _pause(POLL_SECONDS)


def under_backlog(
    arrivals: Arrivals,
    config: Path,
    fresh: Sequence[Path],
    hot: Path,
    backlog: frozenset[str],
    *,
    every: float,
    cap: float,
    first_timeout: float,
    say: Callable[[str], None],
) -> Measured:
    """Start the daemon on the backlog, wait until its first picture is in the gallery, then
    drop the fresh pictures every ``every`` seconds and wait for each up to ``cap``."""
    before = len(arrivals.records)
    started = time.time()
    daemon = Child(["run", "-c", str(config)])
    try:
        daemon.wait_for_line(_READY, READY_SECONDS, "ready line (under the backlog)")
        _first_backlog(arrivals, daemon, before, backlog, first_timeout)
        say(
            f"backlog uploading: its first picture in the gallery"
            f" {time.time() - started:.1f} s after the start"
        )
        dropped, arrived = _drop_and_wait(arrivals, daemon, fresh, hot, every, cap)
    except BaseException:
        daemon.stop()
        raise
    stop_seconds = _stopped(daemon, "under the backlog")
    results = []
    for path in fresh:
        at = arrived.get(path.name)
        within = at is not None and at - dropped[path.name] <= cap
        results.append(Fresh(path.name, dropped[path.name], at if within else None))
    times = [
        float(r["received_at"]) for r in arrivals.records[before:] if r["file_name"] in backlog
    ]
    return Measured(results, sorted(times), stop_seconds)


@dataclass(frozen=True)
class Load:
    """One upload's time under the backlog, by Little's law: the mean number of uploads in
    flight over the rate at which they complete."""

    in_flight: float  # mean uploads in flight over the window
    completions: int  # uploads completed in the window, backlog and fresh
    window: float  # seconds

    @property
    def rate(self) -> float:
        """Uploads completed per second."""
        return self.completions / self.window

    @property
    def one_upload(self) -> float:
        return self.in_flight / self.rate


def mean_in_flight(samples: Sequence[tuple[float, int]], start: float, end: float) -> float:
    """The time-weighted mean of ``samples`` (each holds until the next) over start..end."""
    total = covered = 0.0
    for (at, count), (until, _) in itertools.pairwise(samples):
        lo, hi = max(at, start), min(until, end)
        if hi > lo:
            total += count * (hi - lo)
            covered += hi - lo
    return total / covered if covered > 0 else 0.0


def load(measured: Measured, samples: Sequence[tuple[float, int]]) -> Load | None:
    """The uploads' mean time from the first fresh drop to the last backlog upload, when
    the backlog kept the workers busy: the fresh pictures count too, they took a worker's
    turn. None: no upload completed in that window."""
    if not measured.backlog_arrivals:
        return None
    start = measured.fresh[0].dropped
    end = measured.backlog_arrivals[-1]
    fresh = [f.arrived for f in measured.fresh if f.arrived is not None]
    completions = sum(1 for t in [*measured.backlog_arrivals, *fresh] if start < t <= end)
    if completions == 0 or end <= start:
        return None
    return Load(mean_in_flight(samples, start, end), completions, end - start)


# -- output ------------------------------------------------------------------------------------


def report(
    measured: Measured, own: float, burden: Load | None, backlog: int, cap: float
) -> list[str]:
    """The table of the fresh pictures, then the verdict over all of them."""
    target = None if burden is None else burden.one_upload + own
    first = measured.fresh[0].dropped
    lines = [
        f"{'picture':<16}{'dropped s':>10}{'latency s':>11}{'x own':>7}"
        f"{'backlog left':>14}{'backlog meanwhile':>19}  target"
    ]
    met = 0
    ran_out = False
    for item in measured.fresh:
        until = item.arrived if item.arrived is not None else item.dropped + cap
        left = backlog - sum(1 for t in measured.backlog_arrivals if t <= item.dropped)
        ran_out = ran_out or left == 0
        meanwhile = sum(1 for t in measured.backlog_arrivals if item.dropped < t <= until)
        latency = item.latency
        if target is None:
            verdict = "n/a (no backlog upload measured)"
        elif latency is None:
            verdict = f"<= {target:.2f} s: MISSED (not within the {cap:g} s cap)"
        else:
            ok = latency <= target
            met += ok
            verdict = f"<= {target:.2f} s: {'met' if ok else 'MISSED'}"
        shown = f"> {cap:g}" if latency is None else f"{latency:.2f}"
        ratio = "n/a" if latency is None or own <= 0 else f"{latency / own:.2f}"
        lines.append(
            f"{item.name:<16}{item.dropped - first:>10.1f}{shown:>11}{ratio:>7}"
            f"{left:>14}{meanwhile:>19}  {verdict}"
        )
    if ran_out:
        lines.append(
            "note: the backlog ran out during the measurement: a picture with no backlog left"
            " met an empty queue"
        )
    lines.append("")
    latencies = [f.latency for f in measured.fresh if f.latency is not None]
    count = len(measured.fresh)
    if latencies:
        lines.append(
            f"fresh pictures in the gallery within the {cap:g} s cap: {len(latencies)} of"
            f" {count}; median {statistics.median(latencies):.2f} s, worst"
            f" {max(latencies):.2f} s"
        )
    else:
        lines.append(f"fresh pictures in the gallery within the {cap:g} s cap: 0 of {count}")
    if target is not None:
        lines.append(
            f"within one backlog upload + their own ({target:.2f} s): {met} of {count};"
            f" target every one: {'met' if met == count else 'MISSED'}"
        )
    return lines


# -- the run -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    backlog: int
    size_mb: float
    fresh: int
    every: float
    cap: float
    baseline: int
    concurrency: int
    order: str
    link_name: str
    shape: Profile

    @property
    def size(self) -> int:
        return int(self.size_mb * 1_000_000)

    @property
    def upload_order(self) -> str | None:
        return None if self.order == "default" else self.order

    @property
    def transfer(self) -> float:
        """Seconds one picture needs alone on the link, with a few round trips."""
        return self.size * 8 / self.shape.up_bps + 4 * self.shape.rtt

    @property
    def pictures_bytes(self) -> int:
        return (self.backlog + self.fresh + self.baseline) * self.size


def config_for(root: Path, plan: Plan, name: str, watch: Path, base_url: str) -> Path:
    return write_config(
        root / f"{name}.toml",
        watch=watch,
        state=root / f"state-{name}",
        base_url=base_url,
        name=f"bench-live-{name}",
        concurrency=plan.concurrency,
        upload_order=plan.upload_order,
    )


def refused(plan: Plan) -> str | None:
    """Why this boothsync refuses the config the plan makes (an unknown ``order``, a
    concurrency out of range); None when it takes it."""
    with workspace("boothsync-bench-live-check-") as root:
        config = config_for(root, plan, "check", root, "http://127.0.0.1:9")
        try:
            load_config(config)
        except ConfigError as exc:
            return str(exc).replace(str(config), "the generated config")
    return None


def _amount(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def _disk_needed(plan: Plan) -> int:
    """The pictures, plus what the receiver can store meanwhile (at most one copy of each)."""
    planned = FIRST_UPLOAD_SECONDS + plan.fresh * plan.every + plan.cap + 60
    through_link = int(plan.shape.up_bps / 8 * (planned + plan.baseline * plan.transfer))
    return plan.pictures_bytes + min(plan.pictures_bytes, through_link)


def run(plan: Plan) -> int:
    say = print
    say(
        f"boothsync fresh picture under a backlog: {plan.backlog} picture(s) of"
        f" {plan.size / 1e6:g} MB ({_amount(plan.backlog * plan.size)}) waiting,"
        f" then {plan.fresh} fresh"
        f" picture(s) every {plan.every:g} s, each waited for up to {plan.cap:g} s"
    )
    say(f"link: {plan.link_name}: {plan.shape.describe()}; concurrency {plan.concurrency}")
    order = plan.upload_order
    say(
        "order: the daemon's default (no [upload] order in the config)"
        if order is None
        else f"order: [upload] order = {json.dumps(order)}"
    )
    say(f"machine: {machine()}")
    with workspace("boothsync-bench-live-") as root:
        free = shutil.disk_usage(root).free
        needed = _disk_needed(plan)
        if free < needed:
            raise BenchError(
                f"{_amount(needed)} needed in {root.parent}, {_amount(free)} free;"
                " use a smaller --backlog or --size-mb"
            )
        sample = sample_jpeg(root)
        started = time.monotonic()
        backlog_names = [f"BACKLOG_{i:05d}.jpg" for i in range(1, plan.backlog + 1)]
        backlog = write_pictures(root / "backlog", sample, backlog_names, plan.size)
        age(backlog, hours=1.0)
        staging = root / "staging"
        own_pictures = write_pictures(
            staging, sample, [f"OWN_{i:02d}.jpg" for i in range(1, plan.baseline + 1)], plan.size
        )
        fresh = write_pictures(
            staging, sample, [f"FRESH_{i:02d}.jpg" for i in range(1, plan.fresh + 1)], plan.size
        )
        say(
            f"setup: {len(backlog) + len(own_pictures) + len(fresh)} picture(s) written in"
            f" {time.monotonic() - started:.1f} s"
        )
        hot_baseline = root / "hot-baseline"
        hot = root / "hot"
        hot_baseline.mkdir()
        hot.mkdir()

        receiver = ReceiverProcess(root / "received")
        gallery = Gallery(receiver)
        target = urlsplit(receiver.base_url)
        link = Link(
            target.hostname or "127.0.0.1",
            target.port or 80,
            up_bps=plan.shape.up_bps,
            down_bps=plan.shape.down_bps,
            rtt=plan.shape.rtt,
        )
        try:
            link.start()
            arrivals = Arrivals(gallery)
            say(f"receiver at {receiver.base_url}, reached through the link at {link.base_url}")
            own_config = config_for(root, plan, "baseline", hot_baseline, link.base_url)
            owns, own_stop = own_uploads(
                arrivals,
                own_config,
                own_pictures,
                hot_baseline,
                max(ARRIVAL_SECONDS, 10 * plan.transfer),
            )
            own = statistics.median(owns)
            say(
                f"own upload (empty queue, through the link): median {own:.2f} s of"
                f" {len(owns)} ({', '.join(f'{x:.2f}' for x in owns)});"
                f" daemon stopped in {own_stop:.2f} s"
            )
            # The backlog accumulated: renamed in all at once, then the daemon starts on it.
            renaming = time.monotonic()
            for path in backlog:
                os.replace(path, hot / path.name)
            say(f"backlog renamed into the watched folder in {time.monotonic() - renaming:.2f} s")
            measured = under_backlog(
                arrivals,
                config_for(root, plan, "backlog", hot, link.base_url),
                fresh,
                hot,
                frozenset(backlog_names),
                every=plan.every,
                cap=plan.cap,
                first_timeout=FIRST_UPLOAD_SECONDS + 10 * plan.concurrency * plan.transfer,
                say=say,
            )
            say(f"daemon stopped in {measured.stop_seconds:.2f} s")
        finally:
            gallery.close()
            link.stop()
            receiver.stop()

    burden = load(measured, arrivals.in_flight)
    say("")
    if burden is None:
        say("one backlog upload under the load: n/a (no upload completed while the backlog lasted)")
    else:
        share = burden.rate * plan.size * 8 / plan.shape.up_bps
        say(
            f"one backlog upload under the load: {burden.one_upload:.2f} s = {burden.in_flight:.2f}"
            f" in flight on average / {burden.rate:.3f} completed per second"
            f" ({burden.completions} in {burden.window:.1f} s from the first fresh drop to the"
            f" last backlog upload, {share:.2f}x the link's up rate in pictures);"
            f" x own {burden.one_upload / own:.2f}"
        )
    gone = len(measured.backlog_arrivals)
    say(f"backlog: {gone} of {plan.backlog} uploaded before the daemon was stopped")
    say(
        "latency = the receiver's received_at - the rename into the watched folder;"
        " x own = latency / own upload"
    )
    say(
        "backlog left = not yet in the gallery at the drop; backlog meanwhile = arrived"
        " between the drop and the picture (or the cap)"
    )
    for line in report(measured, own, burden, plan.backlog, plan.cap):
        say(line)
    return 0


# -- the command -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.live",
        description=(
            "How soon a fresh picture is in the gallery while boothsync uploads a backlog"
            " over a slow link. Disk: the backlog is written to a temporary folder,"
            " backlog x size-mb (3 GB by default), plus the gallery's copies of what it"
            " receives meanwhile; scale down with --backlog and --size-mb."
        ),
        epilog="profiles: "
        + "; ".join(f"{n}: {p.describe()} ({p.about})" for n, p in PROFILES.items()),
    )
    parser.add_argument(
        "--backlog",
        type=positive(int),
        default=1000,
        help="pictures waiting when the measurement starts (default: %(default)s)",
    )
    parser.add_argument(
        "--size-mb",
        type=positive(float),
        default=3.0,
        help="size of every picture in MB (default: %(default)s)",
    )
    parser.add_argument(
        "--fresh",
        type=positive(int),
        default=6,
        help="fresh pictures dropped under the backlog (default: %(default)s)",
    )
    parser.add_argument(
        "--every",
        type=positive(float),
        default=10.0,
        help="seconds between fresh pictures (default: %(default)s)",
    )
    parser.add_argument(
        "--cap",
        type=positive(float),
        default=120.0,
        help="seconds a fresh picture is waited for (default: %(default)s)",
    )
    parser.add_argument(
        "--baseline",
        type=positive(int),
        default=3,
        help="pictures dropped one at a time into an empty queue (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=positive(int),
        default=2,
        help="[upload] concurrency (default: %(default)s, boothsync's own)",
    )
    parser.add_argument(
        "--order",
        choices=ORDERS,
        default="default",
        help="[upload] order written into the config; default: none written, the daemon's"
        " own default",
    )
    add_shape_options(parser, profile_help="the link (default: 4g)")
    return parser


def _shape(args: argparse.Namespace) -> tuple[str, Profile]:
    name, shape, changed = shape_of(args)
    return (f"{name}, changed" if changed else name), shape


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    name, shape = _shape(args)
    plan = Plan(
        backlog=args.backlog,
        size_mb=args.size_mb,
        fresh=args.fresh,
        every=args.every,
        cap=args.cap,
        baseline=args.baseline,
        concurrency=args.concurrency,
        order=args.order,
        link_name=name,
        shape=shape,
    )
    problem = refused(plan)
    if problem is not None:
        print(f"bench.live: this boothsync refuses the config: {problem}", file=sys.stderr)
        return 2
    try:
        return run(plan)
    except BenchError as exc:
        print(f"bench.live: invalid measurement: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
