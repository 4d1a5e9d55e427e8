"""What the tray shows, as data: a :class:`~boothsync.engine.Snapshot` turned into a state
colour, an icon image, a tooltip, a menu (plain :class:`MenuEntry` lines, made into pystray
items only by :mod:`boothsync.tray.icon`) and the notifications worth showing.

Pure functions of a snapshot (and a clock, for the notifier): no display, no pystray, no
threads, so all of it is tested without a display.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final, Literal

from PIL import Image, ImageDraw

from boothsync.engine import Snapshot
from boothsync.health import Health
from boothsync.outbox import Stats
from boothsync.status import attention
from boothsync.tray.texts import TEXTS

__all__ = [
    "COLOURS",
    "MAX_TOOLTIP",
    "SEPARATOR",
    "MenuEntry",
    "Notifier",
    "State",
    "icon_image",
    "menu_model",
    "square_icon",
    "tooltip",
    "tray_state",
]

State = Literal["ok", "uploading", "waiting", "attention"]

COLOURS: Final[Mapping[str, tuple[int, int, int]]] = {
    "ok": (46, 160, 67),  # green
    "uploading": (31, 111, 235),  # blue
    "waiting": (230, 126, 0),  # orange
    "attention": (210, 40, 40),  # red
}

ICON_SIZE: Final = 64
# Windows cuts a tray tooltip after 127 characters (NOTIFYICONDATA.szTip is 128 wide).
MAX_TOOLTIP: Final = 127
OFFLINE_NOTICE_SECONDS: Final = 300.0


def _healths(snapshot: Snapshot) -> set[Health]:
    return {h.health for h in snapshot.health.values()}


def tray_state(snapshot: Snapshot) -> State:
    """Red when someone must act, orange when pictures wait, blue while uploading, else green."""
    totals = snapshot.stats.totals
    healths = _healths(snapshot)
    if attention(totals.get("failed", 0), healths, bool(snapshot.missing_folders)):
        return "attention"
    if Health.OFFLINE in healths or Health.RATE_LIMITED in healths or snapshot.paused:
        return "waiting"
    if totals.get("waiting", 0) or totals.get("uploading", 0):
        return "uploading"
    return "ok"


def icon_image(state: State) -> Image.Image:
    """A filled circle in the state's colour with a white glyph: ✓, ↑, ‖ or !."""
    size = ICON_SIZE
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((2, 2, size - 3, size - 3), fill=(*COLOURS[state], 255))
    white = (255, 255, 255, 255)
    # Glyphs stay off the centre pixel so the colour can be read (and tested) there.
    if state == "ok":
        draw.line([(17, 33), (27, 44), (47, 21)], fill=white, width=7, joint="curve")
    elif state == "uploading":
        draw.polygon([(32, 10), (48, 28), (16, 28)], fill=white)
        draw.rectangle((27, 28, 37, 52), fill=white)
        draw.rectangle((30, 30, 34, 34), fill=(*COLOURS[state], 255))
    elif state == "waiting":
        draw.rectangle((19, 16, 27, 48), fill=white)
        draw.rectangle((37, 16, 45, 48), fill=white)
    else:
        draw.rectangle((28, 10, 36, 28), fill=white)
        draw.rectangle((28, 40, 36, 49), fill=white)
    return image


