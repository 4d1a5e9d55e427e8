"""`boothsync run` as systemd runs it: the notify protocol, the watchdog, reloads, logs, one
instance per state folder, a full disk. Real processes, a real datagram socket bound by the
test, real signals, real full disks and a real receiver on 127.0.0.1."""

from __future__ import annotations

import itertools
import logging
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from boothsync.daemon import (
    InstanceState,
    SystemdNotify,
    instance_lock,
    instance_state,
    log_to_file,
)
from boothsync.demo import write_sample_jpeg
from boothsync.errors import AlreadyRunning
from boothsync.receiver import Faults, Receiver
from tests.helpers import wait_for
from tests.test_cli import BOOTHSYNC, Daemon, env, status, write_config

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="systemd is Linux only")


class NotifySocket:
    """What systemd listens on: a datagram socket that records every message with its time."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def lines(self, prefix: str) -> list[tuple[float, str]]:
        return [(at, line) for at, line in list(self.messages) if line.startswith(prefix)]

    def has(self, line: str) -> bool:
        return any(text == line for _, text in list(self.messages))

    def close(self) -> None:
        self._stop.set()
        self._reader.join(2)
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    listener = NotifySocket(f"@boothsync-test-{uuid.uuid4().hex}")
    yield listener
    listener.close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received", faults=Faults(seed=5)) as server:
        yield server


PADDING = "\n# " + "-" * 200 + "\n"


def padded_config(tmp_path: Path, base_url: str) -> Path:
    """A config ending in a long comment, so that it can be rewritten at the same size."""
    config = write_config(tmp_path, base_url)
    config.write_text(config.read_text(encoding="utf-8") + PADDING, encoding="utf-8")
    return config


def rewrite_unnoticed(config: Path, old: str, new: str) -> None:
    """Change ``old`` to ``new`` in the config while keeping its size and time stamp, so the
    daemon's check for a saved file cannot see it: only an explicit reload can."""
    before = config.stat()
    text = config.read_text(encoding="utf-8").replace(PADDING, "")
    assert old in text
    text = text.replace(old, new)
    room = before.st_size - len(text.encode("utf-8")) - len("\n# \n")
    assert room >= 0
    config.write_text(text + "\n# " + "-" * room + "\n", encoding="utf-8")
    assert config.stat().st_size == before.st_size
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))


def picture(folder: Path, name: str) -> None:
    write_sample_jpeg(folder / name, datetime(2026, 6, 1, 20, 0), name, (10, 20, 30))


def status_lines(listener: NotifySocket) -> list[str]:
    return [line.removeprefix("STATUS=") for _, line in listener.lines("STATUS=")]


def test_ready_watchdog_status_and_stopping(
    tmp_path: Path, receiver: Receiver, notify_socket: NotifySocket
) -> None:
    """With NOTIFY_SOCKET and WATCHDOG_USEC=2000000: READY=1 once the first scan is done,
    WATCHDOG=1 at least every second, STATUS= following the queue, STOPPING=1 and exit 0 on
    SIGTERM."""
    config = write_config(tmp_path, receiver.base_url)
    picture(tmp_path / "hot", "before-start.jpg")
    daemon = Daemon(
        "run", "-c", str(config), NOTIFY_SOCKET=notify_socket.address, WATCHDOG_USEC="2000000"
    )
    try:
        wait_for(lambda: notify_socket.has("READY=1"), timeout=30, what="READY=1")
        # Ready means scanned: the picture that was there before the start is already queued.
        assert "ready" in daemon.output
        wait_for(lambda: any("1 uploaded" in s for s in status_lines(notify_socket)), timeout=30)
        picture(tmp_path / "hot", "after-start.jpg")
        wait_for(
            lambda: any(s.startswith("2 uploaded, 0 waiting") for s in status_lines(notify_socket)),
            timeout=30,
            what="a status line with both uploads",
        )
        assert status_lines(notify_socket)[-1].endswith("online")
        watching_from = time.monotonic()
        wait_for(lambda: time.monotonic() - watching_from > 4, timeout=10, interval=0.2)
    finally:
        code = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.output
    pings = [at for at, _ in notify_socket.lines("WATCHDOG=1")]
    ready_at = notify_socket.lines("READY=1")[0][0]
    pings = [at for at in pings if at >= ready_at]
    assert len(pings) >= 5
    gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
    assert max(gaps) < 2.0, gaps  # within the watchdog timeout systemd was given
    assert notify_socket.has("STOPPING=1")
    assert "Traceback" not in daemon.output


