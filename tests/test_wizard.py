"""The setup wizard's steps: gallery types, events from real local servers, the folder picker,
the booth programs' folders, and the checks of `boothsync check`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from boothsync.config import DESTINATION_TYPES, load_config
from boothsync.errors import BoothsyncError, ConfigError
from boothsync.receiver import DEMO_API_KEY, Receiver
from boothsync.web.wizard import (
    MAX_FOLDERS,
    booth_folders,
    browse,
    gallery_types,
    list_events,
    run_checks,
)
from tests.fakes.picpeak import DEMO_TOKEN, PicPeakServer
from tests.fakes.picsui import PicsuiServer

WRONG_KEY = "wr0ng-key-that-must-never-show"


# -- gallery types ----------------------------------------------------------------------------


def test_every_gallery_type_comes_with_its_label_and_first_fields() -> None:
    """Each destination type is offered with the service's label and the fields a first
    config needs: the key (secret, required), the server where one is needed, the event and
    album picked from the listing, Picsui's event typed, the folder's path."""
    types = {t.name: t for t in gallery_types()}
    assert list(types) == list(DESTINATION_TYPES)
    assert {t.label for t in types.values()} == {"EventPics", "Picsui", "PicPeak", "Folder"}
    fields = {name: {f.name: f for f in t.fields} for name, t in types.items()}
    assert list(fields["eventpics"]) == ["api_key", "link_id", "album_id", "base_url"]
    key = fields["eventpics"]["api_key"]
    assert (key.label, key.secret, key.required, key.listed) == ("API key", True, True, False)
    assert fields["eventpics"]["link_id"].listed and fields["eventpics"]["album_id"].listed
    assert not fields["eventpics"]["album_id"].required
    assert fields["eventpics"]["base_url"].default == "https://api.eventpics.net"
    assert fields["picpeak"]["base_url"].required and fields["picpeak"]["base_url"].default is None
    assert fields["picpeak"]["api_token"].secret
    assert fields["picpeak"]["event_id"].listed and fields["picpeak"]["event_id"].kind == "int"
    assert not fields["picsui"]["event_id"].listed and fields["picsui"]["event_id"].required
    assert list(fields["folder"]) == ["path"] and fields["folder"]["path"].kind == "path"


# -- events -----------------------------------------------------------------------------------


def test_events_come_from_the_local_eventpics_receiver(receiver: Receiver) -> None:
    """The key's events and albums, from the receiver over real HTTP, as init lists them."""
    [event] = list_events("eventpics", {"api_key": DEMO_API_KEY, "base_url": receiver.base_url})
    assert (event.title, event.link_id, event.id_key) == ("Demo Wedding", "demo", "link_id")
    assert [(a.id, a.title) for a in event.albums] == [("a1", "Ceremony"), ("a2", "Party")]


def test_events_come_from_picpeak_and_picsui(tmp_path: Path) -> None:
    """PicPeak lists the token's events with their numbers; Picsui names the typed event."""
    with (
        PicPeakServer(tmp_path / "picpeak", events={12: "Gala", 15: "Ball"}) as picpeak,
        PicsuiServer(tmp_path / "picsui", event_name="Summer Party") as picsui,
    ):
        peak = list_events("picpeak", {"api_token": DEMO_TOKEN, "base_url": picpeak.base_url})
        sui = list_events(
            "picsui",
            {"api_key": picsui.api_key, "event_id": picsui.event_id, "base_url": picsui.base_url},
        )
    assert sorted((e.link_id, e.title, e.id_key) for e in peak) == [
        ("12", "Gala", "event_id"),
        ("15", "Ball", "event_id"),
    ]
    assert [(e.link_id, e.title) for e in sui] == [(picsui.event_id, "Summer Party")]


def test_a_wrong_key_is_one_line_without_the_key(tmp_path: Path, receiver: Receiver) -> None:
    """A key each gallery rejects is one line saying so, which never holds the key."""
    with (
        PicPeakServer(tmp_path / "picpeak") as picpeak,
        PicsuiServer(tmp_path / "picsui") as picsui,
    ):
        tries = [
            ("eventpics", {"api_key": WRONG_KEY, "base_url": receiver.base_url}),
            ("picpeak", {"api_token": "pp_live_" + WRONG_KEY, "base_url": picpeak.base_url}),
            ("picsui", {"api_key": WRONG_KEY, "event_id": "x", "base_url": picsui.base_url}),
        ]
        messages = []
        for kind, values in tries:
            with pytest.raises(BoothsyncError) as caught:
                list_events(kind, values)
            messages.append(str(caught.value))
    for message, label in zip(messages, ["EventPics", "PicPeak", "Picsui"], strict=True):
        assert message.startswith(f"{label} rejected this api "), message
        assert "\n" not in message and WRONG_KEY not in message


def test_an_unreachable_server_and_a_bad_address_are_one_line_each() -> None:
    """No answer is one line naming the server; an address that cannot be used is a
    ConfigError whose key names the field; neither holds the key."""
    with pytest.raises(BoothsyncError) as caught:
        list_events("eventpics", {"api_key": WRONG_KEY, "base_url": "http://127.0.0.1:9"})
    assert "127.0.0.1:9" in str(caught.value) and "\n" not in str(caught.value)
    assert WRONG_KEY not in str(caught.value)
    with pytest.raises(ConfigError) as bad:
        list_events("picpeak", {"api_token": WRONG_KEY, "base_url": "ftp://photos"})
    assert bad.value.key == "base_url" and WRONG_KEY not in str(bad.value)
    with pytest.raises(ConfigError) as missing:
        list_events("picsui", {"api_key": WRONG_KEY})
    assert missing.value.key == "event_id" and WRONG_KEY not in str(missing.value)


