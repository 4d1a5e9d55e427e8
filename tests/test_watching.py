"""Watching, end to end: only whole files reach the gallery, and none is missed.

Each test runs the engine on a real folder against the receiver over HTTP, in
native (inotify) mode and in polling mode, as a network share would be watched.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from boothsync.config import Config
from boothsync.demo import write_sample_jpeg
from boothsync.engine import Engine
from boothsync.receiver import Receiver
from tests.helpers import engine_config, wait_for

PIECE = 64 * 1024


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received") as server:
        yield server


StartEngine = Callable[..., Engine]


@pytest.fixture
def start_engine(
    tmp_path: Path, receiver: Receiver, engine_for: Callable[[Config], Engine]
) -> StartEngine:
    def start(*, poll: bool, triggers: dict[str, Any] | None = None, **watch: Any) -> Engine:
        watch = {"poll": poll, "poll_interval": 0.5, **watch}
        return engine_for(engine_config(tmp_path, receiver.base_url, triggers=triggers, **watch))

    return start


modes = pytest.mark.parametrize("poll", [False, True], ids=["native", "polling"])


def names(receiver: Receiver) -> list[str]:
    return sorted(r.file_name for r in receiver.received())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_slowly(path: Path, data: bytes, seconds: float, *, reopen: bool = False) -> None:
    """Write ``data`` in 64 KiB pieces spread over ``seconds``, as a slow booth or share does.

    With ``reopen`` each piece is appended by a separate open/close, so the
    file is "closed after writing" many times before it is whole.
    """
    pieces = [data[i : i + PIECE] for i in range(0, len(data), PIECE)]
    pace = threading.Event()
    gap = seconds / len(pieces)
    if reopen:
        for piece in pieces:
            with path.open("ab") as handle:
                handle.write(piece)
            pace.wait(gap)
        return
    with path.open("wb") as handle:
        for piece in pieces:
            handle.write(piece)
            handle.flush()
            pace.wait(gap)


@modes
def test_a_slowly_written_file_arrives_once_and_whole(
    tmp_path: Path, receiver: Receiver, start_engine: StartEngine, poll: bool
) -> None:
    """A 12 MB file written in 64 KiB pieces over 6 s is uploaded once, byte-exact."""
    start_engine(poll=poll)
    data = os.urandom(12 * 1024 * 1024)
    path = tmp_path / "hot" / "slow.jpg"
    write_slowly(path, data, 6.0)
    wait_for(lambda: receiver.received(), timeout=30)
    record = receiver.received()[0]
    assert record.sha256 == sha256(data) and record.size == len(data)
    # Give a wrongly queued partial copy every chance to show up: a scan, then
    # another upload that must come after anything already queued.
    write_sample_jpeg(tmp_path / "hot" / "zz-last.jpg", datetime(2026, 5, 1, 12), "x", (9, 9, 9))
    wait_for(lambda: "zz-last.jpg" in names(receiver), timeout=30)
    assert names(receiver) == ["slow.jpg", "zz-last.jpg"]


def test_a_file_appended_piece_by_piece_arrives_once_and_whole(
    tmp_path: Path, receiver: Receiver, start_engine: StartEngine
) -> None:
    """A writer that reopens the file for every piece still gets it uploaded only once, whole."""
    start_engine(poll=False)
    data = os.urandom(3 * 1024 * 1024)
    path = tmp_path / "hot" / "appended.jpg"
    write_slowly(path, data, 1.5, reopen=True)
    wait_for(lambda: receiver.received(), timeout=30)
    write_sample_jpeg(tmp_path / "hot" / "zz-last.jpg", datetime(2026, 5, 1, 12), "x", (9, 9, 9))
    wait_for(lambda: "zz-last.jpg" in names(receiver), timeout=30)
    assert names(receiver) == ["appended.jpg", "zz-last.jpg"]
    assert receiver.received()[0].sha256 == sha256(data)


@modes
def test_a_file_there_before_start_arrives(
    tmp_path: Path, receiver: Receiver, start_engine: StartEngine, poll: bool
) -> None:
    """A picture already in the folder when boothsync starts is uploaded."""
    hot = tmp_path / "hot"
    hot.mkdir()
    write_sample_jpeg(hot / "early.jpg", datetime(2026, 5, 1, 12), "x", (1, 2, 3))
    start_engine(poll=poll)
    wait_for(lambda: names(receiver) == ["early.jpg"], timeout=30)


@modes
def test_a_file_renamed_in_from_a_temporary_name_arrives(
    tmp_path: Path, receiver: Receiver, start_engine: StartEngine, poll: bool
) -> None:
    """Written as .tmp then renamed: the final name is uploaded, the temporary one never."""
    start_engine(poll=poll)
    hot = tmp_path / "hot"
    temporary = hot / "IMG_0001.jpg.tmp"
    write_sample_jpeg(temporary, datetime(2026, 5, 1, 12), "x", (1, 2, 3))
    os.replace(temporary, hot / "IMG_0001.jpg")
    wait_for(lambda: names(receiver) == ["IMG_0001.jpg"], timeout=30)


@modes
def test_temporary_and_hidden_files_never_arrive(
    tmp_path: Path, receiver: Receiver, start_engine: StartEngine, poll: bool
) -> None:
    """Temp, partial, lock, hidden and OS files are never uploaded, even after a full scan."""
    engine = start_engine(poll=poll)
    hot = tmp_path / "hot"
    junk = [
        "photo.jpg.tmp",
        "photo.jpg.part",
        "photo.jpg.partial",
        "photo.jpg.crdownload",
        "~photo.jpg",
        ".hidden.jpg",
        ".syncthing.photo.jpg.tmp",
        "~syncthing~photo.jpg.tmp",
        "Thumbs.db",
        ".DS_Store",
        "notes.txt",
    ]
    for name in junk:
        (hot / name).write_bytes(b"\xff\xd8 not for the gallery")
    engine.scan()
    write_sample_jpeg(hot / "real.jpg", datetime(2026, 5, 1, 12), "one", (1, 2, 3))
    wait_for(lambda: "real.jpg" in names(receiver), timeout=30)
    engine.scan()
    write_sample_jpeg(hot / "real2.jpg", datetime(2026, 5, 1, 12), "two", (4, 5, 6))
    wait_for(lambda: "real2.jpg" in names(receiver), timeout=30)
    assert names(receiver) == ["real.jpg", "real2.jpg"]


@modes
def test_a_re_export_with_the_same_name_arrives_again(
    tmp_path: Path, receiver: Receiver, start_engine: StartEngine, poll: bool
) -> None:
    """The booth re-exports a print under the same name with new content: it is uploaded again."""
    start_engine(poll=poll)
    hot = tmp_path / "hot"
    path = hot / "print.jpg"
    write_sample_jpeg(path, datetime(2026, 5, 1, 12), "first", (1, 2, 3))
    first = path.read_bytes()
    wait_for(lambda: len(receiver.received()) == 1, timeout=30)
    write_sample_jpeg(path, datetime(2026, 5, 1, 12), "second edit", (200, 10, 10))
    second = path.read_bytes()
    assert first != second
    wait_for(lambda: len(receiver.received()) == 2, timeout=30)
    assert [r.file_name for r in receiver.received()] == ["print.jpg", "print.jpg"]
    assert sorted(r.sha256 for r in receiver.received()) == sorted([sha256(first), sha256(second)])


def test_a_burst_of_500_files_all_arrive_once(
    tmp_path: Path, receiver: Receiver, start_engine: StartEngine
) -> None:
    """500 pictures dropped at once are all uploaded, each exactly once."""
    start_engine(poll=False)
    staging = tmp_path / "staging"
    staging.mkdir()
    sample = staging / "sample.jpg"
    write_sample_jpeg(sample, datetime(2026, 5, 1, 12), "x", (1, 2, 3))
    content = sample.read_bytes()
    for index in range(500):
        # Distinct bytes per file, so none is a duplicate of another.
        (staging / f"burst-{index:03}.jpg").write_bytes(content + index.to_bytes(2, "big"))
    sample.unlink()
    hot = tmp_path / "hot"
    for path in staging.iterdir():
        os.replace(path, hot / path.name)
    wait_for(lambda: len(receiver.received()) >= 500, timeout=120)
    assert names(receiver) == [f"burst-{index:03}.jpg" for index in range(500)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# Polling with long intervals and settle time: without the booth's signal the
# picture would wait for a minute, so a quick upload proves the signal did it.
SLOW_WATCH = {"settle_seconds": 60, "poll_interval": 60}


def test_a_dslrbooth_trigger_sends_the_named_file_at_once(
    tmp_path: Path, receiver: Receiver, start_engine: StartEngine
) -> None:
    """dslrBooth's processing_start trigger naming a file makes it go without waiting for scans."""
    port = free_port()
    engine = start_engine(poll=True, triggers={"dslrbooth": True, "port": port}, **SLOW_WATCH)
    (url,) = engine.trigger_urls
    final = tmp_path / "hot" / "final.jpg"
    write_sample_jpeg(final, datetime(2026, 5, 1, 12), "x", (1, 2, 3))
    answer = httpx.get(
        url,
        params={
            "event_type": "processing_start",
            "param1": str(tmp_path / "x.jpg"),
            "param2": str(final),
        },
    )
    assert answer.status_code == 200
    wait_for(lambda: names(receiver) == ["final.jpg"], timeout=20)