def test_notify_socket_given_as_a_path(tmp_path: Path, receiver: Receiver) -> None:
    """A NOTIFY_SOCKET that is a file system path works as well as an abstract one."""
    folder = Path(tempfile.mkdtemp(prefix="bs-"))  # socket paths are limited to 108 bytes
    listener = NotifySocket(str(folder / "notify"))
    config = write_config(tmp_path, receiver.base_url)
    daemon = Daemon("run", "-c", str(config), NOTIFY_SOCKET=listener.address)
    try:
        wait_for(lambda: listener.has("READY=1"), timeout=30, what="READY=1")
    finally:
        code = daemon.stop()
        listener.close()
        (folder / "notify").unlink()
        folder.rmdir()
    assert code == 0
    # No watchdog was asked for, so none is sent.
    assert not listener.lines("WATCHDOG=1")
    assert listener.has("STOPPING=1")


DYING_WORKER = """
import sys
from pathlib import Path

import boothsync.uploader as uploader

marker = Path(sys.argv[1])
original = uploader.Uploader._process


def process(self, job):
    if job.path.name == "poison.jpg" and not marker.exists():
        marker.write_text("died once")
        raise SystemExit("this worker thread ends here")
    return original(self, job)


uploader.Uploader._process = process
from boothsync.cli import main

sys.exit(main(sys.argv[2:]))
"""


def dying_worker_daemon(tmp_path: Path, base_url: str, **environ: str) -> tuple[Path, Daemon]:
    """A daemon whose upload worker thread dies on the first attempt at poison.jpg (a bug
    stood in for by a patched worker: nothing real kills a thread on purpose)."""
    config = write_config(tmp_path, base_url)
    script = tmp_path / "dying_worker.py"
    script.write_text(DYING_WORKER, encoding="utf-8")
    daemon = Daemon(str(script), str(tmp_path / "died"), "run", "-c", str(config), **environ)
    return config, daemon


def test_a_dead_worker_stops_the_watchdog_pings(
    tmp_path: Path, receiver: Receiver, notify_socket: NotifySocket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When an upload worker thread dies, WATCHDOG=1 stops, so systemd restarts boothsync."""
    monkeypatch.setattr("tests.test_cli.BOOTHSYNC", [sys.executable])
    _, daemon = dying_worker_daemon(
        tmp_path, receiver.base_url, NOTIFY_SOCKET=notify_socket.address, WATCHDOG_USEC="2000000"
    )
    try:
        wait_for(lambda: notify_socket.has("READY=1"), timeout=30, what="READY=1")
        wait_for(lambda: len(notify_socket.lines("WATCHDOG=1")) >= 2, timeout=10)
        picture(tmp_path / "hot", "poison.jpg")
        wait_for(lambda: "worker thread stopped" in daemon.output, timeout=30)
        last_ping = notify_socket.lines("WATCHDOG=1")[-1][0]
        quiet_from = time.monotonic()
        wait_for(lambda: time.monotonic() - quiet_from > 3, timeout=10, interval=0.2)
        assert notify_socket.lines("WATCHDOG=1")[-1][0] == last_ping
        assert any("worker thread stopped" in s for s in status_lines(notify_socket))
    finally:
        daemon.stop(signal.SIGKILL)


def test_without_a_watchdog_dead_workers_are_restarted(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside systemd's watchdog, boothsync restarts its own workers after one died, and the
    picture the dead worker held is uploaded."""
    monkeypatch.setattr("tests.test_cli.BOOTHSYNC", [sys.executable])
    _, daemon = dying_worker_daemon(tmp_path, receiver.base_url)
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30)
        picture(tmp_path / "hot", "poison.jpg")
        wait_for(lambda: "worker thread stopped" in daemon.output, timeout=30)
        wait_for(
            lambda: "poison.jpg" in [r.file_name for r in receiver.received()],
            timeout=30,
            what="the held picture to be uploaded after the restart",
        )
        picture(tmp_path / "hot", "later.jpg")
        wait_for(lambda: "later.jpg" in [r.file_name for r in receiver.received()], timeout=30)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.output
    assert "Traceback" not in daemon.output


