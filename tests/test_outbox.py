"""The queue database, on real SQLite files in tmp_path."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Collection, Iterator
from pathlib import Path

import pytest

from boothsync import outbox as outbox_module
from boothsync.errors import OutboxError
from boothsync.outbox import (
    SCHEMA_VERSION,
    SYNCED_FLAG,
    Event,
    Job,
    JobState,
    NewFile,
    Outbox,
    _move_aside,
)
from tests.helpers import Clock, old_queue

ROOT = Path(__file__).resolve().parents[1]
ONE = {"eventpics": None}
TWO: dict[str, str | None] = {"eventpics": "album-1", "backup": None}


@pytest.fixture
def box(db: Path, clock: Clock) -> Iterator[Outbox]:
    outbox = Outbox(db, clock=clock, monotonic=clock)
    yield outbox
    outbox.close()


def add(
    box: Outbox,
    name: str,
    destinations: dict[str, str | None] | None = None,
    *,
    size: int = 100,
    mtime_ns: int = 1,
) -> int:
    return box.add(
        Path("/booth/prints") / name,
        size=size,
        mtime_ns=mtime_ns,
        watch="prints",
        destinations=ONE if destinations is None else destinations,
    )


def claim(box: Outbox, *, only: Collection[str] | None = None, now: float | None = None) -> Job:
    job = box.claim(only=only, now=now)
    assert job is not None, "expected a job to claim"
    return job


def drain(box: Outbox) -> list[Job]:
    jobs = []
    while (job := box.claim()) is not None:
        jobs.append(job)
    return jobs


def counts(box: Outbox, destination: str = "eventpics") -> dict[str, int]:
    return box.stats().destinations[destination]


# -- adding -------------------------------------------------------------------


def test_add_is_idempotent(box: Outbox) -> None:
    """Adding the same file again creates no new jobs; a new destination adds just its job."""
    assert add(box, "IMG_1.jpg", TWO) == 2
    assert add(box, "IMG_1.jpg", TWO) == 0
    assert add(box, "IMG_1.jpg", {**TWO, "archive": None}) == 1
    assert box.stats().totals == {"waiting": 3, "uploading": 0, "uploaded": 0, "failed": 0}


def test_add_many_queues_several_files_and_counts_each(box: Outbox) -> None:
    """add_many() adds each file with its own destinations and albums, says how many jobs
    are new for each (0 for one already there, or named twice), and the jobs are claimable."""
    add(box, "IMG_0.jpg", TWO)

    def new(name: str, destinations: dict[str, str | None]) -> NewFile:
        return NewFile(Path("/booth/prints") / name, 100, 1, "prints", destinations)

    counts = box.add_many(
        [
            new("IMG_0.jpg", TWO),
            new("IMG_1.jpg", TWO),
            new("IMG_2.jpg", {"eventpics": "a9"}),
            new("IMG_2.jpg", {"eventpics": "a9"}),
        ]
    )
    assert counts == [0, 2, 1, 0]
    assert box.add_many([]) == []
    jobs = {(j.path.name, j.destination): j.album_id for j in drain(box)}
    assert jobs[("IMG_2.jpg", "eventpics")] == "a9"
    assert len(jobs) == 5


def test_new_version_of_same_path_is_new_jobs(box: Outbox) -> None:
    """A file rewritten at the same path (new size or mtime) is a new picture with new jobs."""
    assert add(box, "IMG_1.jpg", size=100, mtime_ns=1) == 1
    assert add(box, "IMG_1.jpg", size=200, mtime_ns=1) == 1
    assert add(box, "IMG_1.jpg", size=200, mtime_ns=2) == 1
    path = Path("/booth/prints/IMG_1.jpg")
    assert box.is_known(path, 100, 1)
    assert box.is_known(path, 200, 2)
    assert not box.is_known(path, 300, 1)
    assert not box.is_known(Path("/booth/prints/IMG_2.jpg"), 100, 1)
    assert sorted((j.size, j.mtime_ns) for j in drain(box)) == [(100, 1), (200, 1), (200, 2)]


def test_data_survives_reopening(db: Path, clock: Clock) -> None:
    """Jobs written by one outbox are there when the database is opened again."""
    first = Outbox(db, clock=clock, monotonic=clock)
    add(first, "IMG_1.jpg", TWO)
    first.close()
    second = Outbox(db, clock=clock, monotonic=clock)
    try:
        assert second.stats().totals["waiting"] == 2
        assert add(second, "IMG_1.jpg", TWO) == 0
    finally:
        second.close()


# -- claiming -----------------------------------------------------------------


def test_claim_returns_the_job_with_its_file(box: Outbox, clock: Clock) -> None:
    """A claimed job carries the file's details, is uploading and counts the attempt."""
    box.add(
        Path("/booth/prints/IMG_1.jpg"),
        size=1234,
        mtime_ns=5678,
        watch="prints",
        destinations={"eventpics": "album-1"},
    )
    job = claim(box)
    assert job == Job(
        id=job.id,
        file_id=job.file_id,
        path=Path("/booth/prints/IMG_1.jpg"),
        size=1234,
        mtime_ns=5678,
        watch="prints",
        destination="eventpics",
        album_id="album-1",
        attempts=1,
        state=JobState.UPLOADING,
        last_error=None,
        taken_at_ms=None,
        taken_at_source=None,
    )
    assert box.claim() is None
    assert counts(box)["uploading"] == 1


def test_claim_takes_the_job_due_longest_ago(box: Outbox, clock: Clock) -> None:
    """Jobs are claimed oldest due time first, then in the order they were added."""
    add(box, "IMG_1.jpg")
    add(box, "IMG_2.jpg")
    clock.advance(1)
    add(box, "IMG_3.jpg")
    names = [j.path.name for j in drain(box)]
    assert names == ["IMG_1.jpg", "IMG_2.jpg", "IMG_3.jpg"]


def test_claim_skips_jobs_not_yet_due(box: Outbox, clock: Clock) -> None:
    """A job rescheduled for later is not claimed before its time, by the clock or by `now`."""
    add(box, "IMG_1.jpg")
    box.retry_later(claim(box).id, delay=30, error="timeout")
    assert box.claim() is None
    assert box.claim(now=clock.now + 29.9) is None
    assert claim(box, now=clock.now + 30).path.name == "IMG_1.jpg"


