"""The shared upload speed limit, and how destinations read the bytes of a picture."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from boothsync.bandwidth import Bandwidth, parse_rate
from boothsync.destinations.base import UploadItem
from boothsync.errors import SourceFileError


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("2MB/s", 2_000_000),
        ("500kB/s", 500_000),
        ("500 KB/s", 500_000),
        ("1.5MiB/s", 1_572_864),
        ("64KiB", 65_536),
        ("2mb/sec", 2_000_000),
        ("100000", 100_000),
    ],
)
def test_rates_are_read_in_bytes_per_second(text: str, rate: int) -> None:
    """Decimal and binary units, with or without "/s", give bytes per second."""
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "2 MBit/s", "-1MB/s", "", "10B/s"])
def test_nonsense_rates_are_refused(text: str) -> None:
    """Anything but a rate of at least 1 kB/s is a ValueError with a readable message."""
    with pytest.raises(ValueError, match="must be"):
        parse_rate(text)


class FakeTime:
    """A clock that moves only when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()

    def clock(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_the_limit_holds_over_a_long_transfer() -> None:
    """10 MB at 1 MB/s take 10 s (less the first quarter second the bucket starts with)."""
    fake = FakeTime()
    limit = Bandwidth(1_000_000, clock=fake.clock, sleep=fake.sleep)
    for _ in range(160):
        limit.take(65_536)
    sent = 160 * 65_536
    assert fake.now == pytest.approx(sent / 1_000_000 - 0.25, abs=0.01)


def test_workers_share_one_limit() -> None:
    """Four threads drawing on one limit together get the limit, not four times it."""
    fake = FakeTime()
    limit = Bandwidth(2_000_000, clock=fake.clock, sleep=fake.sleep)

    def worker() -> None:
        for _ in range(50):
            limit.take(40_000)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 8 MB at 2 MB/s: 4 s of waiting in all, whichever thread did it.
    assert fake.now >= 8_000_000 / 2_000_000 - 0.25 - 0.01


def test_an_idle_pause_gives_no_burst_above_a_quarter_second() -> None:
    """After a long idle time only a quarter second's worth goes without waiting."""
    fake = FakeTime()
    limit = Bandwidth(1_000_000, clock=fake.clock, sleep=fake.sleep)
    fake.now = 3600.0
    limit.take(250_000)
    assert fake.now == 3600.0
    limit.take(500_000)
    assert fake.now == pytest.approx(3600.5)


def item_for(path: Path, size: int | None = None, bandwidth: Bandwidth | None = None) -> UploadItem:
    return UploadItem(
        path=path,
        file_name=path.name,
        size=path.stat().st_size if size is None else size,
        content_type="image/jpeg",
        taken_at_ms=None,
        album_id=None,
        bandwidth=bandwidth,
    )


def test_chunks_and_reader_give_exactly_the_file(tmp_path: Path) -> None:
    """Both ways of reading an item give its bytes exactly, and the reader reports the item's
    size as its length (what a multipart body asks)."""
    path = tmp_path / "a.jpg"
    data = bytes(range(256)) * 3000
    path.write_bytes(data)
    item = item_for(path)
    assert b"".join(item.chunks()) == data
    reader = item.reader()
    try:
        assert reader.seek(0, 2) == len(data)
        reader.seek(0)
        assert reader.read() == data
        assert reader.read(10) == b""
    finally:
        reader.close()


def test_a_file_that_grew_is_read_to_the_size_it_had(tmp_path: Path) -> None:
    """Bytes appended after the size was taken are not sent (the upload would not match its
    announced length); the uploader sees the change and sends the file again."""
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x" * 1000)
    item = item_for(path, size=600)
    assert b"".join(item.chunks()) == b"x" * 600
    reader = item.reader()
    try:
        assert reader.read() == b"x" * 600
    finally:
        reader.close()


def test_a_file_that_shrank_is_a_source_file_error(tmp_path: Path) -> None:
    """A file shorter than its announced size stops the upload with SourceFileError."""
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x" * 100)
    item = item_for(path, size=1000)
    with pytest.raises(SourceFileError, match="shrank"):
        b"".join(item.chunks())
    reader = item.reader()
    try:
        with pytest.raises(SourceFileError, match="shrank"):
            reader.read()
    finally:
        reader.close()


def test_reading_draws_on_the_bandwidth_limit(tmp_path: Path) -> None:
    """Every byte read through an item is counted against the shared limit."""
    path = tmp_path / "a.jpg"
    path.write_bytes(b"y" * 2_000_000)
    fake = FakeTime()
    limit = Bandwidth(1_000_000, clock=fake.clock, sleep=fake.sleep)
    b"".join(item_for(path, bandwidth=limit).chunks())
    assert fake.now == pytest.approx(2.0 - 0.25, abs=0.01)
    reader = item_for(path, bandwidth=limit).reader()
    try:
        while reader.read(65_536):
            pass
    finally:
        reader.close()
    assert fake.now == pytest.approx(4.0 - 0.25, abs=0.01)
