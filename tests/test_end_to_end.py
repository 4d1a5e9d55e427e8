"""The whole pipeline in one process: a real folder, the engine, the receiver over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from PIL import Image

from boothsync import watcher
from boothsync.config import Config
from boothsync.demo import write_sample_jpeg
from boothsync.engine import Engine
from boothsync.health import Health
from boothsync.outbox import Outbox
from boothsync.paths import outbox_path
from boothsync.receiver import DEMO_API_KEY, Faults, Receiver
from tests.helpers import engine_config, jpeg, wait_for

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received", faults=Faults(seed=7)) as server:
        yield server


def make_config(
    tmp_path: Path, receiver: Receiver, *, api_key: str = DEMO_API_KEY, **watch: Any
) -> Config:
    watch = {"settle_seconds": 0.3, **watch}
    return engine_config(tmp_path, receiver.base_url, api_key=api_key, album_id="a1", **watch)


def picture(folder: Path, name: str, taken: datetime) -> Path:
    path = folder / name
    write_sample_jpeg(path, taken, name, (200, 80, 40))
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def received_by_name(receiver: Receiver) -> dict[str, Any]:
    return {r.file_name: r for r in receiver.received()}


def test_pictures_arrive_byte_exact_with_name_time_and_album(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """A picture dropped into the hot folder reaches the gallery whole, named, timed and filed."""
    config = make_config(tmp_path, receiver)
    engine_for(config)
    hot = config.watches[0].path
    summer = picture(hot, "IMG_0001.jpg", datetime(2026, 7, 4, 22, 15, 30))
    winter = picture(hot, "IMG_0002.JPG", datetime(2025, 12, 31, 23, 59, 59))

    got = wait_for(lambda: len(receiver.received()) == 2 and received_by_name(receiver))
    for path, local in (
        (summer, datetime(2026, 7, 4, 22, 15, 30)),
        (winter, datetime(2025, 12, 31, 23, 59, 59)),
    ):
        record = got[path.name]
        assert record.sha256 == sha256(path)
        assert record.path.read_bytes() == path.read_bytes()
        assert record.taken_at == int(local.replace(tzinfo=BERLIN).timestamp() * 1000)
        assert record.album_id == "a1"
        assert record.content_type == "image/jpeg"
    assert receiver.url_reuses == 0


def test_files_already_in_the_folder_are_uploaded_at_start(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """Pictures taken while boothsync was not running are uploaded when it starts."""
    config = make_config(tmp_path, receiver)
    hot = config.watches[0].path
    for index in range(3):
        picture(hot, f"before-{index}.jpg", datetime(2026, 5, 1, 12, index))
    engine_for(config)
    wait_for(lambda: len(receiver.received()) == 3)
    assert sorted(received_by_name(receiver)) == ["before-0.jpg", "before-1.jpg", "before-2.jpg"]


def test_an_expired_upload_url_is_replaced(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """When the storage refuses the presigned URL, a new one is fetched and the file arrives."""
    receiver.faults.fail_next = [("put", 403), ("put", 403)]
    config = make_config(tmp_path, receiver)
    engine_for(config)
    path = picture(config.watches[0].path, "expired.jpg", datetime(2026, 5, 1, 12, 0))
    wait_for(lambda: receiver.received())
    assert receiver.received()[0].sha256 == sha256(path)
    counts = receiver.counts()
    assert counts["put"].get(403) == 2
    assert counts["getuploadurl"].get(200) == 3
    assert receiver.url_reuses == 0


def test_a_url_that_expires_before_the_put_is_replaced(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """A URL valid for less time than the request takes is replaced, never reused."""
    receiver.faults.url_lifetime = 0.0
    config = make_config(tmp_path, receiver)
    engine_for(config)
    picture(config.watches[0].path, "slow.jpg", datetime(2026, 5, 1, 12, 0))
    wait_for(lambda: receiver.counts().get("put", {}).get(403, 0) >= 2)
    receiver.faults.url_lifetime = 300.0
    wait_for(lambda: receiver.received(), timeout=30)
    assert receiver.url_reuses == 0


def test_server_errors_and_resets_are_retried_until_the_file_arrives(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """503s and dropped connections never lose a picture: it waits and goes again."""
    receiver.faults.fail_next = [
        ("getuploadurl", 503),
        ("getuploadurl", 0),
        ("put", 502),
        ("put", 0),
    ]
    config = make_config(tmp_path, receiver)
    engine = engine_for(config)
    path = picture(config.watches[0].path, "flaky.jpg", datetime(2026, 5, 1, 12, 0))
    wait_for(lambda: receiver.received(), timeout=60)
    assert receiver.received()[0].sha256 == sha256(path)
    wait_for(lambda: engine.snapshot().stats.totals["uploaded"] == 1)


def test_a_rejected_key_pauses_the_destination_without_failing_files(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """401 pauses the destination: files wait, none is marked failed, health says unauthorized."""
    config = make_config(tmp_path, receiver, api_key="wrong-key")
    engine = engine_for(config)
    for index in range(3):
        picture(config.watches[0].path, f"p{index}.jpg", datetime(2026, 5, 1, 12, index))

    def paused() -> bool:
        snap = engine.snapshot()
        return (
            snap.health["eventpics"].health is Health.UNAUTHORIZED
            and snap.stats.totals["waiting"] == 3
        )

    wait_for(paused)
    snap = engine.snapshot()
    assert snap.stats.totals["failed"] == 0
    assert "api_key" in snap.health["eventpics"].detail
    # At most one request found the key wrong (the check at start may have been first); the
    # rest waited instead of burning through the queue.
    assert receiver.counts().get("getuploadurl", {}).get(401, 0) <= 2


@pytest.mark.parametrize(
    ("wrong", "named"),
    [
        ({"api_key": "wrong-key"}, "api_key"),
        ({"link_id": "no-such-link"}, "link_id"),
        ({"watch_album": "zz"}, "album 'zz'"),
    ],
)
def test_a_wrong_key_link_or_album_is_known_at_start_before_any_picture(
    tmp_path: Path, receiver: Receiver, engine_for: Any, wrong: dict[str, str], named: str
) -> None:
    """The engine checks each destination once as it starts (the listing `check` reads): a
    key, link or album the gallery does not know is `unauthorized` within seconds, with the
    config key to fix, before a guest's picture is the test; nothing fails meanwhile."""
    config = make_config(tmp_path, receiver, api_key=wrong.get("api_key", DEMO_API_KEY))
    if "link_id" in wrong:
        destination = replace(config.destinations["eventpics"], link_id=wrong["link_id"])
        config = replace(config, destinations={"eventpics": destination})
    if "watch_album" in wrong:
        watch = replace(config.watches[0], album_id=wrong["watch_album"])
        config = replace(config, watches=(watch,))
    engine = engine_for(config)

    def red() -> str | None:
        health = engine.outbox.health().get("eventpics")
        return health[1] if health and health[0] == "unauthorized" else None

    detail = wait_for(red, timeout=10)
    assert named in detail
    assert engine.health()["eventpics"].health is Health.UNAUTHORIZED
    assert engine.snapshot().stats.totals["failed"] == 0


