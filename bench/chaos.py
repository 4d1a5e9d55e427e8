"""Chaos run: every picture arrives byte-exact while the gallery fails and the daemon dies.

Owns one end-to-end check of delivery under faults (issue 5): a real ``python -m boothsync
run`` process uploads N distinct pictures to the local receiver while

- a share of the API requests fail (``--fault-rate``): connection resets, and 500, 503 and
  429 (with ``Retry-After: 1``) answers, the status changing every 0.3 s; some stretches
  also answer slowly (0.05 to 0.2 s before anything else happens), and one in seven so
  slowly (the URL lifetime and half a second) that a PUT finds its URL expired;
- presigned upload URLs expire after ``--url-lifetime`` seconds;
- the receiver is stopped for ``--outage`` seconds in the middle and started again on the
  same port with the same storage folder;
- the daemon is SIGKILLed ``--kills`` times while files are still arriving, and restarted
  at once each time.

The first half of the pictures is renamed into the hot folder during the first seconds, the
second half during the outage, so that there is work waiting when the receiver comes back
and the time to the first upload after its return measures the recovery. Half the kills
fall before the outage (which waits for one more arrival after the last of them), the rest
after the first upload that follows it; each kill waits
for at least one new arrival after the previous one, so every kill meets a daemon that was
uploading.

The receiver runs in this process (:class:`~boothsync.receiver.Receiver`), so its faults
can change while it serves and its records survive its restart. At the end, every stored
copy is read back from disk and hashed against its original.

Must not: change or monkeypatch boothsync, wait for state with fixed sleeps (the only fixed
waits are the outage itself and the pacing of drops and fault changes), or leave processes,
threads or temporary folders behind.

Exit codes: 0 every picture arrived byte-exact and the daemon stopped cleanly (exit code 0
within 10 s of SIGTERM), 1 otherwise (a picture missing or damaged, a daemon that did not
start or crashed, or a run that could not be carried out), 2 bad arguments. Duplicates and
the recovery time are printed beside their targets; they do not change the exit code.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bench.idle import (
    READY_SECONDS,
    STOP_SECONDS,
    BenchError,
    Child,
    machine,
    workspace,
    write_config,
)
from boothsync.demo import write_sample_jpeg
from boothsync.receiver import OTHER, Faults, ReceivedFile, Receiver

__all__ = ["main"]

CONCURRENCY = 2
# How long the delivery may take once the scenario (drops, outage) has played out.
DEADLINE_SECONDS = 180.0
TARGET_RECOVERY_SECONDS = 10.0
# One in four failing requests is a reset, the rest are error answers.
RESET_SHARE = 0.25
ROTATE_SECONDS = 0.3
# (error status, Retry-After, delay before answering): one step per ROTATE_SECONDS.
FAULT_STEPS: tuple[tuple[int, str | None, float], ...] = (
    (500, None, 0.0),
    (503, None, 0.1),
    (429, "1", 0.0),
    (500, None, 0.2),
    (503, None, 0.0),
    (429, "1", 0.05),
)
# Once per round of FAULT_STEPS, answers so slow that a PUT finds its URL expired (the
# storage's 403), which a fresh URL must cure: the delay is the URL lifetime plus this.
EXPIRY_MARGIN = 0.5
DROP_SECONDS = 0.1  # between two pictures renamed into the hot folder
POLL_SECONDS = 0.02
BIND_SECONDS = 10.0

# "ready: every folder scanned"; \b keeps "already" from matching.
_READY = re.compile(r"\bready\b")


class Timeout(Exception):
    """The deadline passed; the message says what was awaited."""


def _pause(seconds: float) -> None:
    threading.Event().wait(seconds)


# -- the gallery: one receiver at a time on a fixed port -----------------------------------------


class Gallery:
    """The receiver, stopped and started again on the same port and folder, and what it got."""

    def __init__(self, directory: Path, faults: Faults) -> None:
        self.directory = directory
        self.faults = faults
        self._lock = threading.Lock()
        self._records: list[ReceivedFile] = []  # from receivers already stopped
        self._counts: dict[str, dict[int, int]] = {}
        self._current: Receiver | None = Receiver(directory, faults=faults).start()
        self.base_url = self._current.base_url
        self.port = int(self.base_url.rsplit(":", 1)[1])

    @property
    def up(self) -> bool:
        with self._lock:
            return self._current is not None

    def stop(self) -> None:
        """Take the receiver away; its records and counts are kept."""
        with self._lock:
            current, self._current = self._current, None
        if current is None:
            return
        current.stop()
        with self._lock:
            self._records.extend(current.received())
            for endpoint, statuses in current.counts().items():
                mine = self._counts.setdefault(endpoint, {})
                for status, n in statuses.items():
                    mine[status] = mine.get(status, 0) + n

    def start(self) -> float:
        """A new receiver on the same port and folder; the Unix time it started serving."""
        deadline = time.monotonic() + BIND_SECONDS
        while True:
            try:
                receiver = Receiver(self.directory, port=self.port, faults=self.faults)
                break
            except OSError as exc:
                # The port is ours by intent, but the kernel may hold it a moment longer.
                if time.monotonic() >= deadline:
                    raise BenchError(f"cannot bind port {self.port} again: {exc}") from exc
                _pause(0.1)
        receiver.start()
        started = time.time()
        with self._lock:
            self._current = receiver
        return started

    def records(self) -> list[ReceivedFile]:
        with self._lock:
            current = self._current
            records = list(self._records)
        return records + ([] if current is None else current.received())

    def counts(self) -> dict[str, dict[int, int]]:
        with self._lock:
            current = self._current
            merged = {endpoint: dict(statuses) for endpoint, statuses in self._counts.items()}
        for endpoint, statuses in ({} if current is None else current.counts()).items():
            mine = merged.setdefault(endpoint, {})
            for status, n in statuses.items():
                mine[status] = mine.get(status, 0) + n
        return merged

    def requests(self) -> int:
        return sum(sum(statuses.values()) for statuses in self.counts().values())


class FaultRotator:
    """Changes the injected error status and the delay every ROTATE_SECONDS.

    Faults has one error status and one fixed delay; rotating them gives the mix. The
    number of slow answers is estimated from the requests answered while a delay was set.
    """

    def __init__(self, faults: Faults, gallery: Gallery) -> None:
        self.faults = faults
        self.gallery = gallery
        expiry = (503, None, faults.url_lifetime + EXPIRY_MARGIN)
        self.steps: list[tuple[int, str | None, float]] = [*FAULT_STEPS, expiry]
        self.slow = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-faults", daemon=True)

    def _apply(self, status: int, retry_after: str | None, delay: float) -> None:
        # Retry-After first when it is set and last when it is cleared, so that no 429
        # goes out without one.
        if retry_after is not None:
            self.faults.retry_after = retry_after
        self.faults.error_status = status
        self.faults.retry_after = retry_after
        self.faults.delay = delay

    def _run(self) -> None:
        step = 0
        before = self.gallery.requests()
        while True:
            status, retry_after, delay = self.steps[step % len(self.steps)]
            self._apply(status, retry_after, delay)
            stopping = self._stop.wait(ROTATE_SECONDS)
            now = self.gallery.requests()
            if delay > 0:
                self.slow += now - before
            before = now
            if stopping:
                return
            step += 1

    def start(self) -> None:
        self._apply(*self.steps[0])
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)


# -- the booth: pictures, the hot folder, the daemon ---------------------------------------------


def make_pictures(folder: Path, count: int) -> dict[str, str]:
    """``count`` distinct small JPEGs in ``folder``; their sha256 by file name."""
    folder.mkdir(parents=True, exist_ok=True)
    taken = datetime(2026, 6, 1, 20, 0)
    hashes: dict[str, str] = {}
    for index in range(count):
        name = f"IMG_{index + 1:04d}.jpg"
        # Distinct label, time and colour: identical content would be deduplicated on purpose.
        colour = (40 + index * 37 % 200, 60 + index * 53 % 180, 80 + index * 71 % 160)
        path = folder / name
        write_sample_jpeg(path, taken + timedelta(seconds=index), f"chaos {name}", colour)
        hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


class Dropper:
    """Renames pictures into the hot folder one by one, as booth software does."""

    def __init__(self, source: Path, hot: Path) -> None:
        self.source = source
        self.hot = hot
        self.dropped: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def count(self) -> int:
        with self._lock:
            return len(self.dropped)

    def drop(self, names: Sequence[str], spacing: float) -> None:
        """Start dropping ``names``, ``spacing`` seconds apart, in the background."""
        self.join()
        self._thread = threading.Thread(
            target=self._run, args=(list(names), spacing), name="chaos-drop", daemon=True
        )
        self._thread.start()

    def _run(self, names: list[str], spacing: float) -> None:
        for index, name in enumerate(names):
            if index and self._stop.wait(spacing):
                return
            temporary = self.hot / f"{name}.tmp"
            shutil.copyfile(self.source / name, temporary)
            os.replace(temporary, self.hot / name)
            with self._lock:
                self.dropped.append(name)

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def stop(self) -> None:
        self._stop.set()
        self.join()


class Daemon:
    """``boothsync run``, killed and restarted; every incarnation's output is kept."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.lives: list[Child] = []
        self.kills = 0
        self.start()

    @property
    def current(self) -> Child:
        return self.lives[-1]

    def start(self) -> None:
        self.lives.append(Child(["run", "-c", str(self.config)]))

    def check_alive(self) -> None:
        code = self.current.process.poll()
        if code is not None:
            raise BenchError(f"the daemon exited by itself with {code}; output:\n{self.output()}")

    def kill_and_restart(self) -> tuple[int, int]:
        """SIGKILL (TerminateProcess on Windows) and start again at once; the two pids."""
        self.check_alive()
        old = self.current
        old.process.kill()
        old.process.wait()
        self.kills += 1
        self.start()
        old.stop()  # only collects the end of its output
        return old.pid, self.current.pid

    def stop(self) -> tuple[int | None, float]:
        return self.current.stop()

    def output(self) -> str:
        parts = []
        for number, life in enumerate(self.lives, 1):
            parts.append(f"--- daemon run {number} (pid {life.pid}) ---\n{life.output}")
        return "".join(parts)

    def lines_about(self, names: Sequence[str]) -> list[str]:
        found = []
        for number, life in enumerate(self.lives, 1):
            for line in life.lines:
                if any(name in line for name in names):
                    found.append(f"[run {number}] {line.rstrip()}")
        return found


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    files: int
    delivered: int
    missing: list[str]
    damaged: int  # stored copies whose bytes differ from the original
    strangers: int  # stored files under a name that was never dropped
    duplicates: int
    counts: dict[str, dict[int, int]]
    slow: int
    kills: int
    kills_pending: int  # kills while dropped pictures had not all arrived
    outage: float
    recovery: float | None
    total: float
    exit_code: int | None
    stop_seconds: float

    @property
    def duplicate_limit(self) -> int:
        """The most extra copies the run may leave: one per upload cut off between the
        gallery storing it and boothsync recording its answer, by a kill or by the outage,
        with CONCURRENCY uploads at a time. The gallery cannot be asked what it holds, so such
        an upload goes again."""
        return (self.kills + (1 if self.outage > 0 else 0)) * CONCURRENCY


