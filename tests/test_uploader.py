"""The worker threads' decisions: upload, wait and retry, pause a destination, fail one file."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from boothsync.destinations import CheckItem, GalleryEvent, UploadItem
from boothsync.errors import FileRejected, ServerBusy, Unauthorized
from boothsync.outbox import Outbox
from boothsync.uploader import Health, Uploader, UploadReport
from tests.helpers import wait_for

UTC = ZoneInfo("UTC")


class FakeGallery:
    """A destination that hands each upload to ``behaviour`` and records what it got."""

    type = "fake"

    def __init__(self, name: str, behaviour: Callable[[UploadItem], None] | None = None) -> None:
        self.name = name
        self.behaviour = behaviour
        self.items: list[UploadItem] = []
        self.lock = threading.Lock()

    def upload(self, item: UploadItem) -> None:
        with self.lock:
            self.items.append(item)
        if self.behaviour is not None:
            self.behaviour(item)

    def events(self) -> list[GalleryEvent]:
        return []

    def check(self, album_ids: Collection[str] = ()) -> list[CheckItem]:
        return []

    def close(self) -> None:
        pass


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    yield box
    box.close()


def queue(outbox: Outbox, path: Path, *destinations: str, album: str | None = None) -> None:
    st = path.stat()
    outbox.add(
        path,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        watch=str(path.parent),
        destinations=dict.fromkeys(destinations, album),
    )


def picture(tmp_path: Path, name: str = "IMG_1.jpg", content: bytes = b"\xff\xd8pixels") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def running(outbox: Outbox, *galleries: FakeGallery, **kwargs: object) -> Uploader:
    uploader = Uploader(outbox, {g.name: g for g in galleries}, tz=UTC, **kwargs)  # type: ignore[arg-type]
    uploader.start()
    return uploader


def totals(outbox: Outbox) -> dict[str, int]:
    return outbox.stats().totals


def test_a_queued_picture_is_uploaded_and_marked_done(tmp_path: Path, outbox: Outbox) -> None:
    """A waiting job is uploaded with its base name, size, type and album, then marked uploaded."""
    gallery = FakeGallery("eventpics")
    path = picture(tmp_path)
    queue(outbox, path, "eventpics", album="a7")
    uploader = running(outbox, gallery)
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 1)
    finally:
        uploader.stop(5)
    (item,) = gallery.items
    assert (item.file_name, item.size, item.content_type, item.album_id) == (
        "IMG_1.jpg",
        path.stat().st_size,
        "image/jpeg",
        "a7",
    )


def test_a_corrupt_picture_is_still_uploaded_with_its_file_time(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A JPEG with broken EXIF still goes to the gallery, timed by its modification time."""
    gallery = FakeGallery("eventpics")
    path = picture(tmp_path, content=b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00garbage-garbage")
    queue(outbox, path, "eventpics")
    reports: list[UploadReport] = []
    uploader = running(outbox, gallery, on_report=reports.append)
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 1)
    finally:
        uploader.stop(5)
    assert gallery.items[0].taken_at_ms == path.stat().st_mtime_ns // 1_000_000
    assert reports[0].capture is not None and reports[0].capture.source == "mtime"


def test_a_vanished_picture_fails_with_a_clear_reason(tmp_path: Path, outbox: Outbox) -> None:
    """A picture deleted after it was queued fails alone, and says it vanished."""
    gallery = FakeGallery("eventpics")
    gone = picture(tmp_path, "gone.jpg")
    kept = picture(tmp_path, "kept.jpg")
    queue(outbox, gone, "eventpics")
    queue(outbox, kept, "eventpics")
    gone.unlink()
    uploader = running(outbox, gallery)
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 1 and totals(outbox)["failed"] == 1)
    finally:
        uploader.stop(5)
    error = outbox.stats().last_error
    assert (
        error is not None
        and "gone.jpg" in (error.error or "")
        and "vanished" in (error.error or "")
    )