def square_icon(image: Image.Image, width: int, height: int) -> Image.Image:
    """``image`` drawn square, as large as fits and centred, in a ``width`` x ``height`` slot.

    A bare X11 tray hands out slots that are not square (24 x 30 in a 32-pixel panel), and
    stretching the icon to the slot would draw its circle as an oval. The slot's own pixels
    have no transparency, so the rest is black, as the corners of the icon always were there.
    """
    side = max(1, min(width, height))
    slot = Image.new("RGB", (max(1, width), max(1, height)), (0, 0, 0))
    scaled = image.convert("RGBA").resize((side, side), Image.Resampling.LANCZOS)
    slot.paste(scaled, ((slot.width - side) // 2, (slot.height - side) // 2), scaled)
    return slot


def _waiting(stats: Stats) -> int:
    return stats.totals.get("waiting", 0) + stats.totals.get("uploading", 0)


def _connection(snapshot: Snapshot) -> Health:
    """The worst health of any destination, the one the operator must hear about."""
    healths = _healths(snapshot)
    for health in (Health.UNAUTHORIZED, Health.OFFLINE, Health.RATE_LIMITED, Health.ONLINE):
        if health in healths:
            return health
    return Health.UNKNOWN


def tooltip(snapshot: Snapshot, lang: str = "en") -> str:
    """ "boothsync: 3 waiting, 120 uploaded, online", at most 127 characters."""
    t = TEXTS[lang]
    stats = snapshot.stats
    parts = [
        t["waiting_n"].format(n=_waiting(stats)),
        t["uploaded_n"].format(n=stats.totals.get("uploaded", 0)),
    ]
    if stats.totals.get("failed", 0):
        parts.append(t["failed_n"].format(n=stats.totals["failed"]))
    parts.append(t[_connection(snapshot).value])
    if snapshot.paused:
        parts.append(t["paused"])
    if snapshot.missing_folders:
        parts.append(t["folder_missing"])
    text = "boothsync: " + ", ".join(parts)
    return text if len(text) <= MAX_TOOLTIP else text[: MAX_TOOLTIP - 1] + "…"


@dataclass(frozen=True)
class MenuEntry:
    """One menu line as plain data; ``action`` None is a status line, "-" a separator."""

    label: str
    action: str | None = None
    enabled: bool = True
    checked: bool | None = None  # None: not a check item
    radio: bool = False
    default: bool = False  # what a click on the icon does (all xorg offers)

    @property
    def separator(self) -> bool:
        return self.action == "-"


SEPARATOR: Final = MenuEntry("-", "-", enabled=False)


def menu_model(
    snapshot: Snapshot,
    lang: str = "en",
    *,
    autostart: bool | None = False,
    has_config: bool = True,
    dashboard: bool = True,
    clock_format: Callable[[float], str] | None = None,
) -> list[MenuEntry]:
    """The menu for this snapshot. ``autostart`` None: start at login is not offered here."""
    t = TEXTS[lang]
    stats = snapshot.stats
    show_time = clock_format or (lambda at: datetime.fromtimestamp(at).strftime("%H:%M"))
    lines = [
        t["uploaded_line"].format(n=snapshot.uploaded_today),
        t["waiting_split"].format(
            n=_waiting(stats),
            live=snapshot.live,
            backlog=max(0, stats.totals.get("waiting", 0) - snapshot.live),
        )
        if snapshot.live
        else t["waiting_line"].format(n=_waiting(stats)),
        t["failed_line"].format(n=stats.totals.get("failed", 0)),
        (t["to_go_one"] if snapshot.to_go == 1 else t["to_go_line"].format(n=snapshot.to_go))
        if snapshot.to_go
        else t["safe_line"],
    ]
    last = stats.last_upload
    if last is None:
        lines.append(t["last_upload_none"])
    else:
        lines.append(t["last_upload"].format(file=Path(last.path).name, time=show_time(last.at)))
    for name, health in sorted(snapshot.health.items()):
        lines.append(t["destination"].format(name=name, health=t[health.health.value]))
    lines.extend(t["missing_line"].format(path=path) for path in snapshot.missing_folders)
    entries = [MenuEntry(t["open_dashboard"], "open_dashboard", enabled=dashboard), SEPARATOR]
    entries += [MenuEntry(line, None, enabled=False) for line in lines]
    entries += [
        SEPARATOR,
        MenuEntry(t["resume"], "resume") if snapshot.paused else MenuEntry(t["pause"], "pause"),
        MenuEntry(t["retry"], "retry", enabled=bool(stats.totals.get("failed", 0))),
        MenuEntry(t["forget"], "forget", enabled=bool(stats.totals.get("failed", 0))),
        SEPARATOR,
        MenuEntry(t["open_folder"], "open_folder", default=True),
        MenuEntry(t["open_log"], "open_log"),
        MenuEntry(t["open_config"], "open_config", enabled=has_config),
        MenuEntry(t["reload"], "reload", enabled=has_config),
        SEPARATOR,
        MenuEntry(
            t["autostart"],
            "autostart",
            enabled=autostart is not None,
            checked=bool(autostart),
        ),
        SEPARATOR,
        MenuEntry(t["quit"], "quit"),
    ]
    return entries


# -- notifications -------------------------------------------------------------------------------


@dataclass
class _Watch:
    health: Health = Health.UNKNOWN
    offline_since: float | None = None
    told: bool = False  # the operator heard of a problem, so will hear of the recovery


class Notifier:
    """Turns successive snapshots into the few messages worth a notification.

    A destination that rejects the key is told at once; one that is offline,
    once per outage after ``offline_after`` seconds; a recovery only after one
    of those was told.
    """

    def __init__(
        self,
        lang: str = "en",
        *,
        clock: Callable[[], float] = time.monotonic,
        offline_after: float = OFFLINE_NOTICE_SECONDS,
    ) -> None:
        self._texts = TEXTS[lang]
        self._clock = clock
        self._offline_after = offline_after
        self._watches: dict[str, _Watch] = {}

    def feed(self, snapshot: Snapshot) -> list[str]:
        now = self._clock()
        t = self._texts
        messages: list[str] = []
        for name, current in sorted(snapshot.health.items()):
            watch = self._watches.setdefault(name, _Watch())
            health = current.health
            if health == Health.UNAUTHORIZED and watch.health != Health.UNAUTHORIZED:
                messages.append(t["note_unauthorized"].format(name=name))
                watch.told = True
            if health == Health.OFFLINE:
                if watch.offline_since is None:
                    watch.offline_since = now
                elif not watch.told and now - watch.offline_since >= self._offline_after:
                    minutes = round((now - watch.offline_since) / 60)
                    messages.append(t["note_offline"].format(name=name, minutes=minutes))
                    watch.told = True
            elif health != Health.UNKNOWN:
                watch.offline_since = None
            if health == Health.ONLINE and watch.told:
                messages.append(t["note_recovered"].format(name=name))
                watch.told = False
            watch.health = health
        return messages
