"""Opening files, folders and URLs on the desktop, and starting at login."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from boothsync.desktop import XdgAutostart, default_opener, open_path
from tests.helpers import wait_for, zombie_children


def test_an_opener_that_is_missing_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without xdg-open (or any opener) the action says so in the log and the tray goes on."""
    assert not open_path(tmp_path, opener=[str(tmp_path / "no-such-opener")])
    assert "cannot open" in caplog.text


@pytest.mark.skipif(sys.platform != "linux", reason="zombies are read from Linux's /proc")
def test_an_opener_that_fails_is_reaped_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An opener that exits (here with code 3, as xdg-open does when no program can open the
    path) is waited for, so it leaves no zombie behind, and its failure is logged."""
    assert open_path(tmp_path, opener=[sys.executable, "-c", "raise SystemExit(3)"])
    wait_for(lambda: "the opener exited with code 3" in caplog.text, what="the opener's failure")
    assert f"cannot open {tmp_path}: the opener exited with code 3" in caplog.text
    wait_for(lambda: not zombie_children(os.getpid()), what="no zombie opener")


def test_platform_openers() -> None:
    """Windows uses os.startfile, macOS `open`, Linux and the rest `xdg-open`."""
    assert default_opener("win32") is None
    assert default_opener("darwin") == ["open"]
    assert default_opener("linux") == ["xdg-open"]
    assert default_opener("freebsd14") == ["xdg-open"]


def split_exec(value: str) -> list[str]:
    """An Exec value back into its arguments, as the Desktop Entry spec reads it."""
    # String-value escapes first (\\ is one backslash), then the field code %%, then the
    # quoting: inside "...", a backslash takes the next " ` $ or \ literally.
    text = value.replace("\\\\", "\\").replace("%%", "%")
    arguments: list[str] = []
    current: list[str] = []
    quoted = False
    index = 0
    while index < len(text):
        char = text[index]
        if quoted and char == "\\" and text[index + 1] in '"`$\\':
            current.append(text[index + 1])
            index += 1
        elif char == '"':
            quoted = not quoted
        elif char == " " and not quoted:
            arguments.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    assert not quoted
    arguments.append("".join(current))
    return arguments


def test_autostart_exec_quotes_every_reserved_character(tmp_path: Path) -> None:
    """Quotes, backslashes, dollars, backticks, percent signs and spaces survive the Exec line."""
    autostart = XdgAutostart({"XDG_CONFIG_HOME": str(tmp_path)})
    command = ['/opt/my "py"/python', "-m", "x\\y", "$HOME", "`id`", "50%", "a;b", "plain"]
    autostart.set(True, command)
    text = autostart.path.read_text(encoding="utf-8")
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    assert split_exec(exec_line.removeprefix("Exec=")) == command
    assert "plain" in exec_line.split()


def test_start_at_login_defaults_to_dot_config(tmp_path: Path) -> None:
    """Without $XDG_CONFIG_HOME the entry goes to ~/.config/autostart."""
    assert XdgAutostart({}).path == Path.home() / ".config" / "autostart" / "boothsync.desktop"
