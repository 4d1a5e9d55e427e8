"""Hostile files and names in a shared hot folder: links out of it, names that are not UTF-8
or that carry newlines and terminal escape codes, files that cannot be read for a while.

The engine runs for real against the local receiver over HTTP; what reaches the gallery, the
queue and the log is checked."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from boothsync.config import Config
from boothsync.engine import Engine
from boothsync.names import printable, upload_name
from boothsync.outbox import Known, Outbox
from boothsync.receiver import Faults, Receiver
from tests.helpers import engine_config, jpeg, queue, wait_for
from tests.test_cli import BOOTHSYNC, Daemon, env, write_config

POSIX = os.name == "posix"
needs_posix_names = pytest.mark.skipif(
    not POSIX or sys.platform == "darwin",
    reason="file names that are not UTF-8 exist on Linux file systems only",
)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received", faults=Faults(seed=3)) as server:
        yield server


def make_config(tmp_path: Path, receiver: Receiver, **watch: Any) -> Config:
    return engine_config(tmp_path, receiver.base_url, **{"settle_seconds": 0.2, **watch})


def names(receiver: Receiver) -> list[str]:
    return sorted(record.file_name for record in receiver.received())


def queued_before_start(tmp_path: Path, path: Path) -> Path:
    """Queue ``path`` (as it is now) for the gallery in the test config's queue, as a run
    before this one would have; returns the queue's path."""
    state = tmp_path / "state" / "outbox.sqlite3"
    box = Outbox(state)
    try:
        queue(box, path, "eventpics")
    finally:
        box.close()
    return state


# -- names ----------------------------------------------------------------------------------


def test_printable_escapes_what_could_forge_a_line_or_break_an_encoder() -> None:
    """Newlines, terminal escape codes, a right-to-left override and bytes that are not UTF-8
    are written as escapes; letters of any script, spaces and backslashes stay."""
    odd = os.fsdecode(b"G\xe4ste")
    assert printable(f"IMG\n2026 ERROR\x1b[31m\u202e{odd}.jpg") == (
        "IMG\\n2026 ERROR\\x1b[31m\\u202eG\\xe4ste.jpg"
    )
    assert printable("C:\\Booth\\Fotos\\Gäste 東京.jpg") == "C:\\Booth\\Fotos\\Gäste 東京.jpg"


def test_a_name_that_is_not_utf8_is_uploaded_read_as_windows_1252() -> None:
    """A name from a Windows share mounted with the wrong character set is read as Windows-1252;
    undefined bytes and control characters become "_"; a good name is left alone."""
    assert upload_name(os.fsdecode(b"Fotobox_G\xe4ste.jpg")) == "Fotobox_Gäste.jpg"
    assert upload_name(os.fsdecode(b"a\x81b\xc3\xa4.jpg")) == "a_bä.jpg"
    assert upload_name("line\nbreak\x1b.jpg") == "line_break_.jpg"
    assert upload_name("Gäste 東京.jpg") == "Gäste 東京.jpg"


@needs_posix_names
def test_the_queue_keeps_a_name_that_is_not_utf8_exactly(tmp_path: Path) -> None:
    """A path that is not valid UTF-8 is stored and given back byte for byte, and an error
    naming it is stored in printable form."""
    odd = tmp_path / os.fsdecode(b"Fotobox_G\xe4ste.jpg")
    odd.write_bytes(jpeg(b"guests"))
    box = Outbox(tmp_path / "outbox.sqlite3")
    try:
        queue(box, odd, "eventpics")
        st = odd.stat()
        assert box.known(odd, st.st_size, st.st_mtime_ns) is Known.QUEUED
        job = box.claim()
        assert job is not None and job.path == odd
        box.fail(job.id, error=f"{odd}: cannot be read")
        stored = box.stats().last_error
        assert stored is not None and stored.path == str(odd)
        assert stored.error == f"{printable(str(odd))}: cannot be read"
    finally:
        box.close()


