"""The worker threads' decisions: upload, wait and retry, pause a destination, fail one file."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import xxhash

import boothsync.uploader as uploader_module
from boothsync.destinations import CheckItem, GalleryEvent, UploadItem
from boothsync.errors import (
    FileRejected,
    NetworkError,
    ServerBusy,
    SourceChanged,
    SourceFileError,
    Unauthorized,
)
from boothsync.health import Health
from boothsync.outbox import SYNCED_FLAG, Job, Outbox
from boothsync.retry import RetryBudget
from boothsync.uploader import (
    Uploader,
    UploadReport,
    _head,
    _StreamHash,
    _unchanged_guard,
    _version,
)
from tests.helpers import old_queue, queue, wait_for

UTC = ZoneInfo("UTC")


class FakeGallery:
    """A destination that reads each file like a real one, then hands the upload to
    ``behaviour`` (which may raise, or change the file as a writer would).

    ``items`` records every upload tried; ``received`` the bytes of each one accepted.
    ``unreachable`` makes ``probe`` fail, as for a service the network cannot reach.
    """

    type = "fake"

    def __init__(self, name: str, behaviour: Callable[[UploadItem], None] | None = None) -> None:
        self.name = name
        self.behaviour = behaviour
        self.items: list[UploadItem] = []
        self.received: list[bytes] = []
        self.lock = threading.Lock()
        # While set, probe() finds no one there.
        self.unreachable = threading.Event()

    def upload(self, item: UploadItem) -> None:
        with self.lock:
            self.items.append(item)
        # Exactly item.size bytes, read as the real destinations read them.
        data = b"".join(item.chunks())
        if self.behaviour is not None:
            self.behaviour(item)
        with self.lock:
            self.received.append(data)

    def events(self) -> list[GalleryEvent]:
        return []

    def probe(self) -> None:
        if self.unreachable.is_set():
            raise NetworkError(f"cannot reach {self.name}")

    def check(self, album_ids: Collection[str] = ()) -> list[CheckItem]:
        return []

    def close(self) -> None:
        pass


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    yield box
    box.close()


def picture(tmp_path: Path, name: str = "IMG_1.jpg", content: bytes | None = None) -> Path:
    """A small JPEG-looking file; unless told otherwise its bytes differ from every other name's,
    so pictures are never taken for copies of each other."""
    path = tmp_path / name
    path.write_bytes(b"\xff\xd8pixels of " + name.encode() if content is None else content)
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


def test_a_vanished_picture_is_dropped_alone_with_one_warning(
    tmp_path: Path, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A picture deleted after it was queued leaves the queue alone, with one warning naming
    it; nothing is counted failed (there is nothing to retry), the other picture goes."""
    gallery = FakeGallery("eventpics")
    gone = picture(tmp_path, "gone.jpg")
    kept = picture(tmp_path, "kept.jpg")
    queue(outbox, gone, "eventpics")
    queue(outbox, kept, "eventpics")
    gone.unlink()
    uploader = running(outbox, gallery)
    try:
        wait_for(lambda: (t := totals(outbox))["uploaded"] == 1 and not t["uploading"])
    finally:
        uploader.stop(5)
    assert totals(outbox) == {"waiting": 0, "uploading": 0, "uploaded": 1, "failed": 0}
    warnings = [r.getMessage() for r in caplog.records if "gone.jpg" in r.getMessage()]
    assert len(warnings) == 1 and "deleted before it was uploaded" in warnings[0]


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


# -- duplicates and re-exports ---------------------------------------------------


class Recorder:
    """Collects reports and finished files from the worker threads."""

    def __init__(self) -> None:
        self.reports: list[UploadReport] = []
        self.done: list[Path] = []

    def report(self, report: UploadReport) -> None:
        self.reports.append(report)

    def file_done(self, job: Job) -> None:
        self.done.append(job.path)

    def outcomes(self) -> list[str]:
        return [r.outcome for r in self.reports]


def recording(
    outbox: Outbox, *galleries: FakeGallery, **kwargs: object
) -> tuple[Uploader, Recorder]:
    recorder = Recorder()
    # One worker and no spare: jobs are handled strictly in the order they are due.
    uploader = running(
        outbox,
        *galleries,
        on_report=recorder.report,
        on_file_done=recorder.file_done,
        concurrency=1,
        **{"spares": 0, **kwargs},
    )
    return uploader, recorder


def run_until_uploaded(outbox: Outbox, gallery: FakeGallery, count: int) -> Recorder:
    """One worker over the queue until ``count`` jobs are uploaded (duplicates count); then
    stopped. What it reported."""
    uploader, recorder = recording(outbox, gallery)
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == count)
    finally:
        uploader.stop(5)
    return recorder


def rewrite(path: Path, content: bytes) -> None:
    """Write new content with a modification time that surely differs from the old one."""
    old = path.stat().st_mtime_ns
    path.write_bytes(content)
    os.utime(path, ns=(old + 5_000_000_000, old + 5_000_000_000))


