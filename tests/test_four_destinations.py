"""One `boothsync run` fanning every picture out to four destinations at once: EventPics,
Picsui (rate-limited), PicPeak and a folder copy. Real process, real servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

from boothsync.demo import write_sample_jpeg
from boothsync.receiver import DEMO_API_KEY, Receiver
from tests.fakes.picpeak import PicPeakServer
from tests.fakes.picsui import PicsuiServer
from tests.helpers import wait_for
from tests.test_cli import Daemon

PICTURES = 25


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_25_pictures_reach_four_destinations_byte_exact(tmp_path: Path) -> None:
    """Each of 25 pictures reaches EventPics, Picsui, PicPeak and the folder byte-exact, and
    Picsui's limit (10 requests per window) is paced by its headers: at most one 429."""
    hot = tmp_path / "hot"
    hot.mkdir()
    copies = tmp_path / "nas"
    copies.mkdir()
    with (
        Receiver(tmp_path / "eventpics") as eventpics,
        PicsuiServer(
            tmp_path / "picsui",
            api_key="picsui-key",
            event_id="wedding",
            limit=(10, 3.0),
            reset_style="epoch",
        ) as picsui,
        PicPeakServer(
            tmp_path / "picpeak",
            tokens={"pp_live_booth": {"read", "write"}},
            events={3: "Wedding"},
        ) as picpeak,
    ):
        config = tmp_path / "boothsync.toml"
        config.write_text(
            f"""
[booth]
name = "four-way"
timezone = "Europe/Berlin"

[[watch]]
path = "{hot.as_posix()}"
settle_seconds = 0.3

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
caption = "{{booth}} {{taken:%H:%M}}"

[destinations.picpeak]
type = "picpeak"
api_token = "pp_live_booth"
event_id = 3
base_url = "{picpeak.base_url}"

[destinations.nas]
type = "folder"
path = "{copies.as_posix()}"

[upload]
concurrency = 4

[state]
dir = "{(tmp_path / "state").as_posix()}"
""",
            encoding="utf-8",
        )
        daemon = Daemon("run", "-c", str(config))
        try:
            wait_for(lambda: "ready" in daemon.output, timeout=30)
            expected = {}
            for n in range(PICTURES):
                name = f"IMG_{n:04}.jpg"
                write_sample_jpeg(hot / name, datetime(2026, 6, 1, 21, n), name, (n * 9, 70, 20))
                expected[name] = sha(hot / name)

            def arrived() -> bool:
                return (
                    {r.file_name: r.sha256 for r in eventpics.received()} == expected
                    and {r.file_name: r.sha256 for r in picsui.received()} == expected
                    and {r.file_name: r.sha256 for r in picpeak.received()} == expected
                    and {p.name: sha(p) for p in copies.iterdir()} == expected
                )

            wait_for(arrived, timeout=120, interval=0.2, what="25 pictures in all four")
        finally:
            code = daemon.stop()
        assert code == 0, daemon.output
        assert picsui.answered_429 <= 1
        assert len(picsui.received()) == PICTURES  # no picture twice
        # The caption template with the booth's name and the capture time in its zone.
        assert {r.caption for r in picsui.received()} == {
            f"four-way 21:{n:02}" for n in range(PICTURES)
        }
        assert "Traceback" not in daemon.output
