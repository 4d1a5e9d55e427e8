"""Keeping the computer awake while pictures wait: held as soon as one waits, released as
soon as none does, gone with boothsync however it ends; one line where there is no way."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from boothsync.awake import Awake, keep_awake
from boothsync.engine import Engine
from boothsync.receiver import Faults, Receiver
from tests.helpers import engine_config, jpeg, wait_for

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX stand-in programs")


def stand_in(folder: Path, name: str) -> Path:
    """A program called ``name`` that records its arguments and its pid in ``name.log`` and
    then runs what systemd-inhibit runs: the command at its end (here ``cat``), until that
    ends."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{name}.log"
    program = folder / name
    program.write_text(
        f'#!/bin/sh\necho "$$ $*" >> "{log}"\nfor last in "$@"; do :; done\nexec "$last"\n',
        encoding="utf-8",
    )
    program.chmod(0o755)
    return program


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but its entry.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def logged(log: Path) -> str:
    """What the stand-in recorded, once it has: it writes its line itself, after it started."""

    def text() -> str:
        content = log.read_text() if log.exists() else ""
        return content if content.endswith("\n") else ""

    wait_for(lambda: text() != "", timeout=10, what=f"a line in {log.name}")
    return text()


def recorded_pid(log: Path) -> int:
    return int(logged(log).split()[0])


def test_an_inhibitor_is_held_while_busy_and_released_after(tmp_path: Path) -> None:
    """Busy: systemd-inhibit runs, blocking sleep, naming boothsync and why; not busy: it
    has ended."""
    program = stand_in(tmp_path / "bin", "systemd-inhibit")
    (tmp_path / "seats").mkdir()
    awake = keep_awake("linux", which=lambda _: str(program), logind=tmp_path / "seats")
    assert awake.update(True)
    log = tmp_path / "bin" / "systemd-inhibit.log"
    words = logged(log)
    assert "--what=sleep:idle" in words and "--who=boothsync" in words
    assert "--mode=block" in words and "waiting to be uploaded" in words
    pid = recorded_pid(log)
    assert running(pid)
    assert awake.update(True)  # still held, not started twice
    assert len(log.read_text().splitlines()) == 1
    assert not awake.update(False)
    wait_for(lambda: not running(pid), timeout=10, what="the inhibitor to end")


def test_the_inhibitor_ends_with_boothsync_even_killed(tmp_path: Path) -> None:
    """A boothsync killed while it holds the inhibitor takes it along: its child reads
    boothsync's pipe and ends at its end."""
    program = stand_in(tmp_path / "bin", "systemd-inhibit")
    (tmp_path / "seats").mkdir()
    script = (
        "import sys, threading\n"
        "from pathlib import Path\n"
        "from boothsync.awake import keep_awake\n"
        f"awake = keep_awake('linux', which=lambda _: {str(program)!r},"
        f" logind=Path({str(tmp_path / 'seats')!r}))\n"
        "awake.update(True)\n"
        "print('held', flush=True)\n"
        "threading.Event().wait()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        pid = recorded_pid(tmp_path / "bin" / "systemd-inhibit.log")
        assert running(pid)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    wait_for(lambda: not running(pid), timeout=10, what="the inhibitor to end")


def test_no_way_to_keep_awake_is_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Without logind (or without systemd-inhibit) it says so once, and holds nothing."""
    with caplog.at_level(logging.INFO, logger="boothsync.awake"):
        awake = keep_awake(
            "linux", which=lambda _: "/usr/bin/systemd-inhibit", logind=tmp_path / "none"
        )
    assert not awake.available
    assert not awake.update(True)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "logind does not run here" in lines[0]


def test_a_refused_inhibitor_is_one_warning_and_uploads_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """logind refusing the inhibitor (the program ends at once with an error) is one
    warning, said once, however often pictures wait again."""
    folder = tmp_path / "bin"
    folder.mkdir()
    refusing = folder / "systemd-inhibit"
    refusing.write_text("#!/bin/sh\necho 'Failed to inhibit: Access denied' >&2\nexit 1\n")
    refusing.chmod(0o755)
    (tmp_path / "seats").mkdir()
    awake = keep_awake("linux", which=lambda _: str(refusing), logind=tmp_path / "seats")
    with caplog.at_level(logging.WARNING, logger="boothsync.awake"):
        assert not awake.update(True)
        assert not awake.update(False)
        assert not awake.update(True)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "Access denied" in warnings[0]


def test_the_engine_keeps_awake_while_pictures_wait(
    tmp_path: Path, engine_for: Callable[..., Engine]
) -> None:
    """A running engine holds the inhibitor from the moment a picture waits until it is
    uploaded, and the status says so meanwhile."""
    program = stand_in(tmp_path / "bin", "systemd-inhibit")
    (tmp_path / "seats").mkdir()
    awake = keep_awake("linux", which=lambda _: str(program), logind=tmp_path / "seats")
    with Receiver(tmp_path / "received", faults=Faults(delay=1.0)) as receiver:
        engine = engine_for(engine_config(tmp_path, receiver.base_url), awake=awake)
        assert not engine.keeping_awake
        (tmp_path / "hot" / "IMG_1.jpg").write_bytes(jpeg(b"one"))
        wait_for(lambda: engine.keeping_awake, timeout=15, what="the inhibitor")
        pid = recorded_pid(tmp_path / "bin" / "systemd-inhibit.log")
        # The flag other processes read follows the inhibitor within the same pass.
        wait_for(lambda: engine.outbox.flags().get("keeping_awake") == "1", timeout=5)
        wait_for(lambda: len(receiver.received()) == 1, timeout=30)
        wait_for(lambda: not engine.keeping_awake, timeout=15, what="the release")
        wait_for(lambda: not running(pid), timeout=10, what="the inhibitor to end")
        wait_for(lambda: engine.outbox.flags().get("keeping_awake") == "0", timeout=5)


def test_an_unavailable_way_holds_nothing() -> None:
    """An Awake with no way of its own is never held."""
    awake = Awake("none", None)
    assert not awake.update(True)
    assert not awake.held