@pytest.mark.parametrize("live_window", [None, 120.0], ids=["oldest", "live"])
def test_claim_only_serves_the_given_destinations(box: Outbox, live_window: float | None) -> None:
    """Destinations left out (paused, no longer configured) are skipped; the others get jobs;
    with every destination left out (all paused in an outage) nothing is claimed, in either
    order, and nothing fails."""
    box.order_live(live_window)
    add(box, "IMG_1.jpg", TWO)
    job = claim(box, only={"backup"})
    assert job.destination == "backup"
    assert box.claim(only=["backup"]) is None
    assert box.claim(only=[]) is None
    assert claim(box).destination == "eventpics"


def _claim_concurrently(outboxes: list[Outbox], threads_per_outbox: int) -> list[int]:
    claimed: list[int] = []
    errors: list[BaseException] = []
    guard = threading.Lock()
    start = threading.Barrier(len(outboxes) * threads_per_outbox)

    def worker(box: Outbox) -> None:
        try:
            start.wait(timeout=10)
            while (job := box.claim()) is not None:
                with guard:
                    claimed.append(job.id)
        except BaseException as exc:
            with guard:
                errors.append(exc)

    threads = [
        threading.Thread(target=worker, args=(box,), name=f"claimer-{i}-{n}")
        for i, box in enumerate(outboxes)
        for n in range(threads_per_outbox)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return claimed


def test_concurrent_claims_from_threads_are_unique(box: Outbox) -> None:
    """Threads sharing one outbox never claim the same job, and together they claim all."""
    for i in range(200):
        add(box, f"IMG_{i}.jpg")
    claimed = _claim_concurrently([box], threads_per_outbox=8)
    assert len(claimed) == 200
    assert len(set(claimed)) == 200


def test_concurrent_claims_from_two_connections_are_unique(db: Path, clock: Clock) -> None:
    """Two outboxes on one file (two connections) never claim the same job."""
    first = Outbox(db, clock=clock, monotonic=clock)
    second = Outbox(db, clock=clock, monotonic=clock)
    try:
        for i in range(100):
            add(first, f"IMG_{i}.jpg", TWO)
        claimed = _claim_concurrently([first, second], threads_per_outbox=4)
        assert len(claimed) == 200
        assert len(set(claimed)) == 200
        assert first.stats().totals["uploading"] == 200
    finally:
        first.close()
        second.close()


# -- finishing ----------------------------------------------------------------


def test_complete_reports_all_done_only_after_the_last_destination(box: Outbox) -> None:
    """complete() says the file is done only when its last destination has it."""
    add(box, "IMG_1.jpg", {"a": None, "b": None, "c": None})
    first, second, third = claim(box), claim(box), claim(box)
    assert box.complete(first.id) is False
    assert box.complete(third.id) is False
    assert box.complete(second.id) is True
    assert box.stats().totals["uploaded"] == 3


def test_complete_stores_the_capture_time_on_the_file(box: Outbox) -> None:
    """The capture time given to complete() is carried by the file's other jobs."""
    add(box, "IMG_1.jpg", TWO)
    box.complete(claim(box).id, taken_at_ms=1_700_000_000_123, taken_at_source="exif")
    other = claim(box)
    assert other.taken_at_ms == 1_700_000_000_123
    assert other.taken_at_source == "exif"


def test_complete_of_a_job_not_uploading_changes_nothing(box: Outbox) -> None:
    """A late or repeated complete() is ignored and never reports the file done twice."""
    add(box, "IMG_1.jpg")
    job = claim(box)
    assert box.complete(job.id) is True
    assert box.complete(job.id) is False
    add(box, "IMG_2.jpg")
    waiting = claim(box)
    box.release(waiting.id)
    assert box.complete(waiting.id) is False
    assert counts(box) == {"waiting": 1, "uploading": 0, "uploaded": 1, "failed": 0}


def test_retry_later_reschedules_with_the_error(box: Outbox, clock: Clock) -> None:
    """retry_later() puts the job back to waiting after the delay, keeping the error and
    the attempt count."""
    add(box, "IMG_1.jpg")
    job = claim(box)
    box.retry_later(job.id, delay=60, error="server busy (503)")
    assert box.next_due() == clock.now + 60
    assert counts(box)["waiting"] == 1
    clock.advance(60)
    again = claim(box)
    assert again.id == job.id
    assert again.attempts == 2
    assert again.last_error == "server busy (503)"


def test_release_does_not_count_the_attempt(box: Outbox, clock: Clock) -> None:
    """release() hands the job back due at once, as if it had never been claimed."""
    add(box, "IMG_1.jpg")
    job = claim(box)
    clock.advance(5)
    box.release(job.id)
    assert box.next_due() == clock.now
    again = claim(box)
    assert again.id == job.id
    assert again.attempts == 1


def test_retry_later_can_leave_the_attempt_uncounted(box: Outbox, clock: Clock) -> None:
    """retry_later(count_attempt=False) reschedules with the error but takes back the attempt."""
    add(box, "IMG_1.jpg")
    job = claim(box)
    box.retry_later(job.id, delay=2, error="changed", count_attempt=False)
    assert box.claim() is None
    clock.advance(2)
    again = claim(box)
    assert (again.id, again.attempts, again.last_error) == (job.id, 1, "changed")


def test_fail_keeps_the_job_out_of_the_queue(box: Outbox) -> None:
    """A failed job is not claimed again and its error is kept."""
    add(box, "IMG_1.jpg")
    job = claim(box)
    box.fail(job.id, error="file rejected (415)")
    assert box.claim() is None
    assert box.next_due() is None
    assert counts(box) == {"waiting": 0, "uploading": 0, "uploaded": 0, "failed": 1}
    last_error = box.stats().last_error
    assert last_error is not None
    assert last_error.error == "file rejected (415)"


def test_late_calls_on_a_job_not_uploading_are_ignored(box: Outbox) -> None:
    """retry_later, release and fail only move a job that is uploading."""
    add(box, "IMG_1.jpg")
    add(box, "IMG_2.jpg")
    done, failed = claim(box), claim(box)
    box.complete(done.id)
    box.fail(failed.id, error="rejected")
    for job_id in (done.id, failed.id):
        box.retry_later(job_id, delay=1, error="late")
        box.release(job_id)
        box.fail(job_id, error="late")
    assert counts(box) == {"waiting": 0, "uploading": 0, "uploaded": 1, "failed": 1}
    last_error = box.stats().last_error
    assert last_error is not None
    assert last_error.error == "rejected"


# -- content ------------------------------------------------------------------

XXH_A = "a" * 32
XXH_B = "b" * 32


def test_find_uploaded_matches_content_destination_and_album(box: Outbox) -> None:
    """Uploaded content is found for its own destination and album only; no album matches
    no album; content that is not uploaded (waiting, uploading, failed) is not found."""
    box.add(
        Path("/booth/prints/IMG_1.jpg"),
        size=100,
        mtime_ns=1,
        watch="prints",
        destinations={"eventpics": "a1", "backup": None},
    )
    for job in drain(box):
        box.complete(job.id, xxh128=XXH_A)

    def found(digest: str, destination: str, album_id: str | None) -> str | None:
        path = box.find_uploaded(digest, destination=destination, album_id=album_id)
        return None if path is None else path.name

    assert found(XXH_A, "eventpics", "a1") == "IMG_1.jpg"
    assert found(XXH_A, "backup", None) == "IMG_1.jpg"
    assert found(XXH_A, "eventpics", None) is None
    assert found(XXH_A, "eventpics", "a2") is None
    assert found(XXH_A, "backup", "a1") is None
    assert found(XXH_A, "archive", None) is None
    assert found(XXH_B, "eventpics", "a1") is None

    add(box, "IMG_2.jpg", {"archive": None})
    job = claim(box)
    assert found(XXH_B, "archive", None) is None  # uploading
    box.fail(job.id, error="rejected")
    assert found(XXH_B, "archive", None) is None  # failed, never completed with a hash


def test_may_have_uploaded_answers_by_head_destination_and_album(box: Outbox) -> None:
    """A head recorded with an uploaded job says "may have it" for that destination and
    album only; one not uploaded (waiting, failed) or another head says surely not."""
    add(box, "IMG_1.jpg", TWO)
    for job in drain(box):
        box.complete(job.id, xxh128=XXH_A, head="h1")

    def may(head: str, destination: str, album_id: str | None) -> bool:
        return box.may_have_uploaded(head, size=100, destination=destination, album_id=album_id)

    assert may("h1", "eventpics", "album-1")
    assert may("h1", "backup", None)
    assert not may("h1", "eventpics", None)
    assert not may("h1", "archive", None)
    assert not may("h2", "eventpics", "album-1")
    add(box, "IMG_2.jpg", {"archive": None})
    box.fail(claim(box).id, error="rejected")
    assert not may("h2", "archive", None)


def test_find_uploaded_names_a_real_upload_before_a_duplicate(box: Outbox) -> None:
    """When a duplicate and the upload it copies both match, the real upload is named."""
    add(box, "IMG_2.jpg")
    add(box, "IMG_1.jpg")
    copy, original = claim(box), claim(box)
    box.complete(copy.id, xxh128=XXH_A, note="same content as IMG_1.jpg, already uploaded")
    assert box.find_uploaded(XXH_A, destination="eventpics", album_id=None) == copy.path
    box.complete(original.id, xxh128=XXH_A)
    assert box.find_uploaded(XXH_A, destination="eventpics", album_id=None) == original.path


def test_a_job_completed_with_a_note_counts_as_a_duplicate(box: Outbox, clock: Clock) -> None:
    """A job settled without an upload is uploaded, counted in duplicates, and its note is
    part of the latest-upload event."""
    add(box, "IMG_1.jpg", TWO)
    add(box, "IMG_2.jpg", TWO)
    jobs = {(j.path.name, j.destination): j for j in drain(box)}
    box.complete(jobs["IMG_1.jpg", "eventpics"].id, xxh128=XXH_A)
    box.complete(jobs["IMG_1.jpg", "backup"].id, xxh128=XXH_A)
    clock.advance(1)
    note = "same content as IMG_1.jpg, already uploaded"
    assert box.complete(jobs["IMG_2.jpg", "eventpics"].id, xxh128=XXH_A, note=note) is False
    assert box.complete(jobs["IMG_2.jpg", "backup"].id, xxh128=XXH_A, note=note) is True
    stats = box.stats()
    assert stats.totals["uploaded"] == 4
    assert stats.duplicates == {"eventpics": 1, "backup": 1}
    assert stats.last_upload is not None
    assert (Path(stats.last_upload.path).name, stats.last_upload.note) == ("IMG_2.jpg", note)


def test_a_schema_1_database_is_migrated_with_its_data(db: Path, clock: Clock) -> None:
    """A queue written by the first release opens at the current schema with every job,
    file and health row intact, and takes content hashes and notes from then on."""
    with old_queue(db, 1) as raw:
        raw.execute(
            "INSERT INTO files (id, path, size, mtime_ns, watch, added_at, taken_at_ms,"
            " taken_at_source) VALUES (1, '/booth/prints/IMG_1.jpg', 100, 1, 'prints', 5.0,"
            " 1700000000000, 'exif'), (2, '/booth/prints/IMG_2.jpg', 200, 2, 'prints', 6.0,"
            " NULL, NULL)"
        )
        raw.execute(
            "INSERT INTO jobs (file_id, destination, album_id, state, attempts, next_attempt_at,"
            " finished_at, last_error, updated_at) VALUES"
            " (1, 'eventpics', 'a1', 'uploaded', 1, 5.0, 7.0, NULL, 7.0),"
            " (2, 'eventpics', 'a1', 'waiting', 3, 0.0, NULL, 'server busy (503)', 8.0)"
        )
        raw.execute(
            "INSERT INTO destinations (name, health, detail, updated_at)"
            " VALUES ('eventpics', 'offline', 'no network', 8.0)"
        )
        columns = {row[1] for row in raw.execute("PRAGMA table_info(jobs)")}
        assert "sha256" not in columns and "note" not in columns

    box = Outbox(db, clock=clock, monotonic=clock)
    try:
        stats = box.stats()
        assert stats.destinations["eventpics"] == {
            "waiting": 1,
            "uploading": 0,
            "uploaded": 1,
            "failed": 0,
        }
        assert stats.duplicates == {"eventpics": 0}
        assert stats.last_upload == Event(
            path="/booth/prints/IMG_1.jpg",
            destination="eventpics",
            at=7.0,
            error=None,
            taken_at_ms=1_700_000_000_000,
            taken_at_source="exif",
        )
        assert stats.last_error is not None and stats.last_error.error == "server busy (503)"
        assert box.health() == {"eventpics": ("offline", "no network")}
        assert box.is_known(Path("/booth/prints/IMG_1.jpg"), 100, 1)
        # Uploaded before hashes were kept: never taken for a copy of anything.
        assert box.find_uploaded(XXH_A, destination="eventpics", album_id="a1") is None
        job = claim(box)
        assert (job.path.name, job.attempts, job.last_error) == (
            "IMG_2.jpg",
            4,
            "server busy (503)",
        )
        assert box.complete(job.id, xxh128=XXH_A) is True
        assert box.find_uploaded(XXH_A, destination="eventpics", album_id="a1") == job.path
    finally:
        box.close()
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 8
    finally:
        raw.close()


def test_a_schema_4_database_keeps_its_commands_and_takes_reload(db: Path, clock: Clock) -> None:
    """A queue from before the reload command keeps the commands waiting in it, and takes
    "reload" once migrated."""
    with old_queue(db, 4) as raw:
        raw.execute("INSERT INTO commands (command, sent_at) VALUES ('pause', 1.0)")
        with pytest.raises(sqlite3.IntegrityError):
            raw.execute("INSERT INTO commands (command, sent_at) VALUES ('reload', 1.0)")
    box = Outbox(db, clock=clock, monotonic=clock)
    try:
        box.send_command("reload")
        assert box.take_commands() == ["pause", "reload"]
    finally:
        box.close()


def test_jobs_uploaded_with_a_sha256_are_still_found_after_the_hash_changed(
    db: Path, clock: Clock
) -> None:
    """A queue whose uploaded jobs recorded SHA-256 (schema 5) still answers for them: by
    that hash, and whether one of a given size exists for a destination and album; new
    completions record XXH3-128 and are found by it."""
    sha = "5" * 64
    with old_queue(db, 5) as raw:
        raw.execute(
            "INSERT INTO files (id, path, size, mtime_ns, watch, added_at)"
            " VALUES (1, '/booth/prints/IMG_1.jpg', 100, 1, 'prints', 5.0)"
        )
        raw.execute(
            "INSERT INTO jobs (file_id, destination, album_id, state, next_attempt_at,"
            " finished_at, updated_at, sha256) VALUES"
            f" (1, 'eventpics', 'a1', 'uploaded', 5.0, 7.0, 7.0, '{sha}')"
        )
    box = Outbox(db, clock=clock, monotonic=clock)
    try:
        where = {"destination": "eventpics", "album_id": "a1"}
        assert box.find_uploaded_sha256(sha, **where) == Path("/booth/prints/IMG_1.jpg")
        assert box.find_uploaded_sha256(sha, destination="eventpics", album_id=None) is None
        assert box.find_uploaded(sha[:32], **where) is None
        assert box.has_sha256_of_size(100, **where)
        assert not box.has_sha256_of_size(101, **where)
        # Its head was never recorded: its size alone says a picture may be its copy.
        assert box.may_have_uploaded("h", size=100, **where)
        assert not box.may_have_uploaded("h", size=101, **where)
        assert not box.has_sha256_of_size(100, destination="backup", album_id="a1")
        add(box, "IMG_2.jpg", {"eventpics": "a1"}, mtime_ns=2)
        job = claim(box)
        assert box.complete(job.id, xxh128=XXH_A) is True
        assert box.find_uploaded(XXH_A, **where) == job.path
        # The new job has no SHA-256: still only the old one counts for that question.
        assert box.find_uploaded_sha256(sha, **where) == Path("/booth/prints/IMG_1.jpg")
    finally:
        box.close()


def test_sync_puts_unsynced_writes_on_the_disk_once_they_are_old_enough(
    box: Outbox, db: Path
) -> None:
    """Completions made without a sync are seen at once by other readers; sync() writes the
    synced flag when some are pending and old enough, and nothing when none are."""
    add(box, "IMG_1.jpg")
    assert box.sync() is True  # the add itself is not synced
    assert box.sync() is False
    job = claim(box)
    assert box.complete(job.id, xxh128=XXH_A, synced=False) is True
    reader = Outbox(db, readonly=True)
    try:
        assert reader.stats().totals["uploaded"] == 1
    finally:
        reader.close()
    assert box.sync(older_than=60.0) is False
    assert box.sync() is True
    assert SYNCED_FLAG in box.flags()
    assert box.sync() is False
    add(box, "IMG_2.jpg")
    box.set_flag("paused", "0")  # a synced write takes the add along
    assert box.sync() is False


def test_a_claim_that_finds_nothing_leaves_nothing_to_sync(box: Outbox) -> None:
    """An idle worker looks for a job every second or so: a claim that finds none writes
    nothing, so it asks for no sync (no disk write a second while the booth is idle), and a
    synced write does not hide an unsynced one behind an empty claim."""
    add(box, "IMG_1.jpg")
    assert claim(box) is not None
    assert box.sync() is True
    assert box.claim() is None
    assert box.sync() is False
    add(box, "IMG_2.jpg")  # not synced
    assert box.claim(now=-1.0) is None  # due later than that
    assert box.retry_failed() == 0  # a synced write that changes nothing syncs nothing
    assert box.sync() is True


# -- recovery -----------------------------------------------------------------

CRASH = """
import os, sys
from pathlib import Path
from boothsync.outbox import Outbox

box = Outbox(Path(sys.argv[1]))
box.add(Path("/booth/prints/IMG_1.jpg"), size=100, mtime_ns=1, watch="prints",
        destinations={"eventpics": None})
assert box.claim() is not None
os._exit(1)  # a crash: no close, no cleanup
"""


def test_recover_after_a_crash_brings_the_job_back(db: Path) -> None:
    """A job left uploading by a process that died is waiting and claimable after recover()."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", CRASH, str(db)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr

    box = Outbox(db)
    try:
        assert box.stats().totals["uploading"] == 1
        assert box.recover() == 1
        assert box.recover() == 0
        assert box.stats().totals == {"waiting": 1, "uploading": 0, "uploaded": 0, "failed": 0}
        job = claim(box)
        assert job.path == Path("/booth/prints/IMG_1.jpg")
        assert job.attempts == 2
    finally:
        box.close()


def test_retry_failed_queues_failed_jobs_again(box: Outbox) -> None:
    """retry_failed() makes failed jobs waiting again from scratch, for all or one destination."""
    add(box, "IMG_1.jpg", TWO)
    add(box, "IMG_2.jpg", TWO)
    for job in drain(box):
        box.fail(job.id, error="rejected")
    assert box.retry_failed(destination="backup") == 2
    assert box.retry_failed(destination="backup") == 0
    assert counts(box, "backup") == {"waiting": 2, "uploading": 0, "uploaded": 0, "failed": 0}
    assert box.retry_failed() == 2
    jobs = drain(box)
    assert len(jobs) == 4
    assert {j.attempts for j in jobs} == {1}
    assert {j.last_error for j in jobs} == {None}


def test_next_due_is_the_earliest_waiting_job(box: Outbox, clock: Clock) -> None:
    """next_due() gives the due time of the earliest waiting job it may serve, or None."""
    assert box.next_due() is None
    add(box, "IMG_1.jpg", TWO)
    start = clock.now
    assert box.next_due() == start
    for job in drain(box):
        box.retry_later(job.id, delay=10 if job.destination == "eventpics" else 20, error="x")
    assert box.next_due() == start + 10
    assert box.next_due(only={"backup"}) == start + 20
    assert box.next_due(only=[]) is None


# -- statistics ---------------------------------------------------------------


def test_stats_counts_and_latest_events(box: Outbox, clock: Clock) -> None:
    """stats() counts every state per destination and names the latest upload and error."""
    assert box.stats().destinations == {}
    assert box.stats().last_upload is None
    assert box.stats().last_error is None

    for i in range(4):
        add(box, f"IMG_{i}.jpg", TWO)
    jobs = {(j.path.name, j.destination): j for j in drain(box)}
    box.complete(jobs["IMG_0.jpg", "eventpics"].id)
    clock.advance(1)
    box.complete(jobs["IMG_1.jpg", "backup"].id)
    clock.advance(1)
    box.fail(jobs["IMG_2.jpg", "eventpics"].id, error="rejected (415)")
    clock.advance(1)
    box.retry_later(jobs["IMG_3.jpg", "eventpics"].id, delay=30, error="server busy (503)")
    box.release(jobs["IMG_0.jpg", "backup"].id)

    stats = box.stats()
    assert stats.destinations == {
        "eventpics": {"waiting": 1, "uploading": 1, "uploaded": 1, "failed": 1},
        "backup": {"waiting": 1, "uploading": 2, "uploaded": 1, "failed": 0},
    }
    assert stats.totals == {"waiting": 2, "uploading": 3, "uploaded": 2, "failed": 1}
    assert stats.last_upload == Event(
        path=str(Path("/booth/prints/IMG_1.jpg")),
        destination="backup",
        at=clock.now - 2,
        error=None,
    )
    assert stats.last_error == Event(
        path=str(Path("/booth/prints/IMG_3.jpg")),
        destination="eventpics",
        at=clock.now,
        error="server busy (503)",
    )


def test_stats_on_a_large_queue(box: Outbox, db: Path) -> None:
    """stats() counts a queue of 100,000 jobs exactly and finds the latest upload and error.

    Its speed is measured by the benchmarks, not here; the indexes it relies on
    are named in its queries (INDEXED BY), so losing one fails this test.
    """
    add(box, "seed.jpg")
    raw = sqlite3.connect(db)
    try:
        with raw:
            raw.executemany(
                "INSERT INTO files (path, size, mtime_ns, watch, added_at) VALUES (?, ?, ?, ?, ?)",
                ((f"/booth/prints/{i}.jpg", i, i, "bulk", float(i)) for i in range(100_000)),
            )
            # One job per bulk file; its size doubles as a counter for states, times, errors.
            raw.execute(
                """
                INSERT INTO jobs (file_id, destination, state, attempts, next_attempt_at,
                                  finished_at, last_error, updated_at)
                SELECT id, 'dest-' || (size % 3),
                       CASE size % 4 WHEN 0 THEN 'waiting' WHEN 1 THEN 'uploading'
                                     WHEN 2 THEN 'uploaded' ELSE 'failed' END,
                       1, size, CASE WHEN size % 4 = 2 THEN size END,
                       CASE WHEN size % 10 = 3 THEN 'boom' END, size
                FROM files WHERE watch = 'bulk'
                """
            )
    finally:
        raw.close()

    stats = box.stats()
    assert stats.totals == {
        "waiting": 25_001,
        "uploading": 25_000,
        "uploaded": 25_000,
        "failed": 25_000,
    }
    assert stats.last_upload is not None
    assert stats.last_upload.path == "/booth/prints/99998.jpg"
    assert stats.last_error is not None
    assert stats.last_error.path == "/booth/prints/99983.jpg"


# -- opening ------------------------------------------------------------------


def test_readonly_outbox_sees_a_running_writer(db: Path, clock: Clock) -> None:
    """A read-only outbox opened next to a writing one sees each of its commits."""
    writer = Outbox(db, clock=clock, monotonic=clock)
    reader = Outbox(db, readonly=True)
    try:
        assert reader.stats().totals["waiting"] == 0
        add(writer, "IMG_1.jpg")
        assert reader.stats().totals["waiting"] == 1
        assert reader.is_known(Path("/booth/prints/IMG_1.jpg"), 100, 1)
        job = claim(writer)
        assert reader.stats().totals == {
            "waiting": 0,
            "uploading": 1,
            "uploaded": 0,
            "failed": 0,
        }
        writer.complete(job.id)
        last_upload = reader.stats().last_upload
        assert last_upload is not None
        assert last_upload.path == str(Path("/booth/prints/IMG_1.jpg"))
        assert reader.next_due() is None
    finally:
        reader.close()
        writer.close()


def test_readonly_outbox_refuses_to_write(db: Path) -> None:
    """Every write on a read-only outbox raises OutboxError and leaves the database alone."""
    Outbox(db).close()
    reader = Outbox(db, readonly=True)
    try:
        with pytest.raises(OutboxError, match="read-only"):
            add(reader, "IMG_1.jpg")
        with pytest.raises(OutboxError, match="read-only"):
            reader.claim()
        with pytest.raises(OutboxError, match="read-only"):
            reader.recover()
        with pytest.raises(OutboxError, match="read-only"):
            reader.retry_failed()
        assert reader.stats().totals["waiting"] == 0
    finally:
        reader.close()


def test_readonly_open_of_a_missing_database_fails_clearly(db: Path) -> None:
    """Opening a database that does not exist read-only says so and creates nothing."""
    with pytest.raises(OutboxError, match=f"no queue database at {re.escape(str(db))} yet"):
        Outbox(db, readonly=True)
    assert not db.exists()
    assert not db.parent.exists()


def test_writable_open_creates_the_folder(tmp_path: Path) -> None:
    """A writable outbox creates its missing parent folders."""
    path = tmp_path / "a" / "b" / "outbox.sqlite3"
    Outbox(path).close()
    assert path.is_file()


def test_newer_schema_is_refused(db: Path) -> None:
    """A database written by a newer boothsync is not opened, writable or read-only."""
    Outbox(db).close()
    raw = sqlite3.connect(db)
    try:
        (version,) = raw.execute("PRAGMA user_version").fetchone()
        assert version >= 1
        raw.execute(f"PRAGMA user_version = {version + 1}")
    finally:
        raw.close()
    for readonly in (False, True):
        with pytest.raises(OutboxError, match="newer") as excinfo:
            Outbox(db, readonly=readonly)
        assert str(db) in str(excinfo.value)


def test_a_file_that_is_not_sqlite_gives_an_error_naming_it(db: Path) -> None:
    """A garbage file in the database's place gives a one-line OutboxError naming the file."""
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database\n" * 100)
    for readonly in (False, True):
        with pytest.raises(OutboxError) as excinfo:
            Outbox(db, readonly=readonly)
        message = str(excinfo.value)
        assert str(db) in message
        assert "\n" not in message
        assert isinstance(excinfo.value.__cause__, sqlite3.Error)


def test_close_is_idempotent_and_later_use_fails(db: Path) -> None:
    """close() may be called twice; using a closed outbox raises OutboxError."""
    box = Outbox(db)
    box.close()
    box.close()
    with pytest.raises(OutboxError, match="closed"):
        box.stats()
    with pytest.raises(OutboxError, match="closed"):
        add(box, "IMG_1.jpg")


def test_destination_health_is_visible_to_a_reader(db: Path, clock: Clock) -> None:
    """Health written by the running uploader is what a read-only status sees, latest first."""
    writer = Outbox(db, clock=clock, monotonic=clock)
    try:
        writer.set_health("eventpics", "offline", "cannot reach api.eventpics.net")
        writer.set_health("eventpics", "online")
        writer.set_health("nas", "unauthorized", "key rejected")
        reader = Outbox(db, readonly=True)
        try:
            assert reader.health() == {
                "eventpics": ("online", ""),
                "nas": ("unauthorized", "key rejected"),
            }
        finally:
            reader.close()
    finally:
        writer.close()


def test_status_knows_where_each_capture_time_came_from(box: Outbox) -> None:
    """Capture time and source are kept per picture, counted, and shown for the last upload."""
    add(box, "IMG_1.jpg")
    add(box, "IMG_2.jpg")
    first, second = drain(box)
    box.complete(first.id, taken_at_ms=1_700_000_000_123, taken_at_source="exif:DateTimeOriginal")
    box.complete(second.id, taken_at_ms=1_700_000_500_000, taken_at_source="mtime")
    stats = box.stats()
    assert stats.sources == {"exif:DateTimeOriginal": 1, "mtime": 1}
    assert stats.last_upload is not None
    assert (stats.last_upload.taken_at_ms, stats.last_upload.taken_at_source) in {
        (1_700_000_000_123, "exif:DateTimeOriginal"),
        (1_700_000_500_000, "mtime"),
    }


# -- damage, full disks, durability ---------------------------------------------

DAMAGE_KINDS = ["random-bytes", "corrupt-page", "truncated"]


def _fill(db: Path, files: int = 5_000) -> None:
    """A real queue database spread over a few hundred pages, checkpointed."""
    Outbox(db).close()
    raw = sqlite3.connect(db)
    try:
        with raw:
            raw.executemany(
                "INSERT INTO files (path, size, mtime_ns, watch, added_at) VALUES (?, ?, ?, ?, ?)",
                ((f"/booth/prints/{i:06}.jpg", i, i, "bulk", float(i)) for i in range(files)),
            )
            raw.execute(
                "INSERT INTO jobs (file_id, destination, state, next_attempt_at, updated_at)"
                " SELECT id, 'eventpics', 'waiting', 0, 0 FROM files"
            )
    finally:
        raw.close()


def _quick_check(db: Path) -> list[str]:
    raw = sqlite3.connect(db)
    try:
        return [str(row[0]) for row in raw.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    finally:
        raw.close()


def _damage(db: Path, kind: str) -> bytes:
    """Damage the queue database at ``db`` in one of DAMAGE_KINDS; returns its bytes."""
    db.parent.mkdir(parents=True, exist_ok=True)
    if kind == "random-bytes":
        db.write_bytes(os.urandom(64 * 1024))
    else:
        _fill(db)
        size = db.stat().st_size
        page = 4096
        assert size > 50 * page, "the database should span many pages"
        if kind == "corrupt-page":
            with db.open("r+b") as f:
                # Inside a page in the middle, past its header: cell pointers and records.
                f.seek((size // 2) // page * page + 100)
                f.write(b"\xff" * 3000)
        else:
            os.truncate(db, size // 2)
    assert _quick_check(db) != ["ok"], "the damage should be visible to quick_check"
    return db.read_bytes()


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_a_damaged_database_is_moved_aside_and_a_new_one_started(
    db: Path, clock: Clock, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """open_or_rebuild() moves a damaged database aside with its -wal and -shm, says so in
    one ERROR line naming both paths, and starts a new, working queue."""
    damaged = _damage(db, kind)
    wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
    # Companions as a crash can leave them; SQLite may drop them itself when the
    # open fails, else they move with the database.
    wal.write_bytes(b"old wal")
    shm.write_bytes(b"old shm")

    with caplog.at_level("ERROR", logger="boothsync.outbox"):
        box = Outbox.open_or_rebuild(db, clock=clock, monotonic=clock)
    try:
        moved = box.rebuilt_from
        assert moved is not None
        assert re.fullmatch(r"outbox\.sqlite3\.corrupt-\d{8}-\d{6}", moved.name)
        assert moved.parent == db.parent
        assert moved.read_bytes() == damaged
        assert wal.read_bytes() != b"old wal" and shm.read_bytes() != b"old shm"
        [record] = caplog.records
        assert record.levelname == "ERROR"
        line = record.getMessage()
        assert str(db) in line and str(moved) in line and "\n" not in line
        assert "queued again by the first scan" in line

        assert add(box, "IMG_1.jpg") == 1
        box.complete(claim(box).id)
        assert counts(box)["uploaded"] == 1
    finally:
        box.close()
    # The new queue's own -wal/-shm went with its close; none of the old one stayed.
    assert not wal.exists() and not shm.exists()
    assert _quick_check(db) == ["ok"]


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_status_and_plain_opens_report_damage_and_move_nothing(db: Path, kind: str) -> None:
    """A plain writable open of a damaged database raises a one-line OutboxError naming it; a
    read-only open (status) checks the schema but not every page, and reports the damage it
    reads the same way. Either way every file stays where and as it was."""
    damaged = _damage(db, kind)

    def read_only() -> None:
        reader = Outbox(db, readonly=True)
        try:
            reader.stats()
            reader.counts()
        finally:
            reader.close()

    for attempt in (read_only, lambda: Outbox(db).close()):
        try:
            attempt()
        except OutboxError as exc:
            assert "damaged" in str(exc)
            assert str(db) in str(exc)
            assert "\n" not in str(exc)
        else:
            # Only a reader may miss damage in pages it never read; the writer checks all.
            assert attempt is read_only and kind == "corrupt-page"
        # SQLite may leave a -wal/-shm of its own; the database itself stays put.
        assert [p.name for p in db.parent.iterdir() if "corrupt" in p.name] == []
        assert db.read_bytes() == damaged


def test_moving_aside_takes_the_wal_and_shm_and_never_overwrites(db: Path) -> None:
    """A damaged database moves with its -wal and -shm; a second one in the same second
    gets a name of its own."""
    db.parent.mkdir(parents=True)
    first = None
    for generation in (b"1", b"2"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").write_bytes(generation + suffix.encode())
        moved = _move_aside(db, 1_000_000.0)
        for suffix in ("", "-wal", "-shm"):
            assert Path(f"{moved}{suffix}").read_bytes() == generation + suffix.encode()
            assert not Path(f"{db}{suffix}").exists()
        assert moved != first
        first = moved
    assert first is not None and first.name.endswith("-1")


def test_a_database_without_our_tables_is_damaged(db: Path, clock: Clock) -> None:
    """A database whose schema version says boothsync but whose tables are gone is moved aside."""
    Outbox(db).close()
    raw = sqlite3.connect(db)
    try:
        raw.execute("DROP TABLE destinations")
    finally:
        raw.close()
    with pytest.raises(OutboxError, match="no table destinations"):
        Outbox(db, readonly=True)
    box = Outbox.open_or_rebuild(db, clock=clock, monotonic=clock)
    try:
        assert box.rebuilt_from is not None and box.rebuilt_from.is_file()
        box.set_health("eventpics", "online")
    finally:
        box.close()


def test_a_sound_or_newer_database_is_never_moved_aside(db: Path, clock: Clock) -> None:
    """open_or_rebuild() opens a sound queue as it is, and refuses a newer schema without
    moving it: only damage leads to a rebuild."""
    Outbox(db).close()
    box = Outbox.open_or_rebuild(db, clock=clock, monotonic=clock)
    try:
        assert box.rebuilt_from is None
        add(box, "IMG_1.jpg")
    finally:
        box.close()
    raw = sqlite3.connect(db)
    try:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    finally:
        raw.close()
    with pytest.raises(OutboxError, match="newer"):
        Outbox.open_or_rebuild(db, clock=clock, monotonic=clock)
    assert [p.name for p in db.parent.iterdir() if "corrupt" in p.name] == []


def test_a_state_folder_under_a_file_is_one_line_naming_path_and_cause(tmp_path: Path) -> None:
    """A state folder that cannot be created gives one line naming the database and why."""
    (tmp_path / "a-file").write_text("")
    path = tmp_path / "a-file" / "state" / "outbox.sqlite3"
    for opener in (Outbox, Outbox.open_or_rebuild):
        with pytest.raises(OutboxError) as excinfo:
            opener(path)
        message = str(excinfo.value)
        assert str(path) in message and "a file is in the way" in message
        assert "\n" not in message


def test_a_full_disk_is_named_as_such(box: Outbox) -> None:
    """SQLite's "database or disk is full" reaches the caller as an OutboxError that says the
    disk is full and where, and the queue stays usable once there is room again."""
    add(box, "IMG_1.jpg")
    # A page limit is how SQLite itself produces SQLITE_FULL without filling a disk;
    # it is a setting of the outbox's own connection.
    conn = box._connection()
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {int(pages)}")
    with pytest.raises(OutboxError, match="the disk is full") as excinfo:
        for i in range(2_000):
            add(box, f"IMG_{i:04}_{'x' * 200}.jpg")
    assert isinstance(excinfo.value.__cause__, sqlite3.OperationalError)
    assert excinfo.value.__cause__.sqlite_errorcode == sqlite3.SQLITE_FULL
    assert "\n" not in str(excinfo.value)
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert add(box, "IMG_after.jpg") == 1


def test_a_writable_outbox_uses_wal_and_full_sync(box: Outbox) -> None:
    """Writes go to a WAL with synchronous=FULL, so an uploaded mark survives a power cut."""
    # synchronous is per connection: only the outbox's own connection can show it.
    conn = box._connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_make_due_brings_a_destinations_backed_off_jobs_forward(box: Outbox, clock: Clock) -> None:
    """When a destination is back, its waiting jobs are due now; other destinations keep theirs."""
    add(box, "IMG_1.jpg", TWO)
    for job in drain(box):
        box.retry_later(job.id, delay=600, error="offline")
    assert box.make_due("eventpics") == 1
    assert box.next_due(only=["eventpics"]) == clock.now
    assert box.next_due(only=["backup"]) == clock.now + 600
    assert box.make_due("eventpics") == 0


# -- the control channel ----------------------------------------------------------


def test_commands_are_taken_once_oldest_first(box: Outbox) -> None:
    """Commands come back in the order they were sent, each once: taking marks them done."""
    for command in ("pause", "retry", "resume"):
        box.send_command(command)
    assert box.take_commands() == ["pause", "retry", "resume"]
    assert box.take_commands() == []
    box.send_command("pause")
    assert box.take_commands() == ["pause"]


def test_an_unknown_command_is_refused_and_the_table_refuses_it_too(db: Path, box: Outbox) -> None:
    """Only pause, resume and retry can be sent; the CHECK constraint guards the table itself."""
    with pytest.raises(OutboxError, match="unknown command 'stop'"):
        box.send_command("stop")
    raw = sqlite3.connect(db)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            raw.execute("INSERT INTO commands (command, sent_at) VALUES ('stop', 1.0)")
    finally:
        raw.close()
    assert box.take_commands() == []


def test_a_command_sent_by_another_connection_and_process_is_taken(db: Path, box: Outbox) -> None:
    """The service's outbox takes what a second outbox on the same file and another process
    sent; a command is never taken twice, whichever connection takes it."""
    sender = Outbox(db)
    try:
        sender.send_command("pause")
    finally:
        sender.close()
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from boothsync.outbox import Outbox;"
            " box = Outbox(Path(sys.argv[1])); box.send_command('resume'); box.close()",
            str(db),
        ],
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    other = Outbox(db)
    try:
        assert box.take_commands() == ["pause", "resume"]
        assert other.take_commands() == []
    finally:
        other.close()


def test_flags_are_kept_and_readable_from_a_read_only_outbox(db: Path, box: Outbox) -> None:
    """A flag keeps its latest value; a read-only opener (status, an attached tray) reads them
    all and can neither set flags nor send commands."""
    assert box.flags() == {}
    box.set_flag("paused", "1")
    box.set_flag("missing_folders", '["/booth/prints"]')
    box.set_flag("paused", "0")
    reader = Outbox(db, readonly=True)
    try:
        assert reader.flags() == {"paused": "0", "missing_folders": '["/booth/prints"]'}
        with pytest.raises(OutboxError, match="read-only"):
            reader.set_flag("paused", "1")
        with pytest.raises(OutboxError, match="read-only"):
            reader.send_command("pause")
    finally:
        reader.close()


def test_done_commands_are_deleted_after_a_week(box: Outbox, clock: Clock, db: Path) -> None:
    """Taken commands are pruned once they are a week old, so the table never grows for ever."""
    box.send_command("pause")
    assert box.take_commands() == ["pause"]
    clock.advance(8 * 24 * 3600)
    box.send_command("resume")
    assert box.take_commands() == ["resume"]
    raw = sqlite3.connect(db)
    try:
        assert [row[0] for row in raw.execute("SELECT command FROM commands")] == ["resume"]
    finally:
        raw.close()


def test_uploads_since_a_moment_are_counted(box: Outbox, clock: Clock) -> None:
    """uploaded_since() counts uploads finished at or after the given time ("today")."""
    add(box, "IMG_1.jpg")
    add(box, "IMG_2.jpg")
    first, second = drain(box)
    box.complete(first.id)
    midnight = clock.now + 10
    clock.advance(20)
    box.complete(second.id)
    assert box.uploaded_since(midnight) == 1
    assert box.uploaded_since(clock.now - 1000) == 2


def test_a_start_drops_only_the_commands_sent_before_it(box: Outbox, clock: Clock) -> None:
    """Commands sent before a given time (while no boothsync ran) are dropped and returned,
    oldest first, and their sender can tell; those sent since stay for the service to take."""
    old = [box.send_command("pause"), box.send_command("reload")]
    clock.advance(10)
    new = box.send_command("resume")
    assert [box.command_taken(command) for command in [*old, new]] == [False, False, False]
    assert box.drop_commands(sent_before=clock.now - 5) == ["pause", "reload"]
    assert [box.command_taken(command) for command in old] == [None, None]
    assert box.command_taken(new) is False
    assert box.take_commands() == ["resume"]
    assert box.command_taken(new) is True


# -- forgetting failed pictures ---------------------------------------------------


def fail(box: Outbox, name: str, destination: str = "eventpics") -> None:
    job = claim(box, only=[destination])
    assert job.path.name == name
    box.fail(job.id, error="415 Unsupported Media Type")


def test_forget_drops_failed_jobs_by_name_destination_or_all(box: Outbox) -> None:
    """`forget` drops failed jobs only: those of one picture (named by file name or whole
    path), of one destination, or all; waiting and uploaded jobs stay, and the picture's
    version stays known, so a scan does not queue it again."""
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        add(box, name, TWO)
        fail(box, name)
    fail(box, "a.jpg", "backup")
    assert box.failed(destination="backup") == [("/booth/prints/a.jpg", "backup")]
    assert box.forget_failed(name="a.jpg", destination="eventpics") == [
        ("/booth/prints/a.jpg", "eventpics")
    ]
    assert box.forget_failed(name="/booth/prints/b.jpg") == [("/booth/prints/b.jpg", "eventpics")]
    assert box.forget_failed(name="nothing.jpg") == []
    assert box.forget_failed(destination="backup") == [("/booth/prints/a.jpg", "backup")]
    assert counts(box) == {"waiting": 0, "uploading": 0, "uploaded": 0, "failed": 1}
    assert counts(box, "backup")["waiting"] == 2
    assert box.forget_failed() == [("/booth/prints/c.jpg", "eventpics")]
    assert box.stats().totals["failed"] == 0
    assert box.is_known(Path("/booth/prints/a.jpg"), 100, 1)


def test_an_upgrade_is_all_or_nothing(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The schema steps of an upgrade are one transaction: one that fails at its last step
    leaves the queue at its old version with its rows (and a reader such as `boothsync
    status` never sees a version halfway through)."""
    with old_queue(db, 3) as raw:
        raw.execute(
            "INSERT INTO files (id, path, size, mtime_ns, watch, added_at) VALUES"
            " (1, '/booth/prints/IMG_1.jpg', 100, 1, 'prints', 5.0)"
        )
    broken = (*outbox_module._MIGRATIONS[:-1], ("SELECT no_such_column FROM files",))
    monkeypatch.setattr(outbox_module, "_MIGRATIONS", broken)
    with pytest.raises(OutboxError):
        Outbox(db)
    raw = sqlite3.connect(db)
    try:
        assert raw.execute("PRAGMA user_version").fetchone() == (3,)
        assert raw.execute("SELECT path FROM files").fetchall() == [("/booth/prints/IMG_1.jpg",)]
    finally:
        raw.close()


def test_a_fresh_queue_and_an_upgrade_are_one_log_line_each(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Creating the queue logs one line, not one per schema step; upgrading an older queue
    logs one line naming both versions; opening an up-to-date queue logs none."""

    def lines() -> list[str]:
        found = [r.getMessage() for r in caplog.records if "queue" in r.getMessage()]
        caplog.clear()
        return found

    caplog.set_level("INFO", logger="boothsync.outbox")
    Outbox(db).close()
    assert lines() == [f"new queue database {db}"]
    Outbox(db).close()
    assert lines() == []
    older = db.with_name("older.sqlite3")
    with old_queue(older, 3):
        pass
    Outbox(older).close()
    assert lines() == [f"queue database {older} upgraded from schema version 3 to {SCHEMA_VERSION}"]
