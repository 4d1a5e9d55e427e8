"""`boothsync verify`: is every picture of the event in the gallery? Real files, a real queue,
the local receiver and the Picsui and PicPeak fakes over real HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from boothsync.config import load_config
from boothsync.demo import write_sample_jpeg
from boothsync.outbox import NewFile, Outbox
from boothsync.paths import outbox_path
from boothsync.receiver import DEMO_API_KEY, Receiver
from boothsync.verify import describe, verify
from tests.fakes.picpeak import PicPeakServer
from tests.fakes.picsui import PicsuiServer
from tests.helpers import wait_for
from tests.test_cli import Daemon, boothsync, status

NAMES = ("IMG_0000.jpg", "IMG_0001.jpg", "IMG_0002.jpg")


def write_config(tmp_path: Path, destinations: str) -> Path:
    hot = tmp_path / "hot"
    hot.mkdir(exist_ok=True)
    config = tmp_path / "boothsync.toml"
    config.write_text(
        f"""
[booth]
name = "verify-booth"
timezone = "Europe/Berlin"

[[watch]]
path = "{hot.as_posix()}"
settle_seconds = 0.3

{destinations}

[state]
dir = "{(tmp_path / "state").as_posix()}"
""",
        encoding="utf-8",
    )
    return config


def picture(folder: Path, name: str, n: int = 0) -> Path:
    path = folder / name
    write_sample_jpeg(path, datetime(2026, 6, 1, 21, n), name, (n * 40, 70, 20))
    return path


@dataclass
class Event:
    """Four galleries that got every picture from a `boothsync run`, now stopped."""

    config: Path
    hot: Path
    copies: Path
    eventpics: Receiver
    picsui: PicsuiServer
    picpeak: PicPeakServer
    daemon: Daemon


@pytest.fixture
def event(tmp_path: Path) -> Iterator[Event]:
    copies = tmp_path / "nas"
    copies.mkdir()
    with (
        Receiver(tmp_path / "eventpics") as eventpics,
        PicsuiServer(tmp_path / "picsui", api_key="picsui-key", event_id="wedding") as picsui,
        PicPeakServer(
            tmp_path / "picpeak", tokens={"pp_live_booth": {"read", "write"}}, events={3: "W"}
        ) as picpeak,
    ):
        config = write_config(
            tmp_path,
            f"""
[destinations.eventpics]
type = "eventpics"
api_key = "{DEMO_API_KEY}"
link_id = "demo"
base_url = "{eventpics.base_url}"

[destinations.picsui]
type = "picsui"
api_key = "picsui-key"
event_id = "wedding"
base_url = "{picsui.base_url}"

[destinations.picpeak]
type = "picpeak"
api_token = "pp_live_booth"
event_id = 3
base_url = "{picpeak.base_url}"

[destinations.folder]
type = "folder"
path = "{copies.as_posix()}"
""",
        )
        hot = tmp_path / "hot"
        daemon = Daemon("run", "-c", str(config))
        try:
            wait_for(lambda: "ready" in daemon.output, timeout=30, what="boothsync ready")
            for n, name in enumerate(NAMES):
                picture(hot, name, n)
            wait_for(
                lambda: status(config)["totals"]["uploaded"] == 4 * len(NAMES),
                timeout=60,
                interval=0.2,
                what="every picture uploaded everywhere",
            )
            yield Event(config, hot, copies, eventpics, picsui, picpeak, daemon)
        finally:
            assert daemon.stop() == 0, daemon.output


def lines(output: str) -> dict[str, str]:
    """The output's lines by destination name."""
    return {line.split(":", 1)[0]: line for line in output.splitlines()}


def test_every_picture_everywhere_is_exit_0_even_while_boothsync_runs(event: Event) -> None:
    """With every picture uploaded and in every gallery, verify says so, one line per
    destination, and exits 0; it reads the queue while `boothsync run` holds it."""
    result = boothsync("verify", "-c", str(event.config))
    assert result.returncode == 0, result.stdout + result.stderr
    said = lines(result.stdout)
    assert said["folder"] == "folder: all 3 pictures uploaded and in the gallery"
    assert said["picsui"] == "picsui: all 3 pictures uploaded and in the gallery"
    assert said["picpeak"] == "picpeak: all 3 pictures uploaded and in the gallery"
    assert event.daemon.process.poll() is None  # it ran alongside, untouched


def test_eventpics_says_it_is_boothsyncs_own_record(event: Event) -> None:
    """EventPics cannot list what it holds: its line says the answer is boothsync's record."""
    said = lines(boothsync("verify", "-c", str(event.config)).stdout)
    assert said["eventpics"] == (
        "eventpics: all 3 pictures uploaded (boothsync's record; EventPics cannot list what it"
        " holds)"
    )