def check_copies(
    records: Sequence[ReceivedFile], originals: dict[str, str]
) -> tuple[set[str], int, int, int]:
    """(names delivered byte-exact, damaged copies, strangers, duplicates) from the stored
    files themselves, not the receiver's word."""
    delivered: set[str] = set()
    copies: dict[str, int] = {}
    damaged = strangers = 0
    for record in records:
        copies[record.file_name] = copies.get(record.file_name, 0) + 1
        expected = originals.get(record.file_name)
        if expected is None:
            strangers += 1
            continue
        stored = hashlib.sha256(record.path.read_bytes()).hexdigest()
        if stored == expected == record.sha256:
            delivered.add(record.file_name)
        else:
            damaged += 1
    duplicates = sum(n - 1 for n in copies.values() if n > 1)
    return delivered, damaged, strangers, duplicates


def thresholds(start: int, span: int, kills: int) -> list[int]:
    """Arrival counts at which to kill: spread over ``span`` arrivals after ``start``, each at
    least one arrival after the previous one."""
    marks: list[int] = []
    previous = start
    for j in range(1, kills + 1):
        mark = max(previous + 1, start + math.ceil(span * j / (kills + 1)))
        marks.append(mark)
        previous = mark
    return marks


class Chaos:
    """One run of the scenario; see the module docstring."""

    def __init__(
        self,
        root: Path,
        *,
        files: int,
        kills: int,
        outage: float,
        fault_rate: float,
        url_lifetime: float,
        seed: int,
    ) -> None:
        self.files = files
        self.kills = kills
        self.outage = outage
        self.say = print
        self.originals = make_pictures(root / "source", files)
        self.started = time.monotonic()
        self.hot = root / "hot"
        self.hot.mkdir()
        reset_rate = fault_rate * RESET_SHARE
        # Resets are drawn first; the error rate applies to the requests that were not reset.
        error_rate = (fault_rate - reset_rate) / (1.0 - reset_rate)
        self.faults = Faults(
            error_rate=error_rate,
            reset_rate=reset_rate,
            url_lifetime=url_lifetime,
            seed=seed,
        )
        self.root = root
        self.kills_pending = 0

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:6.1f} s"

    def arrived(self, gallery: Gallery) -> int:
        return len({r.file_name for r in gallery.records()})

    def reached(self, gallery: Gallery, mark: int) -> Callable[[], bool]:
        return lambda: self.arrived(gallery) >= mark

    def wait(
        self, predicate: Callable[[], bool], daemon: Daemon, deadline: float, what: str
    ) -> None:
        while not predicate():
            daemon.check_alive()
            if time.monotonic() >= deadline:
                raise Timeout(what)
            _pause(POLL_SECONDS)

    def kill_at(
        self,
        marks: Sequence[int],
        gallery: Gallery,
        dropper: Dropper,
        daemon: Daemon,
        deadline: float,
    ) -> None:
        for mark in marks:
            self.wait(
                self.reached(gallery, mark),
                daemon,
                deadline,
                f"{mark} arrivals for kill {daemon.kills + 1}",
            )
            arrived, dropped = self.arrived(gallery), dropper.count()
            old, new = daemon.kill_and_restart()
            if arrived < dropped or dropped < self.files:
                self.kills_pending += 1
            self.say(
                f"{self.elapsed()}  kill {daemon.kills}: SIGKILL to pid {old} with"
                f" {arrived}/{dropped} dropped picture(s) arrived; restarted as pid {new}"
            )

    def run(self) -> Outcome:
        files, kills, outage = self.files, self.kills, self.outage
        names = sorted(self.originals)
        first, second = (
            (names, [])
            if outage == 0
            else (names[: files - files // 2], names[files - files // 2 :])
        )
        kills_before = kills if outage == 0 else (kills + 1) // 2
        gallery = Gallery(self.root / "received", self.faults)
        rotator = FaultRotator(self.faults, gallery)
        dropper = Dropper(self.root / "source", self.hot)
        config = write_config(
            self.root / "chaos.toml",
            watch=self.hot,
            state=self.root / "state",
            base_url=gallery.base_url,
            name="bench-chaos",
            concurrency=CONCURRENCY,
        )
        recovery: float | None = None
        daemon: Daemon | None = None
        exit_code: int | None = None
        stop_seconds = 0.0
        try:
            rotator.start()
            self.say(f"{self.elapsed()}  receiver at {gallery.base_url}")
            daemon = Daemon(config)
            daemon.current.wait_for_line(_READY, READY_SECONDS, "ready line")
            self.say(f"{self.elapsed()}  daemon ready (pid {daemon.current.pid})")
            deadline = time.monotonic() + outage + DEADLINE_SECONDS
            try:
                dropper.drop(first, DROP_SECONDS)
                marks = thresholds(0, len(first), kills_before)
                self.kill_at(marks, gallery, dropper, daemon, deadline)
                if outage > 0:
                    # The outage meets a daemon that is uploading, not one just started.
                    mark = marks[-1] + 1 if marks else math.ceil(len(first) / 2)
                    self.wait(
                        self.reached(gallery, min(mark, len(first))),
                        daemon,
                        deadline,
                        "an upload before the outage",
                    )
                    dropper.join()
                    gallery.stop()
                    arrived = self.arrived(gallery)
                    self.say(
                        f"{self.elapsed()}  receiver stopped for {outage:g} s with"
                        f" {arrived}/{len(first)} picture(s) arrived"
                    )
                    # The second half arrives at the booth while the gallery is away.
                    dropper.drop(second, min(DROP_SECONDS, outage / 2 / max(1, len(second))))
                    _pause(outage)
                    back = gallery.start()
                    base = self.arrived(gallery)
                    self.say(f"{self.elapsed()}  receiver back on the same port, {base} arrived")
                    self.wait(
                        lambda: any(r.received_at >= back for r in gallery.records()),
                        daemon,
                        deadline,
                        "the first upload after the outage",
                    )
                    first_after = min(
                        r.received_at for r in gallery.records() if r.received_at >= back
                    )
                    recovery = first_after - back
                    self.say(f"{self.elapsed()}  first upload after the outage: {recovery:.2f} s")
                    self.kill_at(
                        thresholds(base, files - base, kills - kills_before),
                        gallery,
                        dropper,
                        daemon,
                        deadline,
                    )
                dropper.join()
                self.wait(lambda: self.arrived(gallery) >= files, daemon, deadline, "every picture")
                self.say(f"{self.elapsed()}  every picture arrived")
            except Timeout as exc:
                self.say(f"{self.elapsed()}  deadline passed waiting for {exc}")
            exit_code, stop_seconds = daemon.stop()
        finally:
            dropper.stop()
            if daemon is not None and daemon.current.process.poll() is None:
                daemon.stop()
            rotator.stop()
            gallery.stop()
        records = gallery.records()
        delivered, damaged, strangers, duplicates = check_copies(records, self.originals)
        missing = [n for n in names if n not in delivered]
        outcome = Outcome(
            files=files,
            delivered=len(delivered),
            missing=missing,
            damaged=damaged,
            strangers=strangers,
            duplicates=duplicates,
            counts=gallery.counts(),
            slow=rotator.slow,
            kills=daemon.kills,
            kills_pending=self.kills_pending,
            outage=outage,
            recovery=recovery,
            total=time.monotonic() - self.started,
            exit_code=exit_code,
            stop_seconds=stop_seconds,
        )
        if missing or damaged or duplicates > outcome.duplicate_limit or exit_code != 0:
            self.say("")
            self.say("daemon log lines about the pictures concerned:")
            concerned = missing or [
                name for name in names if sum(r.file_name == name for r in records) > 1
            ]
            for line in daemon.lines_about(concerned)[-80:]:
                self.say(f"  {line}")
            errors = [
                line.rstrip()
                for life in daemon.lives
                for line in life.lines
                if line.startswith(("<3>", "<2>"))
            ]
            if errors:
                self.say("daemon ERROR lines:")
                for line in errors[-40:]:
                    self.say(f"  {line}")
        return outcome


# -- output --------------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def describe_faults(outcome: Outcome) -> list[str]:
    """The faults injected by kind, and the other answers worth knowing."""
    counts = outcome.counts
    requests = sum(sum(statuses.values()) for statuses in counts.values())
    kinds = {"reset": 0, "500": 0, "503": 0, "429": 0}
    for endpoint, statuses in counts.items():
        if endpoint == OTHER:
            continue
        for status, n in statuses.items():
            if status == 0:
                kinds["reset"] += n
            elif str(status) in kinds:
                kinds[str(status)] += n
    injected = sum(kinds.values())
    share = 100.0 * injected / requests if requests else 0.0
    mix = ", ".join(f"{kind} {n}" for kind, n in kinds.items())
    expired = counts.get("put", {}).get(403, 0)
    return [
        f"faults injected:   {injected} of {requests} API requests ({share:.0f} %): {mix};"
        f" slow answers (0.05 s to the URL lifetime + {EXPIRY_MARGIN:g} s) about {outcome.slow}",
        f"expired URLs:      {expired} PUT(s) answered 403 (URL lifetime passed; not injected)",
    ]


def describe(outcome: Outcome) -> list[str]:
    recovery = (
        "n/a (no outage)"
        if outcome.outage == 0
        else "n/a (nothing arrived after the outage)"
        if outcome.recovery is None
        else f"{outcome.recovery:.2f} s from the receiver's return to the first upload"
        f" (target <= {TARGET_RECOVERY_SECONDS:g} s: "
        f"{_verdict(outcome.recovery <= TARGET_RECOVERY_SECONDS)})"
    )
    stop = (
        f"did not stop within {STOP_SECONDS:g} s of SIGTERM"
        if outcome.exit_code is None
        else f"{outcome.exit_code} after {outcome.stop_seconds:.2f} s (SIGTERM)"
    )
    missing = ", ".join(outcome.missing[:10]) + (" ..." if len(outcome.missing) > 10 else "")
    return [
        f"files:             {outcome.files}",
        *describe_faults(outcome),
        f"kills:             {outcome.kills} (SIGKILL while pictures were on their way:"
        f" {outcome.kills_pending})",
        f"outage:            {outcome.outage:g} s",
        f"delivered:         {outcome.delivered} of {outcome.files} byte-exact",
        f"missing:           {len(outcome.missing)}" + (f" ({missing})" if missing else ""),
        f"damaged copies:    {outcome.damaged}",
        f"unexpected files:  {outcome.strangers}",
        f"duplicates:        {outcome.duplicates} (target <= {outcome.duplicate_limit}, one per"
        f" upload cut off by a kill or the outage, {CONCURRENCY} at a time:"
        f" {_verdict(outcome.duplicates <= outcome.duplicate_limit)})",
        f"recovery:          {recovery}",
        f"total time:        {outcome.total:.1f} s",
        f"daemon exit code:  {stop}",
    ]


def passed(outcome: Outcome) -> bool:
    return (
        outcome.delivered == outcome.files
        and not outcome.damaged
        and not outcome.strangers
        and outcome.exit_code == 0
    )


# -- the command ---------------------------------------------------------------------------------


def _number(kind: type[float] | type[int], low: float, high: float | None = None) -> Any:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text}") from None
        if value < low or (high is not None and value >= high):
            upper = "" if high is None else f" and below {high:g}"
            raise argparse.ArgumentTypeError(f"must be at least {low:g}{upper} (got {text})")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description="Deliver pictures through failing requests, an outage and killed daemons.",
    )
    parser.add_argument(
        "--files", type=_number(int, 1), default=60, help="pictures (default: %(default)s)"
    )
    parser.add_argument(
        "--kills",
        type=_number(int, 0),
        default=3,
        help="SIGKILLs of the daemon (default: %(default)s)",
    )
    parser.add_argument(
        "--outage",
        type=_number(float, 0),
        default=20.0,
        help="seconds the receiver is away; 0 for none (default: %(default)s)",
    )
    parser.add_argument(
        "--fault-rate",
        type=_number(float, 0, 1),
        default=0.3,
        help="share of API requests that fail (default: %(default)s)",
    )
    parser.add_argument(
        "--url-lifetime",
        type=_number(float, 0.1),
        default=3.0,
        help="seconds an upload URL stays valid (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the injected faults (default: a random one, printed)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    print(
        f"boothsync chaos: {args.files} picture(s), {args.kills} kill(s), {args.outage:g} s outage,"
        f" {args.fault_rate * 100:g} % of requests failing, URLs valid {args.url_lifetime:g} s,"
        f" seed {seed}"
    )
    print(f"machine: {machine()}")
    try:
        with workspace("boothsync-bench-chaos-") as root:
            chaos = Chaos(
                root,
                files=args.files,
                kills=args.kills,
                outage=args.outage,
                fault_rate=args.fault_rate,
                url_lifetime=args.url_lifetime,
                seed=seed,
            )
            outcome = chaos.run()
    except BenchError as exc:
        print(f"bench.chaos: invalid run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print("")
    for line in describe(outcome):
        print(line)
    ok = passed(outcome)
    print(f"result:            {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
