"""Crash safety of the queue: processes killed at random moments, unusable state folders, a
queue database lost under a running boothsync."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from functools import partial
from pathlib import Path

import pytest

from boothsync.config import WEB_LISTEN_ENV
from boothsync.demo import write_sample_jpeg
from boothsync.errors import OutboxError
from boothsync.outbox import JobState, Outbox
from boothsync.receiver import DEMO_API_KEY, Receiver
from tests.helpers import wait_for
from tests.test_cli import Daemon, write_config
from tests.test_daemon_service import picture

ROOT = Path(__file__).resolve().parents[1]

# Adds pictures and works through them for ever: most claims complete, every
# fourth stays uploading (an upload in flight). Each line is printed only after
# the call it reports returned, so it is committed.
WORKER = """
import sys
from pathlib import Path
from boothsync.outbox import Outbox

box = Outbox(Path(sys.argv[1]))
start = int(sys.argv[2])
for i in range(start, start + 100_000):
    name = f"/booth/prints/IMG_{i:06}.jpg"
    box.add(Path(name), size=i, mtime_ns=i, watch="prints", destinations={"eventpics": None})
    print("added", name, flush=True)
    job = box.claim()
    if job is not None and i % 4 != 3:
        box.complete(job.id)
        print("done", job.path, flush=True)
"""


def _has_completed(log: Path, count: int) -> bool:
    return log.read_text().count("done") >= count


def _committed(log: Path) -> tuple[set[str], set[str]]:
    """The files the worker reported added and completed (whole lines only)."""
    added: set[str] = set()
    done: set[str] = set()
    for line in log.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # cut short by the kill
        what, _, path = line.strip().partition(" ")
        (added if what == "added" else done).add(path)
    return added, done


def _rows(db: Path) -> dict[str, str]:
    raw = sqlite3.connect(db)
    try:
        return {
            str(path): str(state)
            for path, state in raw.execute(
                "SELECT f.path, j.state FROM jobs AS j JOIN files AS f ON f.id = j.file_id"
            )
        }
    finally:
        raw.close()


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    """A writer SIGKILLed five times at random moments loses no row and no completion:
    after each restart recover() brings every interrupted upload back to waiting, and
    the database passes quick_check."""
    db = tmp_path / "state" / "outbox.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(5)
    pace = threading.Event()
    all_added: set[str] = set()
    all_done: set[str] = set()
    for round_ in range(5):
        log = tmp_path / f"worker-{round_}.log"
        with log.open("w") as out:
            worker = subprocess.Popen(
                [sys.executable, "-c", WORKER, str(db), str(round_ * 100_000)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.PIPE,
            )
        try:
            wait_for(partial(_has_completed, log, 5), timeout=20, what="the worker to work")
            pace.wait(rng.uniform(0.0, 0.3))
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
            assert worker.stderr is not None
            errors = worker.stderr.read().decode()
            worker.stderr.close()
        assert worker.returncode == -signal.SIGKILL, errors

        added, done = _committed(log)
        all_added |= added
        all_done |= done
        box = Outbox(db)
        try:
            uploading = box.stats().totals[JobState.UPLOADING]
            assert uploading > 0, "every fourth claim was left uploading"
            assert box.recover() == uploading
            assert box.stats().totals[JobState.UPLOADING] == 0
        finally:
            box.close()
        rows = _rows(db)
        assert all_added <= rows.keys(), "a reported add was lost"
        # At most the one call the kill cut short between its commit and its line.
        assert len(rows.keys() - all_added) <= 1
        all_added |= rows.keys()
        assert all(rows[path] == "uploaded" for path in all_done), "a completion was lost"
        raw = sqlite3.connect(db)
        try:
            assert raw.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        finally:
            raw.close()


def test_run_with_an_unusable_state_folder_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """`python -m boothsync run` whose state folder sits under a regular file exits 1
    with one line naming the queue database and the cause, no traceback."""
    hot = tmp_path / "hot"
    hot.mkdir()
    (tmp_path / "a-file").write_text("")
    state = tmp_path / "a-file" / "state"
    config = tmp_path / "boothsync.toml"
    config.write_text(
        f"""
[booth]
name = "booth-1"
timezone = "Europe/Berlin"

[[watch]]
path = "{hot.as_posix()}"

[destinations.eventpics]
type = "eventpics"
api_key = "k"
link_id = "demo"
base_url = "http://127.0.0.1:9"