def test_a_good_config_is_online_at_start_and_the_check_holds_back_no_upload(
    tmp_path: Path, engine_for: Any
) -> None:
    """A config that is right shows `online` at start without a picture; while the gallery
    is slow to answer that check, pictures upload as usual."""
    with Receiver(tmp_path / "quick") as quick:
        engine = engine_for(make_config(tmp_path / "quick", quick))
        wait_for(lambda: engine.outbox.health().get("eventpics", ("",))[0] == "online", timeout=10)
        assert engine.health()["eventpics"].health is Health.ONLINE
        assert quick.received() == []
    # The listing trickles a byte every half second (its answer would take minutes): the
    # picture goes within seconds all the same.
    with Receiver(tmp_path / "slow", faults=Faults(trickle={"geteventsandalbums": 0.5})) as slow:
        engine = engine_for(make_config(tmp_path / "slow", slow))
        picture(engine.config.watches[0].path, "first.jpg", datetime(2026, 5, 1, 12, 0))
        wait_for(lambda: [r.file_name for r in slow.received()] == ["first.jpg"], timeout=10)


def test_a_network_failure_at_start_is_no_wrong_key(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """A gallery that cannot be reached at start is `offline` (probed, pictures wait), one in
    trouble (503) stays `unknown`: only a clear answer about the key, link or album is red."""
    receiver.faults.fail_next = [("geteventsandalbums", 503)]
    engine = engine_for(make_config(tmp_path, receiver))
    wait_for(lambda: receiver.counts().get("geteventsandalbums", {}).get(503), timeout=10)
    picture(engine.config.watches[0].path, "after.jpg", datetime(2026, 5, 1, 12, 0))
    wait_for(lambda: engine.snapshot().stats.totals["uploaded"] == 1, timeout=10)
    # Online once the upload is on the disk, a moment after the queue counts it.
    wait_for(lambda: engine.health()["eventpics"].health is Health.ONLINE, timeout=5)

    (tmp_path / "closed").mkdir()
    closed = engine_config(tmp_path / "closed", "http://127.0.0.1:9", album_id="a1")
    offline = engine_for(closed)
    wait_for(lambda: offline.health()["eventpics"].health is Health.OFFLINE, timeout=10)
    assert "127.0.0.1:9" in offline.health()["eventpics"].detail


def test_a_file_the_gallery_refuses_fails_alone(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """A 4xx about one file fails that file with the server's message; the others arrive."""
    receiver.faults.fail_next = [("getuploadurl", 422)]
    config = make_config(tmp_path, receiver, settle_seconds=0.3)
    engine = engine_for(config)
    hot = config.watches[0].path
    picture(hot, "first.jpg", datetime(2026, 5, 1, 12, 0))
    wait_for(lambda: engine.snapshot().stats.totals["failed"] == 1)
    picture(hot, "second.jpg", datetime(2026, 5, 1, 12, 1))
    # The receiver keeps the file before it answers; the queue marks it once answered.
    wait_for(lambda: engine.snapshot().stats.totals["uploaded"] == 1)
    assert "second.jpg" in received_by_name(receiver)
    stats = engine.snapshot().stats
    assert stats.totals["failed"] == 1 and stats.totals["uploaded"] == 1
    assert stats.last_error is not None and "422" in (stats.last_error.error or "")


@pytest.mark.parametrize("policy", ["move", "delete"])
def test_after_upload_moves_or_deletes_the_original(
    tmp_path: Path, receiver: Receiver, engine_for: Any, policy: str
) -> None:
    """after_upload = move/delete acts only once the gallery has the picture."""
    config = make_config(tmp_path, receiver, after_upload=policy)
    engine_for(config)
    hot = config.watches[0].path
    path = picture(hot, "done.jpg", datetime(2026, 5, 1, 12, 0))
    content = path.read_bytes()
    wait_for(lambda: not path.exists())
    assert receiver.received()[0].sha256 == hashlib.sha256(content).hexdigest()
    moved = hot / "uploaded" / "done.jpg"
    assert moved.exists() == (policy == "move")
    if policy == "move":
        assert moved.read_bytes() == content


def sha_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def received_shas(receiver: Receiver) -> list[str]:
    return [record.sha256 for record in receiver.received()]


def test_a_picture_appended_to_right_after_its_upload_is_deleted_only_once_whole(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """Booth software that closes a picture and reopens it right after its upload to add to
    it: the picture is not deleted in between; its final content reaches the gallery, and
    only then is it deleted."""
    config = make_config(tmp_path, receiver, after_upload="delete")
    engine_for(config, after_upload_grace=1.5)
    path = config.watches[0].path / "IMG_0001.jpg"
    first = jpeg(os.urandom(30_000))
    path.write_bytes(first)
    wait_for(lambda: received_shas(receiver) == [sha_of(first)], what="the first upload")
    added = b"a frame the booth adds after the first close"
    with path.open("ab") as handle:
        handle.write(added)
    final = first + added

    wait_for(lambda: not path.exists(), timeout=20, what="the picture to be deleted")
    assert received_shas(receiver) == [sha_of(first), sha_of(final)]


@pytest.mark.skipif(sys.platform != "linux", reason="the kernel's word on writers is Linux's")
def test_a_picture_held_open_for_writing_after_its_upload_is_moved_only_once_closed(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """A picture that a program opens for writing again after its upload stays where it is,
    however long it is held open, and is moved once it is closed (unchanged)."""
    config = make_config(tmp_path, receiver, after_upload="move")
    engine_for(config, after_upload_grace=1.0)
    hot = config.watches[0].path
    path = hot / "IMG_0001.jpg"
    path.write_bytes(jpeg(os.urandom(30_000)))
    wait_for(lambda: len(receiver.received()) == 1, what="the upload")
    with path.open("ab"):
        threading.Event().wait(3.0)  # three grace times: the move would have happened by now
        assert path.exists()
    wait_for(lambda: (hot / "uploaded" / "IMG_0001.jpg").exists(), what="the move")


def test_a_picture_that_is_not_what_was_uploaded_is_sent_again_before_it_is_deleted(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """A picture rewritten after its upload with its size and times put back (so its version
    looks unchanged) is not deleted: its content hash differs from the one uploaded, so it is
    uploaded again, and deleted once the gallery has what is on disk."""
    config = make_config(tmp_path, receiver, after_upload="delete")
    engine_for(config, after_upload_grace=1.5)
    path = config.watches[0].path / "IMG_0001.jpg"
    first, second = jpeg(os.urandom(30_000)), jpeg(os.urandom(30_000))
    path.write_bytes(first)
    wait_for(lambda: received_shas(receiver) == [sha_of(first)], what="the first upload")
    st = path.stat()
    with path.open("r+b") as handle:
        handle.write(second)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    wait_for(lambda: not path.exists(), timeout=20, what="the picture to be deleted")
    assert received_shas(receiver) == [sha_of(first), sha_of(second)]


def test_a_picture_uploaded_just_before_a_stop_is_deleted_after_the_next_start(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A stop within a picture's grace time after its upload leaves it in its folder; the next
    start deletes it (it is still exactly what was uploaded)."""
    config = make_config(tmp_path, receiver, after_upload="delete")
    path = config.watches[0].path / "IMG_0001.jpg"
    path.write_bytes(jpeg(os.urandom(30_000)))
    first = Engine(config, after_upload_grace=60)
    first.start()
    try:
        wait_for(lambda: len(receiver.received()) == 1, what="the upload")
    finally:
        first.stop(5)
    assert path.exists()
    second = Engine(config, after_upload_grace=0.2)
    second.start()
    try:
        wait_for(lambda: not path.exists(), what="the picture to be deleted")
    finally:
        second.stop(5)
    assert len(receiver.received()) == 1


def test_burst_of_files_all_arrive_once(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """Fifty pictures renamed in at once all reach the gallery, each exactly once."""
    config = make_config(tmp_path, receiver)
    engine_for(config)
    hot = config.watches[0].path
    staging = tmp_path / "staging"
    staging.mkdir()
    for index in range(50):
        picture(staging, f"burst-{index:03}.jpg", datetime(2026, 5, 1, 12, 0, index))
    for path in sorted(staging.iterdir()):
        os.replace(path, hot / path.name)
    wait_for(lambda: len(receiver.received()) >= 50, timeout=60)
    names = [r.file_name for r in receiver.received()]
    assert sorted(names) == [f"burst-{index:03}.jpg" for index in range(50)]


def test_capture_settings_reach_the_gallery(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """camera_clock_offset corrects EXIF times; a PNG without EXIF is timed by its file name."""
    config = engine_config(
        tmp_path,
        receiver.base_url,
        booth={"camera_clock_offset": "+1h02m"},
        settle_seconds=0.3,
    )
    engine_for(config)
    hot = config.watches[0].path
    picture(hot, "camera.jpg", datetime(2026, 7, 4, 22, 15, 30))
    Image.new("RGB", (40, 30), (10, 20, 30)).save(hot / "2026-07-04-23-01-02_pibooth.png")
    got = wait_for(lambda: len(receiver.received()) == 2 and received_by_name(receiver))
    shifted = datetime(2026, 7, 4, 23, 17, 30, tzinfo=BERLIN)
    assert got["camera.jpg"].taken_at == int(shifted.timestamp() * 1000)
    from_name = datetime(2026, 7, 4, 23, 1, 2, tzinfo=BERLIN)
    assert got["2026-07-04-23-01-02_pibooth.png"].taken_at == int(from_name.timestamp() * 1000)
    assert got["2026-07-04-23-01-02_pibooth.png"].content_type == "image/png"


def test_an_empty_file_still_arrives_but_a_filled_placeholder_arrives_whole(
    tmp_path: Path, receiver: Receiver, engine_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file left empty is uploaded as is; a placeholder filled soon after goes once, full."""
    monkeypatch.setattr(watcher, "EMPTY_SETTLE", 1.5)
    config = make_config(tmp_path, receiver)
    engine_for(config)
    hot = config.watches[0].path
    placeholder = hot / "placeholder.jpg"
    placeholder.write_bytes(b"")
    (hot / "empty.jpg").write_bytes(b"")
    picture(tmp_path, "content.jpg", datetime(2026, 5, 1, 12, 0))
    placeholder.write_bytes((tmp_path / "content.jpg").read_bytes())
    wait_for(lambda: len(receiver.received()) == 2, timeout=30)
    got = received_by_name(receiver)
    assert got["empty.jpg"].size == 0
    assert got["placeholder.jpg"].sha256 == sha256(tmp_path / "content.jpg")


# -- the control channel ----------------------------------------------------------


def flags_of(config: Config) -> dict[str, str]:
    """The flags as another process reads them: through a read-only outbox."""
    reader = Outbox(outbox_path(config), readonly=True)
    try:
        return reader.flags()
    finally:
        reader.close()


def send(config: Config, command: str) -> None:
    """Send a command as another process would: through an outbox of its own."""
    sender = Outbox(outbox_path(config))
    try:
        sender.send_command(command)
    finally:
        sender.close()


def test_pause_resume_and_retry_sent_through_the_database_are_applied(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """Commands another outbox sends reach the running engine: pause holds new pictures back
    (flag and snapshot say paused), resume sends them, retry queues failed ones again."""
    receiver.faults.fail_next = [("getuploadurl", 415)]
    config = make_config(tmp_path, receiver)
    engine: Engine = engine_for(config)
    hot = config.watches[0].path
    assert flags_of(config)["paused"] == "0"

    picture(hot, "refused.jpg", datetime(2026, 5, 1, 12, 0))
    wait_for(lambda: engine.snapshot().stats.totals["failed"] == 1)

    send(config, "pause")
    wait_for(lambda: flags_of(config).get("paused") == "1", what="the pause to be applied")
    assert engine.paused and engine.snapshot().paused
    picture(hot, "held.jpg", datetime(2026, 5, 1, 12, 1))
    wait_for(lambda: engine.snapshot().stats.totals["waiting"] == 1, what="held.jpg queued")
    threading.Event().wait(1.0)  # time passes: nothing may be uploaded in it
    assert receiver.received() == []

    send(config, "resume")
    wait_for(lambda: [r.file_name for r in receiver.received()] == ["held.jpg"])
    wait_for(lambda: flags_of(config)["paused"] == "0", what="the resume to be recorded")
    assert not engine.snapshot().paused

    send(config, "retry")
    wait_for(lambda: sorted(received_by_name(receiver)) == ["held.jpg", "refused.jpg"])
    assert engine.snapshot().stats.totals["failed"] == 0


def test_a_fresh_start_uploads_even_after_a_pause(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """A pause does not outlive the run: the next start uploads, and commands sent while
    nothing ran are dropped (a reboot must never leave tonight's pictures held back)."""
    config = make_config(tmp_path, receiver)
    first: Engine = engine_for(config)
    first.pause()
    assert first.stop(5)
    picture(config.watches[0].path, "after.jpg", datetime(2026, 5, 1, 12, 0))
    offline = Outbox(outbox_path(config))
    try:
        offline.send_command("pause")
    finally:
        offline.close()
    second: Engine = engine_for(config)
    assert not second.paused
    wait_for(lambda: [r.file_name for r in receiver.received()] == ["after.jpg"])
    assert flags_of(config)["paused"] == "0"


def test_commands_sent_since_the_run_began_are_applied_at_an_engine_start(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """A command sent while the running boothsync restarts its engine (a config reload) is
    applied by the new engine, not dropped as old news."""
    config = make_config(tmp_path, receiver)
    began = time.time()
    send(config, "pause")
    engine: Engine = engine_for(config, commands_since=began)
    wait_for(lambda: engine.paused, what="the pause to be applied")
    # The flag is written right after the engine took the pause.
    wait_for(lambda: flags_of(config)["paused"] == "1", what="the paused flag")


def test_missing_folders_are_flagged_while_they_are_missing(
    tmp_path: Path, receiver: Receiver, engine_for: Any
) -> None:
    """A watch folder missing at start shows in the missing_folders flag and the snapshot;
    once created, it is no longer listed."""
    config = make_config(tmp_path, receiver)
    later = tmp_path / "later"
    config = replace(config, watches=(*config.watches, replace(config.watches[0], path=later)))
    engine: Engine = engine_for(config)
    wait_for(
        lambda: json.loads(flags_of(config).get("missing_folders", "[]")) == [str(later)],
        what="the missing folder to be flagged",
    )
    assert engine.snapshot().missing_folders == (str(later),)

    later.mkdir()
    wait_for(
        lambda: flags_of(config).get("missing_folders") == "[]",
        timeout=15,
        what="the created folder to leave the flag",
    )
    assert engine.snapshot().missing_folders == ()
