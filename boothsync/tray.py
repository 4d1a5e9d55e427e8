"""The tray icon behind ``boothsync tray``: the operator's glance at the booth.

Owns turning a :class:`~boothsync.engine.Snapshot` into a state colour, an icon
image, a tooltip, a menu (as plain data first, then pystray items), the
notifications, the menu actions (pause, resume, retry, forget, open a folder, reload the
config, start at login, quit) and the run loop. Everything but :func:`run_tray` works without a
display, so it is tested without one.

``icon.run(setup=...)`` owns the main thread (some platforms only deliver tray
events there); the engine, the refresher and the stop watcher run from the
setup callback. pystray is imported only inside :func:`run_tray`, so importing
this module needs no display. Must not be imported by the headless daemon.

Two ways to run: in-process (the tray runs its own :class:`~boothsync.daemon.Service`,
which rereads a changed config as ``boothsync run`` does), or attached (``--attach``, or
on its own when a service already holds the state folder) to a boothsync running as a
service, reading its queue database read-only and sending menu commands through it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import locale
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from PIL import Image, ImageDraw

from boothsync.config import Config
from boothsync.daemon import GRACE_SECONDS, Service, instance_lock, log_to_file, stop_signals
from boothsync.engine import Engine, Snapshot, local_midnight
from boothsync.errors import AlreadyRunning, BoothsyncError, OutboxError
from boothsync.health import DestinationHealth, Health
from boothsync.outbox import Outbox, Stats
from boothsync.paths import log_file, outbox_path, state_dir

if TYPE_CHECKING:
    import pystray

__all__ = [
    "AttachedController",
    "Controller",
    "EngineController",
    "MenuEntry",
    "Notifier",
    "TrayActions",
    "XdgAutostart",
    "icon_image",
    "language",
    "menu_model",
    "open_path",
    "run_tray",
    "tooltip",
    "tray_state",
]

log = logging.getLogger(__name__)

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
REFRESH_SECONDS: Final = 1.0
OFFLINE_NOTICE_SECONDS: Final = 300.0

# -- texts ---------------------------------------------------------------------------------------

TEXTS: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {
        "waiting_n": "{n} waiting",
        "uploaded_n": "{n} uploaded",
        "failed_n": "{n} failed",
        "paused": "paused",
        "folder_missing": "folder missing",
        "uploaded_line": "Uploaded today: {n}",
        "waiting_line": "Waiting: {n}",
        "failed_line": "Failed: {n}",
        "last_upload": "Last upload: {file} at {time}",
        "last_upload_none": "Last upload: none yet",
        "destination": "{name}: {health}",
        "missing_line": "Folder missing: {path}",
        "pause": "Pause uploads",
        "resume": "Resume uploads",
        "retry": "Retry failed",
        "forget": "Forget failed",
        "open_folder": "Open watched folder",
        "open_log": "Open log",
        "open_config": "Open config",
        "reload": "Reload config",
        "autostart": "Start at login",
        "quit": "Quit",
        "online": "online",
        "offline": "offline",
        "rate-limited": "rate-limited",
        "unauthorized": "key rejected",
        "unknown": "connecting",
        "note_unauthorized": "{name} rejected the API key: nothing is uploaded there.",
        "note_offline": "{name} has been offline for {minutes} minutes; pictures wait.",
        "note_recovered": "{name} is back: uploads go on.",
    },
    "de": {
        "waiting_n": "{n} wartend",
        "uploaded_n": "{n} hochgeladen",
        "failed_n": "{n} fehlgeschlagen",
        "paused": "angehalten",
        "folder_missing": "Ordner fehlt",
        "uploaded_line": "Heute hochgeladen: {n}",
        "waiting_line": "Wartend: {n}",
        "failed_line": "Fehlgeschlagen: {n}",
        "last_upload": "Letzter Upload: {file} um {time}",
        "last_upload_none": "Letzter Upload: noch keiner",
        "destination": "{name}: {health}",
        "missing_line": "Ordner fehlt: {path}",
        "pause": "Uploads anhalten",
        "resume": "Uploads fortsetzen",
        "retry": "Fehlgeschlagene erneut senden",
        "forget": "Fehlgeschlagene verwerfen",
        "open_folder": "Überwachten Ordner öffnen",
        "open_log": "Protokoll öffnen",
        "open_config": "Konfiguration öffnen",
        "reload": "Konfiguration neu laden",
        "autostart": "Bei Anmeldung starten",
        "quit": "Beenden",
        "online": "online",
        "offline": "offline",
        "rate-limited": "gedrosselt",
        "unauthorized": "Schlüssel abgelehnt",
        "unknown": "verbinde",
        "note_unauthorized": "{name} hat den API-Schlüssel abgelehnt: dorthin wird nichts "
        "hochgeladen.",
        "note_offline": "{name} ist seit {minutes} Minuten offline; die Bilder warten.",
        "note_recovered": "{name} ist wieder erreichbar: die Uploads gehen weiter.",
    },
}


def language(setting: str, environ: Mapping[str, str] | None = None) -> str:
    """``[booth] language`` resolved: "en" or "de"; "auto" asks the system locale."""
    if setting in TEXTS:
        return setting
    env = os.environ if environ is None else environ
    candidates = [env.get("LC_ALL", ""), env.get("LC_MESSAGES", ""), env.get("LANG", "")]
    if environ is None:
        with contextlib.suppress(ValueError):
            candidates.append(locale.getlocale()[0] or "")
    for name in candidates:
        if name and name not in ("C", "POSIX"):
            return "de" if name.lower().startswith("de") else "en"
    return "en"


# -- state, icon, tooltip, menu ------------------------------------------------------------------


def _healths(snapshot: Snapshot) -> set[Health]:
    return {h.health for h in snapshot.health.values()}


def tray_state(snapshot: Snapshot) -> State:
    """Red when someone must act, orange when pictures wait, blue while uploading, else green."""
    totals = snapshot.stats.totals
    healths = _healths(snapshot)
    if Health.UNAUTHORIZED in healths or totals.get("failed", 0) or snapshot.missing_folders:
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
    clock_format: Callable[[float], str] | None = None,
) -> list[MenuEntry]:
    """The menu for this snapshot. ``autostart`` None: start at login is not offered here."""
    t = TEXTS[lang]
    stats = snapshot.stats
    show_time = clock_format or (lambda at: datetime.fromtimestamp(at).strftime("%H:%M"))
    lines = [
        t["uploaded_line"].format(n=snapshot.uploaded_today),
        t["waiting_line"].format(n=_waiting(stats)),
        t["failed_line"].format(n=stats.totals.get("failed", 0)),
    ]
    last = stats.last_upload
    if last is None:
        lines.append(t["last_upload_none"])
    else:
        lines.append(t["last_upload"].format(file=Path(last.path).name, time=show_time(last.at)))
    for name, health in sorted(snapshot.health.items()):
        lines.append(t["destination"].format(name=name, health=t[health.health.value]))
    lines.extend(t["missing_line"].format(path=path) for path in snapshot.missing_folders)
    entries = [MenuEntry(line, None, enabled=False) for line in lines]
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


# -- controllers: the engine here, or a service through its database ------------------------------


class Controller(Protocol):
    """What the tray needs from a running boothsync, wherever it runs."""

    def start(self) -> None: ...

    def snapshot(self) -> Snapshot: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def retry_failed(self) -> None: ...

    def forget_failed(self) -> None:
        """Drop the failed pictures from the queue for good (the icon turns red no more)."""
        ...

    def reload(self) -> None: ...

    def tick(self) -> float:
        """Do what is due now; return how long until the next tick may be (seconds)."""
        ...

    def stop(self, timeout: float) -> bool: ...


class EngineController:
    """Runs boothsync in this process (engine and config reloads) and calls it directly."""

    def __init__(self, config: Config) -> None:
        self.service = Service(config)
        self._started = False

    @property
    def engine(self) -> Engine:
        return self.service.engine

    def start(self) -> None:
        self.service.start()
        self._started = True

    def tick(self) -> float:
        self.service.step()
        return self.service.tick

    def reload(self) -> None:
        self.service.request_reload()

    def snapshot(self) -> Snapshot:
        return self.engine.snapshot()

    def pause(self) -> None:
        self.engine.pause()

    def resume(self) -> None:
        self.engine.resume()

    def retry_failed(self) -> None:
        count = self.engine.retry_failed()
        log.info("%d failed upload(s) queued again", count)

    def forget_failed(self) -> None:
        forgotten = self.engine.outbox.forget_failed()
        log.info("%d failed upload(s) forgotten", len(forgotten))

    def stop(self, timeout: float) -> bool:
        if not self._started:
            return True
        self._started = False
        self.service.stop()
        return True


def _empty_stats() -> Stats:
    return Stats(destinations={}, totals={}, last_upload=None, last_error=None)


class AttachedController:
    """Shows a boothsync service's state from its queue database and commands it through it."""

    def __init__(self, config: Config) -> None:
        self.database = outbox_path(config)
        self._reader: Outbox | None = None
        self._last = Snapshot(stats=_empty_stats(), health={})

    def start(self) -> None:
        log.info("boothsync tray attached to %s", self.database)

    def snapshot(self) -> Snapshot:
        """The service's state now; the last one read while the database cannot be read."""
        if not self.database.exists():
            return self._last
        try:
            if self._reader is None:
                self._reader = Outbox(self.database, readonly=True)
            stats = self._reader.stats()
            health = self._reader.health()
            flags = self._reader.flags()
            today = self._reader.uploaded_since(local_midnight())
        except OutboxError as exc:
            log.warning("cannot read the service's state: %s", exc)
            self._close_reader()
            return self._last
        self._last = snapshot_from_database(stats, health, flags, uploaded_today=today)
        return self._last

    def _send(self, command: str) -> None:
        outbox = Outbox(self.database)
        try:
            outbox.send_command(command)
        finally:
            outbox.close()
        log.info("asked the service to %s", command)

    def pause(self) -> None:
        self._send("pause")

    def resume(self) -> None:
        self._send("resume")

    def retry_failed(self) -> None:
        self._send("retry")

    def forget_failed(self) -> None:
        # Straight into the database: the service has nothing to do for it, and a picture
        # forgotten is gone from the snapshot at the next refresh.
        outbox = Outbox(self.database)
        try:
            forgotten = outbox.forget_failed()
        finally:
            outbox.close()
        log.info("%d failed upload(s) forgotten", len(forgotten))

    def reload(self) -> None:
        self._send("reload")

    def tick(self) -> float:
        return 1.0

    def stop(self, timeout: float) -> bool:
        self._close_reader()
        return True

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            try:
                reader.close()
            except OutboxError as exc:
                log.debug("closing the read-only queue: %s", exc)