def test_a_busy_server_makes_the_job_wait_at_least_retry_after(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A 429 puts the job back with a due time no earlier than the server's Retry-After."""

    def busy(item: UploadItem) -> None:
        raise ServerBusy("slow down", status=429, retry_after=120)

    queue(outbox, picture(tmp_path), "eventpics")
    uploader = running(outbox, FakeGallery("eventpics", busy))
    try:
        wait_for(lambda: outbox.stats().last_error is not None and totals(outbox)["waiting"] == 1)
    finally:
        uploader.stop(5)
    due = outbox.next_due()
    assert due is not None and due - time.time() > 100
    assert totals(outbox)["failed"] == 0


def test_a_rejected_key_pauses_only_that_destination(tmp_path: Path, outbox: Outbox) -> None:
    """401 pauses its destination without failing or counting files; another destination goes on."""

    def rejected(item: UploadItem) -> None:
        raise Unauthorized("EventPics rejected the API key (401): check api_key")

    bad = FakeGallery("eventpics", rejected)
    good = FakeGallery("backup")
    for index in range(3):
        queue(outbox, picture(tmp_path, f"p{index}.jpg"), "eventpics", "backup")
    uploader = running(outbox, bad, good)
    try:
        wait_for(lambda: outbox.stats().destinations["backup"]["uploaded"] == 3)
        wait_for(lambda: uploader.health()["eventpics"].health is Health.UNAUTHORIZED)
    finally:
        uploader.stop(5)
    counts = outbox.stats().destinations["eventpics"]
    assert counts["waiting"] == 3 and counts["failed"] == 0
    # Paused after the first rejection (two workers may each have had one in hand).
    assert len(bad.items) <= 2
    assert outbox.health()["eventpics"][0] == "unauthorized"


def test_a_refused_file_fails_and_the_rest_go_on(tmp_path: Path, outbox: Outbox) -> None:
    """A 4xx about one file fails that file with the message; the next file is uploaded."""

    def picky(item: UploadItem) -> None:
        if item.file_name == "bad.jpg":
            raise FileRejected("EventPics answered 415: unsupported type", status=415)

    queue(outbox, picture(tmp_path, "bad.jpg"), "eventpics")
    queue(outbox, picture(tmp_path, "good.jpg"), "eventpics")
    uploader = running(outbox, FakeGallery("eventpics", picky))
    try:
        wait_for(lambda: totals(outbox)["failed"] == 1 and totals(outbox)["uploaded"] == 1)
    finally:
        uploader.stop(5)
    error = outbox.stats().last_error
    assert error is not None and error.error is not None and "415" in error.error


def test_jobs_of_a_destination_no_longer_configured_just_wait(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A job for a destination the config dropped is left waiting, untouched, not spun on."""
    queue(outbox, picture(tmp_path, "old.jpg"), "retired")
    queue(outbox, picture(tmp_path, "new.jpg"), "eventpics")
    uploader = running(outbox, FakeGallery("eventpics"))
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 1)
    finally:
        uploader.stop(5)
    assert outbox.stats().destinations["retired"]["waiting"] == 1
    job = outbox.claim(only=["retired"])
    assert job is not None and job.attempts == 1  # this claim is the first ever made for it


def test_stop_gives_a_hanging_upload_a_bounded_time(tmp_path: Path, outbox: Outbox) -> None:
    """stop() returns after its timeout even if an upload hangs; the job stays for recovery."""
    release = threading.Event()
    started = threading.Event()

    def hang(item: UploadItem) -> None:
        started.set()
        release.wait(30)

    queue(outbox, picture(tmp_path), "eventpics")
    uploader = running(outbox, FakeGallery("eventpics", hang), concurrency=1)
    wait_for(started.is_set)
    assert uploader.stop(0.2) is False
    assert totals(outbox)["uploading"] == 1
    release.set()
    wait_for(lambda: totals(outbox)["uploaded"] == 1)
    assert outbox.recover() == 0