def test_sparkbooth_saved_layouts_go_at_once(
    tmp_path: Path, receiver: Receiver, start_engine: StartEngine
) -> None:
    """A SAVED_LAYOUT line in Sparkbooth's status file makes that layout go without waiting."""
    status = tmp_path / "sparkbooth-status.txt"
    status.write_text("START\r\n")
    start_engine(poll=True, triggers={"sparkbooth_status": str(status)}, **SLOW_WATCH)
    layout = tmp_path / "hot" / "layout-001.jpg"
    write_sample_jpeg(layout, datetime(2026, 5, 1, 12), "x", (1, 2, 3))
    status.write_text(f"SAVED_LAYOUT\t{layout}\r\n")
    wait_for(lambda: names(receiver) == ["layout-001.jpg"], timeout=20)


def test_a_taken_trigger_port_does_not_stop_uploads(
    tmp_path: Path, receiver: Receiver, start_engine: StartEngine
) -> None:
    """If the trigger port is in use, that is one error line; watching and uploading go on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        engine = start_engine(poll=False, triggers={"dslrbooth": True, "port": port})
        assert engine.trigger_urls == []
        write_sample_jpeg(tmp_path / "hot" / "a.jpg", datetime(2026, 5, 1, 12), "x", (1, 2, 3))
        wait_for(lambda: names(receiver) == ["a.jpg"], timeout=20)


def test_recursive_watch_routes_albums_and_moves_keeping_subfolders(
    tmp_path: Path, receiver: Receiver, start_engine: StartEngine
) -> None:
    """Subfolders map to albums; moved originals keep their subfolder and never overwrite."""
    hot = tmp_path / "hot"
    (hot / "Prints").mkdir(parents=True)
    (hot / "Originals").mkdir()
    (hot / "raw").mkdir()
    occupied = hot / "uploaded" / "Prints" / "p1.jpg"
    occupied.parent.mkdir(parents=True)
    occupied.write_bytes(b"an earlier print, not to be overwritten")
    start_engine(
        poll=False,
        recursive=True,
        albums={"prints": "a1", "Originals": "a2"},
        after_upload="move",
    )
    print_path = hot / "Prints" / "p1.jpg"
    write_sample_jpeg(print_path, datetime(2026, 5, 1, 12), "print", (1, 2, 3))
    print_bytes = print_path.read_bytes()
    write_sample_jpeg(hot / "Originals" / "o1.jpg", datetime(2026, 5, 1, 12), "orig", (4, 5, 6))
    write_sample_jpeg(hot / "raw" / "r1.jpg", datetime(2026, 5, 1, 12), "raw", (7, 8, 9))
    write_sample_jpeg(hot / "top.jpg", datetime(2026, 5, 1, 12), "top", (9, 8, 7))

    wait_for(lambda: names(receiver) == ["o1.jpg", "p1.jpg", "top.jpg"], timeout=30)
    albums = {r.file_name: r.album_id for r in receiver.received()}
    assert albums == {"p1.jpg": "a1", "o1.jpg": "a2", "top.jpg": None}
    # Each picture is moved its own grace time after its own upload: wait for all three.
    moved = (print_path, hot / "top.jpg", hot / "Originals" / "o1.jpg")
    wait_for(lambda: not any(path.exists() for path in moved), timeout=30)
    assert occupied.read_bytes() == b"an earlier print, not to be overwritten"
    assert (hot / "uploaded" / "Prints" / "p1 (1).jpg").read_bytes() == print_bytes
    assert (hot / "uploaded" / "Originals" / "o1.jpg").exists()
    assert (hot / "uploaded" / "top.jpg").exists()
    assert (hot / "raw" / "r1.jpg").exists()