def test_pictures_deleted_from_the_galleries_behind_its_back_are_named(event: Event) -> None:
    """A copy deleted from the folder, a photo removed from Picsui and one from PicPeak are
    each named as uploaded but not in the gallery, and verify exits 1."""
    event.daemon.stop()
    (event.copies / "IMG_0001.jpg").unlink()
    assert event.picsui.remove("IMG_0002.jpg")
    assert event.picpeak.remove("IMG_0000.jpg")
    result = boothsync("verify", "-c", str(event.config))
    assert result.returncode == 1, result.stdout + result.stderr
    said = lines(result.stdout)
    assert said["folder"] == "folder: 1 uploaded but not in the gallery: IMG_0001.jpg"
    assert said["picsui"] == "picsui: 1 uploaded but not in the gallery: IMG_0002.jpg"
    assert said["picpeak"] == "picpeak: 1 uploaded but not in the gallery: IMG_0000.jpg"
    assert said["eventpics"].startswith("eventpics: all 3 pictures uploaded")


def test_a_picture_boothsync_has_not_seen_yet_is_missing_everywhere(event: Event) -> None:
    """A picture that reached the watch folder after boothsync stopped is missing in every
    destination, by name; one the watcher ignores (a temporary file) is not counted."""
    event.daemon.stop()
    picture(event.hot, "IMG_0003.jpg", 3)
    (event.hot / "IMG_0004.jpg.part").write_bytes(b"half")
    result = boothsync("verify", "-c", str(event.config))
    assert result.returncode == 1
    for name in ("eventpics", "picsui", "picpeak", "folder"):
        assert lines(result.stdout)[name] == f"{name}: 1 of 4 missing: IMG_0003.jpg"


def test_a_moved_picture_still_counts(event: Event) -> None:
    """A picture moved out of the watch folder after its upload (or deleted there) is still
    one the gallery must have: the queue remembers it."""
    event.daemon.stop()
    (event.hot / "IMG_0000.jpg").unlink()
    result = boothsync("verify", "-c", str(event.config))
    assert result.returncode == 0, result.stdout
    assert "all 3 pictures" in lines(result.stdout)["folder"]


def queue_by_hand(config_file: Path, names: list[str]) -> tuple[Outbox, list[NewFile]]:
    """The pictures ``names`` in the watch folder, queued for every destination."""
    config = load_config(config_file)
    watch = config.watches[0]
    files = []
    for n, name in enumerate(names):
        path = picture(watch.path, name, n)
        st = path.stat()
        destinations = dict.fromkeys(watch.destinations)
        files.append(NewFile(path, st.st_size, st.st_mtime_ns, str(watch.path), destinations))
    outbox = Outbox(outbox_path(config))
    outbox.add_many(files)
    return outbox, files


def test_a_failed_and_a_waiting_picture_are_named(tmp_path: Path) -> None:
    """A picture whose upload failed and one still waiting are named as missing, exit 1; the
    one uploaded (and in the folder) is not."""
    copies = tmp_path / "nas"
    copies.mkdir()
    config = write_config(
        tmp_path, f'[destinations.folder]\ntype = "folder"\npath = "{copies.as_posix()}"\n'
    )
    outbox, _ = queue_by_hand(config, ["A.jpg", "B.jpg", "C.jpg"])
    try:
        done = outbox.claim()
        assert done is not None and done.path.name == "A.jpg"
        (copies / "A.jpg").write_bytes(done.path.read_bytes())
        outbox.complete(done.id)
        failed = outbox.claim()
        assert failed is not None
        outbox.fail(failed.id, error="refused")
    finally:
        outbox.close()
    result = boothsync("verify", "-c", str(config))
    assert result.returncode == 1
    assert result.stdout.strip() == "folder: 2 of 3 missing: B.jpg, C.jpg"
    checks = verify(load_config(config), outbox_path(load_config(config)))
    assert {(s.path.name, s.state) for s in checks[0].missing} == {
        ("B.jpg", "failed"),
        ("C.jpg", "waiting"),
    }


def test_an_unreachable_gallery_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A gallery that cannot be asked is one line for its destination, no traceback, and
    counts as not verified."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    config = write_config(
        tmp_path,
        f"""
[destinations.picsui]
type = "picsui"
api_key = "picsui-key"
event_id = "wedding"
base_url = "http://127.0.0.1:{port}/v1"
timeout = 2
""",
    )
    outbox, _ = queue_by_hand(config, ["A.jpg"])
    try:
        job = outbox.claim()
        assert job is not None
        outbox.complete(job.id)
    finally:
        outbox.close()
    result = boothsync("verify", "-c", str(config))
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("picsui: not verified: the gallery could not be asked (")


