"""Latency: from a picture finished on disk to the gallery having it, one picture at a time.

Owns one measurement: a real ``python -m boothsync run`` process watching a folder, the local
receiver (``boothsync receiver``, a process of its own) on 127.0.0.1, and booth-sized JPEGs
(about 3 MB, real EXIF, every one distinct) dropped one at a time in two ways:

- ``in place``: opened in the watched folder, written in chunks, closed (what booth software
  does);
- ``renamed``: written in a sibling folder on the same filesystem, then renamed in.

The latency of one picture is the receiver's ``received_at`` (Unix time, when the upload
completed) minus the moment the write finished (after the close, or after the rename), both
from ``time.time()`` on this machine. Each picture must arrive before the next is dropped.
The baseline, in the same run: what the two requests of one upload cost on their own (POST
getuploadurl, then PUT the bytes) from a plain httpx client to the same receiver; every
latency is also given as a ratio to it.

Must not: change or monkeypatch boothsync, fail because a target is missed (targets are
printed beside the figures), or leave processes or temporary folders behind.

Exit codes: 0 measured, 1 the measurement is invalid (the daemon did not start, a picture
did not arrive, the daemon did not stop cleanly), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import struct
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

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
from boothsync.demo import write_sample_jpeg
from boothsync.receiver import DEMO_API_KEY

__all__ = [
    "ARRIVAL_SECONDS",
    "Gallery",
    "bare_upload",
    "main",
    "percentile",
    "picture_bytes",
    "sample_jpeg",
]

TARGET_P50_MS = 300.0
ARRIVAL_SECONDS = 30.0
# What booth software writes with; also the size the pictures are written in.
WRITE_CHUNK = 256 * 1024
# The baseline's uploads: enough for a stable median, few enough to take a second or two.
BASELINE_UPLOADS = 15
# How often the harness asks the receiver whether the picture is there.
POLL_SECONDS = 0.02
# The largest payload one JPEG marker segment can carry.
_SEGMENT = 65533

_LINUX = sys.platform.startswith("linux")


# -- pictures ----------------------------------------------------------------------------------


def sample_jpeg(folder: Path) -> bytes:
    """A small real JPEG with an EXIF capture time (made once per run)."""
    path = folder / "sample.jpg"
    write_sample_jpeg(path, datetime(2026, 6, 1, 20, 0), "bench", (46, 134, 193))
    data = path.read_bytes()
    path.unlink()
    return data


def _after_app_segments(jpeg: bytes) -> int:
    """Where the application segments (JFIF, EXIF) after SOI end."""
    at = 2
    while at + 4 <= len(jpeg) and jpeg[at] == 0xFF and 0xE0 <= jpeg[at + 1] <= 0xEF:
        at += 2 + struct.unpack(">H", jpeg[at + 2 : at + 4])[0]
    return at


def picture_bytes(sample: bytes, size: int) -> bytes:
    """``sample`` grown to about ``size`` bytes with segments of random noise: a valid JPEG
    whose EXIF still comes first, and distinct bytes every time (the noise differs)."""
    head = _after_app_segments(sample)
    parts = [sample[:head]]
    left = size - len(sample)
    while left > 4:
        payload = min(_SEGMENT, left - 4)
        # APP15 segments: decoders and EXIF readers skip them.
        parts.append(b"\xff\xef" + struct.pack(">H", payload + 2) + os.urandom(payload))
        left -= payload + 4
    parts.append(sample[head:])
    return b"".join(parts)


def write_in_chunks(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        for start in range(0, len(data), WRITE_CHUNK):
            handle.write(data[start : start + WRITE_CHUNK])


# -- the receiver ------------------------------------------------------------------------------


class Gallery:
    """What the receiver process has stored, asked over its control endpoint."""

    def __init__(self, receiver: ReceiverProcess) -> None:
        self.receiver = receiver
        parts = urlsplit(receiver.base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        # One kept-alive connection: polling must cost the receiver as little as possible.
        self._conn: http.client.HTTPConnection | None = None

    def _get(self, path: str) -> Any:
        for tries in (1, 2):
            if self._conn is None:
                # http.client rather than httpx: no proxy settings from the environment apply.
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=10)
            try:
                self._conn.request("GET", path)
                response = self._conn.getresponse()
                body = response.read()
            except OSError as exc:
                self._conn.close()
                self._conn = None
                if tries == 2:
                    raise BenchError(f"cannot ask the receiver {path}: {exc}") from exc
                continue
            if response.status != 200:
                raise BenchError(f"receiver answered {response.status} to {path}")
            return json.loads(body)
        raise AssertionError("unreachable")

    def records(self) -> list[dict[str, Any]]:
        """Every stored upload so far, in the order they completed (one large answer)."""
        records: list[dict[str, Any]] = self._get("/_control/received")
        return records

    def counts(self) -> dict[str, dict[str, int]]:
        """The receiver's answers so far, ``{endpoint: {status: n}}``: a small answer, cheap
        to ask often."""
        counts: dict[str, dict[str, int]] = self._get("/_control/counts")["counts"]
        return counts

    def stored(self) -> int:
        """How many uploads the receiver has stored."""
        return int(self.counts().get("put", {}).get("200", 0))

    def wait_for(self, count: int, timeout: float, what: str) -> list[dict[str, Any]]:
        """The records once at least ``count`` uploads are stored; BenchError at the deadline.

        Asks for the small count while waiting: the full list grows with every upload, and
        serving it often would take the receiver's CPU from the uploads being measured.
        (How often it asks changes no figure: ``received_at`` is the receiver's own clock.)
        """
        deadline = time.monotonic() + timeout
        while self.stored() < count:
            if time.monotonic() >= deadline:
                raise BenchError(f"{what} did not arrive within {timeout:.0f} s")
            threading.Event().wait(POLL_SECONDS)
        return self.records()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def upload_body(name: str) -> dict[str, Any]:
    """A getuploadurl body like boothsync's for the demo event."""
    return {
        "apiKey": DEMO_API_KEY,
        "linkId": "demo",
        "fileName": name,
        "takenAt": 1780344000000,
        "albumId": "a1",
    }


def bare_upload(client: httpx.Client, base_url: str, path: Path) -> None:
    """The two requests of one upload, nothing else: POST getuploadurl, PUT the file."""
    answer = client.post(f"{base_url}/getuploadurl", json=upload_body(path.name))
    answer.raise_for_status()
    url = answer.json()["uploadUrl"]
    size = path.stat().st_size
    with open(path, "rb") as handle:
        put = client.put(
            url,
            content=iter(lambda: handle.read(WRITE_CHUNK), b""),
            headers={"Content-Type": "image/jpeg", "Content-Length": str(size)},
        )
    put.raise_for_status()


def baseline_seconds(base_url: str, path: Path, count: int) -> list[float]:
    """How long ``count`` bare uploads of ``path`` took, one after the other."""
    times = []
    with httpx.Client(trust_env=False, timeout=30.0) as client:
        for _ in range(count):
            started = time.perf_counter()
            bare_upload(client, base_url, path)
            times.append(time.perf_counter() - started)
    return times


# -- figures -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    """The ``share`` percentile (0..1) by the nearest-rank method."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * share // 1)))
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class Mode:
    name: str
    latencies: list[float]  # seconds

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 0.50)

    @property
    def p95(self) -> float:
        return percentile(self.latencies, 0.95)

    @property
    def max(self) -> float:
        return max(self.latencies)


