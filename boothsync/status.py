"""The status of a boothsync, read one way for every front end.

Owns what "the status" is (:class:`Status`: counts per state and destination, each
destination's health, the ``paused`` and ``missing_folders`` flags, the last upload and the
last error, the capture-time sources, the uploads of today), where it comes from (a live
:class:`~boothsync.engine.Engine`, or read-only from the queue database of one running in
another process) and its one JSON form, whose keys the README documents as a contract:
``boothsync status --json`` prints it, and the tray reads the same :class:`Status`.

``status --json`` must stay fast: this module imports neither the engine nor the uploader
(nor, through them, httpx or watchdog) at import time; what only the tray needs from them is
imported where it is used. Must not write to the database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boothsync.outbox import (
    MISSING_FOLDERS_FLAG,
    PAUSED_FLAG,
    Event,
    Outbox,
    QueueNotCreated,
    Stats,
)

if TYPE_CHECKING:
    from boothsync.config import Config
    from boothsync.daemon import InstanceState
    from boothsync.engine import Engine, Snapshot

__all__ = [
    "STATES",
    "Status",
    "attention",
    "empty_stats",
    "from_engine",
    "iso",
    "needs_attention",
    "read_database",
    "report",
    "to_json",
]

STATES = ("waiting", "uploading", "uploaded", "failed")


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
        )


def read_database(outbox: Outbox, *, count_today: bool = True) -> Status:
    """The status a queue database records (opened read-only by a reader in another process).

    ``count_today`` False leaves ``uploaded_today`` 0 and saves its query, for a reader that
    does not show it. Raises OutboxError when the database cannot be read.
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
            status = read_database(outbox, count_today=False)
        finally:
            outbox.close()
    return to_json(status, config, database, instance)


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