[state]
dir = "{state.as_posix()}"
""",
        encoding="utf-8",
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("BOOTHSYNC_") or k == WEB_LISTEN_ENV
    }
    result = subprocess.run(
        [sys.executable, "-m", "boothsync", "run", "-c", str(config)],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(state) in lines[0] and "a file is in the way" in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_a_damaged_queue_is_moved_aside_and_the_folder_queued_again(tmp_path: Path) -> None:
    """`boothsync run` on a damaged queue says so, keeps the old file, and uploads the folder."""
    hot = tmp_path / "hot"
    state = tmp_path / "state"
    hot.mkdir()
    state.mkdir()
    (state / "outbox.sqlite3").write_bytes(b"the power went out while this was written" * 50)
    write_sample_jpeg(hot / "kept.jpg", datetime(2026, 5, 1, 12), "x", (1, 2, 3))
    with Receiver(tmp_path / "received") as receiver:
        config = tmp_path / "boothsync.toml"
        config.write_text(
            f'[[watch]]\npath = "{hot.as_posix()}"\nsettle_seconds = 0.3\n'
            f'[destinations.eventpics]\ntype = "eventpics"\napi_key = "{DEMO_API_KEY}"\n'
            f'link_id = "demo"\nbase_url = "{receiver.base_url}"\n'
            f'[state]\ndir = "{state.as_posix()}"\n'
        )
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("BOOTHSYNC_") or k == WEB_LISTEN_ENV
        }
        daemon = subprocess.Popen(
            [sys.executable, "-m", "boothsync", "run", "-c", str(config)],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            wait_for(lambda: [r.file_name for r in receiver.received()] == ["kept.jpg"], timeout=30)
        finally:
            daemon.send_signal(signal.SIGTERM)
            _, errors = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, errors
    logged = (state / "logs" / "boothsync.log").read_text(encoding="utf-8")
    assert "was damaged" in logged and "moved it to" in logged
    assert "Traceback" not in errors + logged
    assert [p.name for p in state.glob("outbox.sqlite3.corrupt-*")] != []


def _counts(db: Path) -> dict[str, int] | None:
    """The queue's counts as `status` reads them, or None while there is no queue to read."""
    try:
        reader = Outbox(db, readonly=True)
    except OutboxError:
        return None
    try:
        return reader.counts()
    except OutboxError:
        return None
    finally:
        reader.close()


def _sabotage(db: Path, how: str) -> None:
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    elif how == "replaced":
        other = db.with_name("restored-from-somewhere.sqlite3")
        raw = sqlite3.connect(other)
        raw.execute("CREATE TABLE something_else (x)")
        raw.close()
        os.replace(other, db)
    else:
        db.write_bytes(os.urandom(40_000))


@pytest.mark.parametrize("how", ["deleted", "replaced", "overwritten"])
def test_a_queue_lost_while_running_is_rebuilt_and_nothing_is_sent_twice(
    tmp_path: Path, how: str
) -> None:
    """A real `boothsync run` that has uploaded three pictures has its queue database deleted,
    replaced by another file, or overwritten with garbage: within a couple of seconds it says
    so in one ERROR line and rebuilds the queue, without a restart; new pictures are queued
    and uploaded, and the three are not uploaded a second time."""
    db = tmp_path / "state" / "outbox.sqlite3"
    hot = tmp_path / "hot"
    with Receiver(tmp_path / "received") as receiver:
        config = write_config(tmp_path, receiver.base_url)
        for name in ("first.jpg", "second.jpg", "third.jpg"):
            picture(hot, name)
        daemon = Daemon("run", "-c", str(config))
        try:
            wait_for(lambda: len(receiver.received()) == 3, timeout=30, what="three uploads")
            wait_for(lambda: (_counts(db) or {}).get("uploaded") == 3, what="them recorded")
            _sabotage(db, how)
            done_at = time.monotonic()
            wait_for(
                lambda: f"was {how} while boothsync ran" in daemon.output,
                timeout=10,
                what="the rebuild",
            )
            noticed = time.monotonic() - done_at
            picture(hot, "fourth.jpg")
            picture(hot, "fifth.jpg")
            wait_for(lambda: len(receiver.received()) >= 5, timeout=30, what="the new pictures")
            wait_for(
                lambda: _counts(db) == {"waiting": 0, "uploading": 0, "uploaded": 5, "failed": 0},
                what="a settled queue of five",
            )
        finally:
            code = daemon.stop()
        uploads = Counter(record.file_name for record in receiver.received())
    assert code == 0, daemon.output
    assert noticed < 3.0, f"took {noticed:.1f} s to notice"
    assert uploads == dict.fromkeys(
        ("first.jpg", "second.jpg", "third.jpg", "fourth.jpg", "fifth.jpg"), 1
    )
    errors = [line for line in daemon.output.splitlines() if " ERROR " in line]
    [rebuilt] = [line for line in errors if "while boothsync ran" in line]
    assert str(db) in rebuilt
    # Anything else is an operation that met the damage before the check did.
    assert all("is damaged" in line for line in errors if line != rebuilt), errors
    if how != "deleted":
        moved = [p for p in db.parent.iterdir() if p.name.startswith("outbox.sqlite3.corrupt-")]
        assert moved and str(moved[0]) in rebuilt
    assert "Traceback" not in daemon.output
