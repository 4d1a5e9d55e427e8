"""The status of a boothsync, read one way for every front end.

Owns what "the status" is (:class:`Status`: counts per state and destination, each
destination's health, the ``paused`` and ``missing_folders`` flags, the last upload and the
last error, the capture-time sources, the uploads of today), where it comes from (a live
:class:`~boothsync.engine.Engine`, or read-only from the queue database of one running in
another process) and its one JSON form, whose keys the README documents as a contract:
``boothsync status --json`` prints it, and the tray reads the same :class:`Status`.

Also owns what a dashboard shows of the pictures (:func:`pictures`: the recent uploads, the
jobs waiting and failed, and each destination's pace over the last :data:`RATE_WINDOW`
seconds) and how a stored error reads to a booth operator (:func:`plain_reason`).

``status --json`` must stay fast: this module imports neither the engine nor the uploader
(nor, through them, httpx or watchdog) at import time; what only the tray needs from them is
imported where it is used. Must not write to the database.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boothsync.outbox import (
    AWAKE_FLAG,
    MISSING_FOLDERS_FLAG,
    PAUSED_FLAG,
    Event,
    FailedJob,
    JobState,
    Outbox,
    QueueNotCreated,
    RecentUpload,
    Stats,
    WaitingJob,
)

if TYPE_CHECKING:
    from boothsync.config import Config
    from boothsync.daemon import InstanceState
    from boothsync.engine import Engine, Snapshot

__all__ = [
    "RATE_WINDOW",
    "STATES",
    "FailedPicture",
    "Pictures",
    "Rate",
    "Status",
    "WaitingPicture",
    "attention",
    "empty_stats",
    "from_engine",
    "iso",
    "needs_attention",
    "pictures",
    "plain_reason",
    "read_database",
    "report",
    "to_json",
]

STATES = ("waiting", "uploading", "uploaded", "failed")

#: The span (seconds) over which :func:`pictures` measures each destination's pace.
RATE_WINDOW = 300.0


def empty_stats() -> Stats:
    return Stats(destinations={}, totals={}, last_upload=None, last_error=None)


@dataclass(frozen=True)
class Status:
    """What a boothsync is doing, as plain data.

    ``health`` is each destination's health as recorded (``(health, detail)``, the health a
    :class:`~boothsync.health.Health` value or, from an odd database, any string), and
    ``health_times`` when it was recorded (Unix time).
    """

    stats: Stats = field(default_factory=empty_stats)
    health: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    health_times: Mapping[str, float] = field(default_factory=dict)
    paused: bool = False
    missing_folders: tuple[str, ...] = ()
    uploaded_today: int = 0
    live: int = 0  # waiting jobs queued in the live window, never tried (order = "live")
    keeping_awake: bool = False  # the running boothsync keeps the computer from sleeping
    to_go: int = 0  # pictures some destination does not have yet (Outbox.to_go)

    def snapshot(self) -> Snapshot:
        """The tray's view of this status: an unknown health reads as unknown."""
        from boothsync.engine import Snapshot
        from boothsync.health import DestinationHealth, Health

        healths: dict[str, DestinationHealth] = {}
        for name, (state, detail) in self.health.items():
            try:
                value = Health(state)
            except ValueError:
                value = Health.UNKNOWN
            healths[name] = DestinationHealth(value, detail)
        return Snapshot(
            stats=self.stats,
            health=healths,
            paused=self.paused,
            missing_folders=self.missing_folders,
            uploaded_today=self.uploaded_today,
            live=self.live,
            to_go=self.to_go,
        )


def read_database(
    outbox: Outbox, *, count_today: bool = True, live_window: float | None = None
) -> Status:
    """The status a queue database records (opened read-only by a reader in another process).

    ``count_today`` False leaves ``uploaded_today`` 0 and saves its query, for a reader that
    does not show it; ``live_window`` None counts no picture as live. Raises OutboxError
    when the database cannot be read.
    """
    stats = outbox.stats()
    records = outbox.health_records()
    flags = outbox.flags()
    return Status(
        stats=stats,
        health={name: (health, detail) for name, (health, detail, _) in records.items()},
        health_times={name: at for name, (_, _, at) in records.items()},
        paused=flags.get(PAUSED_FLAG) == "1",
        missing_folders=tuple(_json_list(flags.get(MISSING_FOLDERS_FLAG))),
        uploaded_today=_uploaded_today(outbox) if count_today else 0,
        live=outbox.live_count(live_window) if live_window is not None else 0,
        keeping_awake=flags.get(AWAKE_FLAG) == "1",
        to_go=outbox.to_go(),
    )


def _uploaded_today(outbox: Outbox) -> int:
    from boothsync.engine import local_midnight

    return outbox.uploaded_since(local_midnight())


