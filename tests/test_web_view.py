"""What the dashboard says, worked out without a server: the state and what to do, the
numbers in words."""

from __future__ import annotations

from pathlib import Path

from boothsync.config import Config
from boothsync.outbox import Stats
from boothsync.status import Status
from boothsync.web import view
from tests.helpers import engine_config


def config(tmp_path: Path) -> Config:
    return engine_config(tmp_path, "http://127.0.0.1:9")


def status(**totals: int) -> Status:
    stats = Stats(
        destinations={"eventpics": dict(totals)},
        totals=dict(totals),
        last_upload=None,
        last_error=None,
    )
    return Status(stats=stats, health={"eventpics": ("online", "")})


def test_all_uploaded_is_green_with_nothing_to_do(tmp_path: Path) -> None:
    """Nothing waiting or failed: green, and no line of things to do."""
    shown = view.overview(status(uploaded=3), config(tmp_path))
    assert (shown.state, shown.word, shown.todo) == ("ok", "All uploaded", ())
    assert shown.destinations[0].counts["uploaded"] == 3


def test_failed_pictures_are_red_and_say_what_to_do(tmp_path: Path) -> None:
    """Failed pictures turn it red and the first line says to look under Failed and Retry."""
    shown = view.overview(status(uploaded=1, failed=2), config(tmp_path))
    assert shown.state == "attention"
    assert "2 upload(s) failed" in shown.todo[0] and "Retry" in shown.todo[0]


def test_a_rejected_key_and_a_missing_folder_say_where_to_look(tmp_path: Path) -> None:
    """A destination that rejects the key, and a missing watch folder, each get their line."""
    current = Status(
        stats=status(waiting=1).stats,
        health={"eventpics": ("unauthorized", "EventPics rejected the API key")},
        missing_folders=("/media/usb/Prints",),
    )
    shown = view.overview(current, config(tmp_path))
    assert shown.state == "attention"
    assert any("rejects the key" in line for line in shown.todo)
    assert any("/media/usb/Prints" in line for line in shown.todo)
    assert shown.destinations[0].health_word == "key or link rejected"


def test_durations_and_sizes_read_as_words() -> None:
    """Durations from milliseconds to hours, sizes from bytes to gigabytes."""
    assert view.duration(None) == ""
    assert view.duration(0.04) == "40 ms"
    assert view.duration(4) == "4 s"
    assert view.duration(180) == "3 min"
    assert view.duration(3900) == "1 h 05 min"
    assert view.size(512) == "512 B"
    assert view.size(2_500_000) == "2.5 MB"


def test_the_overview_says_how_many_pictures_are_still_to_go(tmp_path: Path) -> None:
    """The live part carries the pictures some destination does not have yet: 0 reads as
    safe to pack up."""
    assert view.overview(status(uploaded=3), config(tmp_path)).to_go == 0
    current = Status(stats=status(waiting=2).stats, to_go=2)
    assert view.overview(current, config(tmp_path)).to_go == 2