def verdict(p50_ms: float) -> str:
    if not _LINUX:
        return f"target p50 <= {TARGET_P50_MS:.0f} ms is for Linux"
    return f"target p50 <= {TARGET_P50_MS:.0f} ms: {'met' if p50_ms <= TARGET_P50_MS else 'MISSED'}"


def report(modes: Sequence[Mode], baseline: float) -> list[str]:
    lines = [
        f"{'mode':<10}{'drops':>6}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
        f"{'p50 x base':>12}{'p95 x base':>12}  target"
    ]
    for mode in modes:
        lines.append(
            f"{mode.name:<10}{len(mode.latencies):>6}{mode.p50 * 1000:>9.1f}"
            f"{mode.p95 * 1000:>9.1f}{mode.max * 1000:>9.1f}"
            f"{mode.p50 / baseline:>12.2f}{mode.p95 / baseline:>12.2f}  {verdict(mode.p50 * 1000)}"
        )
    return lines


# -- the run -----------------------------------------------------------------------------------


def drop(
    mode: str, data: bytes, watched: Path, staging: Path, name: str, gallery: Gallery, seen: int
) -> float:
    """Drop one picture and wait for it; returns its latency in seconds."""
    if mode == "in place":
        write_in_chunks(watched / name, data)
        finished = time.time()
    else:
        write_in_chunks(staging / name, data)
        os.replace(staging / name, watched / name)
        finished = time.time()
    records = gallery.wait_for(seen + 1, ARRIVAL_SECONDS, f"{name} ({mode})")
    if len(records) != seen + 1 or records[-1]["file_name"] != name:
        got = [r["file_name"] for r in records[seen:]]
        raise BenchError(f"expected only {name} to arrive, got {got}")
    return float(records[-1]["received_at"]) - finished


