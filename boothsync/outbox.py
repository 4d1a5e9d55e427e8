"""The queue database: the only hand-off between the watcher and the uploader.

Owns the SQLite file (schema, migrations recorded in ``PRAGMA user_version``)
and every state change of a job: one row per (file version, destination),
waiting → uploading → uploaded | failed, and back to waiting for a retry.
It also remembers which content each uploaded job sent (its XXH3-128 hash), so the
uploader can ask whether a destination already has a picture. And it
carries the control channel between processes: commands a tray or the CLI
sends the running service (pause, resume, retry), and flags the service keeps
about itself (paused, missing folders) for them to read. The lists a dashboard shows (recent
uploads, waiting and failed jobs, throughput) are one query each along an index, however long
the queue.
A row is written before anything is uploaded and marked uploaded only after
the destination said yes, so a crash at any moment loses nothing: the next
start calls :meth:`Outbox.recover`.

Every open checks the file first: that the schema is ours and, for a writer,
``PRAGMA quick_check``. A damaged database is never used and never silently replaced: the
daemon opens the queue with :meth:`Outbox.open_or_rebuild`, which moves a
damaged file aside (with its ``-wal`` and ``-shm``), says so in one ERROR
line, and starts a new queue with the rows that could still be read; the watcher's
first scan queues again the pictures whose rows were lost.
Every other opener (``status``, ``retry``) gets an :class:`OutboxError`.

The queue that process owns is also watched while it runs (:meth:`Outbox.heal`, every second):
a file deleted, replaced or overwritten under it, or damage an operation meets, is moved
aside the same way and the queue rebuilt at once, under the lock every thread goes through,
from the database the connection still has open (whole when it is sound, else row by
row), so that pictures already uploaded are not sent again. A queue that cannot be written
(a full disk, a read-only or failing drive) or rebuilt is recorded in :attr:`Outbox.failure`:
its owner cannot go on and stops.

Jobs are scheduled (``next_attempt_at``) on a clock anchored once per process: the wall
clock at open plus the monotonic time since. A wall-clock step while boothsync runs moves
no job; one while it was not running is caught at open, where a job due further ahead than
any wait boothsync sets is made due. The times shown to people (added, finished, updated)
are the wall clock's.

Messages it stores (a job's last error, a destination's health detail) never hold a secret
of the config: the caller names them (``secrets=``) and they are blanked. The database file
(its -wal and -shm take its mode) and its folder are this account's only.

Must not know about HTTP, destinations or the filesystem beyond its own
database file; callers decide what a failure means, this module only records it.
Every ``sqlite3`` error leaves here as :class:`~boothsync.errors.OutboxError`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import Enum, StrEnum
from itertools import groupby
from pathlib import Path

from boothsync.errors import OutboxError
from boothsync.names import printable
from boothsync.paths import PRIVATE_FILE, private_file, private_folder

__all__ = [
    "AWAKE_FLAG",
    "COMMANDS",
    "LONGEST_WAIT",
    "MISSING_FOLDERS_FLAG",
    "PAUSED_FLAG",
    "SYNCED_FLAG",
    "Event",
    "FailedJob",
    "Job",
    "JobState",
    "Known",
    "NewFile",
    "Outbox",
    "QueueNotCreated",
    "RecentUpload",
    "RecordedFile",
    "Stats",
    "Throughput",
    "WaitingJob",
]

log = logging.getLogger(__name__)


class Known(Enum):
    """What the queue knows of one version of a file (:meth:`Outbox.known`)."""

    NEW = "new"
    QUEUED = "queued"
    # Queued, and a job of it waits or failed because the file could not be read.
    UNREADABLE = "unreadable"


class JobState(StrEnum):
    """Where one file stands with one destination."""

    WAITING = "waiting"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    """A claimed job with everything the uploader needs about its file."""

    id: int
    file_id: int
    path: Path
    size: int
    mtime_ns: int
    watch: str
    destination: str
    album_id: str | None
    attempts: int
    state: JobState
    last_error: str | None
    taken_at_ms: int | None
    taken_at_source: str | None
    #: Claimed as a live one (:meth:`Outbox.order_live`): the backlog of its destination is
    #: held while it is uploaded, so its end is worth waking the other workers for.
    live: bool = False


@dataclass(frozen=True)
class NewFile:
    """One version of a file to queue (:meth:`Outbox.add_many`), with its destinations
    (name → album id)."""

    path: Path
    size: int
    mtime_ns: int
    watch: str
    destinations: Mapping[str, str | None]


@dataclass(frozen=True)
class Event:
    """The latest upload or error, for status output."""

    path: str
    destination: str
    at: float
    error: str | None
    # Why an uploaded job needed no upload ("same content as IMG_1.jpg, already uploaded").
    note: str | None = None
    # The picture's capture time and the source it came from ("exif:DateTimeOriginal", ...).
    taken_at_ms: int | None = None
    taken_at_source: str | None = None


@dataclass(frozen=True)
class Stats:
    """Job counts per destination and state (every state present), and the latest events.

    ``duplicates`` counts, per destination, the uploaded jobs that were settled
    without sending anything because the destination already had the same
    content; they are included in the ``uploaded`` counts too. ``sources``
    counts pictures by where their capture time came from.
    """

    destinations: dict[str, dict[str, int]]
    totals: dict[str, int]
    last_upload: Event | None
    last_error: Event | None
    duplicates: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RecentUpload:
    """One picture (a row of ``files``) that finished uploading (:meth:`Outbox.recent_uploads`).

    ``destinations`` are those whose job of it is uploaded (sorted), ``finished_at`` the latest
    of their finish times (wall clock), ``seconds`` the longest of their uploads (claim to
    finish; None when no claim time was recorded), ``note`` why one of them needed no upload
    (a duplicate), if so.
    """

    file_id: int
    path: Path
    size: int
    taken_at_ms: int | None
    taken_at_source: str | None
    destinations: tuple[str, ...]
    finished_at: float
    seconds: float | None
    note: str | None


@dataclass(frozen=True)
class WaitingJob:
    """A job waiting or uploading (:meth:`Outbox.waiting_jobs`). ``next_attempt_at`` is on the
    queue's schedule (:meth:`Outbox.now`), not the wall clock."""

    id: int
    file_id: int
    path: Path
    destination: str
    state: JobState
    attempts: int
    next_attempt_at: float
    last_error: str | None


@dataclass(frozen=True)
class FailedJob:
    """A job that failed for good (:meth:`Outbox.failed_jobs`); ``failed_at`` is wall clock."""

    id: int
    file_id: int
    path: Path
    destination: str
    attempts: int
    last_error: str | None
    failed_at: float


@dataclass(frozen=True)
class RecordedFile:
    """One file version the queue holds (:meth:`Outbox.recorded_files`), with its jobs:
    ``jobs`` maps each destination to ``(state, album_id, note)``; ``note`` is set on an
    uploaded job that needed no upload (the destination already had that content)."""

    id: int
    path: Path
    size: int
    mtime_ns: int
    jobs: Mapping[str, tuple[JobState, str | None, str | None]]


@dataclass(frozen=True)
class Throughput:
    """What one destination finished since a moment (:meth:`Outbox.throughput`): how many jobs
    became uploaded and the sum of their files' sizes (bytes)."""

    uploads: int
    bytes: int