@pytest.mark.skipif(os.name == "nt", reason="such names cannot exist on Windows")
def test_hostile_file_names_are_printed_escaped(tmp_path: Path) -> None:
    """A name with an escape code and a newline is shown escaped, on its one line."""
    copies = tmp_path / "nas"
    copies.mkdir()
    config = write_config(
        tmp_path, f'[destinations.folder]\ntype = "folder"\npath = "{copies.as_posix()}"\n'
    )
    picture(tmp_path / "hot", "evil\x1b[2J\nrm.jpg")
    result = boothsync("verify", "-c", str(config))
    assert result.returncode == 1
    assert "\x1b" not in result.stdout
    assert result.stdout == "folder: 1 of 1 missing: evil\\x1b[2J\\nrm.jpg\n"


def test_a_long_list_is_cut_after_20_names(tmp_path: Path) -> None:
    """Past 20 names the line says how many more there are."""
    copies = tmp_path / "nas"
    copies.mkdir()
    config = write_config(
        tmp_path, f'[destinations.folder]\ntype = "folder"\npath = "{copies.as_posix()}"\n'
    )
    for n in range(23):
        (tmp_path / "hot" / f"P{n:02}.jpg").write_bytes(b"x")
    (check,) = verify(load_config(config), outbox_path(load_config(config)))
    line = describe(check)
    assert line.startswith("folder: 23 of 23 missing: P00.jpg, P01.jpg")
    assert line.endswith("P19.jpg and 3 more")


def test_a_bad_config_is_exit_2(tmp_path: Path) -> None:
    """A config that does not load is one line and exit 2."""
    config = tmp_path / "boothsync.toml"
    config.write_text("[booth\n", encoding="utf-8")
    result = boothsync("verify", "-c", str(config))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1


def test_status_counts_the_pictures_still_to_go(tmp_path: Path) -> None:
    """`status --json` counts the pictures some destination does not have yet (waiting,
    uploading or failed) as ``to_go``; ``safe_to_pack_up`` is true only at 0."""
    copies = tmp_path / "nas"
    copies.mkdir()
    config = write_config(
        tmp_path,
        f'[destinations.folder]\ntype = "folder"\npath = "{copies.as_posix()}"\n'
        f'[destinations.other]\ntype = "folder"\npath = "{copies.as_posix()}"\n',
    )
    outbox, _ = queue_by_hand(config, ["A.jpg", "B.jpg"])
    try:
        report = status(config)
        assert (report["to_go"], report["safe_to_pack_up"]) == (2, False)
        while (job := outbox.claim()) is not None:
            if job.path.name == "B.jpg" and job.destination == "other":
                outbox.fail(job.id, error="refused")
            else:
                outbox.complete(job.id)
        report = status(config)
        assert (report["to_go"], report["safe_to_pack_up"]) == (1, False)
        outbox.forget_failed()
        report = status(config)
        assert (report["to_go"], report["safe_to_pack_up"]) == (0, True)
    finally:
        outbox.close()


def test_pictures_sent_shrunk_to_picpeak_are_counted(tmp_path: Path) -> None:
    """PicPeak keeps photos under names of its own; a picture sent shrunk (``max_edge``) has a
    size boothsync does not keep, so verify counts: of two uploaded, one in the gallery is one
    missing there, said without a name it cannot know, and exit 1."""
    from boothsync.destinations import UploadItem
    from boothsync.destinations.picpeak import PicPeakConfig, PicPeakDestination

    with PicPeakServer(
        tmp_path / "picpeak", tokens={"pp_live_booth": {"write"}}, events={3: "W"}
    ) as picpeak:
        config = write_config(
            tmp_path,
            f"""
[destinations.picpeak]
type = "picpeak"
api_token = "pp_live_booth"
event_id = 3
base_url = "{picpeak.base_url}"
max_edge = 1024
""",
        )
        outbox, files = queue_by_hand(config, ["A.jpg", "B.jpg"])
        destination = PicPeakDestination(
            PicPeakConfig(
                name="picpeak", api_token="pp_live_booth", event_id=3, base_url=picpeak.base_url
            )
        )
        try:
            sent = files[0]
            destination.upload(
                UploadItem(sent.path, sent.path.name, sent.size, "image/jpeg", None, None)
            )
            while (job := outbox.claim()) is not None:
                outbox.complete(job.id)
        finally:
            destination.close()
            outbox.close()
        result = boothsync("verify", "-c", str(config))
    assert result.returncode == 1, result.stdout
    assert result.stdout.strip() == (
        "picpeak: 1 uploaded but not in the gallery (which ones, its list cannot tell: the"
        " pictures were sent shrunk)"
    )