def test_sighup_picks_up_a_new_watch_folder(
    tmp_path: Path, receiver: Receiver, notify_socket: NotifySocket
) -> None:
    """SIGHUP rereads the config: a folder added to it is watched, a picture dropped there is
    uploaded, and systemd hears RELOADING=1 and READY=1 again; the queue is kept."""
    config = padded_config(tmp_path, receiver.base_url)
    picture(tmp_path / "hot", "first.jpg")
    daemon = Daemon("run", "-c", str(config), NOTIFY_SOCKET=notify_socket.address)
    try:
        wait_for(lambda: [r.file_name for r in receiver.received()] == ["first.jpg"], timeout=30)
        second = tmp_path / "second folder"
        second.mkdir()
        rewrite_unnoticed(
            config,
            "[destinations.eventpics]",
            f'[[watch]]\npath = "{second.as_posix()}"\n\n[destinations.eventpics]',
        )
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: notify_socket.has("RELOADING=1"), timeout=30, what="RELOADING=1")
        wait_for(lambda: len(notify_socket.lines("READY=1")) >= 2, timeout=30)
        picture(second, "from-the-new-folder.jpg")
        wait_for(
            lambda: "from-the-new-folder.jpg" in [r.file_name for r in receiver.received()],
            timeout=30,
        )
    finally:
        code = daemon.stop()
    assert code == 0, daemon.output
    # The first picture was neither lost nor sent again.
    assert sorted(r.file_name for r in receiver.received()) == [
        "first.jpg",
        "from-the-new-folder.jpg",
    ]


def test_the_reload_command_rereads_the_config(tmp_path: Path, receiver: Receiver) -> None:
    """`boothsync reload` (what Windows has instead of SIGHUP) makes the running boothsync
    reread its config: a destination's new album is used for the next picture."""
    config = padded_config(tmp_path, receiver.base_url)
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30)
        rewrite_unnoticed(config, 'album_id = "a1"', 'album_id = "a2"')
        result = subprocess.run(
            [*BOOTHSYNC, "reload", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env(),
            check=False,
        )
        assert result.returncode == 0, result.stderr
        wait_for(lambda: "the config changed" in daemon.output, timeout=30)
        wait_for(lambda: daemon.output.count("ready: every folder scanned") == 2, timeout=30)
        picture(tmp_path / "hot", "to-album-two.jpg")
        wait_for(lambda: len(receiver.received()) == 1, timeout=30)
    finally:
        assert daemon.stop() == 0
    assert receiver.received()[0].album_id == "a2"


def test_a_reload_without_a_change_restarts_nothing(
    tmp_path: Path, receiver: Receiver, notify_socket: NotifySocket
) -> None:
    """A reload (SIGHUP) of an unchanged config, or a save that only adds a comment, says that
    nothing changed and restarts nothing; only a real change is "the config changed"."""
    config = write_config(tmp_path, receiver.base_url)
    daemon = Daemon("run", "-c", str(config), NOTIFY_SOCKET=notify_socket.address)
    unchanged = "the config was read again: nothing in it changed"
    try:
        wait_for(lambda: notify_socket.has("READY=1"), timeout=30)
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: unchanged in daemon.output, timeout=30, what="the reread")
        config.write_text(config.read_text(encoding="utf-8") + "# a note\n", encoding="utf-8")
        wait_for(lambda: daemon.output.count(unchanged) == 2, timeout=30, what="the save")
        assert "the config changed" not in daemon.output
        assert not notify_socket.has("RELOADING=1")
        assert daemon.output.count("ready: every folder scanned") == 1

        config.write_text(config.read_text(encoding="utf-8").replace('"a1"', '"a2"'))
        wait_for(lambda: "the config changed" in daemon.output, timeout=30)
        wait_for(lambda: notify_socket.has("RELOADING=1"), timeout=30)
        picture(tmp_path / "hot", "after-the-change.jpg")
        wait_for(lambda: len(receiver.received()) == 1, timeout=30)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.output
    assert receiver.received()[0].album_id == "a2"
    assert daemon.output.count(unchanged) == 2


