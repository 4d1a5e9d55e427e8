"""A slow link used in full: boothsync against the link's floor, a bare loop and rclone.

Owns one measurement per link profile (``bench.link``'s 4g and bad by default): the same
booth-sized JPEGs (3 MB, real EXIF, every one distinct) go through a shaped link
(:class:`bench.link.Link`, a TCP proxy on 127.0.0.1) to a receiver behind it, four ways,
one after the other:

- ``floor``: not a run, the link's own limit: bytes / the link's up rate;
- ``bare loop``: POST getuploadurl then PUT, from a bare httpx loop in as many threads as
  boothsync's default concurrency, to ``boothsync receiver`` (a process of its own) through
  the link; first request to the last ``received_at``;
- ``boothsync``: a real ``python -m boothsync run`` with the default ``[upload]`` (no
  concurrency set) and its ``base_url`` on the link, the files renamed in at once; first
  rename to the last ``received_at`` (the receiver builds its upload URLs from the Host
  header, so the PUTs go through the link too);
- ``rclone``: Debian's ``rclone copy`` with its default ``--transfers`` to ``rclone serve
  webdav`` on 127.0.0.1 behind another link of the same profile; the whole copy, process
  start to exit.

Then one more boothsync run on half the files with ``[upload] bandwidth_limit`` at half the
link's up rate: the rate achieved over the limit.

A 3 MB picture takes 2.4 s at 10 Mbit/s and 12 s at 2 Mbit/s, so the file count is scaled
by the profile's up rate (``--files`` is for 10 Mbit/s and up), so that every profile's
runs take about as long; the figures are rates, per picture and per byte.

Must not: change or monkeypatch boothsync, fail because a target is missed (targets are
printed beside the figures), or leave processes or temporary folders behind.

Exit codes: 0 measured, 1 the measurement is invalid (a process did not start, a picture did
not arrive or arrived damaged, the daemon did not stop cleanly), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bench.burst import _finished, clear_stored, flush, make_files, receiver_folder, upload_all
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
from bench.latency import Gallery, sample_jpeg
from bench.link import PROFILES, Link, Profile
from boothsync.config import UploadConfig

__all__ = ["main"]

TARGET_FRACTION = 0.90  # of the link's floor
TARGET_LIMIT = 0.05  # achieved rate within this share of bandwidth_limit
DEFAULT_PROFILES = ("4g", "bad")
# What --files applies to: a profile slower than this gets fewer files, in proportion.
REFERENCE_BPS = 10e6
MIN_FILES = 2
# boothsync's default: the bare loop runs as many threads.
DEFAULT_CONCURRENCY = UploadConfig().concurrency
# Generous: a shared machine; every run waits this many times the floor, plus a minute.
WAIT_FACTOR = 3.0
MIN_WAIT = 60.0
_RCLONE_URL = re.compile(r"started on (http://\S+?)/?$")


@dataclass(frozen=True)
class Run:
    profile: str
    name: str
    files: int
    connections: str  # threads, workers or transfers at once, as text
    seconds: float
    size: int  # bytes

    def per_minute(self) -> float:
        return self.files * 60.0 / self.seconds

    def mb_per_s(self) -> float:
        return self.size / 1e6 / self.seconds


def files_for(profile: Profile, files: int) -> int:
    """``files`` at 10 Mbit/s and faster, fewer in proportion on a slower link."""
    scaled = round(files * min(1.0, profile.up_bps / REFERENCE_BPS))
    return max(min(files, MIN_FILES), scaled)


def floor_seconds(profile: Profile, size: int) -> float:
    return size * 8 / profile.up_bps


def _wait(profile: Profile, size: int) -> float:
    return MIN_WAIT + WAIT_FACTOR * floor_seconds(profile, size)


# -- the runs ----------------------------------------------------------------------------------


def bare_loop(gallery: Gallery, link: Link, profile: str, paths: Sequence[Path]) -> Run:
    """The two requests per file from DEFAULT_CONCURRENCY threads, one httpx client each."""
    before = len(gallery.records())
    started = upload_all(
        link.base_url, paths, DEFAULT_CONCURRENCY, name=f"{profile} bare", timeout=120.0
    )
    size = sum(p.stat().st_size for p in paths)
    wait = _wait(PROFILES[profile], size)
    last = _finished(gallery, before, len(paths), wait, f"{profile}: the bare loop's uploads")
    return Run(
        profile, "bare loop", len(paths), f"{DEFAULT_CONCURRENCY} threads", last - started, size
    )


def boothsync_run(
    gallery: Gallery,
    link: Link,
    profile: str,
    paths: Sequence[Path],
    root: Path,
    watched: Path,
    *,
    name: str,
    bandwidth_limit: int | None = None,
) -> Run:
    """A daemon with the default ``[upload]`` (and the limit, if given) and a fresh queue;
    every file renamed in at once, and renamed back afterwards."""
    label = re.sub(r"\W+", "-", f"{profile}-{name}")
    config = write_config(
        root / f"{label}.toml",
        watch=watched,
        state=root / f"state-{label}",
        base_url=link.base_url,
        name="bench-slowlink",
        concurrency=None,
        bandwidth_limit=bandwidth_limit,
    )
    daemon = Child(["run", "-c", str(config)])
    try:
        daemon.wait_for_line(re.compile(r"\bready\b"), READY_SECONDS, "ready line")
        before = len(gallery.records())
        size = sum(p.stat().st_size for p in paths)
        started = time.time()
        for path in paths:
            path.replace(watched / path.name)
        wait = _wait(PROFILES[profile], size) * (2 if bandwidth_limit else 1)
        try:
            last = _finished(gallery, before, len(paths), wait, f"{profile}: {name}'s uploads")
        except BenchError as exc:
            raise BenchError(f"{exc}; output:\n{daemon.output}") from exc
    finally:
        code, _ = daemon.stop()
        for path in paths:
            moved = watched / path.name
            if moved.exists():
                moved.replace(path)
    if code != 0:
        said = "did not stop within" if code is None else f"exited with {code} within"
        raise BenchError(
            f"the daemon {said} {STOP_SECONDS:.0f} s of the stop signal; output:\n{daemon.output}"
        )
    return Run(profile, name, len(paths), f"{DEFAULT_CONCURRENCY} workers", last - started, size)


# -- rclone ------------------------------------------------------------------------------------


def rclone_version() -> str | None:
    """rclone's version, installing Debian's package first if it is missing (as root, or
    through sudo without a password); None when there is none."""
    if shutil.which("rclone") is None:
        command = ["apt-get", "install", "-y", "-qq", "rclone"]
        if os.geteuid() != 0:
            if shutil.which("sudo") is None:
                return None
            command = ["sudo", "-n", *command]
        environ = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(command, capture_output=True, env=environ, check=False, timeout=600)
        if shutil.which("rclone") is None:
            return None
    out = subprocess.run(
        ["rclone", "version"], capture_output=True, text=True, check=False, timeout=30
    )
    lines = out.stdout.splitlines()
    return lines[0].strip() if lines else "rclone (unknown version)"


def _rclone_env(config: Path) -> dict[str, str]:
    # An operator's own rclone settings must not change what is measured.
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    environ["RCLONE_CONFIG"] = str(config)
    return environ


@contextmanager
def webdav_server(folder: Path, config: Path) -> Iterator[tuple[str, int]]:
    """``rclone serve webdav`` on 127.0.0.1 (a free port) storing into ``folder``."""
    process = subprocess.Popen(
        ["rclone", "serve", "webdav", str(folder), "--addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=_rclone_env(config),
    )
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)
        lines.put(None)

    reader = threading.Thread(target=read, name="bench-rclone-reader", daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                raise BenchError(f"rclone serve webdav did not start; output:\n{''.join(output)}")
            found = _RCLONE_URL.search(line.strip())
            if found is not None:
                parts = urlsplit(found.group(1))
                yield parts.hostname or "127.0.0.1", parts.port or 80
                break
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        reader.join(5.0)


def rclone_run(profile: str, paths: Sequence[Path], root: Path, served: Path) -> Run:
    """``rclone copy`` of ``paths`` (hard links in a folder of their own) to a webdav server
    behind a link of ``profile``: the whole command, start to exit."""
    source = root / f"rclone-{profile}"
    source.mkdir()
    for path in paths:
        os.link(path, source / path.name)
    config = root / "rclone.conf"
    config.touch()
    shape = PROFILES[profile]
    size = sum(p.stat().st_size for p in paths)
    try:
        with (
            webdav_server(served, config) as (host, port),
            Link.with_profile(host, port, shape) as link,
        ):
            started = time.monotonic()
            copied = subprocess.run(
                ["rclone", "copy", str(source), ":webdav:", "--webdav-url", link.base_url],
                capture_output=True,
                text=True,
                env=_rclone_env(config),
                check=False,
                timeout=_wait(shape, size),
            )
            seconds = time.monotonic() - started
    finally:
        shutil.rmtree(source, ignore_errors=True)
    if copied.returncode != 0:
        raise BenchError(f"rclone copy exited with {copied.returncode}:\n{copied.stderr}")
    for path in paths:
        stored = served / path.name
        if not stored.is_file() or stored.read_bytes() != path.read_bytes():
            raise BenchError(f"rclone: {path.name} did not arrive intact")
    return Run(profile, "rclone", len(paths), "default", seconds, size)


# -- the command -------------------------------------------------------------------------------


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def run(files: int, size_mb: float, profiles: Sequence[str], *, use_rclone: bool) -> int:
    say = print
    size = int(size_mb * 1_000_000)
    counts = {name: files_for(PROFILES[name], files) for name in profiles}
    say(
        f"boothsync over a slow link: pictures of {size / 1e6:g} MB, {files} at"
        f" {REFERENCE_BPS / 1e6:g} Mbit/s up and faster, fewer in proportion on slower links;"
        f" boothsync with its default [upload] (concurrency {DEFAULT_CONCURRENCY})"
    )
    say(f"machine: {machine()}")
    version = rclone_version() if use_rclone else None
    if use_rclone:
        say(f"rclone: {version or 'not installed and could not be installed: no rclone runs'}")
    results: list[Run] = []
    limits: list[tuple[Run, int]] = []
    with workspace("boothsync-bench-slowlink-") as root, receiver_folder(root) as received:
        staging = make_files(root / "staging", sample_jpeg(root), max(counts.values()), size)
        flush()
        watched = root / "hot"
        watched.mkdir()
        receiver = ReceiverProcess(received)
        gallery = Gallery(receiver)
        target = urlsplit(receiver.base_url)
        try:
            say(f"receiver at {receiver.base_url}, storing in {received}")
            for name in profiles:
                shape = PROFILES[name]
                paths = staging[: counts[name]]
                say(f"{name}: {shape.describe()}, {len(paths)} file(s)")
                with Link.with_profile(
                    target.hostname or "127.0.0.1", target.port or 80, shape
                ) as link:
                    clear_stored(received)
                    results.append(bare_loop(gallery, link, name, paths))
                    say(f"{name}: bare loop {results[-1].seconds:.1f} s")
                    clear_stored(received)
                    results.append(
                        boothsync_run(gallery, link, name, paths, root, watched, name="boothsync")
                    )
                    say(f"{name}: boothsync {results[-1].seconds:.1f} s")
                    limit = int(shape.up_bps / 8 / 2)
                    half = paths[: max(MIN_FILES, len(paths) // 2)]
                    clear_stored(received)
                    limited = boothsync_run(
                        gallery,
                        link,
                        name,
                        half,
                        root,
                        watched,
                        name="boothsync, limit",
                        bandwidth_limit=limit,
                    )
                    limits.append((limited, limit))
                    say(f"{name}: boothsync, bandwidth_limit {limit} B/s: {limited.seconds:.1f} s")
                clear_stored(received)
                if version is not None:
                    served = root / f"webdav-{name}"
                    served.mkdir()
                    results.append(rclone_run(name, paths, root, served))
                    shutil.rmtree(served, ignore_errors=True)
                    say(f"{name}: rclone {results[-1].seconds:.1f} s")
        finally:
            gallery.close()
            receiver.stop()
    say("")
    say(
        "time: bare loop from its first request, boothsync from the first rename, to the last"
        " received_at; rclone: the whole `rclone copy`; floor = bytes / the link's up rate"
    )
    say(
        f"{'profile':<8}{'run':<12}{'files':>6}  {'at once':<11}{'seconds':>9}"
        f"{'pics/min':>10}{'MB/s':>8}{'x floor':>9}"
    )
    for name in profiles:
        shape = PROFILES[name]
        rows = [r for r in results if r.profile == name]
        total = rows[0].size
        floor = floor_seconds(shape, total)
        say(
            f"{name:<8}{'floor':<12}{counts[name]:>6}  {'':<11}{floor:>9.1f}"
            f"{counts[name] * 60 / floor:>10.2f}{total / 1e6 / floor:>8.3f}{1.0:>9.2f}"
        )
        for row in rows:
            say(
                f"{name:<8}{row.name:<12}{row.files:>6}  {row.connections:<11}{row.seconds:>9.1f}"
                f"{row.per_minute():>10.2f}{row.mb_per_s():>8.3f}{floor / row.seconds:>9.2f}"
            )
    say("")
    for name in profiles:
        by_name = {r.name: r for r in results if r.profile == name}
        ours = by_name["boothsync"]
        fraction = floor_seconds(PROFILES[name], ours.size) / ours.seconds
        say(
            f"{name}: boothsync {fraction:.2f} of the floor;"
            f" target >= {TARGET_FRACTION:.2f}: {_verdict(fraction >= TARGET_FRACTION)}"
        )
        if "rclone" in by_name:
            ahead = by_name["rclone"].seconds / ours.seconds
            say(
                f"{name}: rclone's time / boothsync's {ahead:.2f}x;"
                f" target > 1 (ahead of rclone): {_verdict(ahead > 1.0)}"
            )
    for limited, limit in limits:
        achieved = limited.size / limited.seconds
        share = achieved / limit
        say(
            f"{limited.profile}: bandwidth_limit {limit} B/s, {limited.files} file(s):"
            f" {achieved:.0f} B/s = {share:.3f}x the limit;"
            f" target within {TARGET_LIMIT:.0%}: {_verdict(abs(share - 1) <= TARGET_LIMIT)}"
        )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.slowlink",
        description="boothsync over a shaped link, against its floor, a bare loop and rclone.",
    )
    parser.add_argument(
        "--files",
        type=positive(int),
        default=30,
        help="pictures at 10 Mbit/s up and faster; fewer in proportion on slower links"
        " (default: %(default)s)",
    )
    parser.add_argument(
        "--size-mb",
        type=positive(float),
        default=3.0,
        help="size of each picture in MB (default: %(default)s)",
    )
    parser.add_argument(
        "--profile",
        action="append",
        choices=sorted(PROFILES),
        help="a link profile, may be given more than once (default: 4g and bad)",
    )
    parser.add_argument(
        "--no-rclone", action="store_true", help="leave rclone out (and do not install it)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    profiles = list(dict.fromkeys(args.profile or DEFAULT_PROFILES))
    try:
        return run(args.files, args.size_mb, profiles, use_rclone=not args.no_rclone)
    except BenchError as exc:
        print(f"bench.slowlink: invalid measurement: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
