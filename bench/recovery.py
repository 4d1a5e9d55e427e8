"""Recovery: how soon after a gallery outage the first waiting picture is in the gallery.

Owns one measurement (issue 14, "outage recovery under continuing faults"): a real
``python -m boothsync run`` process (default concurrency, 2 workers) uploads to the local
receiver; in each round the receiver goes away for ``--outage`` seconds while ``--pictures``
pictures arrive in the hot folder, then comes back on the same port. In a *faulty* round it
comes back still in trouble: ``--error-rate`` of the API requests are answered 503 and
``--stall-rate`` of the others (the probe's too) stall ``--stall`` seconds before they are
answered. A *healthy* round (the baseline, same run) has it come back without faults, so
the difference is what the faults cost. Faulty and healthy rounds alternate.

Figures per round: seconds from the receiver's return to the first waiting picture stored,
and to the last. Target: the first picture within 10 s of the return in a faulty round.

Must not: change or monkeypatch boothsync, wait for state with fixed sleeps (the only fixed
waits are the outage itself and the pacing of drops), or leave processes, threads or
temporary folders behind. Exit codes: 0 measured, 1 invalid run, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.chaos import Gallery, make_pictures
from bench.idle import (
    READY_SECONDS,
    BenchError,
    Child,
    machine,
    positive,
    workspace,
    write_config,
)
from boothsync.receiver import Faults

__all__ = ["main"]

TARGET_FIRST_SECONDS = 10.0
# How long a round may take to deliver everything once the receiver is back.
ROUND_DEADLINE = 120.0
POLL_SECONDS = 0.02
DROP_SECONDS = 0.2
# "ready: every folder scanned"; \b keeps "already" from matching.
_READY = re.compile(r"\bready\b")


@dataclass(frozen=True)
class Round:
    faulty: bool
    first: float  # seconds from the receiver's return to the first waiting picture stored
    last: float  # ... to the last one


def _pause(seconds: float) -> None:
    threading.Event().wait(seconds)


def _await(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise BenchError(f"no {what} within {timeout:.0f} s")
        _pause(POLL_SECONDS)


def one_round(
    gallery: Gallery,
    faults: Faults,
    source: Path,
    hot: Path,
    names: Sequence[str],
    *,
    faulty: bool,
    outage: float,
    error_rate: float,
    stall_rate: float,
    stall: float,
) -> Round:
    before = len(gallery.records())
    gallery.stop()
    # The pictures arrive during the outage, spread over its first half.
    spacing = min(DROP_SECONDS, outage / 2 / max(1, len(names)))
    for name in names:
        (source / name).replace(hot / name)
        _pause(spacing)
    _pause(max(0.0, outage - spacing * len(names)))
    if faulty:
        faults.error_rate, faults.stall_rate, faults.stall = error_rate, stall_rate, stall
    back = gallery.start()
    try:
        _await(
            lambda: len(gallery.records()) >= before + len(names),
            ROUND_DEADLINE,
            "delivery of every waiting picture",
        )
    finally:
        faults.error_rate, faults.stall_rate, faults.stall = 0.0, 0.0, 0.0
    arrived = sorted(r.received_at for r in gallery.records()[before:])
    return Round(faulty=faulty, first=arrived[0] - back, last=arrived[-1] - back)


def run(
    rounds: int, outage: float, pictures: int, error_rate: float, stall_rate: float, stall: float
) -> int:
    say = print
    say(
        f"boothsync outage recovery: {rounds} faulty and {rounds} healthy round(s), outage"
        f" {outage:g} s, {pictures} picture(s) arriving during each"
    )
    say(
        f"faulty return: {error_rate:.0%} of API requests answered 503, {stall_rate:.0%} of the"
        f" others stalled {stall:g} s (the probe's too)"
    )
    say(f"machine: {machine()}")
    with workspace("boothsync-bench-recovery-") as root:
        source = root / "source"
        names = sorted(make_pictures(source, pictures * rounds * 2 + 1))
        hot = root / "hot"
        hot.mkdir()
        faults = Faults(seed=14)
        gallery = Gallery(root / "received", faults)
        config = write_config(
            root / "boothsync.toml",
            watch=hot,
            state=root / "state",
            base_url=f"http://127.0.0.1:{gallery.port}",
            name="bench-recovery",
        )
        daemon = Child(["run", "-c", str(config)])
        results: list[Round] = []
        try:
            daemon.wait_for_line(_READY, READY_SECONDS, "ready line")
            # A first picture, so the connection and the destination's health are warm.
            (source / names[0]).replace(hot / names[0])
            _await(lambda: len(gallery.records()) >= 1, ROUND_DEADLINE, "the first upload")
            batches = [names[1 + i * pictures : 1 + (i + 1) * pictures] for i in range(rounds * 2)]
            for index, batch in enumerate(batches):
                faulty = index % 2 == 0
                result = one_round(
                    gallery,
                    faults,
                    source,
                    hot,
                    batch,
                    faulty=faulty,
                    outage=outage,
                    error_rate=error_rate,
                    stall_rate=stall_rate,
                    stall=stall,
                )
                results.append(result)
                kind = "faulty " if faulty else "healthy"
                say(
                    f"round {index + 1:2d} {kind}: first picture {result.first:5.2f} s,"
                    f" all {len(batch)} {result.last:5.2f} s after the return"
                )
                if daemon.process.poll() is not None:
                    raise BenchError(f"the daemon exited; output:\n{daemon.output}")
        except BenchError as exc:
            say(f"invalid run: {exc}")
            return 1
        finally:
            code, _ = daemon.stop()
            gallery.stop()
        if code != 0:
            say(f"invalid run: the daemon stopped with {code}; output:\n{daemon.output}")
            return 1
    faulty_first = [r.first for r in results if r.faulty]
    healthy_first = [r.first for r in results if not r.faulty]
    worst = max(faulty_first)
    verdict = "met" if worst <= TARGET_FIRST_SECONDS else "MISSED"
    say("")
    say(
        f"first picture after a faulty return: median {statistics.median(faulty_first):.2f} s,"
        f" worst {worst:.2f} s; target <= {TARGET_FIRST_SECONDS:g} s: {verdict}"
    )
    say(
        f"first picture after a healthy return (baseline): median"
        f" {statistics.median(healthy_first):.2f} s, worst {max(healthy_first):.2f} s"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.recovery",
        description="How soon the first waiting picture reaches a gallery back from an outage.",
    )
    parser.add_argument(
        "--rounds",
        type=positive(int),
        default=4,
        help="faulty rounds, and as many healthy ones (default: %(default)s)",
    )
    parser.add_argument(
        "--outage",
        type=positive(float),
        default=20.0,
        help="seconds the gallery is away (default: %(default)s)",
    )
    parser.add_argument(
        "--pictures",
        type=positive(int),
        default=6,
        help="pictures arriving during each outage (default: %(default)s)",
    )
    parser.add_argument(
        "--error-rate",
        type=float,
        default=0.3,
        help="share of API requests answered 503 after a faulty return (default: %(default)s)",
    )
    parser.add_argument(
        "--stall-rate",
        type=float,
        default=0.5,
        help="share of the other requests that stall (default: %(default)s)",
    )
    parser.add_argument(
        "--stall",
        type=positive(float),
        default=4.0,
        help="seconds a stalled request waits (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("error_rate", "stall_rate"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            _parser().error(f"--{name.replace('_', '-')} must be between 0 and 1")
    return run(
        args.rounds, args.outage, args.pictures, args.error_rate, args.stall_rate, args.stall
    )


if __name__ == "__main__":
    sys.exit(main())