# Each entry moves the schema from version i to i + 1 and is applied in the
# transaction that records the new version, so a crash mid-migration leaves the
# old schema intact. Append only: never edit a migration that has shipped.
# State names are written out literally (not bound) where a partial index
# needs them: SQLite only uses a partial index when the query repeats its
# WHERE terms verbatim.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """
        CREATE TABLE files (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            watch TEXT NOT NULL,
            added_at REAL NOT NULL,
            taken_at_ms INTEGER,
            taken_at_source TEXT,
            UNIQUE (path, size, mtime_ns)
        )
        """,
        # AUTOINCREMENT: a job id is never reused, so a late call about an old
        # job can never act on a newer one.
        """
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
            destination TEXT NOT NULL,
            album_id TEXT,
            state TEXT NOT NULL
                CHECK (state IN ('waiting', 'uploading', 'uploaded', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            claimed_at REAL,
            finished_at REAL,
            last_error TEXT,
            updated_at REAL NOT NULL,
            UNIQUE (file_id, destination)
        )
        """,
        # claim() and next_due(): the rowid rides along, so "ORDER BY
        # next_attempt_at, id" is read straight from the index.
        "CREATE INDEX jobs_due ON jobs (state, next_attempt_at)",
        # stats(): the GROUP BY is answered from this index alone.
        "CREATE INDEX jobs_destination_state ON jobs (destination, state)",
        "CREATE INDEX jobs_finished ON jobs (state, finished_at)",
        """
        CREATE INDEX jobs_errors ON jobs (updated_at)
            WHERE last_error IS NOT NULL AND state IN ('waiting', 'failed')
        """,
        # Written by the running uploader, read by `boothsync status` in
        # another process: the queue database is the one place both can see.
        """
        CREATE TABLE destinations (
            name TEXT PRIMARY KEY,
            health TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            updated_at REAL NOT NULL
        )
        """,
    ),
    (
        # The SHA-256 of the bytes a job sent, recorded when it becomes
        # uploaded. It belongs to the job, not to the file row: a file can
        # change between the uploads to two destinations (the uploader always
        # sends the current content), and a hash on the file row would then
        # claim that the first destination has content it never received.
        "ALTER TABLE jobs ADD COLUMN sha256 TEXT",
        # Set only on an uploaded job that needed no upload, saying why.
        "ALTER TABLE jobs ADD COLUMN note TEXT",
        # find_uploaded(): one probe per upload, on a hash that is all but unique.
        "CREATE INDEX jobs_content ON jobs (sha256, destination) WHERE sha256 IS NOT NULL",
        # stats(): counts the duplicates without reading every job.
        """
        CREATE INDEX jobs_duplicates ON jobs (destination)
            WHERE note IS NOT NULL AND state = 'uploaded'
        """,
    ),
    (
        # stats(): counts pictures per capture-time source from the index alone.
        "CREATE INDEX files_taken_at_source ON files (taken_at_source)",
    ),
    (
        # The control channel: a tray or `boothsync pause` in another process
        # asks the running service to pause, resume or retry; the service
        # takes the commands and marks them done (take_commands()).
        """
        CREATE TABLE commands (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            command TEXT NOT NULL CHECK (command IN ('pause', 'resume', 'retry')),
            sent_at REAL NOT NULL,
            done_at REAL
        )
        """,
        # take_commands(): only the pending few are read, however many are done.
        "CREATE INDEX commands_pending ON commands (id) WHERE done_at IS NULL",
        # What the running service says about itself (paused, missing folders),
        # for a tray or `status` in another process.
        """
        CREATE TABLE flags (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL,
            updated_at REAL NOT NULL
        )
        """,
    ),
    (
        # The "reload" command (reread the config: a tray attached to a service,
        # `boothsync reload`). SQLite cannot change a CHECK, so the table is
        # copied into a new one.
        """
        CREATE TABLE commands_v5 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            command TEXT NOT NULL
                CHECK (command IN ('pause', 'resume', 'retry', 'reload')),
            sent_at REAL NOT NULL,
            done_at REAL
        )
        """,
        "INSERT INTO commands_v5 (id, command, sent_at, done_at)"
        " SELECT id, command, sent_at, done_at FROM commands",
        "DROP TABLE commands",
        "ALTER TABLE commands_v5 RENAME TO commands",
        "CREATE INDEX commands_pending ON commands (id) WHERE done_at IS NULL",
    ),
    (
        # The content hash became XXH3-128: SHA-256 was the largest cost of a burst of
        # pictures, and the duplicate check needs no cryptographic hash. Jobs uploaded
        # before keep their SHA-256 (find_uploaded_sha256()); new ones record only this.
        "ALTER TABLE jobs ADD COLUMN xxh128 TEXT",
        "CREATE INDEX jobs_xxh128 ON jobs (xxh128, destination) WHERE xxh128 IS NOT NULL",
        # A hash of the size and the first 64 KiB: only a picture whose head matches an
        # uploaded one's can be a duplicate, so only that one is read whole before it is
        # sent (may_have_uploaded()); any other is hashed as it is sent.
        "ALTER TABLE jobs ADD COLUMN head TEXT",
        "CREATE INDEX jobs_head ON jobs (head, destination) WHERE head IS NOT NULL",
        # has_sha256_of_size(): whether a picture could match one of those older jobs at all
        # (one of the same size), so that only then is SHA-256 computed as well.
        "CREATE INDEX files_size ON files (size)",
    ),
    (
        # Set while a job waits, or failed, because its file could not be read (permissions,
        # a lock): a change of the file's permissions, or a scan that finds it readable,
        # makes it due again at once (known(), retry_unreadable()).
        "ALTER TABLE jobs ADD COLUMN unreadable INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX jobs_unreadable ON jobs (file_id) WHERE unreadable = 1",
    ),
    (
        # When the job was queued, on the queue's schedule, or when its file was written if
        # that was earlier (never changed after): a picture queued in the last live window
        # goes before the backlog (claim()). Jobs queued before this are the backlog (0).
        # The index holds the jobs never tried, the only ones that can be live, so the
        # newest is one lookup however long the backlog.
        "ALTER TABLE jobs ADD COLUMN queued_at REAL NOT NULL DEFAULT 0",
        "CREATE INDEX jobs_fresh ON jobs (state, queued_at) WHERE attempts = 0",
    ),
)

SCHEMA_VERSION = len(_MIGRATIONS)

# The tables every schema version has; a database at version >= 1 without them
# is not (or no longer) a boothsync queue.
_TABLES = frozenset({"files", "jobs", "destinations"})

# Result codes (the low byte of an extended code) that mean the file itself is
# bad, as opposed to locked, full or unreadable: those must never lead to
# moving a good queue aside.
#: The flag :meth:`Outbox.sync` writes: its time is when the queue last reached the disk.
SYNCED_FLAG = "synced"

#: The flags the engine keeps for other processes to read (:mod:`boothsync.status`): "1" while
#: uploads are paused, else "0"; the watch folders it finds missing, as a JSON list.
PAUSED_FLAG = "paused"
MISSING_FOLDERS_FLAG = "missing_folders"
#: "1" while the running boothsync keeps the computer from sleeping (pictures wait).
AWAKE_FLAG = "keeping_awake"

#: The commands another process may send the running service (see :meth:`Outbox.send_command`).
COMMANDS = frozenset({"pause", "resume", "retry", "reload"})

# Done commands are kept this long (seconds) for a look at what happened, then deleted.
_COMMANDS_KEPT = 7 * 24 * 3600.0

_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})

# Longest error or detail line stored (characters).
_MESSAGE_LIMIT = 1000

# Result codes (low byte) that mean the queue cannot be written, whatever is tried next: the
# disk is full, or the drive is read-only or failing. The owner stops on them (Outbox.failure)
# instead of logging an error per picture for ever.
_UNWRITABLE_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY})
# SQLITE_READONLY_DBMOVED: the file was deleted or renamed under the connection. That is for
# heal() to repair, not a reason to stop.
_MOVED_CODE = 1032

# Below this much free space a failing write is put down to a full disk (an I/O error from a
# failed sync or a write refused outright says nothing more precise).
_FULL_BELOW = 1024 * 1024

# How often the owner reads its whole database file as a new reader would (seconds): about
# 40 ms for 100,000 jobs, and the one way to see damage that leaves the file's first bytes
# alone while this process still reads it from its cache.
_DEEP_CHECK_SECONDS = 30.0

#: The first 16 bytes of every SQLite database file.
_SQLITE_HEADER = b"SQLite format 3\x00"

#: The longest wait boothsync ever schedules a job for (seconds): a Retry-After is capped at
#: this (``retry.RETRY_AFTER_CAP``), the backoff at 600 s. A job due further ahead was scheduled
#: on a wall clock that has since been set back; opening the queue makes it due.
LONGEST_WAIT = 3600.0

# A "secret" of a letter or two is no key at all (a placeholder in a test config); blanking it
# everywhere would garble every message. The log formatter (daemon.py) has the same rule.
_SHORTEST_SECRET = 4
_BLANKED = "***"

# What a rebuild copies row by row from a database it cannot copy whole, in this order: jobs
# first, so that files can be bounded by the jobs' file ids when their own table's bounds
# cannot be read. Commands are not kept: the running service takes them within a second, and
# a start drops old ones anyway.
_SALVAGED = ("jobs", "files", "destinations", "flags")
# Rows are read in rowid ranges of this many; a range that fails is halved until the rows
# that cannot be read are isolated.
_SALVAGE_STEP = 256
# Job ids are never reused (AUTOINCREMENT). When the old queue's highest id cannot be read
# either, the new ids start this far above the highest one kept, past any lost job a worker
# may still report on.
_LOST_IDS = 1_000_000
# The backlog's turn in the live order looks at most this many of the jobs due first for one
# that is not live: a claim costs the same with 100,000 live jobs. (Only while more live jobs
# than this are due before every backlog job does the backlog wait for them or the window.)
_BACKLOG_LOOK = 256
# A writer's page cache (KiB): a limit, not an allocation (see Outbox._setup).
_WRITER_CACHE_KIB = 32 * 1024

_JOB_SELECT = """
    SELECT j.id, j.file_id, f.path, f.size, f.mtime_ns, f.watch, j.destination, j.album_id,
           j.attempts, j.state, j.last_error, f.taken_at_ms, f.taken_at_source
    FROM jobs AS j JOIN files AS f ON f.id = j.file_id
    WHERE j.id = ?
"""

# INDEXED BY makes the plan part of the contract: stats() stays two index
# lookups on a queue of any size, and a lost index fails loudly instead of
# turning into a sort of the whole table (the planner does not pick the partial
# index on its own without ANALYZE statistics).
_LAST_UPLOAD = """
    SELECT f.path, j.destination, j.finished_at AS at, NULL AS error, j.note,
           f.taken_at_ms, f.taken_at_source
    FROM jobs AS j INDEXED BY jobs_finished JOIN files AS f ON f.id = j.file_id
    WHERE j.state = 'uploaded'
    ORDER BY j.finished_at DESC, j.id DESC
    LIMIT 1
"""

_LAST_ERROR = """
    SELECT f.path, j.destination, j.updated_at AS at, j.last_error AS error, NULL AS note,
           f.taken_at_ms, f.taken_at_source
    FROM jobs AS j INDEXED BY jobs_errors JOIN files AS f ON f.id = j.file_id
    WHERE j.last_error IS NOT NULL AND j.state IN ('waiting', 'failed')
    ORDER BY j.updated_at DESC, j.id DESC
    LIMIT 1
"""

_DUPLICATES = """
    SELECT destination, COUNT(*) FROM jobs INDEXED BY jobs_duplicates
    WHERE note IS NOT NULL AND state = 'uploaded'
    GROUP BY destination
"""

# recent_uploads(): the uploaded jobs newest first along jobs_finished, each kept only when it
# is its file's latest uploaded job, so the walk stops after `limit` pictures however many
# destinations each has. The probe for a later job of the same file goes through the
# UNIQUE (file_id, destination) index: the unary plus keeps the planner off jobs_finished
# there, which would read every uploaded job for each picture. A legacy row without a finish
# time counts as oldest.
_RECENT_UPLOADS = """
    SELECT f.id, f.path, f.size, f.taken_at_ms, f.taken_at_source, latest.finished_at,
           u.destination, u.finished_at - u.claimed_at AS seconds, u.note
    FROM (
        SELECT j.file_id, j.finished_at, j.id
        FROM jobs AS j INDEXED BY jobs_finished
        WHERE j.state = 'uploaded' AND NOT EXISTS (
            SELECT 1 FROM jobs AS later
            WHERE later.file_id = j.file_id AND +later.state = 'uploaded'
                AND (COALESCE(later.finished_at, 0), later.id)
                    > (COALESCE(j.finished_at, 0), j.id)
        )
        ORDER BY j.finished_at DESC, j.id DESC
        LIMIT ?
    ) AS latest
    JOIN files AS f ON f.id = latest.file_id
    JOIN jobs AS u ON u.file_id = latest.file_id AND u.state = 'uploaded'
    ORDER BY latest.finished_at DESC, latest.id DESC, u.destination
"""

# waiting_jobs(): one range of jobs_due. 'uploading' sorts before 'waiting', so the jobs in
# flight come first, then the waiting ones in the claim's order (next_attempt_at, id), all
# read in the index's own order.
_WAITING_JOBS = """
    SELECT j.id, j.file_id, f.path, j.destination, j.state, j.attempts, j.next_attempt_at,
           j.last_error
    FROM jobs AS j INDEXED BY jobs_due JOIN files AS f ON f.id = j.file_id
    WHERE j.state IN ('uploading', 'waiting')
    ORDER BY j.state, j.next_attempt_at, j.id
    LIMIT ?
"""

# fail() sets finished_at; a legacy row without one shows when it was last updated.
_FAILED_JOBS = """
    SELECT j.id, j.file_id, f.path, j.destination, j.attempts, j.last_error,
           COALESCE(j.finished_at, j.updated_at) AS failed_at
    FROM jobs AS j INDEXED BY jobs_finished JOIN files AS f ON f.id = j.file_id
    WHERE j.state = 'failed'
    ORDER BY j.finished_at DESC, j.id DESC
    LIMIT ?
"""

_THROUGHPUT = """
    SELECT j.destination, COUNT(*), COALESCE(SUM(f.size), 0)
    FROM jobs AS j INDEXED BY jobs_finished JOIN files AS f ON f.id = j.file_id
    WHERE j.state = 'uploaded' AND j.finished_at >= ?
    GROUP BY j.destination
"""

# What a retry resets, for all failed jobs (retry_failed()) or one (retry_job()): a fresh
# start, due now. The old error is cleared so status stops reporting it as the latest.
# Bound in this order: the new state, the due time, the wall-clock time of the change.
_RETRY_SET = (
    "state = ?, attempts = 0, next_attempt_at = ?, finished_at = NULL, last_error = NULL,"
    " updated_at = ?"
)


def _find_uploaded_by(column: str, index: str) -> str:
    # "album_id IS ?": no album matches no album (NULL = NULL would not).
    return f"""
        SELECT f.path
        FROM jobs AS j INDEXED BY {index} JOIN files AS f ON f.id = j.file_id
        WHERE j.{column} = ? AND j.destination = ? AND j.album_id IS ? AND j.state = 'uploaded'
        ORDER BY j.note IS NOT NULL, j.id
        LIMIT 1
    """


_FIND_UPLOADED = _find_uploaded_by("xxh128", "jobs_xxh128")
_FIND_UPLOADED_SHA256 = _find_uploaded_by("sha256", "jobs_content")

_HEAD_UPLOADED = """
    SELECT 1
    FROM jobs INDEXED BY jobs_head
    WHERE head = ? AND destination = ? AND album_id IS ? AND state = 'uploaded'
    LIMIT 1
"""


_SHA256_OF_SIZE = """
    SELECT 1
    FROM files AS f INDEXED BY files_size JOIN jobs AS j ON j.file_id = f.id
    WHERE f.size = ? AND j.sha256 IS NOT NULL AND j.destination = ? AND j.album_id IS ?
        AND j.state = 'uploaded'
    LIMIT 1