def snapshot_from_database(
    stats: Stats,
    health: Mapping[str, tuple[str, str]],
    flags: Mapping[str, str],
    *,
    uploaded_today: int = 0,
) -> Snapshot:
    """The Snapshot a service's database describes (health, counts, and its flags)."""
    healths: dict[str, DestinationHealth] = {}
    for name, (state, detail) in health.items():
        try:
            value = Health(state)
        except ValueError:
            value = Health.UNKNOWN
        healths[name] = DestinationHealth(value, detail)
    try:
        missing = json.loads(flags.get("missing_folders", "[]"))
    except ValueError:
        missing = []
    return Snapshot(
        stats=stats,
        health=healths,
        paused=flags.get("paused") == "1",
        missing_folders=tuple(str(m) for m in missing) if isinstance(missing, list) else (),
        uploaded_today=uploaded_today,
    )


# -- opening files, start at login ---------------------------------------------------------------


def default_opener(platform: str = sys.platform) -> list[str] | None:
    """The command that opens a file or folder in the desktop's own program (None: startfile)."""
    if platform == "win32":
        return None
    if platform == "darwin":
        return ["open"]
    return ["xdg-open"]


def open_path(
    path: Path,
    *,
    opener: Sequence[str] | None = None,
    platform: str = sys.platform,
) -> bool:
    """Open ``path`` with the desktop's program for it, detached; False (and a log line) if not."""
    command = list(opener) if opener is not None else default_opener(platform)
    try:
        if command is None:
            os.startfile(path)  # type: ignore[attr-defined]  # Windows only
        else:
            # Detached: the viewer must outlive a tray that quits, and never hold its stdio.
            process = subprocess.Popen(
                [*command, str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
            # Somebody must wait for it, or it stays a zombie under the tray once it exits;
            # xdg-open without a desktop runs the viewer itself and returns when it closes.
            threading.Thread(
                target=_reap, args=(process, path), name="tray-opener", daemon=True
            ).start()
    except OSError as exc:
        log.warning("cannot open %s: %s", path, exc.strerror or exc)
        return False
    return True


def _reap(process: subprocess.Popen[bytes], path: Path) -> None:
    """Collect the opener's exit, and say when it could not open ``path``."""
    code = process.wait()
    if code != 0:
        log.warning("cannot open %s: the opener exited with code %d", path, code)


# The Desktop Entry spec's reserved characters: an argument with one of them is quoted.
_EXEC_RESERVED: Final = frozenset(" \t\n\"'\\><~|&;$*?#()`=")


def _exec_argument(argument: str) -> str:
    if argument and not (set(argument) & _EXEC_RESERVED):
        quoted = argument
    else:
        escaped = "".join("\\" + c if c in '"`$\\' else c for c in argument)
        quoted = f'"{escaped}"'
    # Exec is also a string value (backslash escapes again) and field codes start with "%".
    return quoted.replace("\\", "\\\\").replace("%", "%%")


def tray_command(config_file: Path | None) -> list[str]:
    """The command line that starts this tray again: this interpreter, this config."""
    command = [sys.executable, "-m", "boothsync", "tray"]
    if config_file is not None:
        command += ["-c", str(Path(config_file).resolve())]
    return command


class XdgAutostart:
    """Start at login on Linux and other Unix desktops: ``$XDG_CONFIG_HOME/autostart``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        home = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        self.path = Path(home) / "autostart" / "boothsync.desktop"

    def enabled(self) -> bool:
        return self.path.is_file()

    def set(self, on: bool, command: Sequence[str]) -> None:
        if not on:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        exec_line = " ".join(_exec_argument(a) for a in command)
        self.path.write_text(
            "[Desktop Entry]\n"
            "Type=Application\n"
            "Name=boothsync\n"
            "Comment=Uploads the photo booth's pictures to the online gallery\n"
            f"Exec={exec_line}\n"
            "Terminal=false\n"
            "X-GNOME-Autostart-enabled=true\n",
            encoding="utf-8",
        )


def _winreg() -> Any:  # pragma: no cover - Windows only
    # Imported by name: the type checker runs on Linux, where winreg's stubs are hidden.
    return importlib.import_module("winreg")


class WindowsAutostart:  # pragma: no cover - Windows only
    """Start at login on Windows: the per-user Run key."""

    KEY: Final = r"Software\Microsoft\Windows\CurrentVersion\Run"
    VALUE: Final = "boothsync"

    def enabled(self) -> bool:
        winreg = _winreg()
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, self.KEY) as key:
                winreg.QueryValueEx(key, self.VALUE)
        except OSError:
            return False
        return True

    def set(self, on: bool, command: Sequence[str]) -> None:
        winreg = _winreg()
        with winreg.CreateKey(winreg.HKEY_CURRENT_USER, self.KEY) as key:
            if on:
                # pythonw.exe: no console window at login.
                program = Path(command[0]).with_name("pythonw.exe")
                args = [str(program) if program.exists() else command[0], *command[1:]]
                winreg.SetValueEx(key, self.VALUE, 0, winreg.REG_SZ, subprocess.list2cmdline(args))
            else:
                with contextlib.suppress(FileNotFoundError):
                    winreg.DeleteValue(key, self.VALUE)


class Autostart(Protocol):
    def enabled(self) -> bool: ...

    def set(self, on: bool, command: Sequence[str]) -> None: ...


def platform_autostart(platform: str = sys.platform) -> Autostart | None:
    """This platform's start-at-login entry, or None where the tray offers none (macOS)."""
    if platform == "win32":
        return WindowsAutostart()
    if platform == "darwin":
        return None
    return XdgAutostart()


# -- the menu actions ----------------------------------------------------------------------------


class TrayActions:
    """What each menu action id does; the icon only calls :meth:`run`."""

    def __init__(
        self,
        config: Config,
        controller: Controller,
        *,
        quit: Callable[[], None],
        autostart: Autostart | None = None,
        opener: Sequence[str] | None = None,
        attach: bool = False,
    ) -> None:
        self.config = config
        self.controller = controller
        self._quit = quit
        self.autostart = autostart
        self._opener = opener
        self._attach = attach

    def autostart_enabled(self) -> bool | None:
        if self.autostart is None:
            return None
        try:
            return self.autostart.enabled()
        except OSError as exc:
            log.debug("cannot read the start-at-login entry: %s", exc)
            return False

    def run(self, action: str) -> None:
        """Do what the menu item ``action`` says; a failure is logged, never raised to pystray."""
        handlers: dict[str, Callable[[], None]] = {
            "pause": self.controller.pause,
            "resume": self.controller.resume,
            "retry": self.controller.retry_failed,
            "forget": self.controller.forget_failed,
            "open_folder": self.open_folder,
            "open_log": self.open_log,
            "open_config": self.open_config,
            "reload": self.controller.reload,
            "autostart": self.toggle_autostart,
            "quit": self._quit,
        }
        handler = handlers.get(action)
        if handler is None:
            log.debug("no menu action %r", action)
            return
        try:
            handler()
        except (BoothsyncError, OSError) as exc:
            log.error("%s: %s", action, exc)

    def _open(self, path: Path) -> None:
        open_path(path, opener=self._opener)

    def open_folder(self) -> None:
        for watch in self.config.watches:
            if watch.path.is_dir():
                self._open(watch.path)
            else:
                log.warning("the watched folder %s is missing", watch.path)

    def open_log(self) -> None:
        path = log_file(self.config)
        if not path.exists():
            log.warning("no log file yet at %s", path)
            path = path.parent
        self._open(path)

    def open_config(self) -> None:
        if self.config.source is None:
            log.warning("this boothsync has no config file to open")
            return
        self._open(self.config.source)

    def toggle_autostart(self) -> None:
        if self.autostart is None:
            return
        on = not self.autostart_enabled()
        command = tray_command(self.config.source)
        if self._attach:
            command.append("--attach")
        self.autostart.set(on, command)
        log.info("start at login %s", "on" if on else "off")


# -- the run loop --------------------------------------------------------------------------------


def _check_display(environ: Mapping[str, str], platform: str) -> None:
    if platform in ("win32", "darwin") or environ.get("PYSTRAY_BACKEND"):
        return
    if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
        raise BoothsyncError(
            "no display for a tray icon (neither DISPLAY nor WAYLAND_DISPLAY is set); "
            "`boothsync run` works without one"
        )


def _headless(base: type[pystray.Icon]) -> type[pystray.Icon]:
    """pystray's dummy backend made runnable: no window, a loop that waits to be stopped.

    PYSTRAY_BACKEND=dummy then runs the whole tray without a display, for tests and CI.
    """

    class HeadlessIcon(base):  # type: ignore[misc]
        HAS_NOTIFICATION = False
        HAS_MENU = False

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._stopped = threading.Event()

        def _show(self) -> None:
            pass

        def _hide(self) -> None:
            pass

        def _update_icon(self) -> None:
            self._icon_valid = True

        def _update_title(self) -> None:
            pass

        def _update_menu(self) -> None:
            pass

        def _run(self) -> None:
            self._mark_ready()
            # Short waits: the main thread must get to run the signal handlers.
            while not self._stopped.wait(0.2):
                pass

        def _stop(self) -> None:
            self._stopped.set()

        def _notify(self, message: str, title: str | None = None) -> None:
            log.info("%s", message)

        def _remove_notification(self) -> None:
            pass

    return HeadlessIcon


def _menu_callback(actions: TrayActions, action: str | None) -> Callable[[Any, Any], None]:
    # pystray counts the callback's parameters: exactly (icon, item), no defaults.
    def call(icon: Any, item: Any) -> None:
        if action is not None:
            actions.run(action)

    return call


def _checked(value: bool | None) -> Callable[[Any], bool] | None:
    if value is None:
        return None

    def checked(item: Any) -> bool:
        return value

    return checked


def _pystray_menu(
    pystray_module: Any, entries: Sequence[MenuEntry], actions: TrayActions
) -> pystray.Menu:
    items = []
    for entry in entries:
        if entry.separator:
            items.append(pystray_module.Menu.SEPARATOR)
            continue
        items.append(
            pystray_module.MenuItem(
                entry.label,
                _menu_callback(actions, entry.action),
                checked=_checked(entry.checked),
                radio=entry.radio,
                enabled=entry.enabled,
                default=entry.default,
            )
        )
    menu: pystray.Menu = pystray_module.Menu(*items)
    return menu


# After the engine stopped and the icon was told to stop, the icon's event loop
# gets this long to return before the process ends on its own.
_LOOP_EXIT_SECONDS = 3.0


def _end_if_stuck(returned: threading.Event, code: int) -> None:
    """End the process if the icon's event loop does not return after stop().

    pystray's X11 loop now and then keeps waiting for an event after the icon
    was stopped. By then the engine has stopped cleanly and the queue is
    closed, so nothing is lost by ending here; the operator gets the exit code
    a clean stop gives instead of a tray that never quits.
    """

    def watch() -> None:
        if returned.wait(_LOOP_EXIT_SECONDS):
            return
        log.info("stopped")
        logging.shutdown()
        os._exit(code)

    threading.Thread(target=watch, name="tray-exit", daemon=True).start()


# Refreshes without the icon embedded in a tray before it asks the tray again.
_REDOCK_AFTER = 2


def _square_on_x11(base: type[pystray.Icon]) -> type[pystray.Icon]:
    """pystray's X11 icon, drawn square in whatever slot the tray gives it."""

    class SquareIcon(base):  # type: ignore[misc]
        # pystray's xorg backend calls this before every draw with the window's size.
        def _assert_icon_data(self, width: int, height: int) -> None:
            drawn: Image.Image | None = getattr(self, "_icon_data", None)
            if drawn is not None and drawn.size == (width, height):
                return
            data = square_icon(self._icon, width, height)
            # What pystray does too: older python-xlib asks the image for tostring().
            data.tostring = data.tobytes  # type: ignore[attr-defined]
            self._icon_data = data

    return SquareIcon


def _docked(icon: Any) -> bool | None:
    """Whether the X11 icon sits in a tray (its window was reparented); None elsewhere."""
    window = getattr(icon, "_window", None)
    if window is None or not getattr(icon, "visible", False):
        return None
    try:
        tree = window.query_tree()
        return bool(tree.parent.id != tree.root.id)
    except Exception:
        return None


def _listen_for_clicks(icon: Any) -> None:
    """Make a left click on the X11 icon reach it.

    pystray's X11 window does not ask for button presses, so clicks go to the
    tray host instead (a known pystray limitation); asking for them here lets
    a click run the default menu item. Other backends have no such window.
    """
    window = getattr(icon, "_window", None)
    display = getattr(icon, "_display", None)
    if window is None or display is None:
        return
    try:
        from Xlib import X

        window.change_attributes(
            event_mask=X.ExposureMask | X.StructureNotifyMask | X.ButtonPressMask
        )
        display.flush()
    except Exception:  # an odd X server: the icon still works, clicks just do not
        log.debug("cannot listen for clicks on the tray icon", exc_info=True)


def run_tray(
    config: Config,
    *,
    attach: bool,
    stop: threading.Event | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Show the tray icon until Quit or a stop signal; 0 after a clean stop.

    Raises BoothsyncError (one line) when there is no display or no usable tray backend.
    """
    env = os.environ if environ is None else environ
    _check_display(env, sys.platform)
    try:
        import pystray
    except Exception as exc:  # any backend's import failure means no tray
        raise BoothsyncError(f"cannot show a tray icon: {exc}") from exc
    icon_class: type[pystray.Icon] = pystray.Icon
    if icon_class.__module__ == "pystray._base":
        icon_class = _headless(icon_class)
    elif icon_class.__module__ == "pystray._xorg" and hasattr(icon_class, "_assert_icon_data"):
        # A pystray that draws otherwise keeps its own drawing (stretched, not broken).
        icon_class = _square_on_x11(icon_class)

    with contextlib.ExitStack() as held:
        if not attach:
            try:
                held.enter_context(instance_lock(state_dir(config)))
            except AlreadyRunning:
                # A service already uploads from this queue: show it rather than refuse.
                log.info("boothsync already runs as a service here; the tray shows that one")
                attach = True
        return _run_icon(pystray, icon_class, config, attach=attach, stop=stop, environ=environ)


def _run_icon(
    pystray: Any,
    icon_class: Any,
    config: Config,
    *,
    attach: bool,
    stop: threading.Event | None,
    environ: Mapping[str, str] | None,
) -> int:
    lang = language(config.booth.language, environ)
    stop = stop if stop is not None else threading.Event()
    controller: Controller = AttachedController(config) if attach else EngineController(config)
    actions = TrayActions(
        config, controller, quit=stop.set, autostart=platform_autostart(), attach=attach
    )
    empty = Snapshot(stats=_empty_stats(), health={})
    try:
        icon = icon_class(
            "boothsync",
            icon=icon_image(tray_state(empty)),
            title=tooltip(empty, lang),
            menu=_pystray_menu(pystray, menu_model(empty, lang), actions),
        )
    except Exception as exc:  # Xlib and friends raise their own types
        raise BoothsyncError(f"cannot show a tray icon: {exc}") from exc

    handler = None
    try:
        handler = log_to_file(log_file(config))
    except OSError as exc:
        log.warning("cannot write the log file: %s", exc)

    failure: list[BoothsyncError] = []
    notifier = Notifier(lang)

    def refresh(last: dict[str, Any]) -> None:
        try:
            snapshot = controller.snapshot()
        except (BoothsyncError, RuntimeError) as exc:
            log.debug("no snapshot: %s", exc)
            return
        state = tray_state(snapshot)
        if state != last.get("state"):
            icon.icon = icon_image(state)
            last["state"] = state
        icon.title = tooltip(snapshot, lang)
        entries = menu_model(
            snapshot,
            lang,
            autostart=actions.autostart_enabled(),
            has_config=config.source is not None,
        )
        if entries != last.get("entries"):
            last["entries"] = entries
            icon.menu = _pystray_menu(pystray, entries, actions)
        for message in notifier.feed(snapshot):
            if icon.HAS_NOTIFICATION:
                icon.notify(message, "boothsync")
            log.warning("%s", message)

    def refresher(icon: pystray.Icon) -> None:
        last: dict[str, Any] = {}
        undocked = 0
        while not stop.wait(REFRESH_SECONDS):
            try:
                refresh(last)
                undocked = 0 if _docked(icon) is not False else undocked + 1
                if undocked >= _REDOCK_AFTER:
                    # The tray host missed the request, or started after us: ask again.
                    log.info("the tray icon is not in the tray yet; asking the tray again")
                    icon.visible = False
                    icon.visible = True
                    _listen_for_clicks(icon)
                    undocked = 0
            except Exception:  # a dead refresher would freeze the icon silently
                log.exception("updating the tray icon failed")

    returned = threading.Event()

    def setup(icon: pystray.Icon) -> None:
        # The stop watcher: everything after the loop started happens here, and ends here.
        icon.visible = True
        _listen_for_clicks(icon)
        worker = threading.Thread(target=refresher, args=(icon,), name="tray-refresh", daemon=True)
        try:
            controller.start()
            log.info("tray ready")
            worker.start()
            while not stop.wait(min(0.2, controller.tick())):
                pass
        except BoothsyncError as exc:
            failure.append(exc)
        finally:
            stop.set()
            if worker.is_alive():
                worker.join(REFRESH_SECONDS * 5)
            controller.stop(GRACE_SECONDS)
            icon.stop()
            _end_if_stuck(returned, 1 if failure else 0)

    try:
        with stop_signals(stop):
            icon.run(setup=setup)
    finally:
        returned.set()
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
    if failure:
        raise failure[0]
    log.info("stopped")
    return 0
