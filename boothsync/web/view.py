"""What the dashboard shows, as plain data: the status and the pictures turned into words,
colours and numbers for the templates.

Pure functions of a :class:`~boothsync.status.Status` (and the pictures and the config): no
HTTP, no templates, so all of it is tested without a server. The state word and its colour
are the tray's (:func:`boothsync.tray.view.tray_state`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Final

from boothsync.status import STATES, Status

if TYPE_CHECKING:
    from boothsync.config import Config

__all__ = ["Overview", "duration", "overview", "size"]

STATE_WORDS: Final[Mapping[str, str]] = {
    "ok": "All uploaded",
    "uploading": "Uploading",
    "waiting": "Waiting",
    "attention": "Needs you",
}

HEALTH_WORDS: Final[Mapping[str, str]] = {
    "online": "online",
    "offline": "offline",
    "rate-limited": "slowed down by the gallery",
    "unauthorized": "key or link rejected",
    "unknown": "connecting",
}


@dataclass(frozen=True)
class DestinationView:
    name: str
    type: str
    health: str
    health_word: str
    detail: str
    counts: Mapping[str, int]
    duplicates: int
    per_minute: float | None
    bytes_per_second: float | None
    eta_seconds: float | None


@dataclass(frozen=True)
class Overview:
    state: str  # ok | uploading | waiting | attention (the tray's colours)
    word: str
    todo: tuple[str, ...]  # what the operator should do, when anything
    paused: bool
    totals: Mapping[str, int]
    destinations: tuple[DestinationView, ...]
    missing_folders: tuple[str, ...]
    uploaded_today: int
    live: int
    backlog: int
    keeping_awake: bool
    to_go: int  # pictures some destination does not have yet; 0: safe to pack up


def overview(
    current: Status,
    config: Config,
    rates: Mapping[str, tuple[float | None, float | None, float | None]] | None = None,
) -> Overview:
    """The top of the dashboard; ``rates`` per destination: (pictures per minute, bytes per
    second, seconds until its queue is empty)."""
    from boothsync.tray.view import tray_state

    state = tray_state(current.snapshot())
    stats = current.stats
    names = list(config.destinations) + sorted(set(stats.destinations) - set(config.destinations))
    destinations = []
    for name in names:
        counts = stats.destinations.get(name, {})
        health, detail = current.health.get(name, ("unknown", ""))
        cfg = config.destinations.get(name)
        per_minute, per_second, eta = (rates or {}).get(name, (None, None, None))
        destinations.append(
            DestinationView(
                name=name,
                type=cfg.type if cfg is not None else "unknown",
                health=health,
                health_word=HEALTH_WORDS.get(health, health),
                detail=detail,
                counts={s: counts.get(s, 0) for s in STATES},
                duplicates=stats.duplicates.get(name, 0),
                per_minute=per_minute,
                bytes_per_second=per_second,
                eta_seconds=eta,
            )
        )
    return Overview(
        state=state,
        word="Paused" if current.paused and state != "attention" else STATE_WORDS[state],
        todo=_todo(current, destinations),
        paused=current.paused,
        totals={s: stats.totals.get(s, 0) for s in STATES},
        destinations=tuple(destinations),
        missing_folders=current.missing_folders,
        uploaded_today=current.uploaded_today,
        live=current.live,
        backlog=max(0, stats.totals.get("waiting", 0) - current.live),
        keeping_awake=current.keeping_awake,
        to_go=current.to_go,
    )


def _todo(current: Status, destinations: Sequence[DestinationView]) -> tuple[str, ...]:
    todo = []
    failed = current.stats.totals.get("failed", 0)
    if failed:
        todo.append(
            f"{failed} upload(s) failed: see why under Failed, put it right, then press Retry."
        )
    for d in destinations:
        if d.health == "unauthorized":
            todo.append(
                f"{d.name} rejects the key or the event: check them in Setup (or at the "
                "gallery), then press Reload config."
            )
        elif d.health == "offline":
            todo.append(f"{d.name} cannot be reached: pictures wait and go once it is back.")
    todo.extend(
        f"The watch folder {path} is missing: plug its drive in or correct the path in Setup."
        for path in current.missing_folders
    )
    if current.paused:
        todo.append("Uploads are paused: press Resume to send the waiting pictures.")
    return tuple(todo)


def duration(seconds: float | None) -> str:
    """ "40 ms", "4 s", "3 min", "1 h 05 min"; "" for None."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{max(seconds, 0) * 1000:.0f} ms"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def size(count: float | None) -> str:
    if count is None:
        return ""
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return ""  # pragma: no cover - the loop returns


def taken(ms: int | None, tz: tzinfo) -> str:
    """A capture time (Unix milliseconds) in the booth's time zone."""
    if ms is None:
        return "at an unknown time"
    when = datetime.fromtimestamp(ms / 1000, tz)
    return when.strftime("%H:%M:%S" if when.date() == datetime.now(tz).date() else "%d %b %H:%M")
