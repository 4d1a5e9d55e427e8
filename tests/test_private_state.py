"""No key at rest, and private files: the queue and the logs are this account's only (0700
folders, 0600 files on POSIX), the pictures boothsync writes for the operator keep their usual
permissions, and no secret of the config is ever stored in the queue database."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from boothsync import service
from boothsync.daemon import log_to_file
from boothsync.demo import write_sample_jpeg
from boothsync.engine import Engine
from boothsync.outbox import Outbox
from boothsync.receiver import DEMO_API_KEY, Receiver
from tests.helpers import engine_config, wait_for
from tests.test_cli import BOOTHSYNC, env

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")

ROOT = Path(__file__).resolve().parents[1]
SECRET = "k3y-the-server-echoes-back-0123"


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


# -- no key at rest ---------------------------------------------------------------------------


def test_secrets_are_blanked_in_what_the_queue_stores(tmp_path: Path) -> None:
    """A secret the caller names never reaches the database: not in a job's last error (waiting
    or failed), not in a destination's health detail; messages stored before it was named are
    blanked at the next open; a short placeholder is left alone."""
    db = tmp_path / "state" / "outbox.sqlite3"
    before = Outbox(db)
    before.add(Path("/booth/a.jpg"), size=1, mtime_ns=1, watch="w", destinations={"e": None})
    job = before.claim()
    assert job is not None
    before.retry_later(job.id, delay=0, error=f"an older boothsync stored {SECRET}")
    before.set_health("e", "offline", f"no answer for {SECRET}")
    before.close()

    box = Outbox(db, secrets=[SECRET, "ab"])
    try:
        assert box.stats().last_error.error == "an older boothsync stored ***"  # type: ignore[union-attr]
        box.add(Path("/booth/b.jpg"), size=2, mtime_ns=2, watch="w", destinations={"e": None})
        first, second = box.claim(), box.claim()
        assert first is not None and second is not None
        box.retry_later(first.id, delay=60, error=f"400: invalid apiKey {SECRET} (ab)")
        box.fail(second.id, error=f"refused: {SECRET}")
        box.set_health("e", "rate-limited", f"429 for key {SECRET}")
        errors = {
            str(row[0])
            for row in box._connection().execute("SELECT last_error FROM jobs")
            if row[0] is not None
        }
        assert errors == {"400: invalid apiKey *** (ab)", "refused: ***"}
        assert box.health() == {"e": ("rate-limited", "429 for key ***")}
    finally:
        box.close()
    assert SECRET.encode() not in db.read_bytes()


class _EchoingGallery(BaseHTTPRequestHandler):
    """An EventPics-like server that repeats the API key it was sent in its error answers, as
    careless servers do: 429 for busy.jpg, 400 for everything else."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key, name = body["apiKey"], body["fileName"]
        status = 429 if name == "busy.jpg" else 400
        answer = json.dumps({"error": f"{name} refused for apiKey {key}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        if status == 429:
            self.send_header("Retry-After", "3600")
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:  # the probe: reachable
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echoing_gallery() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingGallery)
    thread = threading.Thread(target=server.serve_forever, name="echoing-gallery")
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_key_a_server_echoes_is_stored_as_stars(tmp_path: Path, echoing_gallery: str) -> None:
    """A running engine whose gallery echoes the API key in its errors (a refused picture, a
    429): the failed job's last error, the rate-limited destination's health detail and what
    status shows hold ***, and no byte of the database or its -wal holds the key."""
    config = engine_config(tmp_path, echoing_gallery, api_key=SECRET)
    engine = Engine(config)
    engine.start()
    db = tmp_path / "state" / "outbox.sqlite3"
    try:
        assert engine.wait_ready(10)
        for name in ("refused.jpg", "busy.jpg"):
            write_sample_jpeg(tmp_path / "hot" / name, datetime(2026, 6, 1), name, (4, 5, 6))
        wait_for(lambda: engine.outbox.counts()["failed"] == 1, timeout=30)
        wait_for(lambda: engine.outbox.health()["eventpics"][0] == "rate-limited", timeout=30)
        stored = engine.outbox.stats().last_error
        assert stored is not None and stored.error is not None
        assert "***" in stored.error and SECRET not in stored.error
        _, detail = engine.outbox.health()["eventpics"]
        assert "***" in detail and SECRET not in detail
        files = [db, Path(f"{db}-wal")]
        assert all(SECRET.encode() not in path.read_bytes() for path in files if path.exists())
    finally:
        engine.stop(5)
    raw = sqlite3.connect(db)
    try:
        stored_text = " ".join(
            str(value)
            for row in raw.execute(
                "SELECT last_error FROM jobs UNION ALL SELECT detail FROM destinations"
            )
            for value in row
        )
    finally:
        raw.close()
    assert SECRET not in stored_text and "***" in stored_text
    assert SECRET.encode() not in db.read_bytes()
    # What an operator sees: `status --json` reads the same database.
    toml = tmp_path / "boothsync.toml"
    toml.write_text(
        f'[[watch]]\npath = "{(tmp_path / "hot").as_posix()}"\n'
        f'[destinations.eventpics]\ntype = "eventpics"\napi_key = "{SECRET}"\n'
        f'link_id = "demo"\nbase_url = "{echoing_gallery}"\n'
        f'[state]\ndir = "{(tmp_path / "state").as_posix()}"\n',
        encoding="utf-8",
    )
    status = subprocess.run(
        [*BOOTHSYNC, "status", "--json", "-c", str(toml)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env(),
    )
    # 3: a picture failed (the refused one), which the operator must see to.
    assert status.returncode == 3, status.stderr
    assert "***" in status.stdout and SECRET not in status.stdout + status.stderr