@needs_posix_names
def test_one_name_that_is_not_utf8_delays_nobody(
    tmp_path: Path, receiver: Receiver, engine_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Fifty pictures and one whose name is not UTF-8, renamed in together: all fifty-one reach
    the gallery, the odd one as "Fotobox_Gäste.jpg", with one warning naming it and no error."""
    config = make_config(tmp_path, receiver)
    hot = config.watches[0].path
    staging = tmp_path / "staging"
    staging.mkdir()
    expected = []
    for index in range(50):
        (staging / f"IMG_{index:04d}.jpg").write_bytes(jpeg(os.urandom(2000)))
        expected.append(f"IMG_{index:04d}.jpg")
    odd = os.fsdecode(b"Fotobox_G\xe4ste.jpg")
    (staging / odd).write_bytes(jpeg(os.urandom(2000)))
    with caplog.at_level(logging.INFO):
        engine_for(config)
        for path in sorted(staging.iterdir()):
            os.replace(path, hot / path.name)
        wait_for(lambda: len(receiver.received()) == 51, timeout=30, what="all 51 pictures")
    assert names(receiver) == sorted([*expected, "Fotobox_Gäste.jpg"])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    odd_lines = [r for r in caplog.records if "not valid UTF-8" in r.getMessage()]
    assert len(odd_lines) == 1


def uploaded_by_a_daemon(tmp_path: Path, receiver: Receiver, name: str) -> tuple[Path, Daemon]:
    """A real `boothsync run` uploads one picture called ``name``, then stops (exit code 0)."""
    config = write_config(tmp_path, receiver.base_url)
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30)
        (tmp_path / "hot" / name).write_bytes(jpeg(name.encode("utf-8", "surrogateescape")))
        wait_for(lambda: len(receiver.received()) == 1, timeout=30, what="the upload")
    finally:
        assert daemon.stop() == 0
    return config, daemon


def test_a_name_with_a_newline_and_escape_codes_is_one_quoted_log_line(
    tmp_path: Path, receiver: Receiver
) -> None:
    """In the log file, a picture named with a newline and a terminal escape code shows on one
    line with both escaped: it can neither forge a log line nor recolour a terminal."""
    name = "evil\n2026-01-01 00:00:00 ERROR   forged\x1b[31m.jpg"
    _, daemon = uploaded_by_a_daemon(tmp_path, receiver, name)
    log = (daemon.log_dir / "boothsync.log").read_text(encoding="utf-8")
    assert "evil\\n2026-01-01 00:00:00 ERROR   forged\\x1b[31m.jpg" in log
    assert "\x1b" not in log
    assert not [line for line in log.splitlines() if line.startswith("2026-01-01 00:00:00")]


# -- links -----------------------------------------------------------------------------------


def test_a_link_to_a_file_outside_the_watched_folders_is_not_uploaded(
    tmp_path: Path, receiver: Receiver, engine_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A symbolic link in the hot folder that leads outside every watched folder (here to a
    stand-in for the booth's config with its key) is not uploaded, and one warning names the
    link; a link to a picture inside the folder is."""
    config = make_config(tmp_path, receiver)
    hot = config.watches[0].path
    secret = tmp_path / "boothsync.toml"
    secret.write_text('api_key = "the-real-key"\n', encoding="utf-8")
    inside = hot / "prints"
    inside.mkdir()
    (inside / "real.jpg").write_bytes(jpeg(b"a print"))
    with caplog.at_level(logging.WARNING, logger="boothsync.watcher"):
        (hot / "shadow.jpg").symlink_to(secret)
        (hot / "print.jpg").symlink_to(inside / "real.jpg")
        engine = engine_for(config)
        engine.scan()
        wait_for(lambda: names(receiver) == ["print.jpg"], what="the link inside to arrive")
        engine.scan()
        wait_for(lambda: engine.outbox.counts()["uploaded"] == 1)
    assert names(receiver) == ["print.jpg"]
    assert sum(engine.outbox.counts().values()) == 1  # the link out was never even queued
    warnings = [r.getMessage() for r in caplog.records if "outside the watched" in r.getMessage()]
    assert len(warnings) == 1 and str(hot / "shadow.jpg") in warnings[0]
    assert not any(b"the-real-key" in r.path.read_bytes() for r in receiver.received())


def test_links_outside_go_when_the_watch_allows_them(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """allow_outside_links = true uploads a link to a picture elsewhere, under the link's name."""
    config = make_config(tmp_path, receiver, allow_outside_links=True)
    elsewhere = tmp_path / "elsewhere.jpg"
    elsewhere.write_bytes(jpeg(b"from elsewhere"))
    engine_for(config)
    (config.watches[0].path / "linked.jpg").symlink_to(elsewhere)
    wait_for(lambda: names(receiver) == ["linked.jpg"])
    assert receiver.received()[0].path.read_bytes() == elsewhere.read_bytes()


def test_a_picture_swapped_for_a_link_after_it_was_queued_is_refused(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A queued picture replaced by a link to a file outside before its upload is not sent:
    the job fails saying where the link leads, and the file it leads to never reaches the
    gallery."""
    config = make_config(tmp_path, receiver)
    hot = config.watches[0].path
    path = hot / "IMG_0001.jpg"
    path.write_bytes(jpeg(b"an honest picture"))
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(jpeg(b"not for the gallery"))
    queued_before_start(tmp_path, path)
    path.unlink()
    path.symlink_to(secret)
    engine = Engine(config)
    engine.start()
    try:
        wait_for(lambda: engine.outbox.counts()["failed"] == 1, what="the refusal")
        error = engine.outbox.stats().last_error
    finally:
        engine.stop(5)
    assert error is not None and "outside the watched folders" in (error.error or "")
    assert receiver.received() == []


# -- files that cannot be read for a while ----------------------------------------------------


def attempts(state: Path) -> int:
    with sqlite3.connect(f"{state.as_uri()}?mode=ro", uri=True) as raw:
        return int(raw.execute("SELECT MAX(attempts) FROM jobs").fetchone()[0] or 0)


def test_a_picture_unreadable_for_a_while_goes_as_soon_as_it_can_be_read(
    tmp_path: Path, receiver: Receiver, engine_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A queued picture that cannot be read (here: a folder stands where it was, which refuses
    every user, root included) is tried again with the backoff rather than failed after a few
    seconds; once the very same picture is back and readable, the event that brings it makes
    it due at once, and it goes."""
    config = make_config(tmp_path, receiver)
    hot = config.watches[0].path
    path = hot / "IMG_0001.jpg"
    data = jpeg(os.urandom(5000))
    path.write_bytes(data)
    st = path.stat()
    state = queued_before_start(tmp_path, path)
    hidden = tmp_path / "hidden.jpg"
    path.rename(hidden)
    path.mkdir()
    with caplog.at_level(logging.INFO, logger="boothsync.outbox"):
        engine = engine_for(config)
        # Three failed reads take about five seconds: where an unreadable file used to fail.
        wait_for(lambda: attempts(state) >= 3, timeout=30, what="three failed reads")
        assert engine.outbox.counts()["failed"] == 0
        path.rmdir()
        os.replace(hidden, path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # the very version that was queued
        os.chmod(path, 0o644)  # the permission change an operator makes
        wait_for(lambda: "can be read now" in caplog.text, what="the job to be made due")
        wait_for(lambda: len(receiver.received()) == 1, what="the upload")
    assert receiver.received()[0].path.read_bytes() == data


@needs_posix_names
def test_status_shows_odd_names_escaped(tmp_path: Path, receiver: Receiver) -> None:
    """`boothsync status` (text and JSON) works with an uploaded picture whose name is not
    UTF-8 and holds a newline: the name is shown escaped, on one line."""
    name = os.fsdecode(b"G\xe4ste\nzwei.jpg")
    config, _ = uploaded_by_a_daemon(tmp_path, receiver, name)
    text = subprocess.run(
        [*BOOTHSYNC, "status", "-c", str(config)], capture_output=True, env=env(), check=False
    )
    assert text.returncode == 0, text.stderr
    assert b"last upload: G\\xe4ste\\nzwei.jpg to eventpics" in text.stdout
    as_json = subprocess.run(
        [*BOOTHSYNC, "status", "--json", "-c", str(config)], capture_output=True, env=env()
    )
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["last_upload"]["file"] == name