"""


class _DamagedDatabase(OutboxError):
    """The queue file is corrupt or not a boothsync queue (``detail`` says how)."""

    def __init__(self, path: Path, detail: str, *, healing: bool = False) -> None:
        self.detail = detail
        then = (
            "boothsync moves it aside and rebuilds the queue"
            if healing
            else "the next `boothsync run` moves it aside and starts a new one"
        )
        super().__init__(f"queue database {path} is damaged ({detail}); {then}")


def _is_damage(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in _DAMAGE_CODES
    message = str(exc).lower()
    return "file is not a database" in message or "malformed" in message


def _is_unwritable(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code != _MOVED_CODE and (code & 0xFF) in _UNWRITABLE_CODES


def _disk_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < _FULL_BELOW
    except OSError:
        return False


def _sqlite_cause(exc: sqlite3.Error, path: Path) -> str:
    """One line saying what went wrong, with what the operator can do about it."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    code = getattr(exc, "sqlite_errorcode", None)
    full = (code is not None and code & 0xFF == sqlite3.SQLITE_FULL) or "disk is full" in message
    if full or (
        code is not None and code & 0xFF == sqlite3.SQLITE_IOERR and _disk_full(path.parent)
    ):
        return f"the disk is full ({message}); free some space on the drive of {path.parent}"
    if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR:
        name = getattr(exc, "sqlite_errorname", "SQLITE_IOERR")
        return f"{message} ({name}); check the drive of {path.parent}: failing, or read-only?"
    if code is not None and code & 0xFF == sqlite3.SQLITE_CANTOPEN:
        return f"{message}; check that {path.parent} is a folder boothsync may write to"
    if code is not None and code & 0xFF == sqlite3.SQLITE_READONLY:
        return f"{message}; check that {path} and its folder are writable"
    return message


def _os_cause(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"a file is in the way ({exc.filename})"
    return exc.strerror or str(exc)


def _quick_check_detail(rows: list[sqlite3.Row]) -> str | None:
    """None when ``PRAGMA quick_check`` said "ok", else its first problem (one line)."""
    lines = [
        line.strip()
        for (text,) in rows
        for line in str(text).splitlines()
        if line.strip() and not line.startswith("***")
    ]
    if lines == ["ok"]:
        return None
    if not lines:
        return "quick_check gave no answer"
    more = f" and {len(lines) - 1} more problem(s)" if len(lines) > 1 else ""
    return f"quick_check: {lines[0]}{more}"


def _aside_name(path: Path, now: float) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    counter = 1
    while any(Path(f"{target}{suffix}").exists() for suffix in ("", "-wal", "-shm")):
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
        counter += 1
    return target


def _move_aside(path: Path, now: float) -> Path:
    """Rename a damaged database and its -wal/-shm to ``NAME.corrupt-STAMP[-wal|-shm]``."""
    target = _aside_name(path, now)
    # The -wal and -shm go first: a -wal left next to the new database would be
    # replayed into it. A crash before the main file moved leaves it in place,
    # still damaged, and the next start moves it.
    try:
        for suffix in ("-wal", "-shm", ""):
            source = Path(f"{path}{suffix}")
            if source.exists():
                source.rename(f"{target}{suffix}")
    except OSError as exc:
        raise OutboxError(
            f"queue database {path} is damaged and could not be moved aside to {target}:"
            f" {_os_cause(exc)}"
        ) from exc
    return target


def _stored(path: Path | str) -> str | bytes:
    """A path as the queue stores it: text, or, for a name that is not valid UTF-8 (a
    Windows share mounted with the wrong character set), its bytes. SQLite keeps either
    exactly, so one odd name never stops a batch of pictures from being queued."""
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text)
    return text


def _loaded(value: str | bytes) -> str:
    """A path as :func:`_stored` stored it."""
    return os.fsdecode(value) if isinstance(value, bytes) else str(value)


def _message(text: str) -> str:
    """An error or detail line as stored: printable (a file name may hold anything) and
    never more than a few lines' worth."""
    line = printable(text)
    return line if len(line) <= _MESSAGE_LIMIT else line[: _MESSAGE_LIMIT - 1] + "…"


def _companions(path: Path) -> list[Path]:
    """The database file and its -wal and -shm, those that are there."""
    return [
        Path(f"{path}{suffix}")
        for suffix in ("", "-wal", "-shm")
        if Path(f"{path}{suffix}").exists()
    ]


