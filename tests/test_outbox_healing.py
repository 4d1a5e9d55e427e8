"""The queue repairs itself: a database file deleted, replaced, overwritten or damaged under
the running owner is moved aside and the queue rebuilt from what can still be read, at once;
a damaged file found at start keeps its readable rows too. Real SQLite files in tmp_path."""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from boothsync.errors import OutboxError
from boothsync.outbox import JobState, Outbox
from tests.helpers import Clock
from tests.test_outbox import _fill, add, claim, drain

HEADER = b"SQLite format 3\x00"


@pytest.fixture
def owner(db: Path, clock: Clock) -> Iterator[Outbox]:
    """The daemon's outbox: opened with open_or_rebuild(), holding ten pictures, four of them
    uploaded (with their content hashes), one failed, and a flag."""
    box = Outbox.open_or_rebuild(db, clock=clock, monotonic=clock)
    for index in range(10):
        add(box, f"IMG_{index}.jpg")
    for index, job in enumerate(drain(box)):
        if index < 4:
            box.complete(job.id, xxh128=f"{index:032x}", head=f"{index:016x}")
        elif index == 4:
            box.fail(job.id, error="refused")
        else:
            box.release(job.id)
    box.set_flag("paused", "0")
    box.set_health("eventpics", "online")
    yield box
    box.close()


def snapshot(box: Outbox) -> dict[str, object]:
    """What an operator and the uploader see of a queue."""
    conn = box._connection()
    jobs = conn.execute(
        "SELECT j.id, f.path, j.state, j.xxh128, j.head FROM jobs AS j"
        " JOIN files AS f ON f.id = j.file_id ORDER BY j.id"
    ).fetchall()
    return {
        "jobs": [tuple(row) for row in jobs],
        "flags": box.flags(),
        "health": box.health(),
    }


def files_at(db: Path) -> list[str]:
    return sorted(p.name for p in db.parent.iterdir())


def error_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def reopened(db: Path) -> dict[str, int]:
    """The counts a fresh open of the file at ``db`` finds: the rebuilt queue is on the disk."""
    reader = Outbox(db, readonly=True)
    try:
        return reader.counts()
    finally:
        reader.close()


def test_a_sound_queue_needs_no_healing(owner: Outbox, db: Path) -> None:
    """heal() on an untouched queue changes nothing and moves nothing."""
    before = snapshot(owner)
    assert owner.heal() is False
    assert snapshot(owner) == before
    assert not [name for name in files_at(db) if "corrupt" in name]


def test_only_the_owner_heals(db: Path, clock: Clock, owner: Outbox) -> None:
    """A plain open (a CLI command) never moves the file, even when it is gone."""
    other = Outbox(db, clock=clock, monotonic=clock)
    try:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        assert other.heal() is False
        assert not db.exists()
    finally:
        other.close()