def test_the_same_print_written_twice_is_uploaded_once(tmp_path: Path, outbox: Outbox) -> None:
    """A second file with identical content for the same destination and album is completed
    without an upload, says which file it copies, and still finishes its file."""
    gallery = FakeGallery("eventpics")
    first = picture(tmp_path, "IMG_1.jpg", b"\xff\xd8the print")
    second = picture(tmp_path, "IMG_1 (copy).jpg", b"\xff\xd8the print")
    queue(outbox, first, "eventpics", album="a1")
    queue(outbox, second, "eventpics", album="a1")
    recorder = run_until_uploaded(outbox, gallery, 2)
    assert gallery.received == [b"\xff\xd8the print"]
    assert recorder.outcomes() == ["uploaded", "duplicate"]
    duplicate = recorder.reports[1]
    assert duplicate.job.path == second
    assert duplicate.note == "same content as IMG_1.jpg, already uploaded"
    assert duplicate.error is None
    assert recorder.done == [first, second]
    stats = outbox.stats()
    assert stats.duplicates == {"eventpics": 1}
    assert stats.last_upload is not None and stats.last_upload.note == duplicate.note


def test_a_picture_uploaded_before_the_hash_changed_is_still_recognised(tmp_path: Path) -> None:
    """A queue from a version that recorded SHA-256: the same content under another name is
    settled as a duplicate of the picture it already uploaded, not sent again."""
    content = b"\xff\xd8the print"
    first = picture(tmp_path, "IMG_1.jpg", content)
    second = picture(tmp_path, "IMG_1 (copy).jpg", content)
    db = tmp_path / "state" / "outbox.sqlite3"
    with old_queue(db, 5) as raw:
        st = first.stat()
        raw.execute(
            "INSERT INTO files (id, path, size, mtime_ns, watch, added_at)"
            " VALUES (1, ?, ?, ?, ?, 1.0)",
            (str(first), st.st_size, st.st_mtime_ns, str(tmp_path)),
        )
        raw.execute(
            "INSERT INTO jobs (file_id, destination, album_id, state, next_attempt_at,"
            " finished_at, updated_at, sha256) VALUES (1, 'eventpics', 'a1', 'uploaded',"
            " 1.0, 2.0, 2.0, ?)",
            (hashlib.sha256(content).hexdigest(),),
        )
    outbox = Outbox(db)
    gallery = FakeGallery("eventpics")
    try:
        queue(outbox, second, "eventpics", album="a1")
        recorder = run_until_uploaded(outbox, gallery, 2)
        assert gallery.received == []
        assert recorder.outcomes() == ["duplicate"]
        assert recorder.reports[0].note == "same content as IMG_1.jpg, already uploaded"
    finally:
        outbox.close()


def test_completions_reach_the_disk_once_the_queue_is_drained(
    tmp_path: Path, outbox: Outbox
) -> None:
    """Workers record completions without a sync each, and sync when no job is left: the
    synced flag is written after the last completion, with nothing left unsynced."""
    for i in range(5):
        queue(outbox, picture(tmp_path, f"IMG_{i}.jpg"), "eventpics")
    uploader = running(outbox, FakeGallery("eventpics"), concurrency=2)
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 5)

        def synced_after_last() -> bool:
            raw = sqlite3.connect(tmp_path / "state" / "outbox.sqlite3")
            try:
                (synced,) = raw.execute(
                    "SELECT COALESCE(MAX(updated_at), 0) FROM flags WHERE name = ?",
                    (SYNCED_FLAG,),
                ).fetchone()
                (last,) = raw.execute("SELECT MAX(finished_at) FROM jobs").fetchone()
            finally:
                raw.close()
            return bool(synced >= last)

        wait_for(synced_after_last, what="a sync after the last completion")
        assert outbox.sync() is False
    finally:
        uploader.stop(5)


def test_identical_content_goes_once_to_each_destination_and_album(
    tmp_path: Path, outbox: Outbox
) -> None:
    """The duplicate check is per destination and album: other albums and destinations
    still get the content, and no album only matches no album."""
    content = b"\xff\xd8the print"
    eventpics, backup = FakeGallery("eventpics"), FakeGallery("backup")
    for name, album in (("a.jpg", "a1"), ("b.jpg", "a2"), ("c.jpg", None), ("d.jpg", None)):
        queue(outbox, picture(tmp_path, name, content), "eventpics", "backup", album=album)
    uploader, recorder = recording(outbox, eventpics, backup)
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 8)
    finally:
        uploader.stop(5)
    sent = {
        (r.job.path.name, r.job.destination) for r in recorder.reports if r.outcome == "uploaded"
    }
    assert sent == {
        ("a.jpg", "eventpics"),
        ("a.jpg", "backup"),
        ("b.jpg", "eventpics"),
        ("b.jpg", "backup"),
        ("c.jpg", "eventpics"),
        ("c.jpg", "backup"),
    }
    assert len(eventpics.received) == len(backup.received) == 3
    assert outbox.stats().duplicates == {"eventpics": 1, "backup": 1}