def _remove(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


def _fsync(path: Path) -> None:
    """Put a file (or, on POSIX, a folder's entries) on the disk."""
    folder = path.is_dir()
    if folder and os.name != "posix":
        return  # Windows cannot open a folder to sync it; NTFS logs renames itself.
    # A file is opened for writing: Windows syncs only a handle that may write.
    fd = os.open(path, os.O_RDONLY if folder else os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fresh_database(path: Path) -> sqlite3.Connection:
    """A new database file at ``path``, private from its first byte, with nothing in it yet.

    The file is created before SQLite opens it, with the queue's mode; its -journal, -wal and
    -shm take the same mode from it.
    """
    _remove(path)  # a rebuild cut short
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    return sqlite3.connect(path, isolation_level=None)


def _copy_whole(source: sqlite3.Connection, target: Path) -> int | None:
    """Copy the database ``source`` has open, page by page, to a new file ``target``.

    Returns how many jobs it holds, or None when the copy is not sound (the source's pages are
    damaged too): then only a copy row by row can help.
    """
    conn = _fresh_database(target)
    try:
        # The copy is in WAL mode, as the source is: opening it as the queue then changes no
        # journal mode, which would empty the connection's cache that heal() may need next.
        # Its -wal goes with its close, so the file is all there is to move.
        source.backup(conn)
        if _quick_check_detail(conn.execute("PRAGMA quick_check").fetchall()) is not None:
            return None
        (jobs,) = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
        return int(jobs)
    except sqlite3.DatabaseError:
        return None
    finally:
        conn.close()


def _copy_rows(source: sqlite3.Connection, target: Path, *, in_flight: bool) -> int:
    """Build a new queue at ``target`` (the current schema) from the rows of ``source`` that
    can still be read; returns how many jobs it kept. ``in_flight``: workers may hold jobs
    of ``source`` (see _keep_job_ids_unique).

    A job is kept only with its file and a file only with a job: a file without its jobs
    would look queued to the watcher and never be uploaded, while without its row the
    watcher queues it again.
    """
    # A file cut short no longer opens (it holds fewer pages than its header says); with this
    # the pages still there, or still in the connection's cache, can be read. Ignoring errors
    # in the schema is the other half of what the pragma does, and just as welcome here.
    with contextlib.suppress(sqlite3.Error):
        source.execute("PRAGMA writable_schema = ON")
    conn = _fresh_database(target)
    try:
        # Nothing to roll back to: a build that fails is deleted and started again.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("BEGIN")
        for statements in _MIGRATIONS:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")
        for table in _SALVAGED:
            _copy_table(source, conn, table)
        conn.execute("DELETE FROM jobs WHERE file_id NOT IN (SELECT id FROM files)")
        conn.execute("DELETE FROM files WHERE id NOT IN (SELECT file_id FROM jobs)")
        _keep_job_ids_unique(source, conn, in_flight=in_flight)
        conn.execute("COMMIT")
        # WAL mode before it is opened as the queue (see _copy_whole).
        conn.execute("PRAGMA journal_mode = WAL")
        (jobs,) = conn.execute("SELECT COUNT(*) FROM jobs").fetchone()
        return int(jobs)
    finally:
        conn.close()


def _copy_table(source: sqlite3.Connection, target: sqlite3.Connection, table: str) -> None:
    # Only this module's own table names are ever formatted into these statements.
    try:
        theirs = {str(row[1]) for row in source.execute(f"PRAGMA table_info({table})")}
    except sqlite3.Error:
        return  # the schema itself cannot be read
    columns = [str(row[1]) for row in target.execute(f"PRAGMA table_info({table})")]
    # An older schema lacks later columns: they keep their defaults.
    shared = [name for name in columns if name in theirs]
    if not shared:
        return
    names = ", ".join(shared)
    insert = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' * len(shared))})"
    for row in _readable_rows(source, target, table, names):
        # A record damaged in ways the checks above cannot see (a wrong type in a key) is
        # one row lost, not the rest.
        with contextlib.suppress(sqlite3.Error):
            target.execute(insert, tuple(row))


def _readable_rows(
    source: sqlite3.Connection, target: sqlite3.Connection, table: str, names: str
) -> Iterator[Sequence[object]]:
    """Every row of ``table`` that ``source`` can read, in rowid ranges; a range that fails is
    halved until what cannot be read is isolated."""
    try:
        low, high = source.execute(f"SELECT min(rowid), max(rowid) FROM {table}").fetchone()
    except sqlite3.Error:
        low, high = 1, _upper_bound(source, target, table)
        if high is None:
            # A small table of names (destinations, flags): all of it or nothing.
            with contextlib.suppress(sqlite3.Error):
                yield from source.execute(f"SELECT {names} FROM {table}").fetchall()
            return
    if low is None or high is None:
        return
    select = f"SELECT {names} FROM {table} WHERE rowid BETWEEN ? AND ?"
    for start in range(int(low), int(high) + 1, _SALVAGE_STEP):
        pending = [(start, min(int(high), start + _SALVAGE_STEP - 1))]
        while pending:
            first, last = pending.pop()
            try:
                rows = source.execute(select, (first, last)).fetchall()
            except sqlite3.Error:
                if first < last:
                    middle = (first + last) // 2
                    pending += [(middle + 1, last), (first, middle)]
                continue
            yield from rows


def _upper_bound(source: sqlite3.Connection, target: sqlite3.Connection, table: str) -> int | None:
    """The highest rowid ``table`` may have, when its own index of rows cannot say."""
    if table == "jobs":
        return _job_sequence(source)
    if table == "files":
        (highest,) = target.execute("SELECT max(file_id) FROM jobs").fetchone()
        return None if highest is None else int(highest)
    return None


def _job_sequence(source: sqlite3.Connection) -> int | None:
    """The highest job id the old queue ever handed out, if it can still be read."""
    try:
        row = source.execute("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else int(row[0])


def _keep_job_ids_unique(
    source: sqlite3.Connection, target: sqlite3.Connection, *, in_flight: bool
) -> None:
    """Start new job ids above every id the old queue handed out, lost jobs' too: a worker
    may still report on one (``in_flight``), and must never reach a new job by its id."""
    (kept,) = target.execute("SELECT COALESCE(max(id), 0) FROM jobs").fetchone()
    handed_out = _job_sequence(source)
    if handed_out is not None:
        floor = max(handed_out, int(kept))
    else:
        floor = int(kept) + (_LOST_IDS if in_flight else 0)
    if not target.execute(
        "UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'jobs'", (floor,)
    ).rowcount:
        target.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('jobs', ?)", (floor,))


def _rebuilt(
    path: Path, how: str, detail: str, moved: Path | None, kept: int, *, whole: bool
) -> str:
    """The one line saying that the queue was rebuilt while boothsync ran, and from what."""
    if how == "damaged":
        what = f"queue database {path} is damaged ({detail})"
    else:
        what = f"queue database {path} was {how} while boothsync ran ({detail})"
    aside = f"; moved it to {moved}" if moved is not None else ""
    if whole:
        return f"{what}{aside}; rebuilt the queue from the copy still open, all {kept} job(s) kept"
    return (
        f"{what}{aside}; rebuilt the queue with the {kept} job(s) that could still be read;"
        " pictures whose jobs were lost are queued again by the next scan"
    )


def _rebuild_damaged(path: Path, now: float) -> tuple[Path, int]:
    """Move the damaged queue at ``path`` aside and put a new one in its place with the rows
    that can still be read; returns where the damaged one went and how many jobs were kept.

    Read through a read-only connection, so the damaged file is moved aside as it was found.
    When not even a new file can be built (a full disk), only the move is done, and the
    caller's open reports what is wrong.
    """
    building = path.with_name(f"{path.name}.rebuilding")
    kept = 0
    built = False
    source: sqlite3.Connection | None = None
    try:
        source = _read_only(path)
        kept = _copy_rows(source, building, in_flight=False)
        _fsync(building)
        built = True
    except (OSError, sqlite3.Error) as exc:
        log.debug("queue database %s: nothing could be read back: %s", path, exc)
        with contextlib.suppress(OSError):
            _remove(building)
    finally:
        if source is not None:
            with contextlib.suppress(sqlite3.Error):
                source.close()
    moved = _move_aside(path, now)
    if built:
        try:
            os.replace(building, path)
            _fsync(path.parent)
        except OSError as exc:
            raise OutboxError(
                f"queue database {path}: cannot put the rebuilt queue in place: {_os_cause(exc)}"
            ) from exc
    return moved, kept


def _recent_upload(rows: Sequence[sqlite3.Row]) -> RecentUpload:
    """One picture of :meth:`Outbox.recent_uploads` from its rows, one per uploaded job."""
    first = rows[0]
    seconds = [float(row["seconds"]) for row in rows if row["seconds"] is not None]
    notes = [str(row["note"]) for row in rows if row["note"] is not None]
    return RecentUpload(
        file_id=int(first["id"]),
        path=Path(_loaded(first["path"])),
        size=int(first["size"]),
        taken_at_ms=first["taken_at_ms"],
        taken_at_source=first["taken_at_source"],
        destinations=tuple(str(row["destination"]) for row in rows),
        # A legacy job without a finish time: the Unix epoch, as its place in the order says.
        finished_at=float(first["finished_at"] or 0.0),
        seconds=max(seconds) if seconds else None,
        note=notes[0] if notes else None,
    )


def _note_stale(cur: sqlite3.Cursor, job_id: int) -> None:
    # Only a job still uploading may move (the UPDATEs say "AND state = 'uploading'"):
    # a late call about a job that recover() already handed back must not undo that.
    if cur.rowcount == 0:
        log.debug("ignoring a late update of job %d: it is not uploading", job_id)


def _among(column: str, values: Collection[str] | None) -> tuple[str, list[str]]:
    """An ``AND column IN (?, ...)`` clause (placeholders only) and its parameters.

    ``None`` means no restriction; an empty collection matches nothing.
    """
    if values is None:
        return "", []
    if not values:
        return " AND 0", []
    # Only "?" marks are formatted in; the values themselves are bound.
    placeholders = ", ".join("?" * len(values))
    return f" AND {column} IN ({placeholders})", list(values)


def _read_only(path: Path) -> sqlite3.Connection:
    """A connection that can only read the database at ``path`` (any thread may use it)."""
    return sqlite3.connect(
        f"{path.absolute().as_uri()}?mode=ro",
        uri=True,
        isolation_level=None,
        check_same_thread=False,
    )


class QueueNotCreated(OutboxError):
    """A read-only open of a queue that does not exist yet (or whose creation has not
    committed yet): nothing was queued."""


def _has_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' LIMIT 1"
    ).fetchone()
    return row is not None


class Outbox:
    """The SQLite job queue.

    One connection, shared by the caller's threads behind a lock. Every write
    runs in ``BEGIN IMMEDIATE`` so that two processes, or two outboxes on the
    same file, never hand out the same job. ``readonly=True`` opens an existing
    database without creating, migrating or writing anything (for ``status``
    while the daemon runs).

    ``clock`` is the wall clock, for the times people read (when a picture was queued or
    uploaded); ``monotonic`` the clock waits are measured on (see :meth:`now`). ``secrets``
    are blanked in every message stored.
    """

    def __init__(
        self,
        path: Path,
        *,
        readonly: bool = False,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        secrets: Iterable[str] = (),
    ) -> None:
        self._path = Path(path)
        self._readonly = readonly
        self._clock = clock
        self._monotonic = monotonic
        # The schedule's anchor: a wall-clock time and the monotonic time it was read at.
        self._anchor = (clock(), monotonic())
        self._secrets = sorted(
            {s for s in secrets if len(s) >= _SHORTEST_SECRET}, key=len, reverse=True
        )
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        # When the oldest write committed without a sync was made (monotonic), or None when
        # every commit is on the disk (see sync()).
        self._unsynced_since: float | None = None
        # Whether jobs from before XXH3-128 (with only a SHA-256) may be there (_setup looks).
        self._has_sha256 = True
        # Set by open_or_rebuild(): this process owns the file, and heal() may replace it.
        self._owner = False
        # The owner's own descriptor of the database file (see _hold()), and its identity.
        self._held: int | None = None
        self._identity: tuple[int, int] | None = None
        # Damage an operation met (owner only), for heal() to repair.
        self._damage: str | None = None
        # When heal() next reads the whole file as a new reader would (owner only).
        self._next_deep_check = math.inf
        #: Why the owner's queue cannot go on (the disk is full, the drive failing or
        #: read-only, a rebuild failed), once that happened; None while all is well.
        self.failure: OutboxError | None = None
        # Where the damaged database this one replaces was moved to; set only
        # by open_or_rebuild() and heal(), for the engine and status to report.
        self.rebuilt_from: Path | None = None
        # The claim order (order_live()): None oldest first; else the live window (seconds).
        self._live_window: float | None = None
        self._last_live = False
        if readonly:
            # mode=ro would fail with SQLite's vague "unable to open database
            # file"; say what the operator needs to know instead.
            if not self._path.is_file():
                raise QueueNotCreated(f"no queue database at {self._path} yet")
        else:
            self._prepare_file()
        self._conn = self._open()

    @classmethod
    def open_or_rebuild(
        cls,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        secrets: Iterable[str] = (),
    ) -> Outbox:
        """Open the queue for writing; if it is damaged, move it aside and start a new one with
        the rows that can still be read.

        Only for the one process that owns the queue (the daemon, at start):
        moving the file aside under another writer would split the queue in two.
        The move is logged as an ERROR naming both paths and recorded in
        :attr:`rebuilt_from`. Anything other than damage (a locked, full or
        unwritable database, a newer schema) still raises :class:`OutboxError`.
        The outbox returned owns the file: :meth:`heal` watches over it.
        """
        path = Path(path)
        secrets = list(secrets)
        try:
            outbox = cls(path, clock=clock, monotonic=monotonic, secrets=secrets)
        except _DamagedDatabase as exc:
            damage = exc.detail
        else:
            outbox._own()
            return outbox
        moved, kept = _rebuild_damaged(path, clock())
        kept_text = f" with the {kept} job(s) that could still be read" if kept else ""
        log.error(
            "queue database %s was damaged (%s); moved it to %s and started a new one%s;"
            " other pictures still in the watched folders are queued again by the first scan",
            path,
            damage,
            moved,
            kept_text,
        )
        outbox = cls(path, clock=clock, monotonic=monotonic, secrets=secrets)
        outbox.rebuilt_from = moved
        outbox._own()
        return outbox

    def now(self) -> float:
        """The time on the queue's schedule, in Unix seconds: the wall clock when the queue was
        opened plus the monotonic time since. ``next_attempt_at``, :meth:`claim` and
        :meth:`next_due` are measured on it, so a wall-clock step changes no wait."""
        wall, monotonic = self._anchor
        return wall + (self._monotonic() - monotonic)

    def heal(self) -> bool:
        """Repair the owner's queue if its file was deleted, replaced or overwritten, or an
        operation met damage; cheap enough to call every second. Returns True when it rebuilt
        the queue.

        The file at the path must still be the one the connection has open, and begin as an
        SQLite database does. If not, whatever is there is moved aside (with its -wal and
        -shm, one ERROR line naming both paths) and the queue rebuilt from the database the
        connection still has open: copied whole when it is sound (deleted, replaced), else
        row by row, keeping what can still be read. It all happens under the lock every
        operation takes, so other threads simply go on with the new queue.

        Raises :class:`OutboxError` (also kept in :attr:`failure`) when the queue cannot be
        rebuilt: the owner must stop. Other outboxes never heal.
        """
        if not self._owner:
            return False
        self._deep_check()
        with self._lock:
            if self._conn is None:
                return False
            trouble = self._trouble()
            if trouble is None:
                return False
            try:
                self._rebuild(*trouble)
            except OutboxError as exc:
                self.failure = exc
                raise
        return True

    def _prepare_file(self) -> None:
        """Create the folder and the database file private (0700, 0600; -wal and -shm take
        the file's mode), and make those of an older boothsync so."""
        try:
            private_folder(self._path.parent)
        except OSError as exc:
            raise OutboxError(
                f"queue database {self._path}: cannot create its folder"
                f" {self._path.parent}: {_os_cause(exc)}"
            ) from exc
        # Created (O_EXCL) before SQLite opens it, with the file's mode from the first byte;
        # an existing file is never opened here: closing a descriptor of a file SQLite has
        # open in this process would drop its locks.
        with contextlib.suppress(OSError):
            os.close(os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
        for companion in _companions(self._path):
            private_file(companion)

    def _open(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            with self._translate("open"):
                self._setup(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _deep_check(self) -> None:
        """Every :data:`_DEEP_CHECK_SECONDS`, read the whole file through a connection of its
        own, as a new reader would: damage written into the file by something else shows
        there while this connection still works from its cache (which is then what heal()
        rebuilds the queue from). Outside the lock: the workers go on meanwhile."""
        now = self._monotonic()
        if now < self._next_deep_check or self._damage is not None:
            return
        self._next_deep_check = now + _DEEP_CHECK_SECONDS
        try:
            reader = _read_only(self._path)
            try:
                reader.execute("PRAGMA busy_timeout = 5000")
                detail = _quick_check_detail(reader.execute("PRAGMA quick_check").fetchall())
            finally:
                reader.close()
        except sqlite3.Error as exc:
            # A missing file, a lock: the other checks and the operations say those.
            if not _is_damage(exc):
                return
            detail = " ".join(str(exc).split()) or type(exc).__name__
        if detail is not None:
            self._damage = detail

    def _own(self) -> None:
        """Make this outbox the owner of its file: it holds it, and heal() watches it."""
        self._owner = True
        self._next_deep_check = self._monotonic() + _DEEP_CHECK_SECONDS
        self._hold()
        with contextlib.suppress(OSError):
            _remove(self._path.with_name(f"{self._path.name}.rebuilding"))  # one cut short
        with self._lock, self._translate("open"):
            self._keep_a_log(self._connection())

    def _keep_a_log(self, conn: sqlite3.Connection) -> None:
        """One small write, so that the -wal is not empty while the owner runs: SQLite then
        takes the database's size from the -wal, not from the file, so a file cut short under
        the connection still leaves every page in its cache or its -wal readable for heal().
        """
        conn.execute(
            "INSERT INTO flags (name, value, updated_at) VALUES (?, '', ?)"
            " ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at",
            (SYNCED_FLAG, self._clock()),
        )

    def _hold(self) -> None:
        """Keep a descriptor of the database file the connection has open, for heal() to
        compare with whatever is at the path and to read its first bytes through.

        Opened after SQLite's and closed only after the connection is (see close()):
        closing a descriptor of a file drops every POSIX lock the process holds on it,
        SQLite's too.
        """
        try:
            fd = os.open(self._path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        except OSError as exc:
            log.warning("queue database %s: cannot watch over it: %s", self._path, _os_cause(exc))
            return
        st = os.fstat(fd)
        self._held, self._identity = fd, (st.st_dev, st.st_ino)

    def _release_hold(self) -> None:
        fd, self._held = self._held, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _trouble(self) -> tuple[str, str] | None:
        """What heal() must repair, ``(how, detail)``, or None."""
        fd, identity = self._held, self._identity
        if fd is not None and identity is not None:
            try:
                st = os.stat(self._path)
            except FileNotFoundError:
                return "deleted", "it is no longer there"
            except OSError:
                st = None  # cannot tell (the folder's permissions?): the operations will say
            if st is not None and (st.st_dev, st.st_ino) != identity:
                return "replaced", "another file is in its place"
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                head = os.read(fd, len(_SQLITE_HEADER))
            except OSError:
                head = _SQLITE_HEADER  # unreadable is for the operations to report
            if head != _SQLITE_HEADER:
                return "overwritten", "it no longer begins as an SQLite database"
        if self._damage is not None:
            return "damaged", self._damage
        return None

    def _rebuild(self, how: str, detail: str) -> None:
        """Move what is at the path aside and put the rebuilt queue there (under the lock)."""
        old = self._connection()
        path = self._path
        building = path.with_name(f"{path.name}.rebuilding")
        try:
            private_folder(path.parent)  # gone with the file, perhaps
            kept = _copy_whole(old, building) if how in ("deleted", "replaced") else None
            whole = kept is not None
            if kept is None:
                kept = _copy_rows(old, building, in_flight=True)
            _fsync(building)
        except (OSError, sqlite3.Error) as exc:
            with contextlib.suppress(OSError):
                _remove(building)
            raise OutboxError(
                f"queue database {path} was {how} ({detail}), and rebuilding it failed:"
                f" {_os_cause(exc) if isinstance(exc, OSError) else _sqlite_cause(exc, path)}"
            ) from exc
        # From here on the old database is given up. Closed before the new one is in place:
        # its last close may checkpoint and delete a -wal by name.
        self._conn = None
        with contextlib.suppress(sqlite3.Error):
            old.close()
        self._release_hold()
        try:
            if whole:
                # The old database's -wal and -shm were copied with it. Left at the path they
                # would be replayed into the new queue, or read as the replacement's own.
                for suffix in ("-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            moved = _move_aside(path, self._clock()) if _companions(path) else None
            os.replace(building, path)
            _fsync(path.parent)
            self._conn = self._open()
            with self._translate("rebuild"):
                self._keep_a_log(self._conn)
        except (OSError, OutboxError) as exc:
            cause = _os_cause(exc) if isinstance(exc, OSError) else str(exc)
            raise OutboxError(f"queue database {path}: rebuilding it failed: {cause}") from exc
        self._hold()
        self._damage = None
        # Everything is on the disk: the copy was synced before it took the path.
        self._unsynced_since = None
        if moved is not None:
            self.rebuilt_from = moved
        log.error("%s", _rebuilt(path, how, detail, moved, kept, whole=whole))

    # -- writes ---------------------------------------------------------------

    def add(
        self,
        path: Path,
        *,
        size: int,
        mtime_ns: int,
        watch: str,
        destinations: Mapping[str, str | None],
    ) -> int:
        """Record one version of a file with a job per destination (name → album id).

        Idempotent: adding the same (path, size, mtime_ns) again adds only the
        destinations it did not have yet. Returns how many jobs are new.
        """
        (new,) = self.add_many([NewFile(path, size, mtime_ns, watch, destinations)])
        return new

    def add_many(self, files: Sequence[NewFile]) -> list[int]:
        """:meth:`add` for several files in one transaction (a burst of pictures): how many
        jobs are new for each.

        Not synced to the disk on its own: a power cut may undo it, and then the file,
        still in its watched folder, is queued again by the first scan. The next synced
        write (a job completed) takes it to the disk.
        """
        counts: list[int] = []
        with self._write("add a file", synced=False) as conn:
            now, due = self._clock(), self.now()
            for file in files:
                conn.execute(
                    "INSERT OR IGNORE INTO files (path, size, mtime_ns, watch, added_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (_stored(file.path), file.size, file.mtime_ns, _stored(file.watch), now),
                )
                file_id = self._file_id(conn, file.path, file.size, file.mtime_ns)
                assert file_id is not None  # inserted or already there, in this transaction
                new = 0
                # A picture written long before it was queued (found by the scan at start,
                # after boothsync was off) is backlog, not the picture a guest just took.
                fresh = min(due, file.mtime_ns / 1e9)
                for destination, album_id in file.destinations.items():
                    cur = conn.execute(
                        "INSERT OR IGNORE INTO jobs (file_id, destination, album_id, state,"
                        " attempts, next_attempt_at, updated_at, queued_at)"
                        " VALUES (?, ?, ?, ?, 0, ?, ?, ?)",
                        (file_id, destination, album_id, JobState.WAITING, due, now, fresh),
                    )
                    new += cur.rowcount
                counts.append(new)
        for file, new in zip(files, counts, strict=True):
            if new:
                log.debug("queued %s for %d destination(s)", file.path, new)
        return counts

    def order_live(self, window: float | None) -> None:
        """The claim order: jobs queued in the last ``window`` seconds and never tried first,
        newest first, the backlog oldest first behind them, alternating while both wait
        (``[upload] order = "live"``); None: every job oldest first (``"oldest"``)."""
        self._live_window = window

    def live_count(self, window: float, *, now: float | None = None) -> int:
        """How many waiting jobs are live: queued in the last ``window`` seconds, never
        tried. The rest of the waiting jobs are the backlog."""
        since = (self.now() if now is None else now) - window
        with self._read("count the live jobs") as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM jobs INDEXED BY jobs_fresh"
                " WHERE state = ? AND attempts = 0 AND queued_at >= ?",
                (JobState.WAITING, since),
            ).fetchone()
        return int(row[0])

    def claim(
        self,
        *,
        only: Collection[str] | None = None,
        now: float | None = None,
        hold: bool = True,
    ) -> Job | None:
        """Take the next waiting job (of the ``only`` destinations, if given), or None: the one
        due longest ago, or in the live order (:meth:`order_live`) the newest live one or the
        backlog's oldest due one. ``now``: the time on the schedule (:meth:`now`) to look from,
        if not now. ``hold=False``: the backlog is not held for a live upload in flight (for a
        spare worker, which starts only when every upload in flight stands still).

        The uploader passes the destinations it can serve now: configured and
        not paused. Jobs of the others simply wait.

        The job becomes uploading and its attempt is counted. Never hands the
        same job to two callers, whether threads or processes.

        The claim is committed without a sync of its own (the one write here that
        is not): a power cut can only undo it, leaving the job waiting, which is
        where :meth:`recover` would put an uploading job after that cut anyway;
        at most the attempt is not counted. It is on the disk before anything
        written after it, at the latest with the job's :meth:`complete`, which
        syncs. Without that second sync per upload, a claim and its completion
        cost one sync instead of two.
        """
        if only is not None and not only:
            # No destination to serve (all paused): nothing to claim. The live order's
            # statement cannot even be planned with a WHERE that is false from the start.
            return None
        with self._write("claim a job", synced=False) as conn:
            due = self.now() if now is None else now
            clause, params = _among("destination", only)
            window = self._live_window
            if window is None:
                row = conn.execute(
                    "SELECT id, 0 FROM jobs WHERE state = ? AND next_attempt_at <= ?"
                    + clause
                    + " ORDER BY next_attempt_at, id LIMIT 1",
                    [JobState.WAITING, due, *params],
                ).fetchone()
            else:
                since = due - window
                # One statement: the newest live job and the backlog's oldest due one, the
                # live one first unless the last claim took a live one (then the backlog's
                # turn: while both wait, every second upload is the backlog's). Otherwise a
                # backlog job is held while a live one of its destination is being uploaded:
                # that one then has the link to itself once the uploads before it are done.
                live_turn = 1 if self._last_live else 0
                row = conn.execute(
                    "SELECT id, live FROM ("
                    " SELECT * FROM (SELECT id, 1 AS live FROM jobs INDEXED BY jobs_fresh"
                    "  WHERE state = ? AND attempts = 0 AND queued_at >= ?"
                    "  AND next_attempt_at <= ?" + clause + " ORDER BY queued_at DESC, id DESC"
                    "  LIMIT 1)"
                    " UNION ALL"
                    " SELECT * FROM (SELECT id, 0 AS live FROM (SELECT id, destination, attempts,"
                    "  queued_at, next_attempt_at FROM jobs INDEXED BY jobs_due"
                    "  WHERE state = ? AND next_attempt_at <= ?"
                    + clause
                    + "  ORDER BY next_attempt_at, id LIMIT ?)"
                    "  WHERE NOT (attempts = 0 AND queued_at >= ?)"
                    "  AND (? = 0 OR (? = 1 AND EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_fresh"
                    "   WHERE state = ? AND attempts = 0 AND queued_at >= ?"
                    "   AND next_attempt_at <= ?" + clause + "))"
                    "   OR destination NOT IN (SELECT destination FROM jobs INDEXED BY jobs_due"
                    "   WHERE state = ? AND attempts = 1 AND queued_at >= ?))"
                    "  ORDER BY next_attempt_at, id LIMIT 1)"
                    ") ORDER BY live = ? LIMIT 1",
                    [
                        JobState.WAITING,
                        since,
                        due,
                        *params,
                        JobState.WAITING,
                        due,
                        *params,
                        _BACKLOG_LOOK,
                        since,
                        1 if hold else 0,
                        live_turn,
                        JobState.WAITING,
                        since,
                        due,
                        *params,
                        JobState.UPLOADING,
                        since,
                        live_turn,
                    ],
                ).fetchone()
            if row is None:
                return None
            job_id: int = row[0]
            self._last_live = bool(row[1])
            at = self._clock()
            conn.execute(
                "UPDATE jobs SET state = ?, attempts = attempts + 1, claimed_at = ?,"
                " updated_at = ? WHERE id = ?",
                (JobState.UPLOADING, at, at, job_id),
            )
            job = self._job(conn, job_id)
            return replace(job, live=True) if row[1] else job

    def complete(
        self,
        job_id: int,
        *,
        taken_at_ms: int | None = None,
        taken_at_source: str | None = None,
        xxh128: str | None = None,
        head: str | None = None,
        note: str | None = None,
        synced: bool = True,
    ) -> bool:
        """Mark an uploading job uploaded; store the capture time on its file when given.

        ``synced=False`` commits without syncing the disk (the uploader's workers, who then
        call :meth:`sync` at most every few tenths of a second, and when the queue is done):
        a power cut can undo such a completion, and the picture is then uploaded once more.

        ``xxh128`` is the hash (XXH3-128, hex) of the content the destination now has, for
        :meth:`find_uploaded`, and ``head`` that of its size and beginning, for
        :meth:`may_have_uploaded`. ``note`` marks a job settled without an upload
        (the destination already had that content) and says why; such jobs are
        counted in :attr:`Stats.duplicates`.

        Returns True when every job of that file is now uploaded (the caller
        then applies ``after_upload``). A call for a job that is not uploading
        changes nothing and returns False, so ``after_upload`` runs once at most.
        """
        with self._write("complete a job", synced=synced) as conn:
            now = self._clock()
            cur = conn.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, last_error = NULL, updated_at = ?,"
                " xxh128 = ?, head = ?, note = ?, unreadable = 0"
                " WHERE id = ? AND state = ?",
                (JobState.UPLOADED, now, now, xxh128, head, note, job_id, JobState.UPLOADING),
            )
            if cur.rowcount == 0:
                _note_stale(cur, job_id)
                return False
            if taken_at_ms is not None:
                conn.execute(
                    "UPDATE files SET taken_at_ms = ?, taken_at_source = ?"
                    " WHERE id = (SELECT file_id FROM jobs WHERE id = ?)",
                    (taken_at_ms, taken_at_source, job_id),
                )
            (remaining,) = conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE state != ?"
                " AND file_id = (SELECT file_id FROM jobs WHERE id = ?)",
                (JobState.UPLOADED, job_id),
            ).fetchone()
            return bool(remaining == 0)

    def retry_later(
        self,
        job_id: int,
        *,
        delay: float,
        error: str,
        count_attempt: bool = True,
        unreadable: bool = False,
    ) -> None:
        """Put an uploading job back to waiting, due after ``delay`` seconds, noting the error.

        ``count_attempt=False`` takes back the attempt its claim counted, for a
        try that failed through no fault of the file or the destination (the
        file changed while it was being sent), so later backoff is not longer.
        ``unreadable``: the file could not be read (see :meth:`retry_unreadable`).
        """
        with self._write("reschedule a job") as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = ?, next_attempt_at = ?, last_error = ?, updated_at = ?,"
                " attempts = MAX(attempts - ?, 0), unreadable = ?"
                " WHERE id = ? AND state = ?",
                (
                    JobState.WAITING,
                    self.now() + delay,
                    _message(self._redact(error)),
                    self._clock(),
                    0 if count_attempt else 1,
                    int(unreadable),
                    job_id,
                    JobState.UPLOADING,
                ),
            )
            _note_stale(cur, job_id)

    def release(self, job_id: int, *, delay: float = 0.0) -> None:
        """Hand an uploading job back untried (shutdown, paused destination, its file busy
        with another upload), due after ``delay`` seconds (at once by default).

        The attempt is not counted, and its last error stays as it was.
        """
        with self._write("release a job") as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = ?, next_attempt_at = ?,"
                " attempts = MAX(attempts - 1, 0), updated_at = ?"
                " WHERE id = ? AND state = ?",
                (
                    JobState.WAITING,
                    self.now() + delay,
                    self._clock(),
                    job_id,
                    JobState.UPLOADING,
                ),
            )
            _note_stale(cur, job_id)

    def fail(self, job_id: int, *, error: str, unreadable: bool = False) -> None:
        """Give up on an uploading job for good (until :meth:`retry_failed`, or, for a file
        that could not be read, until :meth:`retry_unreadable` finds it readable)."""
        with self._write("fail a job") as conn:
            now = self._clock()
            cur = conn.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, last_error = ?, updated_at = ?,"
                " unreadable = ? WHERE id = ? AND state = ?",
                (
                    JobState.FAILED,
                    now,
                    _message(self._redact(error)),
                    now,
                    int(unreadable),
                    job_id,
                    JobState.UPLOADING,
                ),
            )
            _note_stale(cur, job_id)

    def recover(self) -> int:
        """Return jobs left uploading by a crash to waiting, due now; returns how many.

        Only call it at start, before any worker claims: it cannot tell a
        crashed upload from one still running.
        """
        with self._write("recover interrupted jobs") as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = ?, next_attempt_at = ?, updated_at = ? WHERE state = ?",
                (JobState.WAITING, self.now(), self._clock(), JobState.UPLOADING),
            )
            count = cur.rowcount
        if count:
            log.info("%d interrupted upload(s) queued again", count)
        return count

    def retry_failed(self, *, destination: str | None = None) -> int:
        """Queue failed jobs again from scratch (all, or one destination's); returns how many."""
        with self._write("retry failed jobs") as conn:
            sql = f"UPDATE jobs SET {_RETRY_SET} WHERE state = ?"
            params: list[object] = [JobState.WAITING, self.now(), self._clock(), JobState.FAILED]
            if destination is not None:
                sql += " AND destination = ?"
                params.append(destination)
            count = conn.execute(sql, params).rowcount
        # Whoever asked says how many (a command prints it, the service logs it): said here
        # too, a command would show it twice.
        return count

    def retry_job(self, job_id: int) -> bool:
        """Queue one failed job again from scratch, due now, as :meth:`retry_failed` does for
        all; False (and nothing changes) when there is no such job or it is not failed."""
        with self._write("retry a failed job") as conn:
            cur = conn.execute(
                f"UPDATE jobs SET {_RETRY_SET} WHERE id = ? AND state = ?",
                (JobState.WAITING, self.now(), self._clock(), job_id, JobState.FAILED),
            )
            return cur.rowcount == 1

    def forget_failed(
        self, *, destination: str | None = None, name: str | None = None
    ) -> list[tuple[str, str]]:
        """Drop failed jobs from the queue for good (all, one destination's, or those of the
        pictures called ``name``: a file name or a whole path); returns (path, destination) of
        each, oldest first.

        The file's own row stays, so a scan does not queue this version of the picture
        again; a picture written anew (another size or time) is a new picture and goes.
        """
        with self._write("forget failed jobs") as conn:
            chosen = [
                (job, path, where)
                for job, path, where in self._failed(conn, destination)
                if name is None or name in (path, Path(path).name)
            ]
            conn.executemany("DELETE FROM jobs WHERE id = ?", [(job,) for job, _, _ in chosen])
        return [(path, where) for _, path, where in chosen]

    def failed(self, *, destination: str | None = None) -> list[tuple[str, str]]:
        """(path, destination) of every failed job (or one destination's), oldest first."""
        with self._read("list failed jobs") as conn:
            return [(path, where) for _, path, where in self._failed(conn, destination)]

    @staticmethod
    def _failed(conn: sqlite3.Connection, destination: str | None) -> list[tuple[int, str, str]]:
        sql = (
            "SELECT j.id, f.path, j.destination FROM jobs AS j JOIN files AS f"
            " ON f.id = j.file_id WHERE j.state = ?"
        )
        params: list[object] = [JobState.FAILED]
        if destination is not None:
            sql += " AND j.destination = ?"
            params.append(destination)
        rows = conn.execute(sql + " ORDER BY j.id", params).fetchall()
        return [(int(row[0]), _loaded(row[1]), str(row[2])) for row in rows]

    def forget_vanished(self, job_id: int) -> bool:
        """Drop an uploading job whose file is gone before it was uploaded; returns whether it
        was there to drop.

        When no other job of the file is left, the file's row goes too: should the very same
        picture come back (a share mounted again), the next scan queues it anew.
        """
        with self._write("forget a vanished picture") as conn:
            row = conn.execute(
                "SELECT file_id FROM jobs WHERE id = ? AND state = ?",
                (job_id, JobState.UPLOADING),
            ).fetchone()
            if row is None:
                log.debug("ignoring a late update of job %d: it is not uploading", job_id)
                return False
            file_id = int(row[0])
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            conn.execute(
                "DELETE FROM files WHERE id = ? AND NOT EXISTS"
                " (SELECT 1 FROM jobs WHERE file_id = ?)",
                (file_id, file_id),
            )
        return True

    # -- the control channel ---------------------------------------------------

    def send_command(self, command: str) -> int:
        """Ask the running service to ``pause``, ``resume``, ``retry`` (failed jobs) or ``reload``
        (reread its config); returns the command's id, for :meth:`command_taken`.

        The command waits in the database until the service takes it
        (:meth:`take_commands`, within about a second), so this works from
        another process. One sent while no service runs is dropped by the next start
        (:meth:`drop_commands`): check that one runs first.
        """
        if command not in COMMANDS:
            raise OutboxError(f"unknown command {command!r}; one of {', '.join(sorted(COMMANDS))}")
        with self._write(f"send the {command} command") as conn:
            cur = conn.execute(
                "INSERT INTO commands (command, sent_at) VALUES (?, ?)", (command, self._clock())
            )
            return int(cur.lastrowid or 0)

    def command_taken(self, command_id: int) -> bool | None:
        """Whether the service has taken the command :meth:`send_command` returned this id for:
        True once taken, False while it waits, None when a start dropped it
        (:meth:`drop_commands`)."""
        with self._read("read a command") as conn:
            row = conn.execute(
                "SELECT done_at IS NOT NULL FROM commands WHERE id = ?", (command_id,)
            ).fetchone()
        return None if row is None else bool(row[0])

    def drop_commands(self, *, sent_before: float) -> list[str]:
        """Delete, without applying them, the commands not taken yet that were sent before
        ``sent_before`` (wall clock): sent while no boothsync ran, they are old news. Returns
        them, oldest first."""
        with self._write("drop old commands") as conn:
            rows = conn.execute(
                "SELECT id, command FROM commands INDEXED BY commands_pending"
                " WHERE done_at IS NULL AND sent_at < ? ORDER BY id",
                (sent_before,),
            ).fetchall()
            conn.executemany("DELETE FROM commands WHERE id = ?", [(row["id"],) for row in rows])
        return [str(row["command"]) for row in rows]

    def take_commands(self) -> list[str]:
        """The commands not taken yet, oldest first; they are marked done in the same transaction,
        so each is taken once even with two takers."""
        with self._write("take commands") as conn:
            now = self._clock()
            rows = conn.execute(
                "SELECT id, command FROM commands INDEXED BY commands_pending"
                " WHERE done_at IS NULL ORDER BY id"
            ).fetchall()
            if rows:
                conn.execute(
                    "UPDATE commands SET done_at = ? WHERE done_at IS NULL AND id <= ?",
                    (now, rows[-1]["id"]),
                )
            conn.execute(
                "DELETE FROM commands WHERE done_at IS NOT NULL AND done_at < ?",
                (now - _COMMANDS_KEPT,),
            )
        return [str(row["command"]) for row in rows]

    def set_flag(self, name: str, value: str) -> None:
        """Record one thing the running service says about itself (``paused``, ...)."""
        with self._write(f"set the {name} flag") as conn:
            conn.execute(
                "INSERT INTO flags (name, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET"
                " value = excluded.value, updated_at = excluded.updated_at",
                (name, value, self._clock()),
            )

    def sync(self, *, older_than: float = 0.0) -> bool:
        """Put every write committed without a sync (claims, adds, unsynced completions) on
        the disk, with one synced write; only when the oldest of them is at least
        ``older_than`` seconds old. Returns whether it synced.

        SQLite syncs the whole log up to a synced commit, so one small synced write (the
        ``synced`` flag, the time the queue last reached the disk) takes every earlier
        commit along.
        """
        since = self._unsynced_since
        if since is None or self._monotonic() - since < older_than:
            return False
        self.set_flag(SYNCED_FLAG, "")
        return True

    def flags(self) -> dict[str, str]:
        """Every flag the service recorded: ``{name: value}`` (works read-only)."""
        with self._read("read flags") as conn:
            rows = conn.execute("SELECT name, value FROM flags").fetchall()
        return {str(name): str(value) for name, value in rows}

    # -- reads ----------------------------------------------------------------

    def is_known(self, path: Path, size: int, mtime_ns: int) -> bool:
        """Whether this version of the file (path, size, mtime) has been added."""
        return self.known(path, size, mtime_ns) is not Known.NEW

    def known(self, path: Path, size: int, mtime_ns: int) -> Known:
        """Whether this version of the file has been added, and whether one of its jobs waits
        (or failed) because the file could not be read."""
        with self._read("look up a file") as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_unreadable"
                " WHERE file_id = files.id AND unreadable = 1"
                " AND state IN ('waiting', 'failed'))"
                " FROM files WHERE path = ? AND size = ? AND mtime_ns = ?",
                (_stored(path), size, mtime_ns),
            ).fetchone()
        if row is None:
            return Known.NEW
        return Known.UNREADABLE if row[0] else Known.QUEUED

    def retry_unreadable(self, path: Path, size: int, mtime_ns: int) -> int:
        """The file can be read now: its jobs that waited or failed because it could not be
        are due at once (a failed one starts its attempts over). Returns how many."""
        with self._write("retry an unreadable file") as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = ?, next_attempt_at = ?, finished_at = NULL,"
                " attempts = CASE WHEN state = 'failed' THEN 0 ELSE attempts END,"
                " unreadable = 0, updated_at = ?"
                " WHERE unreadable = 1 AND state IN ('waiting', 'failed') AND file_id ="
                " (SELECT id FROM files WHERE path = ? AND size = ? AND mtime_ns = ?)",
                (JobState.WAITING, self.now(), self._clock(), _stored(path), size, mtime_ns),
            )
            count = cur.rowcount
        if count:
            log.info("%s can be read now; %d upload(s) of it go now", path, count)
        return count

    def find_uploaded(self, xxh128: str, *, destination: str, album_id: str | None) -> Path | None:
        """The path of a file whose content (by XXH3-128, hex) is uploaded to this destination
        and album (no album matching no album), or None.

        A real upload is named in preference to a job that was itself a duplicate.
        """
        return self._find(_FIND_UPLOADED, xxh128, destination, album_id)

    def may_have_uploaded(
        self, head: str, *, size: int, destination: str, album_id: str | None
    ) -> bool:
        """Whether this destination and album may already have a picture whose size and
        beginning hash to ``head``: False means it surely has no copy of it, True that the
        whole content must be compared (:meth:`find_uploaded`)."""
        with self._read("look up uploaded content") as conn:
            if conn.execute(_HEAD_UPLOADED, (head, destination, album_id)).fetchone():
                return True
        return self.has_sha256_of_size(size, destination=destination, album_id=album_id)

    def has_sha256_of_size(self, size: int, *, destination: str, album_id: str | None) -> bool:
        """Whether a job uploaded to this destination and album before the hash became
        XXH3-128 (so it has only a SHA-256) was of a file of ``size`` bytes: only a picture
        of that size can be its duplicate."""
        if not self._has_sha256:
            return False
        with self._read("look up uploaded content") as conn:
            row = conn.execute(_SHA256_OF_SIZE, (size, destination, album_id)).fetchone()
        return row is not None

    def find_uploaded_sha256(
        self, sha256: str, *, destination: str, album_id: str | None
    ) -> Path | None:
        """:meth:`find_uploaded` among the jobs uploaded before the hash became XXH3-128."""
        return self._find(_FIND_UPLOADED_SHA256, sha256, destination, album_id)

    def _find(self, query: str, digest: str, destination: str, album_id: str | None) -> Path | None:
        with self._read("look up uploaded content") as conn:
            row = conn.execute(query, (digest, destination, album_id)).fetchone()
        return None if row is None else Path(_loaded(row["path"]))

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state, all destinations together (cheaper than
        :meth:`stats`, for a status line refreshed every few seconds)."""
        counts = {state.value: 0 for state in JobState}
        with self._read("count jobs") as conn:
            for state, count in conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
                counts[str(state)] = int(count)
        return counts

    def uploaded_since(self, since: float) -> int:
        """How many uploads finished at or after ``since`` (Unix time), e.g. "today"."""
        with self._read("count recent uploads") as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM jobs INDEXED BY jobs_finished"
                " WHERE state = 'uploaded' AND finished_at >= ?",
                (since,),
            ).fetchone()
        return int(row[0])

    def recent_uploads(self, limit: int = 24) -> list[RecentUpload]:
        """The last ``limit`` pictures that finished uploading, newest first: one entry per
        file version, with every destination that has it (works read-only)."""
        with self._read("list recent uploads") as conn:
            rows = conn.execute(_RECENT_UPLOADS, (max(0, limit),)).fetchall()
        # The rows of one picture are adjacent: ordered by its latest job, then destination.
        return [_recent_upload(list(group)) for _, group in groupby(rows, key=lambda row: row[0])]

    def waiting_jobs(self, limit: int = 100) -> list[WaitingJob]:
        """Up to ``limit`` jobs not done yet: those uploading now, then the waiting ones in the
        order :meth:`claim` takes them (works read-only)."""
        with self._read("list waiting jobs") as conn:
            rows = conn.execute(_WAITING_JOBS, (max(0, limit),)).fetchall()
        return [
            WaitingJob(
                id=int(row["id"]),
                file_id=int(row["file_id"]),
                path=Path(_loaded(row["path"])),
                destination=str(row["destination"]),
                state=JobState(row["state"]),
                attempts=int(row["attempts"]),
                next_attempt_at=float(row["next_attempt_at"]),
                last_error=row["last_error"],
            )
            for row in rows
        ]

    def failed_jobs(self, limit: int = 200) -> list[FailedJob]:
        """Up to ``limit`` failed jobs, the latest failure first (works read-only)."""
        with self._read("list failed jobs") as conn:
            rows = conn.execute(_FAILED_JOBS, (max(0, limit),)).fetchall()
        return [
            FailedJob(
                id=int(row["id"]),
                file_id=int(row["file_id"]),
                path=Path(_loaded(row["path"])),
                destination=str(row["destination"]),
                attempts=int(row["attempts"]),
                last_error=row["last_error"],
                failed_at=float(row["failed_at"]),
            )
            for row in rows
        ]

    def throughput(self, since: float) -> dict[str, Throughput]:
        """Per destination, the jobs that became uploaded at or after ``since`` (wall clock, as
        finish times are kept) and their files' sizes; a destination with none is left out."""
        with self._read("measure throughput") as conn:
            rows = conn.execute(_THROUGHPUT, (since,)).fetchall()
        return {
            str(destination): Throughput(uploads=int(count), bytes=int(size))
            for destination, count, size in rows
        }

    def uploaded_hashes(self, file_id: int) -> list[str | None]:
        """The content hash (XXH3-128) each job of this file version recorded when it was
        uploaded; None for a job without one (not uploaded, or uploaded before that hash)."""
        with self._read("look up uploaded content") as conn:
            rows = conn.execute(
                "SELECT CASE WHEN state = 'uploaded' THEN xxh128 END FROM jobs WHERE file_id = ?",
                (file_id,),
            ).fetchall()
        return [None if row[0] is None else str(row[0]) for row in rows]

    def settled_files(self, watch: str) -> list[tuple[int, Path, int, int]]:
        """The file versions of ``watch`` that every destination has: ``(file_id, path, size,
        mtime_ns)``, for the after-upload step that a stop may have cut short."""
        with self._read("look up uploaded files") as conn:
            rows = conn.execute(
                "SELECT f.id, f.path, f.size, f.mtime_ns FROM files AS f WHERE f.watch = ?"
                " AND EXISTS (SELECT 1 FROM jobs AS j WHERE j.file_id = f.id)"
                " AND NOT EXISTS (SELECT 1 FROM jobs AS j"
                " WHERE j.file_id = f.id AND j.state != 'uploaded')",
                (_stored(watch),),
            ).fetchall()
        return [(int(r[0]), Path(_loaded(r[1])), int(r[2]), int(r[3])) for r in rows]

    def recorded_files(self) -> list[RecordedFile]:
        """Every file version the queue holds, oldest first, each with its jobs (works
        read-only): what ``boothsync verify`` holds against the watch folders and galleries."""
        with self._read("list queued files") as conn:
            conn.execute("BEGIN")
            try:
                rows = conn.execute(
                    "SELECT f.id, f.path, f.size, f.mtime_ns, j.destination, j.state,"
                    " j.album_id, j.note FROM files AS f LEFT JOIN jobs AS j ON j.file_id = f.id"
                    " ORDER BY f.id"
                ).fetchall()
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        files: list[RecordedFile] = []
        for _, group in groupby(rows, key=lambda row: row[0]):
            items = list(group)
            first = items[0]
            files.append(
                RecordedFile(
                    id=int(first[0]),
                    path=Path(_loaded(first[1])),
                    size=int(first[2]),
                    mtime_ns=int(first[3]),
                    jobs={
                        str(r[4]): (JobState(r[5]), r[6], r[7]) for r in items if r[4] is not None
                    },
                )
            )
        return files

    def to_go(self) -> int:
        """How many pictures (file versions) some destination does not have yet: a job of
        theirs waits, uploads or failed."""
        with self._read("count pictures to go") as conn:
            row = conn.execute(
                "SELECT COUNT(DISTINCT file_id) FROM jobs WHERE state != 'uploaded'"
            ).fetchone()
        return int(row[0])

    def send_file_again(self, file_id: int) -> int:
        """Queue every uploaded job of this file version again, due now: what is on disk is
        not what was sent. Returns how many."""
        with self._write("queue a file again") as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = ?, attempts = 0, next_attempt_at = ?, finished_at = NULL,"
                " xxh128 = NULL, head = NULL, note = NULL, updated_at = ?"
                " WHERE file_id = ? AND state = ?",
                (JobState.WAITING, self.now(), self._clock(), file_id, JobState.UPLOADED),
            )
            return cur.rowcount

    def make_due(self, destination: str) -> int:
        """Make every waiting job of ``destination`` due now (it is reachable again).

        Returns how many jobs were still backed off and are due now.
        """
        with self._write("make jobs due") as conn:
            due = self.now()
            cur = conn.execute(
                "UPDATE jobs SET next_attempt_at = ?, updated_at = ?"
                " WHERE state = ? AND destination = ? AND next_attempt_at > ?",
                (due, self._clock(), JobState.WAITING, destination, due),
            )
            return cur.rowcount

    def busy(self) -> bool:
        """Whether any picture waits or uploads (one index lookup)."""
        with self._read("look for waiting jobs") as conn:
            row = conn.execute(
                "SELECT 1 FROM jobs WHERE state IN (?, ?) LIMIT 1",
                (JobState.WAITING, JobState.UPLOADING),
            ).fetchone()
        return row is not None

    def next_due(self, *, only: Collection[str] | None = None) -> float | None:
        """When the earliest waiting job (of ``only``, if given) is due, on the schedule's clock
        (:meth:`now`), or None."""
        with self._read("find the next due job") as conn:
            clause, params = _among("destination", only)
            # ORDER BY ... LIMIT 1 rather than MIN(): walks the index and stops
            # at the first row of a wanted destination.
            row = conn.execute(
                "SELECT next_attempt_at FROM jobs WHERE state = ?"
                + clause
                + " ORDER BY next_attempt_at LIMIT 1",
                [JobState.WAITING, *params],
            ).fetchone()
            return None if row is None else float(row[0])

    def stats(self) -> Stats:
        """Counts per destination and state, totals, and the latest upload and error."""
        with self._read("read statistics") as conn:
            # One read transaction, so the counts and events are one snapshot.
            conn.execute("BEGIN")
            try:
                rows = conn.execute(
                    "SELECT destination, state, COUNT(*) FROM jobs GROUP BY destination, state"
                ).fetchall()
                last_upload = self._event(conn.execute(_LAST_UPLOAD).fetchone())
                last_error = self._event(conn.execute(_LAST_ERROR).fetchone())
                duplicates = conn.execute(_DUPLICATES).fetchall()
                sources = conn.execute(
                    "SELECT taken_at_source, COUNT(*) FROM files"
                    " WHERE taken_at_source IS NOT NULL GROUP BY taken_at_source"
                ).fetchall()
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")
        destinations: dict[str, dict[str, int]] = {}
        totals = {state.value: 0 for state in JobState}
        for destination, state, count in rows:
            counts = destinations.setdefault(destination, {s.value: 0 for s in JobState})
            counts[state] = count
            totals[state] += count
        dupes = dict.fromkeys(destinations, 0)
        dupes.update({str(destination): int(count) for destination, count in duplicates})
        return Stats(
            destinations=destinations,
            totals=totals,
            last_upload=last_upload,
            last_error=last_error,
            duplicates=dupes,
            sources={str(source): int(count) for source, count in sources},
        )

    def set_health(self, destination: str, health: str, detail: str = "") -> None:
        """Record a destination's health (online, offline, ...) for other processes to read."""
        with self._write("record destination health") as conn:
            conn.execute(
                "INSERT INTO destinations (name, health, detail, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET"
                " health = excluded.health, detail = excluded.detail,"
                " updated_at = excluded.updated_at",
                (destination, health, _message(self._redact(detail)), self._clock()),
            )

    def health_records(self) -> dict[str, tuple[str, str, float]]:
        """The last recorded health of each destination with when it was recorded (wall
        clock): ``{name: (health, detail, updated_at)}``."""
        with self._read("read destination health") as conn:
            rows = conn.execute(
                "SELECT name, health, detail, updated_at FROM destinations"
            ).fetchall()
        return {str(n): (str(h), str(d), float(at)) for n, h, d, at in rows}

    def health(self) -> dict[str, tuple[str, str]]:
        """The last recorded health of each destination: ``{name: (health, detail)}``."""
        with self._read("read destination health") as conn:
            rows = conn.execute("SELECT name, health, detail FROM destinations").fetchall()
        return {str(name): (str(health), str(detail)) for name, health, detail in rows}

    def close(self) -> None:
        """Close the database (after putting every unsynced write on the disk); later calls
        do nothing."""
        if self._conn is not None and not self._readonly:
            try:
                self.sync()
            except OutboxError as exc:
                # Still closed: what did not reach the disk is what a power cut could undo.
                log.error("%s", exc)
        with self._lock:
            conn, self._conn = self._conn, None
        try:
            if conn is not None:
                conn.close()
        except sqlite3.Error as exc:
            raise OutboxError(f"queue database {self._path}: close failed: {exc}") from exc
        finally:
            # Only now: closing it drops the process's locks on the file (see _hold()).
            self._release_hold()

    # -- internals ------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: the sqlite3 module must not open transactions
        # behind our back; every write says BEGIN IMMEDIATE itself.
        try:
            if self._readonly:
                return _read_only(self._path)
            return sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise OutboxError(
                f"queue database {self._path}: cannot open: {_sqlite_cause(exc, self._path)}"
            ) from exc

    def _setup(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        # First, so every later statement waits for another process's lock
        # instead of failing at once with "database is locked".
        conn.execute("PRAGMA busy_timeout = 5000")
        if not self._readonly:
            # Room in the cache for the queue of a big event (the default, 2 MiB, holds a few
            # thousand pictures), filled by the check below: what the cache holds is what
            # heal() can still read of a file overwritten under the connection. Pages are
            # taken as they are read, so a small queue costs no more.
            conn.execute(f"PRAGMA cache_size = {-_WRITER_CACHE_KIB}")
        version = self._check_version(conn)
        self._check_integrity(conn, version)
        conn.execute("PRAGMA foreign_keys = ON")
        if self._readonly:
            conn.execute("PRAGMA query_only = ON")
            return
        # WAL lets `status` read while the daemon writes; the mode is stored in
        # the file, so a read-only opener inherits it.
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            log.warning(
                "queue database %s: journal mode is %s, not WAL (network drive?);"
                " status may wait for the daemon",
                self._path,
                mode,
            )
        # FULL: a job marked uploaded (or added) survives a power cut at the booth.
        conn.execute("PRAGMA synchronous = FULL")
        self._migrate(conn)
        self._pull_in(conn)
        self._scrub(conn)
        # Nothing records a SHA-256 any more: once none is there, none ever will be.
        self._has_sha256 = bool(
            conn.execute(
                "SELECT EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_content"
                " WHERE sha256 IS NOT NULL)"
            ).fetchone()[0]
        )

    def _pull_in(self, conn: sqlite3.Connection) -> None:
        """Make due the waiting jobs scheduled further ahead than boothsync ever waits: the
        wall clock was set back since they were scheduled, and they would wait that much too."""
        due = self.now()
        # One range of the jobs_due index, however large the queue.
        count = conn.execute(
            "UPDATE jobs SET next_attempt_at = ? WHERE state = ? AND next_attempt_at > ?",
            (due, JobState.WAITING, due + LONGEST_WAIT),
        ).rowcount
        if count:
            log.info(
                "%d waiting upload(s) were scheduled more than %.0f minutes ahead (the clock was"
                " set back); they go now",
                count,
                LONGEST_WAIT / 60,
            )

    def _scrub(self, conn: sqlite3.Connection) -> None:
        """Blank the secrets in messages stored before they were known to be secrets."""
        for secret in self._secrets:
            conn.execute(
                "UPDATE jobs SET last_error = replace(last_error, ?, ?)"
                " WHERE last_error IS NOT NULL AND instr(last_error, ?) > 0",
                (secret, _BLANKED, secret),
            )
            conn.execute(
                "UPDATE destinations SET detail = replace(detail, ?, ?) WHERE instr(detail, ?) > 0",
                (secret, _BLANKED, secret),
            )

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _BLANKED)
        return text

    def _check_integrity(self, conn: sqlite3.Connection, version: int) -> None:
        """Raise _DamagedDatabase unless the file is sound and holds our schema.

        quick_check, not integrity_check: it checks every page, record and
        freelist but skips matching each index against its table, which makes
        it O(N) instead of O(N log N). On 100,000 jobs it takes about 0.1 s
        here, integrity_check three times that, which on a Raspberry Pi's SD
        card would hold up every start and every `status` by seconds.
        """
        # A reader (`status`, a tray attached to a service) only reads what the owner, which
        # checked the whole file when it opened it, keeps writing; damage a reader meets is
        # still reported by SQLite on the page it reads. Checking every page for each
        # `status` would cost it 40 ms on 100,000 jobs.
        if not self._readonly:
            detail = _quick_check_detail(conn.execute("PRAGMA quick_check").fetchall())
            if detail is not None:
                raise _DamagedDatabase(self._path, detail)
        tables = {
            str(name)
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        if version == 0 and tables:
            # Migration 1 records version 1 in the transaction that creates the
            # tables, so tables at version 0 were written by something else.
            raise _DamagedDatabase(
                self._path, f"not a boothsync queue: tables {', '.join(sorted(tables))}"
            )
        missing = _TABLES - tables if version >= 1 else set()
        if missing:
            raise _DamagedDatabase(
                self._path,
                f"schema version {version} but no table {', '.join(sorted(missing))}",
            )

    def _check_version(self, conn: sqlite3.Connection) -> int:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version < 0:
            raise _DamagedDatabase(self._path, f"schema version {version}")
        if version > SCHEMA_VERSION:
            raise OutboxError(
                f"queue database {self._path} has schema version {version}, newer than"
                f" this boothsync knows ({SCHEMA_VERSION}); upgrade boothsync"
            )
        if self._readonly and version == 0 and not _has_tables(conn):
            # The file its owner is creating, before the transaction that creates the tables
            # commits: nothing is queued yet.
            raise QueueNotCreated(f"no queue database at {self._path} yet")
        if self._readonly and version < SCHEMA_VERSION:
            raise OutboxError(
                f"queue database {self._path} has schema version {version}, this boothsync"
                f" expects {SCHEMA_VERSION}; start boothsync once to upgrade it"
            )
        return int(version)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the schema up to date in one transaction, and say so in one line (none when
        it was up to date): a reader (``boothsync status``) never sees a schema halfway
        through, and an upgrade that fails leaves the queue as it was."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read inside the write lock: another process may have just migrated the file.
            version = self._check_version(conn)
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
                    conn.execute(statement)
            if version < SCHEMA_VERSION:
                # PRAGMA takes no bound parameters; the version is our own int.
                conn.execute(f"PRAGMA user_version = {int(SCHEMA_VERSION)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if version == 0:
            log.info("new queue database %s", self._path)
        elif version < SCHEMA_VERSION:
            log.info(
                "queue database %s upgraded from schema version %d to %d",
                self._path,
                version,
                SCHEMA_VERSION,
            )

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            if _is_damage(exc):
                message = " ".join(str(exc).split()) or type(exc).__name__
                if self._owner and self._damage is None:
                    self._damage = message  # for heal() to repair, within a second
                raise _DamagedDatabase(self._path, message, healing=self._owner) from exc
            cause = _sqlite_cause(exc, self._path)
            error = OutboxError(f"queue database {self._path}: {action} failed: {cause}")
            if self._owner and self.failure is None and _is_unwritable(exc):
                self.failure = error
            raise error from exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxError(f"queue database {self._path} is closed")
        return self._conn

    @contextmanager
    def _read(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock, self._translate(action):
            yield self._connection()

    @contextmanager
    def _write(self, action: str, *, synced: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction, on the disk when it returns.

        ``synced=False`` commits without syncing the WAL (``synchronous = NORMAL`` for this one
        transaction): only for a write that a power cut may undo without harm. It still reaches
        the disk with the next synced commit, which syncs the WAL up to its own end, so the
        writes stay in order and nothing written later is ever on the disk without it. Other
        processes see it at once either way.
        """
        if self._readonly:
            raise OutboxError(f"queue database {self._path} is open read-only: cannot {action}")
        with self._lock, self._translate(action):
            conn = self._connection()
            if not synced:
                conn.execute("PRAGMA synchronous = NORMAL")
            try:
                # IMMEDIATE takes the write lock up front, so the SELECT that picks
                # a job and the UPDATE that claims it cannot interleave with another
                # process doing the same.
                conn.execute("BEGIN IMMEDIATE")
                changes = conn.total_changes
                try:
                    yield conn
                    conn.execute("COMMIT")
                    # Nothing written (a claim that found no job) leaves no log entry:
                    # nothing to sync, and nothing synced either.
                    if conn.total_changes != changes:
                        if synced:
                            # Syncing the WAL to its end took every earlier commit along.
                            self._unsynced_since = None
                        elif self._unsynced_since is None:
                            self._unsynced_since = self._monotonic()
                except BaseException:
                    # SQLite may already have rolled back on its own (disk full, I/O error).
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            finally:
                if not synced:
                    conn.execute("PRAGMA synchronous = FULL")

    @staticmethod
    def _file_id(conn: sqlite3.Connection, path: Path, size: int, mtime_ns: int) -> int | None:
        row = conn.execute(
            "SELECT id FROM files WHERE path = ? AND size = ? AND mtime_ns = ?",
            (_stored(path), size, mtime_ns),
        ).fetchone()
        return None if row is None else int(row[0])

    @staticmethod
    def _job(conn: sqlite3.Connection, job_id: int) -> Job:
        row = conn.execute(_JOB_SELECT, (job_id,)).fetchone()
        return Job(
            id=row["id"],
            file_id=row["file_id"],
            path=Path(_loaded(row["path"])),
            size=row["size"],
            mtime_ns=row["mtime_ns"],
            watch=_loaded(row["watch"]),
            destination=row["destination"],
            album_id=row["album_id"],
            attempts=row["attempts"],
            state=JobState(row["state"]),
            last_error=row["last_error"],
            taken_at_ms=row["taken_at_ms"],
            taken_at_source=row["taken_at_source"],
        )

    @staticmethod
    def _event(row: sqlite3.Row | None) -> Event | None:
        if row is None:
            return None
        return Event(
            path=_loaded(row["path"]),
            destination=row["destination"],
            at=row["at"],
            error=row["error"],
            note=row["note"],
            taken_at_ms=row["taken_at_ms"],
            taken_at_source=row["taken_at_source"],
        )
