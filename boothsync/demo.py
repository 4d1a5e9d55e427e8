"""``boothsync demo``: the whole pipeline on one machine, against the local receiver.

Starts the EventPics-compatible receiver on a free port of 127.0.0.1, makes a
hot folder, writes a few sample pictures with EXIF capture times into it and
shows each one arriving, then keeps watching until Ctrl+C so the operator can
drop pictures of their own in.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import piexif
from PIL import Image, ImageDraw

from boothsync.config import WEB_LISTEN_ENV, Config, parse_config
from boothsync.daemon import GRACE_SECONDS, stop_signals, wait_for_stop
from boothsync.destinations.eventpics import EventPicsConfig
from boothsync.engine import Engine
from boothsync.paths import state_dir
from boothsync.receiver import DEMO_API_KEY, Receiver, demo_events
from boothsync.uploader import UploadReport

if TYPE_CHECKING:
    from boothsync.web.backend import EngineBackend
    from boothsync.web.server import DashboardServer

__all__ = ["describe", "run_demo", "write_sample_jpeg"]

_COLOURS = [(233, 84, 32), (46, 134, 193), (39, 174, 96), (142, 68, 173), (241, 196, 15)]


def write_sample_jpeg(
    path: Path, taken: datetime, label: str, colour: tuple[int, int, int]
) -> None:
    """A small booth-like picture with ``taken`` as its EXIF DateTimeOriginal.

    Written under a temporary name and renamed into place, as booth software
    does, so the watcher never sees it half-written.
    """
    image = Image.new("RGB", (1200, 800), colour)
    draw = ImageDraw.Draw(image)
    draw.rectangle((60, 60, 1140, 740), outline=(255, 255, 255), width=12)
    draw.text((100, 100), label, fill=(255, 255, 255))
    stamp = taken.strftime("%Y:%m:%d %H:%M:%S").encode("ascii")
    exif = piexif.dump(
        {
            "0th": {piexif.ImageIFD.Make: b"boothsync", piexif.ImageIFD.Model: b"demo"},
            "Exif": {
                piexif.ExifIFD.DateTimeOriginal: stamp,
                piexif.ExifIFD.DateTimeDigitized: stamp,
            },
        }
    )
    temporary = path.with_name(f".{path.name}.tmp")
    image.save(temporary, "JPEG", quality=88, exif=exif)
    os.replace(temporary, path)


def describe(report: UploadReport, tz: ZoneInfo, album: str | None) -> str:
    """One line for the operator about one upload."""
    name = report.job.path.name
    millis = int(report.seconds * 1000)
    if report.outcome == "duplicate":
        return f"  skipped   {name}: {report.note}"
    if report.outcome != "uploaded":
        return f"  {report.outcome:<9} {name}: {report.error}"
    taken = "unknown"
    if report.capture is not None:
        when = datetime.fromtimestamp(report.capture.taken_at_ms / 1000, tz)
        taken = f"{when:%Y-%m-%d %H:%M:%S %Z} ({report.capture.source})"
    return (
        f"  uploaded  {name}  taken {taken}  album {album or '-'}"
        f"  -> {report.job.destination}  {millis} ms"
    )


def demo_config(folder: Path, base_url: str) -> Config:
    return parse_config(
        {
            "booth": {"name": "demo-booth"},
            "watch": [{"path": str(folder / "hot-folder"), "settle_seconds": 1.0}],
            "destinations": {
                "eventpics": {
                    "type": "eventpics",
                    "api_key": DEMO_API_KEY,
                    "link_id": demo_events()[0].link_id,
                    "album_id": demo_events()[0].albums[0].id,
                    "base_url": base_url,
                }
            },
            "state": {"dir": str(folder / "state")},
        },
        source=None,
        # Only the dashboard's address may come from the environment (a second demo, tests).
        environ={k: v for k, v in os.environ.items() if k == WEB_LISTEN_ENV},
    )


def run_demo(
    folder: Path,
    *,
    samples: int = 3,
    say: Callable[[str], None] = print,
    stop: threading.Event | None = None,
    browser: bool = True,
) -> int:
    """Run the demo in ``folder`` until ``stop`` is set or a stop signal arrives; with
    ``browser``, its dashboard opens in the browser (where there is a display)."""
    stop = stop if stop is not None else threading.Event()
    folder = folder.resolve()
    received = folder / "received"
    (folder / "hot-folder").mkdir(parents=True, exist_ok=True)
    with stop_signals(stop), Receiver(received) as receiver:
        config = demo_config(folder, receiver.base_url)
        tz = config.booth.tz
        gallery = config.destinations["eventpics"]
        album = gallery.album_id if isinstance(gallery, EventPicsConfig) else None
        listeners: list[Callable[[UploadReport], None]] = [lambda r: say(describe(r, tz, album))]

        def report(upload: UploadReport) -> None:
            for listener in listeners:
                listener(upload)

        engine = Engine(config, on_report=report)
        say(f"Receiver (EventPics-compatible) on {receiver.base_url} (open it to see what arrived)")
        say(f"Hot folder: {config.watches[0].path}")
        say(f"Received files: {received} (each with a .json record)")
        engine.start()
        dashboard = _dashboard(engine, config, say, browser=browser, listeners=listeners)
        try:
            stamp = time.strftime("%H%M%S")
            now = datetime.now(tz).replace(microsecond=0)
            say(f"Writing {samples} sample picture(s) into the hot folder...")
            for index in range(samples):
                taken = now - timedelta(minutes=5 * (samples - index))
                path = config.watches[0].path / f"demo-{stamp}-{index + 1}.jpg"
                write_sample_jpeg(path, taken, f"boothsync demo {index + 1}", _COLOURS[index % 5])
            say("Watching. Drop your own pictures into the hot folder; Ctrl+C to stop.")
            wait_for_stop(stop)
        finally:
            say("Stopping...")
            if dashboard is not None:
                dashboard[0].stop()
                dashboard[1].close()
            engine.stop(GRACE_SECONDS)
    return 0


def _dashboard(
    engine: Engine,
    config: Config,
    say: Callable[[str], None],
    *,
    browser: bool,
    listeners: list[Callable[[UploadReport], None]],
) -> tuple[DashboardServer, EngineBackend] | None:
    from boothsync.desktop import can_open_browser, open_path
    from boothsync.web.backend import EngineBackend, start_dashboard
    from boothsync.web.server import login_link

    backend = EngineBackend(lambda: engine, lambda: config)
    server = start_dashboard(backend, config.web)
    if server is None:
        return None
    backend.start()
    listeners.append(backend.uploaded)
    login = login_link(state_dir(config))
    say(f"Dashboard: {login} (logs in once; `boothsync dashboard` is for a real config)")
    if browser and can_open_browser():
        open_path(login)
    return server, backend
