"""The tray on a real X display: Xvfb, Debian's `trayer` as the tray host, `boothsync tray`.

The icon must dock the way it docks on an operator's desktop: pystray's xorg backend asks the
owner of the `_NET_SYSTEM_TRAY_S0` selection to embed its window (XEMBED), so the icon's window
ends up inside trayer's panel in the X window tree. Everything here waits with a deadline.
"""

from __future__ import annotations

import importlib.util
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pytest

from boothsync.demo import write_sample_jpeg
from boothsync.receiver import Receiver
from tests.helpers import wait_for, zombie_children
from tests.test_cli import BOOTHSYNC, env, status, write_config

if sys.platform != "linux":
    pytest.skip("the X11 tray test needs Linux (Xvfb, trayer)", allow_module_level=True)

# python-xlib comes with pystray on Linux (it is what pystray's xorg backend speaks).
import Xlib.display
import Xlib.error
import Xlib.protocol.event
from PIL import Image
from Xlib import X

TRAY_AVAILABLE = importlib.util.find_spec("boothsync.tray") is not None
needs_tray = pytest.mark.skipif(not TRAY_AVAILABLE, reason="boothsync tray is not available")

# The icon window pystray's xorg backend creates has the WM_CLASS instance f"{name}SystemTrayIcon".
ICON_CLASS_SUFFIX = "SystemTrayIcon"


@dataclass
class X11:
    """A running Xvfb with trayer docked as the system tray."""

    display: str
    connection: Any  # Xlib.display.Display; python-xlib has no type hints
    trayer: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        return {"DISPLAY": self.display}