def test_a_reexport_with_new_content_is_uploaded_again(tmp_path: Path, outbox: Outbox) -> None:
    """The same name written again with different content is a new picture and is sent."""
    gallery = FakeGallery("eventpics")
    path = picture(tmp_path, "IMG_1.jpg", b"\xff\xd8first edit")
    queue(outbox, path, "eventpics")
    uploader, recorder = recording(outbox, gallery)
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 1)
        rewrite(path, b"\xff\xd8second edit, with a frame")
        queue(outbox, path, "eventpics")
        uploader.wake()
        wait_for(lambda: totals(outbox)["uploaded"] == 2)
    finally:
        uploader.stop(5)
    assert gallery.received == [b"\xff\xd8first edit", b"\xff\xd8second edit, with a frame"]
    assert recorder.outcomes() == ["uploaded", "uploaded"]


def test_a_folder_copied_back_in_is_not_uploaded_again(tmp_path: Path, outbox: Outbox) -> None:
    """The same name written again with the same content (a new modification time only) is
    recognised by its content and not sent again."""
    gallery = FakeGallery("eventpics")
    path = picture(tmp_path, "IMG_1.jpg")
    content = path.read_bytes()
    queue(outbox, path, "eventpics")
    uploader, recorder = recording(outbox, gallery)
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 1)
        rewrite(path, content)
        queue(outbox, path, "eventpics")
        uploader.wake()
        wait_for(lambda: totals(outbox)["uploaded"] == 2)
    finally:
        uploader.stop(5)
    assert gallery.received == [content]
    assert recorder.outcomes() == ["uploaded", "duplicate"]
    assert recorder.reports[1].note == "same content as IMG_1.jpg, already uploaded"


def test_the_stream_hash_counts_bytes_read_again_once_and_a_gap_makes_it_incomplete() -> None:
    """Bytes fed twice (a retry reads the file again from the start) are hashed once; a read
    that skips ahead leaves the hash incomplete (None), as does one short of the size."""
    data = os.urandom(3000)
    expected = xxhash.xxh3_128(data).hexdigest()
    retried = _StreamHash()
    retried.feed(0, data[:1000])
    retried.feed(1000, data[1000:1500])
    retried.feed(0, data[:1200])  # the second attempt, overlapping what was seen
    retried.feed(1200, data[1200:])
    assert retried.hexdigest(3000) == expected
    gap = _StreamHash()
    gap.feed(0, data[:1000])
    gap.feed(2000, data[2000:])
    assert gap.hexdigest(3000) is None
    short = _StreamHash()
    short.feed(0, data[:2999])
    assert short.hexdigest(3000) is None