def test_a_reload_without_a_change_asks_a_gallery_that_rejected_the_key_again(
    tmp_path: Path, receiver: Receiver, notify_socket: NotifySocket
) -> None:
    """An unchanged config reread while a gallery rejects the key (put right at the gallery's
    end since) asks it again at once: the destination is online and uploads go, without a
    wait for its next try minutes later."""
    receiver.faults.fail_next.append(("geteventsandalbums", 401))
    config = write_config(tmp_path, receiver.base_url)
    daemon = Daemon("run", "-c", str(config), NOTIFY_SOCKET=notify_socket.address)
    try:
        wait_for(
            lambda: status(config)["destinations"]["eventpics"]["health"] == "unauthorized",
            timeout=30,
        )
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "to ask eventpics once more" in daemon.output, timeout=30)
        wait_for(
            lambda: status(config)["destinations"]["eventpics"]["health"] == "online", timeout=30
        )
        picture(tmp_path / "hot", "after-the-fix.jpg")
        wait_for(lambda: len(receiver.received()) == 1, timeout=30)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.output


def test_a_broken_config_on_sighup_keeps_the_old_one(
    tmp_path: Path, receiver: Receiver, notify_socket: NotifySocket
) -> None:
    """An invalid config sent with SIGHUP is one error line; uploads go on with the old one."""
    config = write_config(tmp_path, receiver.base_url)
    daemon = Daemon("run", "-c", str(config), NOTIFY_SOCKET=notify_socket.address)
    try:
        wait_for(lambda: notify_socket.has("READY=1"), timeout=30)
        config.write_text(config.read_text() + "\n[upload]\nconcurrency = 0\n", encoding="utf-8")
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "config change is ignored" in daemon.output, timeout=30)
        picture(tmp_path / "hot", "still-going.jpg")
        wait_for(lambda: [r.file_name for r in receiver.received()] == ["still-going.jpg"])
    finally:
        code = daemon.stop()
    assert code == 0
    assert not notify_socket.has("RELOADING=1")
    assert "Traceback" not in daemon.output


