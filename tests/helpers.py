"""Helpers the tests share: waiting with a deadline instead of sleeping, test configs, queue
databases as older releases left them."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from boothsync.config import Config, parse_config
from boothsync.outbox import _MIGRATIONS, Outbox
from boothsync.receiver import DEMO_API_KEY

T = TypeVar("T")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_for(
    predicate: Callable[[], T], *, timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    idle = threading.Event()
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate!r}")
        idle.wait(interval)


def jpeg(payload: bytes = b"") -> bytes:
    """Bytes that a watcher takes for a whole JPEG: start marker, a comment segment, a scan
    whose data carries ``payload`` (0xFF bytes turned into 0xFE, as entropy-coded data never
    holds a bare 0xFF) and the end marker. Not decodable; for tests that only move bytes."""
    data = payload.replace(b"\xff", b"\xfe")
    comment = b"boothsync test picture"
    return (
        b"\xff\xd8"
        + b"\xff\xfe"
        + (len(comment) + 2).to_bytes(2, "big")
        + comment
        + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
        + data
        + b"\xff\xd9"
    )


def engine_config(
    tmp_path: Path,
    base_url: str,
    *,
    api_key: str = DEMO_API_KEY,
    album_id: str | None = None,
    triggers: dict[str, Any] | None = None,
    booth: dict[str, Any] | None = None,
    **watch: Any,
) -> Config:
    """A config for one hot folder (``tmp_path/hot``, created) and the receiver at ``base_url``."""
    hot = tmp_path / "hot"
    hot.mkdir(exist_ok=True)
    destination: dict[str, Any] = {
        "type": "eventpics",
        "api_key": api_key,
        "link_id": "demo",
        "base_url": base_url,
    }
    if album_id is not None:
        destination["album_id"] = album_id
    return parse_config(
        {
            "booth": {"name": "test-booth", "timezone": "Europe/Berlin", **(booth or {})},
            "triggers": triggers or {},
            "watch": [{"path": str(hot), **watch}],
            "destinations": {"eventpics": destination},
            "state": {"dir": str(tmp_path / "state")},
        },
        source=None,
        environ={},
    )


@contextmanager
def old_queue(db: Path, version: int) -> Iterator[sqlite3.Connection]:
    """A queue database at schema ``version``, as a release of that time left it: yields the
    raw connection to fill it with rows, and closes it afterwards."""
    db.parent.mkdir(parents=True, exist_ok=True)
    raw = sqlite3.connect(db, isolation_level=None)
    try:
        for statements in _MIGRATIONS[:version]:
            for statement in statements:
                raw.execute(statement)
        raw.execute(f"PRAGMA user_version = {int(version)}")
        yield raw
    finally:
        raw.close()


def queue(outbox: Outbox, path: Path, *destinations: str, album: str | None = None) -> None:
    """Queue the file as it is now for ``destinations``, all with ``album``."""
    st = path.stat()
    outbox.add(
        path,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        watch=str(path.parent),
        destinations=dict.fromkeys(destinations, album),
    )


def zombie_children(pid: int) -> list[int]:
    """The children of ``pid`` that exited and were never waited for (Linux: /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone while we looked
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        state, ppid = text[text.rindex(")") + 2 :].split()[:2]
        if state == "Z" and int(ppid) == pid:
            found.append(int(stat.parent.name))
    return found