def from_engine(engine: Engine) -> Status:
    """The status of an engine running in this process."""
    snapshot = engine.snapshot()
    return Status(
        stats=snapshot.stats,
        health={name: (h.health.value, h.detail) for name, h in snapshot.health.items()},
        health_times={name: at for name, (_, _, at) in engine.outbox.health_records().items()},
        paused=snapshot.paused,
        missing_folders=snapshot.missing_folders,
        uploaded_today=snapshot.uploaded_today,
        live=snapshot.live,
        keeping_awake=engine.keeping_awake,
        to_go=snapshot.to_go,
    )


def report(config: Config, database: Path, instance: InstanceState) -> dict[str, Any]:
    """The JSON form of the status of the queue at ``database``, read-only: what
    ``boothsync status --json`` prints. Raises OutboxError when the queue cannot be read."""
    status: Status | None = None
    try:
        outbox = Outbox(database, readonly=True)
    except QueueNotCreated:
        pass  # nothing queued yet (or its owner is creating it this moment)
    else:
        try:
            status = read_database(outbox, count_today=False, live_window=config.upload.live)
        finally:
            outbox.close()
    return to_json(status, config, database, instance)


@dataclass(frozen=True)
class WaitingPicture:
    """A job not done yet: ``due_in`` is how many seconds until it is tried (0 when it is due
    or uploading), ``reason`` its last error in plain words (None when it has none)."""

    job: WaitingJob
    due_in: float
    reason: str | None


@dataclass(frozen=True)
class FailedPicture:
    """A job that failed for good, with its stored error in plain words."""

    job: FailedJob
    reason: str


@dataclass(frozen=True)
class Rate:
    """One destination's pace over the last :data:`RATE_WINDOW` seconds.

    ``pending`` counts its jobs waiting or uploading, ``uploads`` those that became uploaded in
    the window (with ``per_minute`` and ``bytes_per_second``, their files' sizes, over the whole
    window). ``eta_seconds`` is how long the pending ones take at that pace: None when nothing
    was uploaded in the window (no pace to go by), 0 when nothing is pending.
    """

    pending: int
    uploads: int
    per_minute: float
    bytes_per_second: float
    eta_seconds: float | None


@dataclass(frozen=True)
class Pictures:
    """What a dashboard shows of the pictures, read at ``at`` (wall clock): the latest uploads
    (newest first, one per picture), the jobs not done yet (in flight first, then in the order
    they go), the failed ones (latest first) and each destination's :class:`Rate`."""

    at: float
    recent: tuple[RecentUpload, ...]
    waiting: tuple[WaitingPicture, ...]
    failed: tuple[FailedPicture, ...]
    rates: Mapping[str, Rate]


def pictures(outbox: Outbox, *, now: float | None = None, recent: int = 24) -> Pictures:
    """The pictures of the queue ``outbox`` holds (read-only is enough) as a dashboard shows
    them; ``now`` is the wall-clock time to measure the rates back from (default: now),
    ``recent`` how many recent uploads to list. The lists of waiting and failed jobs are as long
    as :meth:`~boothsync.outbox.Outbox.waiting_jobs` and
    :meth:`~boothsync.outbox.Outbox.failed_jobs` give by default (100, 200); each rate counts
    all of its destination's jobs. Raises OutboxError when the queue cannot be read."""
    at = time.time() if now is None else now
    scheduled = outbox.now()
    waiting = tuple(
        WaitingPicture(
            job=job,
            due_in=(
                0.0
                if job.state is JobState.UPLOADING
                else max(0.0, job.next_attempt_at - scheduled)
            ),
            reason=None if job.last_error is None else plain_reason(job.last_error),
        )
        for job in outbox.waiting_jobs()
    )
    failed = tuple(
        FailedPicture(job=job, reason=plain_reason(job.last_error)) for job in outbox.failed_jobs()
    )
    return Pictures(
        at=at,
        recent=tuple(outbox.recent_uploads(recent)),
        waiting=waiting,
        failed=failed,
        rates=_rates(outbox, at),
    )


def _rates(outbox: Outbox, now: float) -> dict[str, Rate]:
    """Each destination's :class:`Rate` (every destination with a job, or an upload in the
    window), by name."""
    done = outbox.throughput(now - RATE_WINDOW)
    counts = outbox.stats().destinations
    rates: dict[str, Rate] = {}
    for name in sorted(counts.keys() | done.keys()):
        states = counts.get(name, {})
        pending = states.get(JobState.WAITING, 0) + states.get(JobState.UPLOADING, 0)
        uploads = done[name].uploads if name in done else 0
        size = done[name].bytes if name in done else 0
        eta = None if uploads == 0 else pending * RATE_WINDOW / uploads
        rates[name] = Rate(
            pending=pending,
            uploads=uploads,
            per_minute=uploads * 60.0 / RATE_WINDOW,
            bytes_per_second=size / RATE_WINDOW,
            eta_seconds=eta,
        )
    return rates