def run(drops: int, size_mb: float) -> int:
    say = print
    size = int(size_mb * 1_000_000)
    say(f"boothsync latency: {drops} drop(s) per mode, {size / 1e6:.1f} MB JPEGs, one at a time")
    say(f"machine: {machine()}")
    with workspace("boothsync-bench-latency-") as root:
        sample = sample_jpeg(root)
        watched = root / "hot"
        staging = root / "staging"
        watched.mkdir()
        staging.mkdir()
        receiver = ReceiverProcess(root / "received")
        gallery = Gallery(receiver)
        daemon: Child | None = None
        try:
            url = receiver.base_url
            probe = staging / "baseline.jpg"
            probe.write_bytes(picture_bytes(sample, size))
            base = percentile(baseline_seconds(url, probe, BASELINE_UPLOADS), 0.5)
            probe.unlink()
            config = write_config(
                root / "latency.toml",
                watch=watched,
                state=root / "state",
                base_url=url,
                name="bench-latency",
            )
            daemon = Child(["run", "-c", str(config)])
            daemon.wait_for_line(re.compile(r"\bready\b"), READY_SECONDS, "ready line")
            seen = len(gallery.records())
            say(
                f"receiver at {url}; baseline (bare POST + PUT, p50 of {BASELINE_UPLOADS}):"
                f" {base * 1000:.1f} ms"
            )
            modes = []
            for mode in ("in place", "renamed"):
                latencies = []
                for index in range(drops):
                    name = f"{'INPLACE' if mode == 'in place' else 'RENAMED'}_{index:04d}.jpg"
                    data = picture_bytes(sample, size)
                    try:
                        latencies.append(drop(mode, data, watched, staging, name, gallery, seen))
                    except BenchError as exc:
                        raise BenchError(f"{exc}; output:\n{daemon.output}") from exc
                    seen += 1
                modes.append(Mode(mode, latencies))
        finally:
            gallery.close()
            code: int | None = 0
            if daemon is not None:
                code, _ = daemon.stop()
            receiver.stop()
        if code != 0:
            said = "did not stop within" if code is None else f"exited with {code} within"
            raise BenchError(f"the daemon {said} {STOP_SECONDS:.0f} s of the stop signal")
    say("")
    say("latency = receiver's received_at - time the write finished (close, or rename)")
    for line in report(modes, base):
        say(line)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency",
        description="From a picture finished on disk to the gallery having it, one at a time.",
    )
    parser.add_argument(
        "--drops", type=positive(int), default=30, help="pictures per mode (default: %(default)s)"
    )
    parser.add_argument(
        "--size-mb",
        type=positive(float),
        default=3.0,
        help="size of each picture in MB (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return run(args.drops, args.size_mb)
    except BenchError as exc:
        print(f"bench.latency: invalid measurement: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
