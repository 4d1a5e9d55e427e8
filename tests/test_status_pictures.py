"""The dashboard's data: the queue's lists of recent, waiting and failed pictures, their
throughput and one-job retry, and status.pictures() over them, on real SQLite in tmp_path."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from boothsync.errors import OutboxError
from boothsync.outbox import FailedJob, Job, JobState, Outbox, RecentUpload, Throughput
from boothsync.status import RATE_WINDOW, Rate, pictures, plain_reason
from tests.helpers import Clock

BOTH: dict[str, str | None] = {"eventpics": None, "backup": None}


@pytest.fixture
def box(db: Path, clock: Clock) -> Iterator[Outbox]:
    outbox = Outbox(db, clock=clock, monotonic=clock)
    yield outbox
    outbox.close()


def add(box: Outbox, name: str, *destinations: str, size: int = 100) -> None:
    box.add(
        Path("/booth/prints") / name,
        size=size,
        mtime_ns=1,
        watch="prints",
        destinations=dict.fromkeys(destinations or ("eventpics",)),
    )


def claim(box: Outbox, destination: str = "eventpics") -> Job:
    job = box.claim(only=[destination])
    assert job is not None, "expected a job to claim"
    return job


def upload(
    box: Outbox, clock: Clock, destination: str = "eventpics", *, seconds: float = 1.0
) -> Job:
    """Claim the next job of ``destination`` and complete it ``seconds`` later."""
    job = claim(box, destination)
    clock.advance(seconds)
    box.complete(job.id)
    return job


def fail(box: Outbox, error: str, destination: str = "eventpics") -> Job:
    job = claim(box, destination)
    box.fail(job.id, error=error)
    return job


def state(db: Path, job_id: int) -> tuple[object, ...]:
    raw = sqlite3.connect(db)
    try:
        row = raw.execute(
            "SELECT state, attempts, next_attempt_at, finished_at, last_error, updated_at"
            " FROM jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
    finally:
        raw.close()
    assert row is not None
    return tuple(row)


# -- recent uploads -----------------------------------------------------------


def test_a_picture_uploaded_to_two_destinations_is_one_entry(box: Outbox, clock: Clock) -> None:
    """Recent uploads are one entry per picture, newest first, each with the destinations that
    have it, its latest finish time and its longest upload; a destination still waiting is
    not among them."""
    add(box, "IMG_1.jpg", "eventpics", "backup", size=1_000)
    upload(box, clock, "eventpics", seconds=3)
    upload(box, clock, "backup", seconds=1)
    first_done = clock.now
    clock.advance(10)
    add(box, "IMG_2.jpg", "eventpics", "backup", size=2_000)
    upload(box, clock, "backup", seconds=2)
    second_done = clock.now

    recent = box.recent_uploads()
    assert [(r.path.name, r.destinations) for r in recent] == [
        ("IMG_2.jpg", ("backup",)),
        ("IMG_1.jpg", ("backup", "eventpics")),
    ]
    assert recent[0].finished_at == second_done
    assert recent[1] == RecentUpload(
        file_id=recent[1].file_id,
        path=Path("/booth/prints/IMG_1.jpg"),
        size=1_000,
        taken_at_ms=None,
        taken_at_source=None,
        destinations=("backup", "eventpics"),
        finished_at=first_done,
        seconds=3.0,
        note=None,
    )
    upload(box, clock, "eventpics")
    assert [r.path.name for r in box.recent_uploads()] == ["IMG_2.jpg", "IMG_1.jpg"]
    assert box.recent_uploads()[0].destinations == ("backup", "eventpics")
    assert [r.path.name for r in box.recent_uploads(1)] == ["IMG_2.jpg"]
    assert box.recent_uploads(0) == box.recent_uploads(-1) == []


def test_a_recent_upload_carries_its_capture_time_and_its_note(box: Outbox, clock: Clock) -> None:
    """A picture settled as a duplicate shows why no upload was needed, and the capture time
    recorded with it."""
    add(box, "IMG_1.jpg")
    job = claim(box)
    box.complete(
        job.id,
        taken_at_ms=1_700_000_000_000,
        taken_at_source="exif:DateTimeOriginal",
        note="same content as IMG_0.jpg, already uploaded",
    )
    (entry,) = box.recent_uploads()
    assert entry.taken_at_ms == 1_700_000_000_000
    assert entry.taken_at_source == "exif:DateTimeOriginal"
    assert entry.note == "same content as IMG_0.jpg, already uploaded"


def test_the_lists_are_read_through_a_read_only_outbox(db: Path, box: Outbox, clock: Clock) -> None:
    """A reader in another process (read-only) gets the same lists; it cannot retry a job."""
    add(box, "IMG_1.jpg")
    add(box, "IMG_2.jpg")
    add(box, "IMG_3.jpg")
    upload(box, clock)
    failed = fail(box, "EventPics (api.eventpics.net) answered 415: unsupported")
    reader = Outbox(db, readonly=True)
    try:
        assert reader.recent_uploads() == box.recent_uploads()
        assert reader.waiting_jobs() == box.waiting_jobs()
        assert reader.failed_jobs() == box.failed_jobs()
        assert reader.throughput(0.0) == box.throughput(0.0)
        with pytest.raises(OutboxError, match="read-only"):
            reader.retry_job(failed.id)
    finally:
        reader.close()


# -- waiting and failed jobs --------------------------------------------------


def test_waiting_jobs_come_in_flight_first_then_in_claim_order(box: Outbox, clock: Clock) -> None:
    """The jobs not done yet are listed those uploading first, then in the order claim() takes
    them: a job backed off comes after the ones due before it."""
    for i in range(4):
        add(box, f"IMG_{i}.jpg", "eventpics", "backup")
        clock.advance(1)
    in_flight = claim(box, "backup")
    backed_off = claim(box)
    box.retry_later(backed_off.id, delay=2.5, error="EventPics (api.eventpics.net) answered 503")

    waiting = box.waiting_jobs()
    assert waiting[0].id == in_flight.id
    assert waiting[0].state is JobState.UPLOADING
    assert all(job.state is JobState.WAITING for job in waiting[1:])
    backed = next(job for job in waiting if job.id == backed_off.id)
    assert (backed.attempts, backed.last_error) == (1, "EventPics (api.eventpics.net) answered 503")
    assert backed.next_attempt_at == box.now() + 2.5
    assert [job.id for job in box.waiting_jobs(3)] == [job.id for job in waiting[:3]]

    claimed = []
    while (job := box.claim(now=box.now() + 60)) is not None:
        claimed.append(job.id)
    assert [job.id for job in waiting[1:]] == claimed
    assert len(claimed) == 7


def test_failed_jobs_are_listed_latest_first_with_a_plain_reason(box: Outbox, clock: Clock) -> None:
    """A failed job is listed with its attempts, when it failed and its error; the status
    gives the error in plain words."""
    add(box, "IMG_1.jpg")
    add(box, "IMG_2.jpg")
    first = fail(box, "/booth/prints/IMG_1.jpg: cannot be read: Permission denied")
    clock.advance(5)
    second = fail(box, "EventPics (api.eventpics.net) answered 422: photo is damaged")

    assert box.failed_jobs() == [
        FailedJob(
            id=second.id,
            file_id=second.file_id,
            path=Path("/booth/prints/IMG_2.jpg"),
            destination="eventpics",
            attempts=1,
            last_error="EventPics (api.eventpics.net) answered 422: photo is damaged",
            failed_at=clock.now,
        ),
        FailedJob(
            id=first.id,
            file_id=first.file_id,
            path=Path("/booth/prints/IMG_1.jpg"),
            destination="eventpics",
            attempts=1,
            last_error="/booth/prints/IMG_1.jpg: cannot be read: Permission denied",
            failed_at=clock.now - 5,
        ),
    ]
    assert [job.id for job in box.failed_jobs(1)] == [second.id]
    reasons = [picture.reason for picture in pictures(box).failed]
    assert reasons == [
        "EventPics (api.eventpics.net) refused the picture: photo is damaged",
        "boothsync cannot read the picture (Permission denied): check its permissions, and"
        " whether the booth software still has it open.",
    ]


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        (
            "missing: /booth/prints/IMG_1.jpg vanished",
            "The picture was deleted from the booth folder before it was uploaded.",
        ),
        (
            "/booth/prints/IMG_1.jpg: vanished before upload",
            "The picture was deleted from the booth folder before it was uploaded.",
        ),
        (
            "/booth/prints/IMG_1.jpg: cannot be read: Input/output error",
            "boothsync cannot read the picture (Input/output error): check its permissions,"
            " and whether the booth software still has it open.",
        ),
        (
            "/booth/prints/IMG_1.jpg: shrank while it was being uploaded",
            "The picture got shorter while it was being uploaded: it was still being written,"
            " or its drive has trouble.",
        ),
        (
            "/booth/prints/IMG_1.jpg leads to /etc/passwd, outside the watched folders: not"
            " uploaded (allow_outside_links = true in its [[watch]] allows it)",
            "The picture is a link to /etc/passwd, outside the watched folders, so it is not"
            " uploaded (allow_outside_links = true in its [[watch]] allows it).",
        ),
        (
            "IMG_1.jpg (61.2 MB) is larger than PicPeak's 50 MB limit",
            "The picture (61.2 MB) is too large: PicPeak takes at most 50 MB.",
        ),
        (
            "PicPeak (photos.example.org) refused the file as too large (413) (max 10 MB)",
            "PicPeak (photos.example.org) refused the picture as too large: max 10 MB",
        ),
        ("Picsui refused the file as too large (413)", "Picsui refused the picture as too large."),
        (
            "IMG_1.mp4 is video/mp4: PicPeak's API takes only images",
            "PicPeak takes only pictures, and this file is video/mp4.",
        ),
        (
            "Picsui refused the file (422): duplicate upload",
            "Picsui refused the picture: duplicate upload",
        ),
        (
            "EventPics (api.eventpics.net) answered 400: invalid fileName",
            "EventPics (api.eventpics.net) refused the picture: invalid fileName",
        ),
        (
            "EventPics (api.eventpics.net) answered 503",
            "EventPics (api.eventpics.net) is busy or has trouble (503); boothsync tries again.",
        ),
        (
            "EventPics (api.eventpics.net) answered 429: slow down",
            "EventPics (api.eventpics.net) is busy or has trouble (429); boothsync tries again.",
        ),
        (
            "cannot reach EventPics (api.eventpics.net): [Errno -2] Name or service not known",
            "No connection to EventPics (api.eventpics.net) ([Errno -2] Name or service not"
            " known); boothsync tries again.",
        ),
        (
            "/mnt/usb/event is full (No space left on device): make room on it",
            "The folder /mnt/usb/event is full: make room on it.",
        ),
        # Not of a known kind: shown as stored.
        ("something nobody foresaw", "something nobody foresaw"),
        (None, "No reason was recorded."),
    ],
)
def test_a_stored_error_reads_in_plain_words(stored: str | None, reason: str) -> None:
    """Each kind of error the uploader and the destinations store reads as a sentence for a
    booth operator; any other error is shown as it was stored."""
    assert plain_reason(stored) == reason


# -- retrying one job ---------------------------------------------------------


def test_retry_job_moves_exactly_one_failed_job(db: Path, box: Outbox, clock: Clock) -> None:
    """retry_job() makes one failed job waiting and due now, from scratch, as retry_failed()
    does; another failed job stays failed."""
    add(box, "IMG_1.jpg")
    add(box, "IMG_2.jpg")
    chosen = fail(box, "EventPics (api.eventpics.net) answered 422: bad")
    other = fail(box, "EventPics (api.eventpics.net) answered 422: bad")
    clock.advance(30)

    assert box.retry_job(chosen.id) is True
    assert state(db, chosen.id) == ("waiting", 0, box.now(), None, None, clock.now)
    assert state(db, other.id)[0] == "failed"
    assert [job.id for job in box.failed_jobs()] == [other.id]
    again = claim(box)
    assert (again.id, again.attempts, again.last_error) == (chosen.id, 1, None)

    # retry_failed() resets the same columns to the same values.
    assert box.retry_failed() == 1
    assert state(db, other.id) == ("waiting", 0, box.now(), None, None, clock.now)


def test_retry_job_refuses_a_job_that_is_not_failed(db: Path, box: Outbox, clock: Clock) -> None:
    """retry_job() of a job waiting, uploading or uploaded, or of no job at all, is False and
    changes nothing."""
    add(box, "IMG_1.jpg", "eventpics", "backup")
    add(box, "IMG_2.jpg")
    done = upload(box, clock, "eventpics")
    in_flight = claim(box, "backup")
    waiting = claim(box)
    box.retry_later(waiting.id, delay=60, error="EventPics (api.eventpics.net) answered 503")
    before = {job.id: state(db, job.id) for job in (done, in_flight, waiting)}

    for job_id in (done.id, in_flight.id, waiting.id, 999_999):
        assert box.retry_job(job_id) is False
    assert {job_id: state(db, job_id) for job_id in before} == before


# -- throughput and rates ------------------------------------------------------


def test_throughput_counts_uploads_and_their_bytes_since_a_moment(
    box: Outbox, clock: Clock
) -> None:
    """throughput() counts, per destination, the jobs uploaded at or after the moment given
    (wall clock, as finish times are kept) and sums their files' sizes; failures and earlier
    uploads do not count."""
    add(box, "IMG_old.jpg", size=5_000)
    upload(box, clock)
    clock.advance(100)
    since = clock.now
    add(box, "IMG_1.jpg", "eventpics", "backup", size=1_000)
    add(box, "IMG_2.jpg", "eventpics", size=3_000)
    add(box, "IMG_3.jpg", "eventpics", size=7_000)
    upload(box, clock, "eventpics")
    upload(box, clock, "backup")
    upload(box, clock, "eventpics")
    fail(box, "EventPics (api.eventpics.net) answered 422: bad")

    assert box.throughput(since) == {
        "eventpics": Throughput(uploads=2, bytes=4_000),
        "backup": Throughput(uploads=1, bytes=1_000),
    }
    assert box.throughput(clock.now + 1) == {}


def test_pictures_gives_each_destinations_pace_and_time_left(box: Outbox, clock: Clock) -> None:
    """The rates are over the last five minutes: uploads per minute, bytes per second, and how
    long the destination's waiting and uploading jobs take at that pace; without an upload in
    the window there is no pace, and so no time left."""
    add(box, "IMG_early.jpg", "eventpics", size=50_000)
    upload(box, clock)
    clock.advance(RATE_WINDOW + 60)
    for i in range(10):
        add(box, f"IMG_{i}.jpg", "eventpics", size=3_000)
        upload(box, clock, seconds=20)
    add(box, "IMG_backup.jpg", "backup", "folder", size=6_000)
    upload(box, clock, "folder")
    for i in range(20):
        add(box, f"IMG_waiting_{i}.jpg", "eventpics", "backup")
    claim(box)  # one of eventpics' is uploading: still to be done

    rates = pictures(box, now=clock.now).rates
    assert rates == {
        "backup": Rate(
            pending=21, uploads=0, per_minute=0.0, bytes_per_second=0.0, eta_seconds=None
        ),
        "eventpics": Rate(
            pending=20,
            uploads=10,
            per_minute=2.0,
            bytes_per_second=30_000 / RATE_WINDOW,
            eta_seconds=20 * RATE_WINDOW / 10,
        ),
        "folder": Rate(
            pending=0,
            uploads=1,
            per_minute=60 / RATE_WINDOW,
            bytes_per_second=6_000 / RATE_WINDOW,
            eta_seconds=0.0,
        ),
    }


def test_pictures_holds_the_lists_with_plain_reasons(box: Outbox, clock: Clock) -> None:
    """pictures() holds the recent uploads, the jobs not done yet (with how long until each is
    tried and why it waits) and the failed ones with their reasons."""
    add(box, "IMG_1.jpg")
    add(box, "IMG_2.jpg")
    add(box, "IMG_3.jpg")
    add(box, "IMG_4.jpg")
    uploaded = upload(box, clock)
    fail(box, "missing: /booth/prints/IMG_2.jpg vanished")
    busy = claim(box)
    box.retry_later(busy.id, delay=40, error="EventPics (api.eventpics.net) answered 502")
    in_flight = claim(box)
    clock.advance(10)

    result = pictures(box, now=clock.now, recent=5)
    assert result.at == clock.now
    assert [r.file_id for r in result.recent] == [uploaded.file_id]
    assert [(w.job.id, w.due_in, w.reason) for w in result.waiting] == [
        (in_flight.id, 0.0, None),
        (
            busy.id,
            30.0,
            "EventPics (api.eventpics.net) is busy or has trouble (502); boothsync tries again.",
        ),
    ]
    assert [(f.job.path.name, f.reason) for f in result.failed] == [
        ("IMG_2.jpg", "The picture was deleted from the booth folder before it was uploaded.")
    ]


# -- at scale ------------------------------------------------------------------


def _fill(db: Path, files: int) -> None:
    """``files`` pictures, each with a job to two destinations in every state, straight into
    the database (as test_outbox does for stats())."""
    raw = sqlite3.connect(db)
    try:
        with raw:
            raw.executemany(
                "INSERT INTO files (path, size, mtime_ns, watch, added_at) VALUES (?, ?, ?, ?, ?)",
                ((f"/booth/prints/{i}.jpg", i, i, "bulk", float(i)) for i in range(files)),
            )
            for destination in ("eventpics", "backup"):
                raw.execute(
                    """
                    INSERT INTO jobs (file_id, destination, state, attempts, next_attempt_at,
                                      claimed_at, finished_at, last_error, updated_at)
                    SELECT id, ?,
                           CASE size % 4 WHEN 0 THEN 'waiting' WHEN 1 THEN 'uploading'
                                         WHEN 2 THEN 'uploaded' ELSE 'failed' END,
                           1, size, size - 1, CASE WHEN size % 4 >= 2 THEN size END,
                           CASE WHEN size % 4 = 3 THEN 'boom' END, size
                    FROM files WHERE watch = 'bulk'
                    """,
                    (destination,),
                )
    finally:
        raw.close()


def _plans(box: Outbox, call: Callable[[], object]) -> list[tuple[str, list[str]]]:
    """The statements ``call`` runs on the queue's connection, each with its query plan."""
    conn = box._connection()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        call()
    finally:
        conn.set_trace_callback(None)
    queries = [s for s in statements if s.lstrip().upper().startswith(("SELECT", "UPDATE"))]
    return [
        (query, [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {query}")])
        for query in queries
    ]


def _full_scans(plan: list[str]) -> list[str]:
    """The steps of ``plan`` that read a whole table: a SCAN of anything but a subquery's
    result (which it materialises or runs as a co-routine first)."""
    subqueries = {
        line.split()[1] for line in plan if line.startswith(("MATERIALIZE ", "CO-ROUTINE "))
    }
    return [line for line in plan if line.startswith("SCAN ") and line.split()[1] not in subqueries]


# One pass over 100,000 jobs takes some 300,000 steps of SQLite's virtual machine; a read that
# stays fast at that size takes a small fraction of that, whatever the size.
_STEP_BUDGET = 50_000


def _steps(box: Outbox, call: Callable[[], object]) -> int:
    """How many steps of SQLite's virtual machine ``call`` takes on the queue's connection (to
    the hundred)."""
    conn = box._connection()
    ticks = 0

    def tick() -> int:
        nonlocal ticks
        ticks += 1
        return 0  # go on

    conn.set_progress_handler(tick, 100)
    try:
        call()
    finally:
        conn.set_progress_handler(None, 0)
    return ticks * 100


def test_each_list_is_indexed_queries_on_a_large_queue(db: Path, box: Outbox, clock: Clock) -> None:
    """On 100,000 jobs every new read and retry_job() search an index, never read a whole table
    (by their query plans), and take a small part of the work one pass over the jobs would
    (an index probed the wrong way is a search by its plan, and a pass by its work); they still
    answer right: one entry per picture, the limits kept."""
    _fill(db, 50_000)
    calls: dict[str, Callable[[], object]] = {
        "recent_uploads": box.recent_uploads,
        "waiting_jobs": box.waiting_jobs,
        "failed_jobs": box.failed_jobs,
        "throughput": lambda: box.throughput(49_000.0),
        "retry_job": lambda: box.retry_job(49_999),
    }
    for name, call in calls.items():
        plans = _plans(box, call)
        assert plans, name
        for query, plan in plans:
            assert not _full_scans(plan), (name, query, plan)
            assert any(line.startswith("SEARCH ") for line in plan), (name, query, plan)
        assert _steps(box, call) < _STEP_BUDGET, name

    recent = box.recent_uploads()
    assert len(recent) == 24
    assert recent[0].path == Path("/booth/prints/49998.jpg")
    assert all(r.destinations == ("backup", "eventpics") for r in recent)
    assert len({r.file_id for r in recent}) == 24
    assert len(box.waiting_jobs()) == 100
    assert len(box.failed_jobs()) == 200
    assert box.throughput(49_990.0) == {
        "backup": Throughput(uploads=3, bytes=49_990 + 49_994 + 49_998),
        "eventpics": Throughput(uploads=3, bytes=49_990 + 49_994 + 49_998),
    }