# How the errors the uploader and the destinations store (Outbox.fail(), retry_later()) read to
# a booth operator, first match wins; each pattern follows the message it words (the module
# named beside it), and one that matches none is shown as stored.
_REASONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.DOTALL), words)
    for pattern, words in (
        # uploader.py, capture.py: a file gone is dropped from the queue, so this is rare.
        (
            r"missing: .* vanished|.*: vanished before upload",
            "The picture was deleted from the booth folder before it was uploaded.",
        ),
        # uploader.py, capture.py, destinations/base.py: permissions, a lock, a failing drive.
        (
            r".*: cannot be read: (?P<why>.*)",
            "boothsync cannot read the picture ({why}): check its permissions, and whether the"
            " booth software still has it open.",
        ),
        # destinations/base.py, destinations/folder.py.
        (
            r".*: (shrank while it was being uploaded|only \d+ of \d+ bytes could be read)",
            "The picture got shorter while it was being uploaded: it was still being written,"
            " or its drive has trouble.",
        ),
        # uploader.py (_CHANGED_ERROR).
        (
            r"changed while it was being uploaded.*",
            "The picture changed while it was being uploaded; it is sent again.",
        ),
        # engine.py (_refused_source).
        (
            r".* leads to (?P<target>.*), outside the watched folders: not uploaded.*",
            "The picture is a link to {target}, outside the watched folders, so it is not"
            " uploaded (allow_outside_links = true in its [[watch]] allows it).",
        ),
        # destinations/picpeak.py: refused before sending.
        (
            r".* \((?P<mb>[\d.]+) MB\) is larger than (?P<who>.+)'s (?P<limit>\d+) MB limit",
            "The picture ({mb} MB) is too large: {who} takes at most {limit} MB.",
        ),
        (
            r".* is (?P<type>\S+): (?P<who>.+)'s API takes only images",
            "{who} takes only pictures, and this file is {type}.",
        ),
        # destinations/picpeak.py, destinations/picsui.py: 413.
        (
            r"(?P<who>.+?) refused the file as too large \(413\) \((?P<said>.*)\)",
            "{who} refused the picture as too large: {said}",
        ),
        (
            r"(?P<who>.+?) refused the file as too large \(413\).*",
            "{who} refused the picture as too large.",
        ),
        # destinations/picsui.py: any other 4xx.
        (
            r"(?P<who>.+?) refused the file \((?P<status>\d{3})\): (?P<said>.*)",
            "{who} refused the picture: {said}",
        ),
        (
            r"(?P<who>.+?) refused the file \((?P<status>\d{3})\)",
            "{who} refused the picture ({status}).",
        ),
        # destinations/http.py (raise_for): a 4xx but 408 and 429 (busy) refuses the picture.
        (
            r"(?P<who>.+?) answered (?!408|429)(?P<status>4\d\d): (?P<said>.*)",
            "{who} refused the picture: {said}",
        ),
        (
            r"(?P<who>.+?) answered (?!408|429)(?P<status>4\d\d)",
            "{who} refused the picture ({status}).",
        ),
        (
            r"(?P<who>.+?) answered (?P<status>5\d\d|408|429)(: .*)?",
            "{who} is busy or has trouble ({status}); boothsync tries again.",
        ),
        # destinations/http.py (_network_error).
        (
            r"cannot reach (?P<who>.+?): (?P<why>.*)",
            "No connection to {who} ({why}); boothsync tries again.",
        ),
        (
            r"(?P<who>.+?) did not (answer in time|complete the request within) .*",
            "{who} did not answer in time; boothsync tries again.",
        ),
        # destinations/folder.py.
        (
            r"(?P<folder>.+) is full \(.*\): make room on it",
            "The folder {folder} is full: make room on it.",
        ),
        (
            r"(?P<folder>.+) already holds (?P<n>\d+) files named like (?P<name>.+)",
            "The folder {folder} already holds {n} files named like {name}: move some away.",
        ),
        (
            r"cannot make the album folder (?P<folder>.+): a file of that name is in the way",
            "A file is in the way of the album folder {folder}: move it away.",
        ),
        (
            r"cannot write into (?P<folder>.+?): (?P<why>.*)",
            "boothsync cannot write into the folder {folder} ({why}).",
        ),
    )
)


def plain_reason(error: str | None) -> str:
    """A job's stored error in words for a booth operator, where it is of a known kind; any
    other error as it is stored."""
    if error is None:
        return "No reason was recorded."
    for pattern, words in _REASONS:
        match = pattern.fullmatch(error)
        if match is not None:
            return words.format(**match.groupdict())
    return error


