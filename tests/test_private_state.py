"""Private files: the queue and the logs are this account's only (0700 folders, 0600 files on
POSIX), and the pictures boothsync writes for the operator keep their usual permissions."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from boothsync import service
from boothsync.daemon import log_to_file
from boothsync.demo import write_sample_jpeg
from boothsync.outbox import Outbox
from boothsync.receiver import DEMO_API_KEY, Receiver
from tests.helpers import wait_for
from tests.test_cli import BOOTHSYNC, env

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")

ROOT = Path(__file__).resolve().parents[1]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_and_log_files_are_private_and_pictures_are_not(tmp_path: Path) -> None:
    """A real `boothsync run` (umask 022): the state and log folders are 0700, the queue
    database with its -wal and -shm, the lock file and the log file 0600, also where an older
    boothsync had left them 0755 and 0644; a moved picture and a folder destination's copy keep
    the usual 0644, so the process's umask was left alone."""
    hot, state, logs, copies = (tmp_path / name for name in ("hot", "state", "logs", "copies"))
    for folder in (hot, copies):
        folder.mkdir()
    # What an older boothsync left: a world-readable folder, queue and rotated log.
    state.mkdir(mode=0o755)
    old = Outbox(state / "outbox.sqlite3")
    old.close()
    os.chmod(state / "outbox.sqlite3", 0o644)
    os.chmod(state, 0o755)
    logs.mkdir(mode=0o755)
    (logs / "boothsync.log.1").write_text("an old line\n")
    os.chmod(logs / "boothsync.log.1", 0o644)
    write_sample_jpeg(hot / "guest.jpg", datetime(2026, 6, 1, 20), "guest", (1, 2, 3))
    os.chmod(hot / "guest.jpg", 0o644)
    with Receiver(tmp_path / "received") as receiver:
        config = tmp_path / "boothsync.toml"
        config.write_text(
            f'[[watch]]\npath = "{hot.as_posix()}"\nsettle_seconds = 0.3\n'
            'after_upload = "move"\n'
            f'[destinations.eventpics]\ntype = "eventpics"\napi_key = "{DEMO_API_KEY}"\n'
            f'link_id = "demo"\nbase_url = "{receiver.base_url}"\n'
            f'[destinations.copies]\ntype = "folder"\npath = "{copies.as_posix()}"\n'
            f'[state]\ndir = "{state.as_posix()}"\n',
            encoding="utf-8",
        )
        process = subprocess.Popen(
            [*BOOTHSYNC, "run", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env(LOGS_DIRECTORY=str(logs)),
            umask=0o022,
        )
        try:
            wait_for(lambda: (hot / "uploaded" / "guest.jpg").exists(), timeout=30)
            wait_for(lambda: (copies / "guest.jpg").exists(), timeout=30)
            # Checked while it runs: the -wal and -shm exist only then.
            assert mode(state) == 0o700
            for name in ("outbox.sqlite3", "outbox.sqlite3-wal", "outbox.sqlite3-shm"):
                assert mode(state / name) == 0o600, name
            assert mode(state / "boothsync.lock") == 0o600
            assert mode(logs) == 0o700
            assert mode(logs / "boothsync.log") == 0o600
            assert mode(logs / "boothsync.log.1") == 0o600
            assert mode(hot / "uploaded" / "guest.jpg") == 0o644
            assert mode(copies / "guest.jpg") == 0o644
        finally:
            process.send_signal(signal.SIGTERM)
            _, errors = process.communicate(timeout=30)
    assert process.returncode == 0, errors


def test_rotated_log_files_stay_private(tmp_path: Path) -> None:
    """The log file and every file rotated from it are 0600, in a 0700 folder."""
    path = tmp_path / "logs" / "boothsync.log"
    handler = log_to_file(path, max_bytes=300, backups=3)
    logger = logging.getLogger("boothsync.test.rotation")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for index in range(20):
            logger.info("line %d of a log that rotates every few lines", index)
    finally:
        logger.removeHandler(handler)
        handler.close()
    files = sorted(path.parent.iterdir())
    assert [p.name for p in files] == [
        "boothsync.log",
        "boothsync.log.1",
        "boothsync.log.2",
        "boothsync.log.3",
    ]
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    assert mode(path.parent) == 0o700


def test_the_service_units_keep_state_and_logs_private() -> None:
    """systemd creates the state and log folders 0700, in the static units and in the ones
    `boothsync service install` writes (system and user)."""
    units = [
        (ROOT / "service" / "boothsync.service").read_text(encoding="utf-8"),
        (ROOT / "service" / "boothsync-user.service").read_text(encoding="utf-8"),
        service.render_unit(["/usr/bin/boothsync", "run"], account="pi"),
        service.render_unit(["/usr/bin/boothsync", "run"], user=True),
    ]
    for text in units:
        lines = text.splitlines()
        assert "StateDirectoryMode=0700" in lines
        assert "LogsDirectoryMode=0700" in lines