class Running:
    """A process on the test display whose output is collected as it comes; always ended."""

    def __init__(self, argv: list[str], **environ: str) -> None:
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(**environ)
        )
        self.lines: list[str] = []
        assert self.process.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,))
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` and wait for the exit code (30 s at most)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit 30 s after signal {sig}:\n{self.output()}") from None
        self._reader.join(5)
        return code

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process)
        self._reader.join(5)


def stop_process(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def start_xvfb(logs: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start Xvfb on a display it picks itself (-displayfd), so parallel runs never collide."""
    read_end, write_end = os.pipe()
    try:
        xvfb = subprocess.Popen(
            [
                "Xvfb",
                "-displayfd",
                str(write_end),
                "-nolisten",
                "tcp",
                "-screen",
                "0",
                "640x480x24",
            ],
            pass_fds=(write_end,),
            stdout=subprocess.DEVNULL,
            stderr=(logs / "xvfb.log").open("wb"),
        )
    finally:
        os.close(write_end)
    try:
        number = b""
        # Xvfb writes the display number and a newline once it accepts connections; if it
        # dies first the pipe closes and the read returns nothing.
        while not number.endswith(b"\n"):
            ready, _, _ = select.select([read_end], [], [], 30)
            chunk = os.read(read_end, 64) if ready else b""
            if not chunk:
                break
            number += chunk
    finally:
        os.close(read_end)
    if not number.strip().isdigit():
        stop_process(xvfb)
        log = (logs / "xvfb.log").read_text(errors="replace").strip()
        pytest.skip(f"Xvfb could not be started: {log or 'no display number reported'}")
    return xvfb, f":{number.decode().strip()}"


def tray_owner(connection: Any) -> int:
    """The window id owning the system tray selection of screen 0, or 0."""
    owner = connection.get_selection_owner(connection.intern_atom("_NET_SYSTEM_TRAY_S0"))
    return int(getattr(owner, "id", owner))


@pytest.fixture
def x11(tmp_path: Path) -> Iterator[X11]:
    for program in ("Xvfb", "trayer"):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (Debian: apt-get install xvfb trayer)")
    logs = tmp_path / "x11"
    logs.mkdir()
    xvfb, display = start_xvfb(logs)
    trayer: subprocess.Popen[bytes] | None = None
    connection: Any = None
    try:
        connection = Xlib.display.Display(display)
        trayer = subprocess.Popen(
            [
                "trayer",
                "--edge",
                "top",
                "--align",
                "right",
                "--widthtype",
                "request",
                "--height",
                "32",
                "--SetDockType",
                "true",
                "--transparent",
                "false",
            ],
            env={**os.environ, "DISPLAY": display},
            stdout=subprocess.DEVNULL,
            stderr=(logs / "trayer.log").open("wb"),
        )
        started = trayer

        def docked_or_dead() -> bool:
            return started.poll() is not None or tray_owner(connection) != 0

        wait_for(docked_or_dead, timeout=30, what="trayer to own _NET_SYSTEM_TRAY_S0")
        if started.poll() is not None:
            log = (logs / "trayer.log").read_text(errors="replace").strip()
            pytest.skip(f"trayer could not be started (exit {started.returncode}): {log}")
        yield X11(display, connection, started)
    finally:
        if connection is not None:
            connection.close()
        if trayer is not None:
            stop_process(trayer)
        stop_process(xvfb)


def window_class(window: Any) -> tuple[str, str] | None:
    try:
        wm_class = window.get_wm_class()
    except Xlib.error.XError:  # the window went away while we looked
        return None
    return None if wm_class is None else (wm_class[0], wm_class[1])


def icon_windows(connection: Any) -> list[Any]:
    """Every pystray xorg icon window on the display, wherever it sits in the tree."""
    # By id: a window being reparented can show up under both parents during one walk.
    found: dict[int, Any] = {}
    pending = [connection.screen().root]
    while pending:
        window = pending.pop()
        wm_class = window_class(window)
        if wm_class is not None and wm_class[0].endswith(ICON_CLASS_SUFFIX):
            found[window.id] = window
        try:
            pending.extend(window.query_tree().children)
        except Xlib.error.XError:
            continue
    return list(found.values())


def top_level(connection: Any, window: Any) -> Any:
    """The ancestor of ``window`` that is a direct child of the root window."""
    root = connection.screen().root.id
    while (parent := window.query_tree().parent).id != root:
        window = parent
    return window


def embedded_in_trayer(connection: Any, icon: Any) -> bool:
    """The icon was reparented into trayer's panel (XEMBED), and trayer sized it."""
    holder = top_level(connection, icon)
    if holder.id == icon.id:
        return False
    wm_class = window_class(holder)
    geometry = icon.get_geometry()
    return wm_class is not None and wm_class[1] == "trayer" and geometry.width > 1


def one_icon(x11: X11, owner: Running) -> Any:
    """Wait for exactly one icon window to be docked in trayer; fail early if ``owner`` died."""

    def docked() -> Any:
        if (code := owner.process.poll()) is not None:
            raise AssertionError(f"the icon's process exited with {code}:\n{owner.output()}")
        icons = icon_windows(x11.connection)
        assert len(icons) <= 1, f"more than one tray icon: {icons}"
        try:
            return icons and embedded_in_trayer(x11.connection, icons[0]) and icons[0]
        except Xlib.error.XError:  # reparented or replaced while we looked: look again
            return None

    return wait_for(docked, timeout=30, what="the icon to be embedded in trayer")


def deliver_left_click(x11: X11, icon: Any) -> None:
    """A real left click on the icon, through the X server as a pointer would make it.

    pystray's own X11 window does not ask for button presses (moses-palmer/pystray#151);
    boothsync's tray asks for them, so this click reaching the tray proves that it does.
    """
    subprocess.run(
        ["xdotool", "mousemove", "--window", str(icon.id), "5", "5", "click", "1"],
        env={**os.environ, **x11.env()},
        check=True,
        timeout=30,
    )


def icon_pixels(icon: Any) -> Image.Image:
    """What the icon's window shows now, as an RGB image."""
    geometry = icon.get_geometry()
    reply = icon.get_image(0, 0, geometry.width, geometry.height, X.ZPixmap, 0xFFFFFFFF)
    size = (geometry.width, geometry.height)
    return Image.frombytes("RGB", size, reply.data, "raw", "BGRX")


def drop_picture(hot: Path, name: str) -> None:
    write_sample_jpeg(hot / name, datetime(2026, 6, 1, 20, 0), "x", (1, 2, 3))


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received") as server:
        yield server


def tray(config: Path, x11: X11, bin_dir: Path) -> Running:
    """`boothsync tray -c CONFIG` on the test display, with ``bin_dir`` first on PATH."""
    # PYSTRAY_BACKEND=xorg is what pystray picks on a Linux box without GTK bindings; set it
    # so the test never depends on what else the machine has installed.
    return Running(
        [*BOOTHSYNC, "tray", "-c", str(config)],
        PYSTRAY_BACKEND="xorg",
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        **x11.env(),
    )


def recording_opener(bin_dir: Path, record: Path) -> None:
    """An `xdg-open` that writes down what it was asked to open instead of opening it."""
    bin_dir.mkdir()
    opener = bin_dir / "xdg-open"
    opener.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> "{record}"\n', encoding="utf-8")
    opener.chmod(0o755)


@needs_tray
def test_tray_docks_uploads_takes_a_click_and_stops_on_sigterm(
    tmp_path: Path, x11: X11, receiver: Receiver
) -> None:
    """`boothsync tray` docks its icon in the system tray, uploads a picture dropped while it
    runs, opens the watched folder on a left click (its default menu item) and reaps the
    opener (no zombie stays behind), and SIGTERM ends it with exit code 0 and no traceback."""
    config = write_config(tmp_path, receiver.base_url)
    opened = tmp_path / "opened.txt"
    recording_opener(tmp_path / "bin", opened)
    with tray(config, x11, tmp_path / "bin") as running:
        icon = one_icon(x11, running)

        drop_picture(tmp_path / "hot", "IMG_0001.jpg")
        wait_for(
            lambda: [r.file_name for r in receiver.received()] == ["IMG_0001.jpg"],
            timeout=30,
            what="the dropped picture to be uploaded",
        )

        wait_for(lambda: status(config)["totals"]["uploaded"] == 1, what="status to count it")

        deliver_left_click(x11, icon)
        wait_for(
            lambda: opened.exists() and opened.read_text(encoding="utf-8").splitlines(),
            timeout=15,
            what="a click on the icon to open the watched folder",
        )
        assert opened.read_text(encoding="utf-8").splitlines() == [str(tmp_path / "hot")]
        pid = running.process.pid
        wait_for(lambda: not zombie_children(pid), timeout=10, what="the opener to be reaped")

        code = running.stop(signal.SIGTERM)
    assert code == 0, running.output()
    assert "Traceback" not in running.output()


@needs_tray
def test_the_icon_is_round_in_a_slot_that_is_not_square(
    tmp_path: Path, x11: X11, receiver: Receiver
) -> None:
    """trayer in a 32-pixel panel gives the icon a slot taller than wide (24 x 30 or so):
    the icon is drawn there as a circle, as wide as tall and centred, not stretched to an
    oval."""
    config = write_config(tmp_path, receiver.base_url)
    recording_opener(tmp_path / "bin", tmp_path / "opened.txt")
    with tray(config, x11, tmp_path / "bin") as running:
        icon = one_icon(x11, running)
        geometry = icon.get_geometry()
        assert geometry.height != geometry.width, "trayer gave a square slot"

        def drawn() -> tuple[int, int, int, int] | None:
            try:
                grey = icon_pixels(icon).convert("L")
            except Xlib.error.BadMatch:
                # Not viewable this moment (the tray docking or resizing it): look again.
                return None
            if grey.getextrema()[0] > 20:
                # No black corner yet: the window still shows what was there before the icon
                # was painted (however it is drawn, its corners are black).
                return None
            # The circle: pixels clearly brighter than the black of the slot.
            return grey.point(lambda v: 255 if v > 60 else 0).getbbox()

        seen: list[tuple[int, int, int, int]] = []

        def round_() -> tuple[int, int, int, int] | None:
            # A picture painted for the slot's size before trayer resized it shows clipped
            # until the redraw that follows the resize: the icon must settle round.
            box = drawn()
            if box is None:
                return None
            seen.append(box)
            left, top, right, bottom = box
            return box if abs((right - left) - (bottom - top)) <= 1 else None

        try:
            box = wait_for(round_, timeout=15, what="the icon to be drawn round")
        except AssertionError:
            box = seen[-1] if seen else wait_for(drawn, timeout=1, what="the icon to be drawn")
        left, top, right, bottom = box
        width, height = right - left, bottom - top
        side = min(geometry.width, geometry.height)
        assert abs(width - height) <= 1, f"drawn {width} x {height} in {geometry.width} x " + (
            f"{geometry.height}"
        )
        assert width >= side - 3
        assert abs(left - (geometry.width - right)) <= 1
        assert abs(top - (geometry.height - bottom)) <= 1
        code = running.stop(signal.SIGTERM)
    assert code == 0, running.output()