def to_json(
    status: Status | None, config: Config, database: Path, instance: InstanceState
) -> dict[str, Any]:
    """Whether boothsync runs, counts per state and destination, health, last upload and
    last error, as the README documents them; ``status`` None: nothing was queued yet."""
    zero = dict.fromkeys(STATES, 0)
    destinations: dict[str, dict[str, Any]] = {
        name: {"type": cfg.type, **zero, "duplicates": 0, "health": "unknown", "detail": ""}
        for name, cfg in config.destinations.items()
    }
    result: dict[str, Any] = {
        **_instance_json(instance),
        "database": str(database),
        "queue_exists": status is not None,
        "totals": dict(zero),
        "destinations": destinations,
        "last_upload": None,
        "last_error": None,
        "sources": {},
        "paused": False,
        "missing_folders": [],
        "live": 0,
        "backlog": 0,
        "keeping_awake": False,
        "to_go": 0,
        "safe_to_pack_up": True,
    }
    if status is None:
        return result
    stats = status.stats
    result["paused"] = status.paused
    result["missing_folders"] = list(status.missing_folders)
    for name, counts in stats.destinations.items():
        entry = destinations.setdefault(
            name, {"type": "unknown", **zero, "duplicates": 0, "health": "unknown", "detail": ""}
        )
        entry.update({state: counts.get(state, 0) for state in STATES})
        entry["duplicates"] = stats.duplicates.get(name, 0)
    for name, (state, detail) in status.health.items():
        if name in destinations:
            destinations[name]["health"] = state
            destinations[name]["detail"] = detail
    result["totals"] = {state: stats.totals.get(state, 0) for state in STATES}
    result["live"] = status.live
    # Only a running boothsync holds it (a stale flag of one that was killed says nothing).
    result["keeping_awake"] = status.keeping_awake and bool(result["running"])
    result["backlog"] = max(0, result["totals"]["waiting"] - status.live)
    result["to_go"] = status.to_go
    result["safe_to_pack_up"] = status.to_go == 0
    result["last_upload"] = _event_json(stats.last_upload)
    result["last_error"] = _event_json(stats.last_error)
    rejected = _rejection(status.health, status.health_times, after=stats.last_error)
    if rejected is not None:
        result["last_error"] = rejected
    result["sources"] = dict(sorted(stats.sources.items()))
    return result


def attention(failed: int, healths: Iterable[str], missing_folders: bool) -> bool:
    """Whether someone must act (the tray red, `status` exit 3): pictures failed, a
    destination rejects boothsync, or a watch folder is missing."""
    return bool(failed or "unauthorized" in set(healths) or missing_folders)


def needs_attention(status_json: Mapping[str, Any]) -> bool:
    """What makes `status` exit 3: :func:`attention` of the report, a missing watch folder
    counting only while boothsync runs (it is what a running one found)."""
    return attention(
        status_json["totals"]["failed"],
        (d["health"] for d in status_json["destinations"].values()),
        bool(status_json["running"] and status_json["missing_folders"]),
    )


def iso(timestamp: float) -> str:
    """A Unix time as local ISO 8601 with its offset, to the second."""
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _instance_json(instance: InstanceState) -> dict[str, Any]:
    return {
        "running": instance.running,
        "pid": instance.pid if instance.running else None,
        "since": iso(instance.since) if instance.since is not None else None,
    }


def _rejection(
    health: Mapping[str, tuple[str, str]], times: Mapping[str, float], *, after: Event | None
) -> dict[str, Any] | None:
    """The latest error when it is a destination rejecting boothsync (a wrong key or link),
    which no picture records: none fails for it, they all wait."""
    rejected = [
        (times.get(name, 0.0), name, detail)
        for name, (state, detail) in health.items()
        if state == "unauthorized"
    ]
    if not rejected:
        return None
    at, name, detail = max(rejected)
    if after is not None and after.at > at:
        return None
    return {
        "file": None,
        "path": None,
        "destination": name,
        "at": iso(at),
        "error": detail,
        "note": None,
        "taken_at": None,
        "taken_at_source": None,
    }


def _json_list(text: str | None) -> list[str]:
    """A flag holding a JSON list of strings; anything else reads as empty."""
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return [str(item) for item in value] if isinstance(value, list) else []


def _event_json(event: Event | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {
        "file": Path(event.path).name,
        "path": event.path,
        "destination": event.destination,
        "at": iso(event.at),
        "error": event.error,
        "note": event.note,
        "taken_at": iso(event.taken_at_ms / 1000) if event.taken_at_ms is not None else None,
        "taken_at_source": event.taken_at_source,
    }