def test_a_second_run_on_the_same_state_is_refused(tmp_path: Path, receiver: Receiver) -> None:
    """A second `boothsync run` on the same state folder exits 1 with one line naming the
    folder and the running one's pid; the first one goes on."""
    config = write_config(tmp_path, receiver.base_url)
    first = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in first.output, timeout=30)
        second = subprocess.run(
            [*BOOTHSYNC, "run", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env(),
            check=False,
        )
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert str(tmp_path / "state") in lines[0]
        assert f"pid {first.process.pid}" in lines[0]
        picture(tmp_path / "hot", "first-still-works.jpg")
        wait_for(lambda: [r.file_name for r in receiver.received()] == ["first-still-works.jpg"])
    finally:
        assert first.stop() == 0


def test_the_lock_goes_with_a_killed_process(tmp_path: Path, receiver: Receiver) -> None:
    """A boothsync killed with SIGKILL leaves no stale lock: the next start just runs."""
    config = write_config(tmp_path, receiver.base_url)
    first = Daemon("run", "-c", str(config))
    wait_for(lambda: "ready" in first.output, timeout=30)
    first.stop(signal.SIGKILL)
    second = Daemon("run", "-c", str(config))
    try:
        # Both write the same log file: the second "ready" is the second daemon's.
        wait_for(lambda: second.output.count("ready: every folder scanned") == 2, timeout=30)
    finally:
        assert second.stop() == 0


def test_instance_lock_in_one_process(tmp_path: Path) -> None:
    """The lock refuses a second holder, names the holder's pid, and is free again after."""
    with (
        instance_lock(tmp_path / "state"),
        pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"),
        instance_lock(tmp_path / "state"),
    ):
        pass
    with instance_lock(tmp_path / "state"):
        pass


def test_instance_state_reads_the_lock_without_taking_the_folder(tmp_path: Path) -> None:
    """instance_state says never ran (creating nothing), running with the holder's pid, then
    stopped with the time of the stop; looking never keeps a start from taking the lock."""
    folder = tmp_path / "state"
    assert instance_state(folder) == InstanceState(running=False)
    assert not folder.exists()
    with instance_lock(folder):
        running = instance_state(folder)
        assert running.running and running.pid == os.getpid() and running.since is not None
    stopped = instance_state(folder)
    assert not stopped.running and stopped.pid == os.getpid()
    assert stopped.since == (folder / "boothsync.lock").stat().st_mtime
    with instance_lock(folder):
        assert instance_state(folder).running


def test_journal_lines_carry_priorities_and_no_time(tmp_path: Path, receiver: Receiver) -> None:
    """Under systemd ($INVOCATION_ID), log lines go to stderr with <N> priority prefixes and no
    time stamp, and no log file is written."""
    config = write_config(tmp_path, receiver.base_url, api_key="wrong-key-for-the-journal")
    daemon = Daemon("run", "-c", str(config), INVOCATION_ID=uuid.uuid4().hex)
    try:
        wait_for(lambda: "<6>ready: every folder scanned" in daemon.output, timeout=30)
        picture(tmp_path / "hot", "refused.jpg")
        wait_for(lambda: re.search(r"^<3>", daemon.output, re.MULTILINE), timeout=30)
    finally:
        assert daemon.stop() == 0
    lines = [line for line in daemon.output.splitlines() if line]
    assert lines and all(re.match(r"<[0-7]>", line) for line in lines), lines
    assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", daemon.output)
    assert "wrong-key-for-the-journal" not in daemon.output
    assert not daemon.log_dir.exists()


def test_log_file_and_stderr_outside_systemd(tmp_path: Path, receiver: Receiver) -> None:
    """Outside systemd the lines go to a log file in $LOGS_DIRECTORY; stderr, not being a
    terminal, only says where."""
    config = write_config(tmp_path, receiver.base_url)
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30)
    finally:
        assert daemon.stop() == 0
    printed = "".join(daemon.lines)
    log_file = daemon.log_dir / "boothsync.log"
    assert printed.strip() == f"boothsync: logging to {log_file}"
    assert "ready: every folder scanned" in log_file.read_text(encoding="utf-8")


