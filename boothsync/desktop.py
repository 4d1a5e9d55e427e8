"""The desktop around boothsync: opening a file, a folder or a URL in the desktop's own
program, and starting at login (the per-user Run key on Windows, an XDG autostart entry
elsewhere).

Used by the tray, and by any other front end on the operator's desktop. Owns nothing of
boothsync's state; must not import pystray or anything that needs a display.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

__all__ = [
    "Autostart",
    "WindowsAutostart",
    "XdgAutostart",
    "can_open_browser",
    "default_opener",
    "open_path",
    "platform_autostart",
]

log = logging.getLogger(__name__)


def default_opener(platform: str = sys.platform) -> list[str] | None:
    """The command that opens a file or folder in the desktop's own program (None: startfile)."""
    if platform == "win32":
        return None
    if platform == "darwin":
        return ["open"]
    return ["xdg-open"]


def can_open_browser(
    environ: Mapping[str, str] | None = None, platform: str = sys.platform
) -> bool:
    """Whether a browser window can appear: always on Windows and macOS, on Linux only with a
    display (over SSH or on a headless booth there is none)."""
    if platform in ("win32", "darwin"):
        return True
    env = os.environ if environ is None else environ
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def open_path(
    path: Path | str,
    *,
    opener: Sequence[str] | None = None,
    platform: str = sys.platform,
) -> bool:
    """Open ``path`` (a file, a folder or a URL) with the desktop's program for it, detached;
    False (and a log line) if not."""
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
                target=_reap, args=(process, path), name="desktop-opener", daemon=True
            ).start()
    except OSError as exc:
        log.warning("cannot open %s: %s", path, exc.strerror or exc)
        return False
    return True


def _reap(process: subprocess.Popen[bytes], path: Path | str) -> None:
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