def test_a_deleted_database_is_rebuilt_whole_at_once(
    owner: Outbox, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The file deleted under the running queue (with its -wal and -shm): heal() puts a copy of
    the database the connection still has open in its place, every job, hash, flag and health
    kept, says so in one ERROR line, and the queue goes on; new job ids follow the old ones."""
    before = snapshot(owner)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink()
    with caplog.at_level(logging.ERROR, logger="boothsync.outbox"):
        assert owner.heal() is True
    assert snapshot(owner) == before
    [line] = error_lines(caplog)
    assert str(db) in line and "deleted" in line and "all 10 job(s) kept" in line
    assert db.read_bytes()[:16] == HEADER
    assert reopened(db) == {"waiting": 5, "uploading": 0, "uploaded": 4, "failed": 1}
    assert add(owner, "IMG_new.jpg") == 1
    new = max(job.id for job in drain(owner))
    assert new > max(row[0] for row in before["jobs"])  # type: ignore[attr-defined]
    assert owner.heal() is False


def test_a_replaced_database_is_moved_aside_and_the_queue_kept(
    owner: Outbox, db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another file put in the database's place (even another SQLite database) is moved aside,
    named in one ERROR line with the queue's path, and the queue is rebuilt from the copy
    still open: nothing lost."""
    before = snapshot(owner)
    stranger = db.with_name("stranger.sqlite3")
    raw = sqlite3.connect(stranger)
    raw.execute("CREATE TABLE notes (text)")
    raw.close()
    replacement = stranger.read_bytes()
    os.replace(stranger, db)
    with caplog.at_level(logging.ERROR, logger="boothsync.outbox"):
        assert owner.heal() is True
    moved = owner.rebuilt_from
    assert moved is not None and moved.read_bytes() == replacement
    [line] = error_lines(caplog)
    assert str(db) in line and str(moved) in line and "replaced" in line
    assert snapshot(owner) == before
    assert reopened(db)["uploaded"] == 4
    # The old database's -wal was copied with it: none is left to be replayed into anything.
    assert not Path(f"{moved}-wal").exists()


@pytest.mark.parametrize("truncate", [True, False], ids=["cut-short", "same-size"])
def test_an_overwritten_database_keeps_what_can_still_be_read(
    owner: Outbox, db: Path, caplog: pytest.LogCaptureFixture, truncate: bool
) -> None:
    """Garbage written over the database file (shorter, or in place at the same size): the
    rows the connection can still read (its cache, its -wal) make the new queue, the garbage
    is moved aside with one ERROR line naming both paths, and uploaded jobs stay uploaded (so
    their pictures are not sent again)."""
    before = snapshot(owner)
    size = db.stat().st_size
    garbage = os.urandom(size // 3 if truncate else size)
    with db.open("wb" if truncate else "r+b") as handle:
        handle.write(garbage)
    with caplog.at_level(logging.ERROR, logger="boothsync.outbox"):
        assert owner.heal() is True
    moved = owner.rebuilt_from
    assert moved is not None and moved.exists()
    [line] = error_lines(caplog)
    assert str(db) in line and str(moved) in line and "overwritten" in line
    assert snapshot(owner) == before
    assert reopened(db) == {"waiting": 5, "uploading": 0, "uploaded": 4, "failed": 1}
    assert owner.find_uploaded("0" * 32, destination="eventpics", album_id=None) is not None


def test_garbage_behind_an_intact_beginning_is_found_by_a_reader_of_its_own(
    owner: Outbox, db: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage written over all but the file's first 100 bytes while the owner keeps working
    from its cache (no operation meets it): heal() does not see it at once, but the whole-file
    read it makes every half minute, through a connection of its own, does; then the queue is
    rebuilt from what the owner's connection still reads, every uploaded job kept."""
    before = snapshot(owner)
    owner._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")  # every page in the file
    size = db.stat().st_size
    with db.open("r+b") as handle:
        handle.seek(100)
        handle.write(os.urandom(size - 100))
    assert owner.heal() is False  # the beginning is intact, the cache still answers
    assert owner.counts()["uploaded"] == 4
    clock.advance(31)
    with caplog.at_level(logging.ERROR, logger="boothsync.outbox"):
        assert owner.heal() is True
    [line] = error_lines(caplog)
    assert str(db) in line
    assert snapshot(owner) == before
    assert reopened(db) == {"waiting": 5, "uploading": 0, "uploaded": 4, "failed": 1}


def test_damage_an_operation_meets_is_healed(db: Path, clock: Clock) -> None:
    """Pages damaged in the middle of the file (its beginning intact): the operation that meets
    them fails with a one-line error, the next heal() rebuilds the queue with every row still
    readable, and the queue works again."""
    _fill(db)
    box = Outbox.open_or_rebuild(db, clock=clock, monotonic=clock)
    try:
        box.set_flag("paused", "0")
        # A small cache, so the damaged pages are read from the disk again.
        box._connection().execute("PRAGMA cache_size = 10")
        size = db.stat().st_size
        with db.open("r+b") as handle:
            handle.seek((size // 2) // 4096 * 4096)
            handle.write(b"\xff" * 4096 * 8)
        with pytest.raises(OutboxError, match="damaged") as excinfo:
            box.stats()
        assert "\n" not in str(excinfo.value) and "rebuilds the queue" in str(excinfo.value)
        assert box.heal() is True
        kept = box.counts()["waiting"]
        assert 4_000 < kept < 5_000
        assert box.stats().totals["waiting"] == kept
        assert box.heal() is False
    finally:
        box.close()


def test_an_uploading_job_survives_a_rebuild(owner: Outbox, db: Path) -> None:
    """A job claimed before the rebuild is still uploading after it, and its worker's
    completion lands on the new queue."""
    add(owner, "IMG_in_flight.jpg")
    job = claim(owner)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink()
    assert owner.heal() is True
    assert owner.complete(job.id) is True
    assert reopened(db)["uploaded"] == 5


def test_a_rebuild_that_cannot_be_done_is_the_owners_failure(owner: Outbox, db: Path) -> None:
    """When the new queue cannot be built (here: a folder in the way of its file), heal()
    raises a one-line OutboxError naming the database, and failure() says the owner must stop."""
    blocker = db.with_name(f"{db.name}.rebuilding")
    blocker.mkdir()
    (blocker / "something").write_text("in the way")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink()
    with pytest.raises(OutboxError) as excinfo:
        owner.heal()
    message = str(excinfo.value)
    assert str(db) in message and "rebuilding it failed" in message and "\n" not in message
    assert owner.failure is excinfo.value


# -- damage found at start -----------------------------------------------------------------


def test_a_database_cut_short_at_start_keeps_the_rows_left(db: Path, clock: Clock) -> None:
    """A queue file cut short (a tenth lost, as by a copy that did not finish) no longer opens;
    open_or_rebuild() still reads the rows in what is left of it."""
    _fill(db)
    os.truncate(db, db.stat().st_size * 9 // 10)
    box = Outbox.open_or_rebuild(db, clock=clock, monotonic=clock)
    try:
        assert box.rebuilt_from is not None
        assert 1_000 < box.counts()["waiting"] < 5_000
    finally:
        box.close()


def test_a_damaged_database_at_start_keeps_its_readable_rows(
    db: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """open_or_rebuild() on a file with damaged pages starts the new queue with every row it
    can still read, unchanged (states, ids), and says how many in its ERROR line; the damaged
    file is moved aside untouched."""
    _fill(db)
    raw = sqlite3.connect(db)
    with raw:
        raw.execute("UPDATE jobs SET state = 'uploaded', xxh128 = 'h' || id WHERE id % 3 = 0")
    original = {
        row[0]: row[1:]
        for row in raw.execute(
            "SELECT j.id, f.path, j.state, j.xxh128 FROM jobs AS j"
            " JOIN files AS f ON f.id = j.file_id"
        )
    }
    raw.close()
    size = db.stat().st_size
    with db.open("r+b") as handle:
        # Inside a page in the middle, past its header: cell pointers and records.
        handle.seek((size // 2) // 4096 * 4096 + 100)
        handle.write(b"\xff" * 3000)
    damaged = db.read_bytes()
    with caplog.at_level(logging.ERROR, logger="boothsync.outbox"):
        box = Outbox.open_or_rebuild(db, clock=clock, monotonic=clock)
    try:
        assert box.rebuilt_from is not None and box.rebuilt_from.read_bytes() == damaged
        conn = box._connection()
        kept = {
            row[0]: tuple(row[1:])
            for row in conn.execute(
                "SELECT j.id, f.path, j.state, j.xxh128 FROM jobs AS j"
                " JOIN files AS f ON f.id = j.file_id"
            )
        }
        assert 4_000 < len(kept) <= 5_000
        assert all(original[job_id] == values for job_id, values in kept.items())
        [line] = error_lines(caplog)
        assert f"with the {len(kept)} job(s) that could still be read" in line
        assert box.claim() is not None
        assert box.counts()[JobState.UPLOADING] == 1
    finally:
        box.close()