def test_stderr_that_is_a_terminal_gets_the_lines_too(tmp_path: Path, receiver: Receiver) -> None:
    """Run from a terminal, the log lines show there as well as in the log file."""
    config = write_config(tmp_path, receiver.base_url)
    logs = tmp_path / "logs"
    controller, terminal = os.openpty()
    process = subprocess.Popen(
        [*BOOTHSYNC, "run", "-c", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=terminal,
        env=env(LOGS_DIRECTORY=str(logs)),
    )
    os.close(terminal)
    seen = bytearray()

    def read() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                return
            if not chunk:
                return
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: b"ready: every folder scanned" in seen, timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        os.close(controller)
        reader.join(5)
    assert "ready: every folder scanned" in (logs / "boothsync.log").read_text(encoding="utf-8")
    assert b"logging to" not in seen


def test_notify_without_a_socket_does_nothing() -> None:
    """Not started by systemd: nothing is sent and nothing fails."""
    notify = SystemdNotify(environ={})
    assert not notify.enabled
    assert notify.send("READY=1") is False
    assert notify.watchdog_seconds is None


def test_watchdog_meant_for_another_process_is_ignored() -> None:
    """WATCHDOG_PID naming another process means the watchdog is not ours to ping."""
    mine = SystemdNotify(
        environ={
            "NOTIFY_SOCKET": "@x",
            "WATCHDOG_USEC": "2000000",
            "WATCHDOG_PID": str(os.getpid()),
        }
    )
    other = SystemdNotify(
        environ={"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}
    )
    assert mine.watchdog_seconds == 2.0
    assert other.watchdog_seconds is None


def test_a_vanished_notify_socket_is_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A NOTIFY_SOCKET nobody listens on is logged once; sending just returns False."""
    notify = SystemdNotify(environ={"NOTIFY_SOCKET": f"@boothsync-nobody-{uuid.uuid4().hex}"})
    assert notify.send("READY=1") is False
    assert notify.send("WATCHDOG=1") is False
    notify.close()
    assert len([r for r in caplog.records if "cannot notify systemd" in r.message]) == 1


# -- a full disk -------------------------------------------------------------------------------


def _unshare_works() -> bool:
    """Whether this machine lets an unprivileged process mount a tmpfs of its own (a user and
    mount namespace): the one way to a really full disk without root."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run(
        [
            unshare,
            "-rm",
            "sh",
            "-c",
            'mount -t tmpfs -o size=64k tmpfs "$0"',
            tempfile.gettempdir(),
        ],
        capture_output=True,
        check=False,
        timeout=30,
    )
    return probe.returncode == 0


def _fill_until_it_stops(process: subprocess.Popen[str], hot: Path) -> tuple[int, str]:
    """Drop a picture every tenth of a second until the process ends (killed if it has not
    within a minute); how many were dropped, and what it said on stderr."""
    dropped = itertools.count(1)

    def one_more_or_ended() -> bool:
        if process.poll() is not None:
            return True
        picture(hot, f"guest-{next(dropped):04}.jpg")
        return False

    try:
        wait_for(one_more_or_ended, timeout=60, interval=0.1, what="boothsync to stop")
    finally:
        if process.poll() is None:
            process.kill()
        _, errors = process.communicate(timeout=30)
    return next(dropped) - 1, errors


@pytest.mark.skipif(not _unshare_works(), reason="no user namespaces to mount a small tmpfs in")
def test_a_full_disk_ends_the_run_with_one_line_and_exit_1(tmp_path: Path) -> None:
    """The state and log folders on a really full disk (a 600 KiB tmpfs, mounted in a user
    namespace, that the queue's own writes fill): boothsync says once that the log file cannot
    be written, stops with one line naming the queue's folder and "the disk is full", exit code
    1, no traceback, instead of logging an error per picture; nothing was uploaded twice."""
    state = tmp_path / "state"
    state.mkdir()
    with Receiver(tmp_path / "received") as receiver:
        config = write_config(tmp_path, receiver.base_url)
        mount = 'mount -t tmpfs -o size=600k tmpfs "$0" && exec "$@"'
        process = subprocess.Popen(
            ["unshare", "-rm", "sh", "-c", mount, str(state), *BOOTHSYNC, "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env(LOGS_DIRECTORY=str(state / "logs")),
        )
        _, errors = _fill_until_it_stops(process, tmp_path / "hot")
        names = [record.file_name for record in receiver.received()]
    assert process.returncode == 1, errors
    lines = errors.strip().splitlines()
    assert lines[0].startswith("boothsync: logging to")
    assert lines[-1].startswith(f"boothsync: queue database {state / 'outbox.sqlite3'}")
    assert (
        "the disk is full" in lines[-1] and f"free some space on the drive of {state}" in lines[-1]
    )
    # Said once, however many lines were dropped.
    log_lines = [line for line in lines if "cannot write the log file" in line]
    assert len(log_lines) <= 1 and len(lines) <= 3, errors
    if log_lines:
        assert log_lines[0] == (
            f"boothsync: cannot write the log file {state / 'logs' / 'boothsync.log'}: No space"
            " left on device; log lines are dropped until it can be written again"
        )
    assert "Traceback" not in errors
    assert names and len(names) == len(set(names))


def test_a_queue_that_cannot_grow_ends_the_run_with_one_line_and_exit_1(tmp_path: Path) -> None:
    """The same where user namespaces are not allowed: a file size limit (RLIMIT_FSIZE, SIGXFSZ
    ignored) makes the kernel refuse the queue's writes past a size, as a full disk refuses
    them (SQLite reports EFBIG as an I/O error, ENOSPC as "disk is full"; both are a queue that
    cannot be written). One line naming the queue's folder, exit code 1, no traceback."""
    with Receiver(tmp_path / "received") as receiver:
        config = write_config(tmp_path, receiver.base_url)
        hot, state = tmp_path / "hot", tmp_path / "state"
        # A queue from an earlier run, its log written back into the database at the stop.
        picture(hot, "before.jpg")
        first = Daemon("run", "-c", str(config))
        try:
            wait_for(lambda: len(receiver.received()) == 1, timeout=30)
        finally:
            assert first.stop() == 0
        limit = (state / "outbox.sqlite3").stat().st_size + 64 * 1024 + 1

        def small_disk() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        process = subprocess.Popen(
            [*BOOTHSYNC, "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env(LOGS_DIRECTORY=str(first.log_dir)),
            preexec_fn=small_disk,
        )
        dropped, errors = _fill_until_it_stops(process, hot)
        names = [record.file_name for record in receiver.received()]
    assert process.returncode == 1, errors
    lines = errors.strip().splitlines()
    assert len(lines) == 2, errors
    assert lines[0].startswith("boothsync: logging to")
    assert lines[1].startswith(f"boothsync: queue database {state / 'outbox.sqlite3'}")
    assert f"the drive of {state}" in lines[1]
    assert "Traceback" not in errors
    assert len(names) == len(set(names)) and len(names) < dropped + 1
    logged = (first.log_dir / "boothsync.log").read_text(encoding="utf-8")
    assert len([line for line in logged.splitlines() if " ERROR " in line]) < 20


# -- a log file that cannot be written ---------------------------------------------------------


def test_a_log_file_that_cannot_be_written_is_said_once(tmp_path: Path, receiver: Receiver) -> None:
    """The log file on a full disk (/dev/full: every write fails with ENOSPC): one line on
    stderr says so, the log lines are dropped, no traceback, and the pictures are uploaded
    as usual; the process exits 0."""
    config = write_config(tmp_path, receiver.base_url)
    logs = tmp_path / "full-logs"
    logs.mkdir()
    (logs / "boothsync.log").symlink_to("/dev/full")
    process = subprocess.Popen(
        [*BOOTHSYNC, "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env(LOGS_DIRECTORY=str(logs)),
    )
    try:
        for name in ("one.jpg", "two.jpg", "three.jpg"):
            picture(tmp_path / "hot", name)
        wait_for(lambda: len(receiver.received()) == 3, timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors
    assert errors.splitlines() == [
        f"boothsync: logging to {logs / 'boothsync.log'}",
        f"boothsync: cannot write the log file {logs / 'boothsync.log'}: No space left on"
        " device; log lines are dropped until it can be written again",
    ]


def test_logging_goes_on_by_itself_once_the_log_file_can_be_written_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log file that fails (ENOSPC) is said once on stderr however many lines fail; once it
    can be written again the next line goes in, followed by a note of how many were dropped."""
    path = tmp_path / "logs" / "boothsync.log"
    path.parent.mkdir()
    path.symlink_to("/dev/full")
    handler = log_to_file(path)
    logger = logging.getLogger("boothsync.test.full")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        for index in range(50):
            logger.info("dropped line %d", index)
        said = capsys.readouterr().err.splitlines()
        assert said == [
            f"boothsync: cannot write the log file {path}: No space left on device;"
            " log lines are dropped until it can be written again"
        ]
        path.unlink()  # room again
        logger.info("the first line with room again")
        text = path.read_text(encoding="utf-8")
        assert "50 log line(s) were dropped while the log file could not be written" in text
        assert "the first line with room again" in text
        assert capsys.readouterr().err == ""
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.propagate = True
