"""``python -m bench``: every benchmark, one after the other, then each figure beside its target.

Owns running the benchmark modules as they would be run by hand (each in its own process, so
one's memory and threads never count against another) and collecting the lines where each
prints a figure with its target. Must not measure anything itself or judge a figure: the
benchmarks do that. Exit code: 0 when every benchmark measured validly, 1 when one did not,
2 bad arguments.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["BENCHMARKS", "main"]


@dataclass(frozen=True)
class Benchmark:
    name: str
    what: str
    quick: tuple[str, ...]  # arguments for `--quick`: the same measurement, smaller


BENCHMARKS = (
    Benchmark("latency", "one 3 MB picture at a time, drop to uploaded", ("--drops", "10")),
    Benchmark("burst", "300 x 3 MB at once against a bare httpx loop", ("--files", "60")),
    Benchmark(
        "idle", "10,000 uploaded pictures, 60 s idle", ("--seconds", "10", "--files", "2000")
    ),
    Benchmark(
        "restart", "start to READY with 10,000 known files", ("--files", "2000", "--runs", "1")
    ),
    Benchmark("outbox", "100,000 waiting jobs: claims, completions, status", ("--jobs", "20000")),
    Benchmark(
        "recovery",
        "first picture after a 20 s outage, the gallery still failing and stalling",
        ("--rounds", "2", "--outage", "8"),
    ),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run every boothsync benchmark and print each figure beside its target.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smaller runs of the same measurements (minutes)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[b.name for b in BENCHMARKS],
        metavar="NAME",
        help="run only this benchmark (repeatable): " + ", ".join(b.name for b in BENCHMARKS),
    )
    return parser


_VERDICT = re.compile(r"\btargets?\b|\bmet\b|\bMISSED\b")


def _targets(output: str) -> list[str]:
    """The lines where a benchmark set a figure beside its target (or its verdict)."""
    return [line.rstrip() for line in output.splitlines() if _VERDICT.search(line)]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    chosen = [b for b in BENCHMARKS if not args.only or b.name in args.only]
    summary: list[tuple[str, int, float, list[str]]] = []
    for bench in chosen:
        command = [
            sys.executable,
            "-m",
            f"bench.{bench.name}",
            *(bench.quick if args.quick else ()),
        ]
        print(f"=== {bench.name}: {bench.what} ({' '.join(command[1:])})", flush=True)
        started = time.monotonic()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
        code = process.wait()
        took = time.monotonic() - started
        summary.append((bench.name, code, took, _targets("".join(lines))))
        print(flush=True)
    print("=== summary (figures beside their targets)")
    for name, code, took, targets in summary:
        state = "measured" if code == 0 else f"INVALID (exit {code})"
        print(f"{name}: {state} in {took:.0f} s")
        for line in targets:
            print(f"  {line.strip()}")
    return 0 if all(code == 0 for _, code, _, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