# -- the folder picker ------------------------------------------------------------------------


def test_browse_lists_subfolders_sorted_without_hidden_ones_or_files(tmp_path: Path) -> None:
    """The subfolders come sorted whatever their case, with full paths and the parent;
    hidden folders and files are left out."""
    for name in ["beta", "Alpha", "gamma", ".hidden", ".git"]:
        (tmp_path / name).mkdir()
    (tmp_path / "picture.jpg").write_bytes(b"")
    listing = browse(str(tmp_path))
    assert [f.name for f in listing.folders] == ["Alpha", "beta", "gamma"]
    assert listing.folders[0].path == str(tmp_path / "Alpha")
    assert listing.path == str(tmp_path) and listing.parent == str(tmp_path.parent)
    assert listing.error is None and not listing.cut
    if os.name == "posix":
        assert [r.path for r in listing.roots] == ["/"]
        assert browse("/").parent is None


def test_browse_starts_at_home_and_reads_paths_from_there(tmp_path: Path) -> None:
    """No path lists the home folder; "~/x" and a relative path are read from it."""
    (tmp_path / "Pictures" / "dslrBooth").mkdir(parents=True)
    assert [f.name for f in browse(None, home=tmp_path).folders] == ["Pictures"]
    assert browse("", home=tmp_path).path == str(tmp_path)
    assert browse("~/Pictures", home=tmp_path).folders[0].name == "dslrBooth"
    assert browse("Pictures", home=tmp_path).path == str(tmp_path / "Pictures")


def test_browse_of_a_missing_folder_or_a_file_is_an_error_line(tmp_path: Path) -> None:
    """A folder that is not there, a file, or a path the system refuses gives an error line
    naming it and no folders."""
    missing = browse(str(tmp_path / "nothere"))
    assert missing.error == f"{tmp_path / 'nothere'}: no such folder"
    assert missing.folders == () and missing.parent == str(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    assert browse(str(tmp_path / "file.txt")).error == f"{tmp_path / 'file.txt'}: not a folder"
    # Any other refusal of the system (here: a name longer than it takes) is said as well.
    too_long = browse(str(tmp_path / ("x" * 5000)))
    assert too_long.error is not None and ": cannot be read (" in too_long.error


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="needs POSIX modes that bind this account"
)
def test_browse_of_an_unreadable_folder_is_an_error_line(tmp_path: Path) -> None:
    """A folder this account may not read gives an error line, not an exception."""
    locked = tmp_path / "locked"
    (locked / "inside").mkdir(parents=True)
    locked.chmod(0)
    try:
        listing = browse(str(locked))
    finally:
        locked.chmod(0o700)
    assert listing.error == f"{locked}: cannot be read (no permission)"
    assert listing.folders == ()


def test_browse_cuts_a_huge_folder_and_says_so(tmp_path: Path) -> None:
    """A folder with more subfolders than a page shows lists the first ones in order and
    says it was cut."""
    for number in range(MAX_FOLDERS + 1):
        (tmp_path / f"f{number:04d}").mkdir()
    listing = browse(str(tmp_path))
    assert listing.cut and len(listing.folders) == MAX_FOLDERS
    assert listing.folders[-1].name == f"f{MAX_FOLDERS - 1:04d}"


# -- the booth programs' folders --------------------------------------------------------------


def test_booth_folders_finds_dslrbooths_folder_under_home(tmp_path: Path) -> None:
    """dslrBooth's prints folder under the home's Pictures is found; a home without any
    booth program's folder gives none."""
    prints = tmp_path / "Pictures" / "dslrBooth" / "Prints"
    prints.mkdir(parents=True)
    assert booth_folders(home=tmp_path) == [("dslrBooth prints", prints)]
    empty = tmp_path / "other-home"
    (empty / "Pictures").mkdir(parents=True)
    assert booth_folders(home=empty) == []


# -- checks -----------------------------------------------------------------------------------


def test_run_checks_says_what_boothsync_check_prints(tmp_path: Path, receiver: Receiver) -> None:
    """The wizard's checks are `boothsync check`'s, line for line: a good destination, a
    missing album and a missing folder alike."""
    hot = tmp_path / "hot"
    hot.mkdir()
    config = tmp_path / "boothsync.toml"
    config.write_text(
        f"""
[[watch]]
path = "{hot.as_posix()}"
album_id = "zz"

[[watch]]
path = "{(tmp_path / "gone").as_posix()}"

[destinations.eventpics]
type = "eventpics"
api_key = "{DEMO_API_KEY}"
link_id = "demo"
base_url = "{receiver.base_url}"

[state]
dir = "{(tmp_path / "state").as_posix()}"
""",
        encoding="utf-8",
    )
    lines = run_checks(load_config(config, environ={}))
    printed = [
        f"[{'ok' if line.ok else 'FAIL'}] {line.label}"
        + (f": {line.detail}" if line.detail else "")
        for line in lines
    ]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BOOTHSYNC_")}
    result = subprocess.run(
        [sys.executable, "-m", "boothsync", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    problems = sum(not line.ok for line in lines)
    assert result.stdout.splitlines() == [*printed, f"{problems} problem(s)"]
    assert problems == 2 and "album 'zz' exists" in result.stdout