def test_a_picture_unlike_any_uploaded_is_read_once(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A picture (larger than one read) whose size and beginning match no uploaded one is
    not read whole before it is sent: its XXH3-128 comes from the bytes sent, whole, and
    finds it afterwards."""
    monkeypatch.setattr(
        "boothsync.uploader.content_hash", lambda path: pytest.fail(f"{path} was read whole")
    )
    data = os.urandom(2 * 1024 * 1024 + 12345)
    path = picture(tmp_path, "IMG_1.jpg", data)
    queue(outbox, path, "eventpics")
    uploader = running(outbox, FakeGallery("eventpics"))
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 1)
    finally:
        uploader.stop(5)
    digest = xxhash.xxh3_128(data).hexdigest()
    assert outbox.find_uploaded(digest, destination="eventpics", album_id=None) == path


class ReadsItsOwnWay(FakeGallery):
    """A destination that reads the file directly (as a copy to a folder may), not through
    the item's chunks."""

    def upload(self, item: UploadItem) -> None:
        with self.lock:
            self.items.append(item)
            self.received.append(item.path.read_bytes())


def test_a_destination_reading_the_file_itself_still_leaves_its_hash(
    tmp_path: Path, outbox: Outbox
) -> None:
    """When the destination read the file its own way, the uploader hashes it after the
    upload, so a later copy of the same content is still recognised."""
    gallery = ReadsItsOwnWay("eventpics")
    first = picture(tmp_path, "IMG_1.jpg", b"\xff\xd8the print")
    second = picture(tmp_path, "IMG_1 (copy).jpg", b"\xff\xd8the print")
    queue(outbox, first, "eventpics")
    queue(outbox, second, "eventpics")
    recorder = run_until_uploaded(outbox, gallery, 2)
    assert gallery.received == [b"\xff\xd8the print"]
    assert recorder.outcomes() == ["uploaded", "duplicate"]


# -- a file that changes around its upload -----------------------------------------


def test_a_picture_that_grows_during_its_upload_is_sent_again(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A file written to while it was uploaded is sent again, without counting the attempt,
    so the gallery ends with its final bytes; the newer version the watcher then queues is
    settled as a duplicate, not uploaded a third time."""
    start, rest = b"\xff\xd8first half", b" and the second half"

    def writer(item: UploadItem) -> None:
        if len(gallery.items) == 1:
            with item.path.open("ab") as handle:
                handle.write(rest)

    gallery = FakeGallery("eventpics", writer)
    path = picture(tmp_path, "IMG_1.jpg", start)
    queue(outbox, path, "eventpics")
    uploader, recorder = recording(outbox, gallery, changed_delay=0.05)
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 1)
        # Reported once the upload is on the disk, a moment after the queue says so.
        wait_for(lambda: recorder.outcomes() == ["waiting", "uploaded"])
        queue(outbox, path, "eventpics")  # the version the watcher sees once it settles
        uploader.wake()
        wait_for(lambda: totals(outbox)["uploaded"] == 2)
    finally:
        uploader.stop(5)
    assert gallery.received == [start, start + rest]
    assert recorder.outcomes() == ["waiting", "uploaded", "duplicate"]
    waiting, uploaded, duplicate = recorder.reports
    assert waiting.error == "changed while it was being uploaded; sending it again"
    assert uploaded.job.id == waiting.job.id and uploaded.job.attempts == 1
    assert uploaded.capture is not None and duplicate.job.id != uploaded.job.id
    assert totals(outbox)["failed"] == totals(outbox)["waiting"] == 0


def test_the_newer_version_may_go_first_and_the_redo_is_then_a_duplicate(
    tmp_path: Path, outbox: Outbox
) -> None:
    """When the watcher queues the new version before the changed upload is redone, the
    final content is still sent once: by whichever job gets there first."""
    start, rest = b"\xff\xd8first half", b" and the second half"

    def writer(item: UploadItem) -> None:
        if len(gallery.items) == 1:
            with item.path.open("ab") as handle:
                handle.write(rest)
            queue(outbox, item.path, "eventpics")

    gallery = FakeGallery("eventpics", writer)
    path = picture(tmp_path, "IMG_1.jpg", start)
    queue(outbox, path, "eventpics")
    # The redo is due after the newer version's job, which is therefore claimed first.
    uploader, recorder = recording(outbox, gallery, changed_delay=0.2)
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 2)
    finally:
        uploader.stop(5)
    assert gallery.received == [start, start + rest]
    assert recorder.outcomes() == ["waiting", "uploaded", "duplicate"]
    assert recorder.reports[2].job.id == recorder.reports[0].job.id


def test_two_versions_of_one_picture_never_travel_at_once(tmp_path: Path, outbox: Outbox) -> None:
    """A picture rewritten during its upload has two jobs (its redo, and the new version the
    watcher queues); while one of them is on its way, the other waits its turn, and then finds
    the content already there: the gallery gets the new content once, not twice."""
    first, second = b"\xff\xd8the first print", b"\xff\xd8the print, with a frame"
    answer = threading.Event()

    def writer(item: UploadItem) -> None:
        with gallery.lock:
            upload = len(gallery.items)
        if upload == 1:  # the first version went; the booth rewrites it, the watcher queues it
            rewrite(item.path, second)
            queue(outbox, item.path, "eventpics")
            uploader.wake()
        elif upload == 2:  # the new content on its way, slowly
            answer.wait(30)

    gallery = FakeGallery("eventpics", writer)
    uploader = running(outbox, gallery, concurrency=2, spares=0, changed_delay=0.05)
    try:
        queue(outbox, picture(tmp_path, "IMG_1.jpg", first), "eventpics")
        uploader.wake()
        wait_for(lambda: len(gallery.items) == 2, what="the new content to be on its way")
        threading.Event().wait(1.0)  # both versions' jobs are due by now
        assert len(gallery.items) == 2
        answer.set()
        wait_for(lambda: totals(outbox)["uploaded"] == 2, what="both jobs to be done")
    finally:
        answer.set()
        uploader.stop(5)
    assert gallery.received == [first, second]


def test_a_picture_changed_after_it_was_queued_is_sent_as_it_is_now(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A job whose file changed after it was queued sends the current content; the newer
    version's own job then has nothing left to send."""
    gallery = FakeGallery("eventpics")
    path = picture(tmp_path, "IMG_1.jpg", b"\xff\xd8draft")
    queue(outbox, path, "eventpics")
    rewrite(path, b"\xff\xd8the final print")
    uploader, recorder = recording(outbox, gallery)
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 1)
        queue(outbox, path, "eventpics")
        uploader.wake()
        wait_for(lambda: totals(outbox)["uploaded"] == 2)
    finally:
        uploader.stop(5)
    assert gallery.received == [b"\xff\xd8the final print"]
    assert gallery.items[0].size == len(b"\xff\xd8the final print")
    assert recorder.outcomes() == ["uploaded", "duplicate"]


def test_a_picture_that_shrinks_during_its_upload_is_sent_again_not_failed(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A destination that found the file shorter than announced is a change to send again,
    not a file to give up on."""

    def truncate(item: UploadItem) -> None:
        if len(gallery.items) == 1:
            item.path.write_bytes(b"\xff\xd8short")
            raise SourceFileError(f"{item.path}: shrank while it was being uploaded")

    gallery = FakeGallery("eventpics", truncate)
    queue(outbox, picture(tmp_path, "IMG_1.jpg", b"\xff\xd8a longer picture"), "eventpics")
    uploader, recorder = recording(outbox, gallery, changed_delay=0.05)
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 1)
    finally:
        uploader.stop(5)
    assert gallery.received == [b"\xff\xd8short"]
    assert recorder.outcomes() == ["waiting", "uploaded"]


def test_a_picture_deleted_during_its_upload_is_not_marked_uploaded(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A file that vanished while the destination took it is not counted as uploaded: the
    job is tried again and then dropped, saying the file vanished."""

    def delete(item: UploadItem) -> None:
        item.path.unlink()

    gallery = FakeGallery("eventpics", delete)
    queue(outbox, picture(tmp_path), "eventpics")
    uploader, recorder = recording(outbox, gallery, changed_delay=0.05)
    try:
        wait_for(lambda: recorder.outcomes() == ["waiting", "gone"])
    finally:
        uploader.stop(5)
    assert "vanished" in (recorder.reports[1].error or "")
    assert recorder.done == []
    assert totals(outbox)["uploaded"] == 0


# -- destination health and source-file errors -------------------------------------


def test_an_unreachable_destination_goes_offline_and_catches_up_when_back(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A network error with no answer to the probe makes the destination offline: its job goes
    back uncounted, nothing fails, another destination goes on. When the probe answers, it is
    online again and every waiting file goes at once, even one backed off before the outage."""

    def flaky(item: UploadItem) -> None:
        if not gallery.unreachable.is_set():
            return
        if item.file_name == "a.jpg":
            raise ServerBusy("EventPics answered 503", status=503)
        raise NetworkError("cannot reach EventPics")

    gallery = FakeGallery("eventpics", flaky)
    backup = FakeGallery("backup")
    gallery.unreachable.set()
    queue(outbox, picture(tmp_path, "a.jpg"), "eventpics")
    queue(outbox, picture(tmp_path, "b.jpg"), "eventpics", "backup")
    uploader, recorder = recording(
        outbox, gallery, backup, job_backoff=lambda attempts: 600.0, probe_cap=0.2
    )
    try:
        wait_for(lambda: uploader.health()["eventpics"].health is Health.OFFLINE)
        wait_for(lambda: outbox.stats().destinations["backup"]["uploaded"] == 1)
        assert outbox.health()["eventpics"][0] == "offline"
        assert totals(outbox)["failed"] == 0
        first = recorder.reports[0]
        assert (first.job.path.name, first.outcome) == ("a.jpg", "waiting")  # for 600 s
        gallery.unreachable.clear()
        # Well inside a.jpg's backoff: only the catch-up can send it.
        wait_for(lambda: outbox.stats().destinations["eventpics"]["uploaded"] == 2, timeout=5)
    finally:
        uploader.stop(5)
    assert uploader.health()["eventpics"].health is Health.ONLINE
    assert outbox.health()["eventpics"][0] == "online"
    offline = [r for r in recorder.reports if r.job.path.name == "b.jpg" and r.outcome == "waiting"]
    assert offline, "b.jpg met the outage"
    uploaded = {r.job.path.name: r.job for r in recorder.reports if r.outcome == "uploaded"}
    # The outage was not counted against b.jpg: its upload is its first counted attempt.
    assert uploaded["b.jpg"].attempts == 1


def test_a_probe_the_gallery_keeps_waiting_does_not_hold_back_the_next(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A gallery back from an outage but slow to answer: the first probe after its return
    hangs (here until the test ends), and the next probe, started meanwhile, finds it and
    ends the outage: waiting pictures go without waiting for the hung probe."""
    release = threading.Event()
    probes = []

    class SlowToAnswer(FakeGallery):
        def probe(self) -> None:
            with self.lock:
                probes.append(self.unreachable.is_set())
                first_after_return = probes.count(False) == 1
            super().probe()
            if first_after_return:
                release.wait(30)

    gallery = SlowToAnswer("eventpics", lambda item: None)
    gallery.unreachable.set()

    def upload(item: UploadItem) -> None:
        if gallery.unreachable.is_set():
            raise NetworkError("cannot reach EventPics")

    gallery.behaviour = upload
    queue(outbox, picture(tmp_path, "a.jpg"), "eventpics")
    uploader = running(outbox, gallery, probe_cap=0.2)
    try:
        wait_for(lambda: uploader.health()["eventpics"].health is Health.OFFLINE)
        gallery.unreachable.clear()
        wait_for(lambda: totals(outbox)["uploaded"] == 1, timeout=10)
        assert not release.is_set()  # the first probe after the return is still out
        assert probes.count(False) >= 2
    finally:
        release.set()
        uploader.stop(5)


@pytest.mark.parametrize("spares", [1, 0], ids=["spare", "none"])
def test_while_every_upload_stands_still_a_spare_worker_sends_the_next_picture(
    tmp_path: Path, outbox: Outbox, spares: int
) -> None:
    """A gallery that keeps one upload waiting for its answer (an overloaded server back from
    an outage) does not hold back the queue: once every upload in flight has stood still a
    second, a spare worker sends the next picture. Without spares it waits."""
    answer = threading.Event()

    def stall(item: UploadItem) -> None:
        if item.file_name == "a.jpg":
            answer.wait(30)

    gallery = FakeGallery("eventpics", stall)
    queue(outbox, picture(tmp_path, "a.jpg"), "eventpics")
    uploader = running(outbox, gallery, concurrency=1, spares=spares)
    try:
        wait_for(lambda: len(gallery.items) == 1, what="the first upload to start")
        queue(outbox, picture(tmp_path, "b.jpg"), "eventpics")
        uploader.wake()
        if spares:
            wait_for(lambda: totals(outbox)["uploaded"] == 1, timeout=10, what="b.jpg")
            assert [i.file_name for i in gallery.items] == ["a.jpg", "b.jpg"]
        else:
            threading.Event().wait(2.5)  # more than twice the time a spare would have waited
            assert [i.file_name for i in gallery.items] == ["a.jpg"]
    finally:
        answer.set()
        uploader.stop(5)


def test_an_upload_that_keeps_moving_starts_no_spare(tmp_path: Path, outbox: Outbox) -> None:
    """An upload that is slow but keeps sending (a slow link) is not standing still: no spare
    worker starts, and the next picture waits its turn."""
    done = threading.Event()
    events: list[str] = []

    class SlowLink(FakeGallery):
        def upload(self, item: UploadItem) -> None:
            with self.lock:
                self.items.append(item)
                events.append(f"start {item.file_name}")
            if item.file_name == "a.jpg":
                reader = item.reader()
                try:
                    while reader.read(1000):
                        done.wait(0.25)  # one small piece every quarter second: moving
                finally:
                    reader.close()
            with self.lock:
                events.append(f"end {item.file_name}")

    gallery = SlowLink("eventpics")
    queue(outbox, picture(tmp_path, "a.jpg", b"\xff\xd8" + bytes(12_000)), "eventpics")
    uploader = running(outbox, gallery, concurrency=1, spares=1)
    try:
        wait_for(lambda: len(gallery.items) == 1, what="the first upload to start")
        queue(outbox, picture(tmp_path, "b.jpg"), "eventpics")
        uploader.wake()
        wait_for(lambda: totals(outbox)["uploaded"] == 2, timeout=20)
        assert events == ["start a.jpg", "end a.jpg", "start b.jpg", "end b.jpg"]
    finally:
        done.set()
        uploader.stop(5)


def test_no_spare_starts_for_an_upload_no_slower_than_the_uploads_before_it(
    tmp_path: Path, outbox: Outbox
) -> None:
    """On a slow link the kernel takes a whole picture at once and its answer comes once the
    link carried it: the upload stands still, as far as the worker sees, for all of it. When
    the uploads before took that long too, no spare worker starts another upload beside it
    (it would only share the link): the next picture waits its turn."""
    events: list[str] = []
    lock = threading.Lock()
    takes = {"a.jpg": 3.0, "b.jpg": 1.8, "c.jpg": 0.0}

    class BufferedLink(FakeGallery):
        def upload(self, item: UploadItem) -> None:
            with lock:
                events.append(f"start {item.file_name}")
            reader = item.reader()
            try:
                while reader.read(64 * 1024):
                    pass  # all of it into the send buffer at once
            finally:
                reader.close()
            threading.Event().wait(takes[item.file_name])  # the link carrying it, the answer
            with lock:
                events.append(f"end {item.file_name}")

    gallery = BufferedLink("eventpics")
    queue(outbox, picture(tmp_path, "a.jpg"), "eventpics")
    uploader = running(outbox, gallery, concurrency=1, spares=1)
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 1, timeout=10, what="a.jpg")
        queue(outbox, picture(tmp_path, "b.jpg"), "eventpics")
        queue(outbox, picture(tmp_path, "c.jpg"), "eventpics")
        uploader.wake()
        wait_for(lambda: totals(outbox)["uploaded"] == 3, timeout=20, what="b.jpg and c.jpg")
        assert events == [f"{step} {name}" for name in takes for step in ("start", "end")]
    finally:
        uploader.stop(5)


def test_a_network_error_with_the_destination_reachable_is_a_plain_retry(
    tmp_path: Path, outbox: Outbox
) -> None:
    """When the probe answers, a network error was about that request: the job backs off
    counted, and the destination does not go offline."""

    def reset(item: UploadItem) -> None:
        raise NetworkError("connection reset")

    queue(outbox, picture(tmp_path), "eventpics")
    uploader, recorder = recording(
        outbox, FakeGallery("eventpics", reset), retry_budget=RetryBudget(rate=0.0, burst=1)
    )
    try:
        wait_for(lambda: recorder.outcomes() == ["waiting"])
    finally:
        uploader.stop(5)
    assert uploader.health()["eventpics"].health is not Health.OFFLINE
    due = outbox.next_due()
    assert due is not None and due > time.time()


def test_a_rate_limit_holds_that_destination_only(tmp_path: Path, outbox: Outbox) -> None:
    """A 429 makes its destination rate-limited until Retry-After, without counting the
    attempt; the other destination goes on."""

    def busy(item: UploadItem) -> None:
        raise ServerBusy("EventPics answered 429", status=429, retry_after=60)

    slow, backup = FakeGallery("eventpics", busy), FakeGallery("backup")
    for index in range(3):
        queue(outbox, picture(tmp_path, f"p{index}.jpg"), "eventpics", "backup")
    uploader = running(outbox, slow, backup)
    try:
        wait_for(lambda: outbox.stats().destinations["backup"]["uploaded"] == 3)
        wait_for(lambda: uploader.health()["eventpics"].health is Health.RATE_LIMITED)
    finally:
        uploader.stop(5)
    health = uploader.health()["eventpics"]
    assert health.paused_until is not None and health.paused_until - time.monotonic() > 50
    assert outbox.health()["eventpics"][0] == "rate-limited"
    # Held after the first 429 (two workers may each have had one in hand).
    assert len(slow.items) <= 2
    counts = outbox.stats().destinations["eventpics"]
    assert counts["waiting"] == 3 and counts["failed"] == 0
    job = outbox.claim(only=["eventpics"], now=time.time() + 3600)
    assert job is not None and job.attempts == 1  # the 429 was not counted


def test_an_unreadable_picture_is_tried_a_few_times_then_fails_with_the_reason(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A file that exists but cannot be read is retried with the job backoff, then fails
    saying why. (Unreadable here is a folder where the picture was: file permissions do
    not bind root, a folder refuses open() for every user alike.)"""
    path = picture(tmp_path, "locked.jpg")
    queue(outbox, path, "eventpics")
    path.unlink()
    path.mkdir()
    uploader, recorder = recording(
        outbox, FakeGallery("eventpics"), job_backoff=lambda attempts: 0.05, read_attempts=3
    )
    try:
        wait_for(lambda: totals(outbox)["failed"] == 1)
    finally:
        uploader.stop(5)
    assert recorder.outcomes() == ["waiting", "waiting", "failed"]
    assert "locked.jpg: cannot be read" in (recorder.reports[-1].error or "")


def test_a_vanished_picture_is_forgotten_and_queued_again_if_it_comes_back(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A picture deleted before its upload is dropped at once, once, as missing: no failed
    job is left to keep the tray red. The queue forgets the file too, so the very same
    picture put back (a share mounted again) is new to it and goes."""
    path = picture(tmp_path, "gone.jpg")
    content = path.read_bytes()
    st = path.stat()
    queue(outbox, path, "eventpics")
    path.unlink()
    uploader, recorder = recording(outbox, FakeGallery("eventpics"))
    try:
        wait_for(lambda: recorder.outcomes() == ["gone"])
    finally:
        uploader.stop(5)
    assert recorder.reports[0].error == f"missing: {path} vanished"
    assert totals(outbox) == {"waiting": 0, "uploading": 0, "uploaded": 0, "failed": 0}
    path.write_bytes(content)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not outbox.is_known(path, st.st_size, st.st_mtime_ns)


def test_a_paused_uploader_claims_nothing_and_resumes_at_once(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While paused, queued pictures stay waiting however often the workers are woken; an
    upload in flight when the pause came finishes; resume() sends the rest at once."""
    # Idle workers look again only after a minute: what goes within the wait below went
    # because resume() woke them.
    monkeypatch.setattr(uploader_module, "_IDLE_CHECK", 60.0)
    release = threading.Event()
    started = threading.Event()

    def slow(item: UploadItem) -> None:
        if item.file_name == "first.jpg":
            started.set()
            release.wait(10)

    gallery = FakeGallery("eventpics", slow)
    queue(outbox, picture(tmp_path, "first.jpg"), "eventpics")
    uploader = running(outbox, gallery, concurrency=1)
    try:
        assert started.wait(10)
        uploader.pause()
        assert uploader.paused
        for index in range(3):
            queue(outbox, picture(tmp_path, f"later-{index}.jpg"), "eventpics")
        uploader.wake()
        release.set()
        wait_for(lambda: totals(outbox)["uploaded"] == 1, what="the upload in flight to finish")
        for _ in range(5):
            uploader.wake()
        threading.Event().wait(0.5)  # time passes: nothing may be claimed in it
        assert totals(outbox)["waiting"] == 3 and totals(outbox)["uploading"] == 0
        assert [item.file_name for item in gallery.items] == ["first.jpg"]

        uploader.resume()
        assert not uploader.paused
        wait_for(lambda: totals(outbox)["uploaded"] == 4, timeout=30)
    finally:
        release.set()
        uploader.stop(5)


def test_an_uploader_paused_before_start_claims_nothing(tmp_path: Path, outbox: Outbox) -> None:
    """pause() before start() holds back even the first claim."""
    gallery = FakeGallery("eventpics")
    queue(outbox, picture(tmp_path), "eventpics")
    uploader = Uploader(outbox, {"eventpics": gallery}, tz=UTC)
    uploader.pause()
    uploader.start()
    try:
        threading.Event().wait(0.3)  # time passes: nothing may be claimed in it
        assert totals(outbox)["waiting"] == 1 and gallery.items == []
        uploader.resume()
        wait_for(lambda: totals(outbox)["uploaded"] == 1, timeout=5)
    finally:
        uploader.stop(5)


def test_the_last_bytes_check_reads_the_file_not_only_its_times(tmp_path: Path) -> None:
    """The check made before an upload's last bytes go compares the file's beginning with what
    it was, so a rewrite within one tick of the file system's clock (times unchanged) is seen
    too; an unchanged file passes."""
    path = picture(tmp_path, "IMG_1.jpg", b"\xff\xd8the first print")
    before = _version(path)
    _unchanged_guard(path, before, _head(path, before.size))()  # nothing changed: no error
    elsewhere = picture(tmp_path, "other.jpg", b"\xff\xd8the other print")
    with pytest.raises(SourceChanged):
        _unchanged_guard(path, before, _head(elsewhere, before.size))()


def test_a_held_backlog_goes_on_as_soon_as_the_live_upload_ends(
    tmp_path: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the live order the second worker finds the backlog held while a fresh picture
    uploads (it would only share the link with it); it does not wait out its idle time (a
    minute here), nor asks again and again meanwhile, but is woken when that upload ends:
    then both workers send the backlog."""
    monkeypatch.setattr(uploader_module, "_IDLE_CHECK", 60.0)
    outbox.order_live(120.0)
    hour_ago = time.time() - 3600
    for name in ("old-1.jpg", "old-2.jpg"):
        old = picture(tmp_path, name)
        os.utime(old, (hour_ago, hour_ago))
        queue(outbox, old, "eventpics")
    queue(outbox, picture(tmp_path, "new.jpg"), "eventpics")
    release = threading.Event()
    both = threading.Barrier(2, timeout=30)

    def slow(item: UploadItem) -> None:
        if item.file_name == "new.jpg":
            release.wait(30)
        else:
            both.wait()  # the two backlog uploads run side by side

    claimed: list[Job | None] = []
    claim = outbox.claim

    def noting(**kwargs: Any) -> Job | None:
        job = claim(**kwargs)
        claimed.append(job)
        return job

    monkeypatch.setattr(outbox, "claim", noting)
    gallery = FakeGallery("eventpics", slow)
    uploader = running(outbox, gallery, concurrency=2, spares=0)
    try:
        wait_for(lambda: None in claimed, what="a claim to find the backlog held")
        threading.Event().wait(0.5)  # a worker that asked again and again would show here
        assert claimed.count(None) == 1
        assert [item.file_name for item in gallery.items] == ["new.jpg"]
        release.set()
        wait_for(lambda: totals(outbox)["uploaded"] == 3, timeout=20, what="the backlog")
    finally:
        release.set()
        both.abort()
        uploader.stop(5)


def test_a_live_upload_that_stands_still_holds_no_backlog_from_a_spare(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A fresh picture whose upload stands still (an overloaded gallery keeps its answer) does
    not hold the backlog: once it has stood still a second, a spare worker sends the next
    picture of the backlog beside it."""
    outbox.order_live(120.0)
    old = picture(tmp_path, "old.jpg")
    hour_ago = time.time() - 3600
    os.utime(old, (hour_ago, hour_ago))
    queue(outbox, old, "eventpics")
    queue(outbox, picture(tmp_path, "new.jpg"), "eventpics")
    answer = threading.Event()

    def stall(item: UploadItem) -> None:
        if item.file_name == "new.jpg":
            answer.wait(30)

    gallery = FakeGallery("eventpics", stall)
    uploader = running(outbox, gallery, concurrency=1, spares=1)
    try:
        wait_for(lambda: totals(outbox)["uploaded"] == 1, timeout=10, what="old.jpg by a spare")
        assert [item.file_name for item in gallery.items] == ["new.jpg", "old.jpg"]
    finally:
        answer.set()
        uploader.stop(5)
