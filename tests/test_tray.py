"""The tray: state, icon, tooltip, menu, actions and notifications without a display, and the
whole ``boothsync tray`` loop on pystray's dummy backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from boothsync.config import WEB_LISTEN_ENV, parse_config
from boothsync.demo import write_sample_jpeg
from boothsync.engine import Snapshot
from boothsync.errors import ConfigError
from boothsync.health import DestinationHealth, Health
from boothsync.outbox import Event, Outbox, Stats
from boothsync.receiver import Faults, Receiver
from boothsync.tray import (
    COLOURS,
    MAX_TOOLTIP,
    AttachedController,
    EngineController,
    MenuEntry,
    Notifier,
    TrayActions,
    XdgAutostart,
    icon_image,
    language,
    menu_model,
    tooltip,
    tray_command,
    tray_state,
)
from tests.helpers import queue, wait_for
from tests.test_cli import write_config as cli_config
from tests.test_desktop import split_exec

BOOTHSYNC = [sys.executable, "-m", "boothsync"]


def snap(
    *,
    waiting: int = 0,
    uploading: int = 0,
    uploaded: int = 0,
    failed: int = 0,
    health: dict[str, Health] | None = None,
    paused: bool = False,
    missing: tuple[str, ...] = (),
    last_upload: Event | None = None,
    today: int = 0,
) -> Snapshot:
    totals = {"waiting": waiting, "uploading": uploading, "uploaded": uploaded, "failed": failed}
    stats = Stats(
        destinations={"eventpics": dict(totals)},
        totals=totals,
        last_upload=last_upload,
        last_error=None,
    )
    healths = {
        name: DestinationHealth(value)
        for name, value in (health or {"eventpics": Health.ONLINE}).items()
    }
    return Snapshot(
        stats=stats,
        health=healths,
        paused=paused,
        missing_folders=missing,
        uploaded_today=today,
        to_go=waiting + uploading + failed,  # one destination: one job per picture
    )


# -- state and icon --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("snapshot", "state"),
    [
        (snap(uploaded=5), "ok"),
        (snap(), "ok"),
        (snap(waiting=2, uploaded=5), "uploading"),
        (snap(uploading=1), "uploading"),
        (snap(waiting=2, health={"eventpics": Health.OFFLINE}), "waiting"),
        (snap(health={"eventpics": Health.RATE_LIMITED}), "waiting"),
        (snap(waiting=1, paused=True), "waiting"),
        (snap(health={"eventpics": Health.UNAUTHORIZED}), "attention"),
        (snap(uploaded=5, failed=1), "attention"),
        (snap(missing=("/booth/prints",)), "attention"),
        (snap(failed=1, paused=True, health={"eventpics": Health.OFFLINE}), "attention"),
        (snap(health={"a": Health.ONLINE, "b": Health.OFFLINE}), "waiting"),
    ],
)
def test_state_follows_the_rule(snapshot: Snapshot, state: str) -> None:
    """Red beats orange beats blue beats green: attention when someone must act, waiting when
    pictures cannot go, uploading while anything is queued, else all uploaded."""
    assert tray_state(snapshot) == state


def test_each_state_has_its_own_icon_with_its_colour_in_the_centre() -> None:
    """The icon is 64 by 64 RGBA, its centre pixel in the state's colour, each state distinct."""
    images = {}
    for state, colour in COLOURS.items():
        image = icon_image(state)  # type: ignore[arg-type]
        assert image.size == (64, 64)
        assert image.mode == "RGBA"
        assert image.getpixel((32, 32)) == (*colour, 255)
        assert image.getpixel((0, 0))[3] == 0  # transparent corners: a circle, not a square
        images[state] = image.tobytes()
    assert len(set(images.values())) == len(COLOURS)
    assert len(set(COLOURS.values())) == len(COLOURS)


# -- tooltip and language --------------------------------------------------------------------------


def test_tooltip_says_it_in_words() -> None:
    """The tooltip counts what waits and what is uploaded and says how the gallery is reached."""
    snapshot = snap(waiting=3, uploaded=120)
    assert tooltip(snapshot, "en") == "boothsync: 3 waiting, 120 uploaded, online"
    assert tooltip(snapshot, "de") == "boothsync: 3 wartend, 120 hochgeladen, online"
    worst = snap(
        failed=2,
        paused=True,
        missing=("/x",),
        health={"a": Health.ONLINE, "b": Health.UNAUTHORIZED},
    )
    assert tooltip(worst, "en") == (
        "boothsync: 0 waiting, 0 uploaded, 2 failed, key rejected, paused, folder missing"
    )


def test_tooltip_fits_windows_limit() -> None:
    """Even with every problem at once and huge counts, the tooltip stays within 127 characters."""
    worst = snap(
        waiting=10**9,
        uploaded=10**12,
        failed=10**9,
        paused=True,
        missing=("/x",),
        health={"a": Health.UNAUTHORIZED},
    )
    for lang in ("en", "de"):
        assert len(tooltip(worst, lang)) <= MAX_TOOLTIP


@pytest.mark.parametrize(
    ("setting", "environ", "expected"),
    [
        ("en", {"LANG": "de_DE.UTF-8"}, "en"),
        ("de", {"LANG": "en_US.UTF-8"}, "de"),
        ("auto", {"LANG": "de_DE.UTF-8"}, "de"),
        ("auto", {"LANG": "de_AT.UTF-8"}, "de"),
        ("auto", {"LC_ALL": "en_GB.UTF-8", "LANG": "de_DE.UTF-8"}, "en"),
        ("auto", {"LANG": "fr_FR.UTF-8"}, "en"),
        ("auto", {"LANG": "C"}, "en"),
        ("auto", {}, "en"),
    ],
)
def test_language_from_the_config_or_the_locale(
    setting: str, environ: dict[str, str], expected: str
) -> None:
    """An explicit language wins; "auto" is German when the locale starts with "de"."""
    assert language(setting, environ) == expected


def test_language_is_a_documented_booth_option(tmp_path: Path) -> None:
    """[booth] language defaults to "auto" and only takes auto, en or de."""
    base = {
        "watch": [{"path": str(tmp_path)}],
        "destinations": {"e": {"type": "eventpics", "api_key": "k" * 8, "link_id": "l"}},
    }
    assert parse_config(base, source=None, environ={}).booth.language == "auto"
    german = parse_config({**base, "booth": {"language": "de"}}, source=None, environ={})
    assert german.booth.language == "de"
    with pytest.raises(ConfigError, match="language"):
        parse_config({**base, "booth": {"language": "fr"}}, source=None, environ={})


# -- menu ------------------------------------------------------------------------------------------


def labels(entries: list[MenuEntry]) -> list[str]:
    return [e.label for e in entries if not e.separator]


def by_action(entries: list[MenuEntry], action: str) -> MenuEntry:
    return next(e for e in entries if e.action == action)


def test_menu_shows_status_lines_and_every_action() -> None:
    """Open dashboard first, then the status lines (counts, last upload, each destination),
    then the actions."""
    last = Event(path="/booth/IMG_7.jpg", destination="eventpics", at=0.0, error=None)
    snapshot = snap(
        waiting=3,
        uploaded=120,
        today=45,
        failed=1,
        last_upload=last,
        health={"eventpics": Health.ONLINE, "backup": Health.OFFLINE},
    )
    entries = menu_model(snapshot, "en", autostart=True, clock_format=lambda at: "14:32")
    assert labels(entries) == [
        "Open dashboard",
        "Uploaded today: 45",
        "Waiting: 3",
        "Failed: 1",
        "4 pictures still to go",
        "Last upload: IMG_7.jpg at 14:32",
        "backup: offline",
        "eventpics: online",
        "Pause uploads",
        "Retry failed",
        "Forget failed",
        "Open watched folder",
        "Open log",
        "Open config",
        "Reload config",
        "Start at login",
        "Quit",
    ]
    assert entries[0].action == "open_dashboard" and entries[0].enabled
    assert entries[1].separator
    assert all(not e.enabled and e.action is None for e in entries[2:9])
    assert by_action(entries, "retry").enabled
    assert by_action(entries, "forget").enabled
    assert by_action(entries, "autostart").checked is True
    assert [e.action for e in entries if e.default] == ["open_folder"]


def test_menu_follows_the_state() -> None:
    """Paused offers Resume; nothing failed greys out Retry and Forget; a missing folder is
    named; start at login shows the real entry's state, or is greyed out where there is none."""
    entries = menu_model(snap(paused=True, missing=("/booth/prints",)), "en", autostart=False)
    assert by_action(entries, "resume").label == "Resume uploads"
    assert not any(e.action == "pause" for e in entries)
    assert not by_action(entries, "retry").enabled
    assert not by_action(entries, "forget").enabled
    assert "Folder missing: /booth/prints" in labels(entries)
    assert "Last upload: none yet" in labels(entries)
    assert by_action(entries, "autostart").checked is False
    assert not by_action(menu_model(snap(), "en", autostart=None), "autostart").enabled
    assert not by_action(menu_model(snap(), "en", has_config=False), "open_config").enabled


def test_menu_speaks_german() -> None:
    """Every text of the German menu comes from the German table."""
    entries = menu_model(snap(waiting=1), "de")
    assert labels(entries)[:4] == [
        "Dashboard öffnen",
        "Heute hochgeladen: 0",
        "Wartend: 1",
        "Fehlgeschlagen: 0",
    ]
    assert by_action(entries, "pause").label == "Uploads anhalten"
    assert by_action(entries, "quit").label == "Beenden"
    english = set(labels(menu_model(snap(waiting=1), "en")))
    assert not {e.label for e in entries if e.action} & english


def test_both_languages_have_the_same_texts() -> None:
    """No text is missing in either language, and the placeholders agree."""
    from boothsync.tray import TEXTS

    assert TEXTS["en"].keys() == TEXTS["de"].keys()
    for key in TEXTS["en"]:
        assert sorted(_fields(TEXTS["en"][key])) == sorted(_fields(TEXTS["de"][key])), key


def _fields(text: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


# -- actions ---------------------------------------------------------------------------------------


class FakeController:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def snapshot(self) -> Snapshot:
        return snap()

    def pause(self) -> None:
        self.calls.append("pause")

    def resume(self) -> None:
        self.calls.append("resume")

    def retry_failed(self) -> None:
        self.calls.append("retry")

    def forget_failed(self) -> None:
        self.calls.append("forget")

    def reload(self) -> None:
        self.calls.append("reload")

    def tick(self) -> float:
        return 0.2

    def stop(self, timeout: float) -> bool:
        self.calls.append("stop")
        return True


def write_config(tmp_path: Path, base_url: str = "http://127.0.0.1:9") -> Path:
    return cli_config(tmp_path, base_url)


def recorder(tmp_path: Path) -> tuple[list[str], Path]:
    """An opener program that writes what it was asked to open into a file."""
    out = tmp_path / "opened.txt"
    script = tmp_path / "opener.py"
    script.write_text(
        "import sys\n"
        f"with open({str(out)!r}, 'a', encoding='utf-8') as f:\n"
        "    f.write(sys.argv[1] + '\\n')\n",
        encoding="utf-8",
    )
    return [sys.executable, str(script)], out


def test_pause_resume_retry_forget_reload_and_quit_go_to_the_controller(tmp_path: Path) -> None:
    """The menu's control actions call the controller; Quit asks the loop to stop."""
    from boothsync.config import load_config

    config = load_config(write_config(tmp_path))
    controller = FakeController()
    quits: list[bool] = []
    actions = TrayActions(config, controller, quit=lambda: quits.append(True))
    for action in ("pause", "resume", "retry", "forget", "reload", "no-such-action"):
        actions.run(action)
    assert controller.calls == ["pause", "resume", "retry", "forget", "reload"]
    actions.run("quit")
    assert quits == [True]


def test_open_folder_log_and_config_use_the_platform_opener(tmp_path: Path) -> None:
    """Open watched folder, log and config each hand the path to the opener, detached."""
    from boothsync.config import load_config
    from boothsync.paths import log_file

    config_file = write_config(tmp_path)
    config = load_config(config_file)
    opener, opened = recorder(tmp_path)
    actions = TrayActions(config, FakeController(), quit=lambda: None, opener=opener)
    log = log_file(config)
    log.parent.mkdir(parents=True)
    log.write_text("a line\n", encoding="utf-8")
    actions.run("open_folder")
    actions.run("open_log")
    actions.run("open_config")
    expected = [str(tmp_path / "hot"), str(log), str(config_file)]
    wait_for(
        lambda: opened.exists() and len(opened.read_text().splitlines()) == 3,
        what="the opener to run three times",
    )
    assert sorted(opened.read_text(encoding="utf-8").splitlines()) == sorted(expected)


def test_start_at_login_writes_and_removes_an_xdg_autostart_entry(tmp_path: Path) -> None:
    """The toggle writes $XDG_CONFIG_HOME/autostart/boothsync.desktop running this interpreter's
    `-m boothsync tray -c CONFIG` (quoted for a path with spaces), and removes it again."""
    from boothsync.config import load_config

    folder = tmp_path / "my booth $HOME 100% `x`"
    folder.mkdir()
    config_file = write_config(folder)
    config = load_config(config_file)
    autostart = XdgAutostart({"XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    actions = TrayActions(config, FakeController(), quit=lambda: None, autostart=autostart)
    entry = tmp_path / "xdg" / "autostart" / "boothsync.desktop"
    assert actions.autostart_enabled() is False
    assert (
        by_action(menu_model(snap(), autostart=actions.autostart_enabled()), "autostart").checked
        is False
    )

    actions.run("autostart")
    assert entry.is_file()
    assert actions.autostart_enabled() is True
    lines = entry.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "[Desktop Entry]"
    assert "Type=Application" in lines
    exec_line = next(line for line in lines if line.startswith("Exec="))
    assert split_exec(exec_line.removeprefix("Exec=")) == [
        sys.executable,
        "-m",
        "boothsync",
        "tray",
        "-c",
        str(config_file.resolve()),
    ]
    assert tray_command(config_file)[-1] == str(config_file.resolve())

    actions.run("autostart")
    assert not entry.exists()
    assert actions.autostart_enabled() is False


# -- attached to a service -------------------------------------------------------------------------


def test_attached_controller_reads_the_database_and_sends_commands(tmp_path: Path) -> None:
    """Attached, the snapshot comes from the service's database (counts, health, flags) and
    the menu's commands are written into it for the service to take."""
    from boothsync.config import load_config

    config = load_config(write_config(tmp_path))
    controller = AttachedController(config)
    assert controller.snapshot().stats.totals == {}  # no database yet: nothing, no error
    service = Outbox(controller.database)
    try:
        service.set_health("eventpics", "offline", "connection refused")
        service.set_flag("paused", "1")
        service.set_flag("missing_folders", json.dumps(["/booth/prints"]))
        snapshot = controller.snapshot()
        assert snapshot.health["eventpics"].health == Health.OFFLINE
        assert snapshot.paused
        assert snapshot.missing_folders == ("/booth/prints",)
        assert tray_state(snapshot) == "attention"
        controller.pause()
        controller.resume()
        controller.retry_failed()
        controller.reload()
        assert service.take_commands() == ["pause", "resume", "retry", "reload"]
    finally:
        controller.stop(1)
        service.close()


def test_the_in_process_tray_reloads_its_config(tmp_path: Path) -> None:
    """Reload config in the in-process tray rereads the file: a folder added to it is
    watched and its pictures are uploaded; the queue is kept."""
    from boothsync.config import load_config

    with Receiver(tmp_path / "received") as receiver:
        config_file = write_config(tmp_path, receiver.base_url)
        controller = EngineController(load_config(config_file))
        controller.start()
        try:
            write_sample_jpeg(
                tmp_path / "hot" / "one.jpg", datetime(2026, 6, 1, 20), "1", (1, 1, 1)
            )
            wait_for(lambda: controller.tick() and len(receiver.received()) == 1, timeout=30)
            extra = tmp_path / "extra"
            extra.mkdir()
            text = config_file.read_text(encoding="utf-8")
            config_file.write_text(
                text.replace(
                    "[destinations.eventpics]",
                    f'[[watch]]\npath = "{extra.as_posix()}"\n\n[destinations.eventpics]',
                ),
                encoding="utf-8",
            )
            controller.reload()
            wait_for(
                lambda: controller.tick() and len(controller.engine.config.watches) == 2,
                timeout=30,
            )
            write_sample_jpeg(extra / "two.jpg", datetime(2026, 6, 1, 20), "2", (2, 2, 2))
            wait_for(lambda: controller.tick() and len(receiver.received()) == 2, timeout=30)
        finally:
            controller.stop(10)
    assert sorted(r.file_name for r in receiver.received()) == ["one.jpg", "two.jpg"]


def test_forget_failed_in_the_tray_turns_the_icon_from_red(tmp_path: Path) -> None:
    """A picture the gallery refused turns the in-process tray red; Forget failed in its menu
    drops it from the queue, and the icon is no longer red."""
    from boothsync.config import load_config

    with Receiver(tmp_path / "received", faults=Faults(seed=1)) as receiver:
        receiver.faults.fail_next = [("getuploadurl", 415)]
        config = load_config(write_config(tmp_path, receiver.base_url))
        controller = EngineController(config)
        actions = TrayActions(config, controller, quit=lambda: None)
        controller.start()
        try:
            write_sample_jpeg(
                tmp_path / "hot" / "refused.jpg", datetime(2026, 6, 1, 20), "r", (1, 1, 1)
            )
            red = wait_for(
                lambda: (
                    controller.tick()
                    and tray_state(s := controller.snapshot()) == "attention"
                    and s
                ),
                timeout=30,
            )
            assert red.stats.totals["failed"] == 1
            actions.run("forget")
            snapshot = controller.snapshot()
            assert snapshot.stats.totals["failed"] == 0
            assert tray_state(snapshot) != "attention"
        finally:
            controller.stop(10)


def test_forget_failed_attached_drops_them_from_the_service_queue(tmp_path: Path) -> None:
    """Attached to a service, Forget failed drops the failed pictures from the service's queue
    database at once; the pictures waiting stay."""
    from boothsync.config import load_config

    config = load_config(write_config(tmp_path))
    controller = AttachedController(config)
    service = Outbox(controller.database)
    try:
        for name in ("refused.jpg", "waits.jpg"):
            path = tmp_path / "hot" / name
            path.write_bytes(b"picture " + name.encode())
            queue(service, path, "eventpics")
            if name == "refused.jpg":
                job = service.claim()
                assert job is not None
                service.fail(job.id, error="415 Unsupported Media Type")
        assert tray_state(controller.snapshot()) == "attention"
        controller.forget_failed()
        snapshot = controller.snapshot()
        assert snapshot.stats.totals == {"waiting": 1, "uploading": 0, "uploaded": 0, "failed": 0}
        assert tray_state(snapshot) != "attention"
    finally:
        controller.stop(1)
        service.close()


# -- notifications ---------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_notifier_tells_a_rejected_key_at_once_and_its_recovery() -> None:
    """A destination that starts rejecting the key is told once; its recovery is told too."""
    clock = Clock()
    notifier = Notifier("en", clock=clock)
    assert notifier.feed(snap()) == []
    rejected = snap(health={"eventpics": Health.UNAUTHORIZED})
    assert notifier.feed(rejected) == ["eventpics rejected the API key: nothing is uploaded there."]
    assert notifier.feed(rejected) == []
    assert notifier.feed(snap()) == ["eventpics is back: uploads go on."]
    assert notifier.feed(snap()) == []


def test_notifier_tells_an_outage_after_five_minutes_once() -> None:
    """Offline is told after 5 minutes, once per outage; a short outage is not told at all."""
    clock = Clock()
    notifier = Notifier("en", clock=clock)
    offline = snap(health={"eventpics": Health.OFFLINE})
    assert notifier.feed(offline) == []
    clock.now += 120
    assert notifier.feed(offline) == []
    assert notifier.feed(snap()) == []  # back after 2 minutes: nothing to tell
    assert notifier.feed(offline) == []
    clock.now += 299
    assert notifier.feed(offline) == []
    clock.now += 1
    assert notifier.feed(offline) == ["eventpics has been offline for 5 minutes; pictures wait."]
    clock.now += 600
    assert notifier.feed(offline) == []
    assert notifier.feed(snap()) == ["eventpics is back: uploads go on."]
    clock.now += 10
    assert notifier.feed(offline) == []  # a new outage starts its own 5 minutes
    clock.now += 300
    assert len(notifier.feed(offline)) == 1


def test_notifier_speaks_german() -> None:
    """The messages come from the language's table."""
    notifier = Notifier("de", clock=Clock())
    assert notifier.feed(snap(health={"e": Health.UNAUTHORIZED})) == [
        "e hat den API-Schlüssel abgelehnt: dorthin wird nichts hochgeladen."
    ]


# -- the whole loop --------------------------------------------------------------------------------


def env(**extra: str) -> dict[str, str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith("BOOTHSYNC_") or k == WEB_LISTEN_ENV)
        and k not in ("DISPLAY", "WAYLAND_DISPLAY")
    }
    environ.pop("PYSTRAY_BACKEND", None)
    environ.update(extra)
    return environ


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received", faults=Faults(seed=5)) as server:
        yield server


def test_without_a_display_tray_says_so_in_one_line(tmp_path: Path) -> None:
    """No DISPLAY, no WAYLAND_DISPLAY, no PYSTRAY_BACKEND: one line and a non-zero exit."""
    config = write_config(tmp_path)
    result = subprocess.run(
        [*BOOTHSYNC, "tray", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env(),
        check=False,
    )
    assert result.returncode in (1, 2)
    assert result.stderr.count("\n") == 1, result.stderr
    assert "display" in result.stderr
    assert "Traceback" not in result.stderr


def test_tray_uploads_and_stops_cleanly_on_sigterm(tmp_path: Path, receiver: Receiver) -> None:
    """`boothsync tray` on the dummy backend runs the engine: a dropped picture is uploaded, the
    log file is written, and SIGTERM ends it with exit code 0 and no traceback."""
    config = write_config(tmp_path, receiver.base_url)
    process = subprocess.Popen(
        [*BOOTHSYNC, "tray", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env(PYSTRAY_BACKEND="dummy"),
    )
    log = tmp_path / "state" / "logs" / "boothsync.log"
    try:
        wait_for(
            lambda: log.exists() and "tray ready" in log.read_text(encoding="utf-8"),
            timeout=30,
            what="the tray to be ready",
        )
        write_sample_jpeg(tmp_path / "hot" / "IMG_1.jpg", datetime(2026, 6, 1, 20, 0), "x", (1,))

        def uploaded() -> bool:
            result = subprocess.run(
                [*BOOTHSYNC, "status", "-c", str(config), "--json"],
                capture_output=True,
                text=True,
                timeout=60,
                env=env(),
                check=False,
            )
            return result.returncode == 0 and json.loads(result.stdout)["totals"]["uploaded"] == 1

        wait_for(uploaded, timeout=30, what="the picture to be uploaded")
        assert len(receiver.received()) == 1
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert "demo-key" not in log.read_text(encoding="utf-8")


def test_quit_stops_the_engine_and_the_icon_in_process(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quit (the stop event) stops the engine gracefully, ends icon.run on the main thread,
    returns 0 and leaves no thread running."""
    import threading

    from boothsync.config import load_config
    from boothsync.paths import outbox_path
    from boothsync.tray import run_tray

    monkeypatch.setenv("PYSTRAY_BACKEND", "dummy")
    config = load_config(write_config(tmp_path, receiver.base_url))
    stop = threading.Event()

    def quit_when_running() -> None:
        wait_for(lambda: outbox_path(config).exists() or stop.is_set(), what="the engine")
        stop.set()

    quitter = threading.Thread(target=quit_when_running)
    quitter.start()
    try:
        assert run_tray(config, attach=False, stop=stop) == 0
    finally:
        stop.set()
        quitter.join(10)
    assert (tmp_path / "state" / "logs" / "boothsync.log").is_file()


def test_the_daemon_never_loads_the_tray_and_the_tray_loads_pystray_lazily() -> None:
    """`boothsync run` imports neither the tray nor pystray; importing the tray needs no display."""
    code = (
        "import sys, boothsync.cli, boothsync.daemon\n"
        "assert 'boothsync.tray' not in sys.modules\n"
        "import boothsync.tray\n"
        "assert 'pystray' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env(), check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_menu_says_how_many_waiting_pictures_are_new() -> None:
    """While new pictures wait (they go first), the waiting line splits new and backlog; in
    German too."""
    snapshot = replace(snap(waiting=5, uploading=1), live=2)
    assert "Waiting: 6 (2 new, 3 backlog)" in labels(menu_model(snapshot, "en"))
    assert "Wartend: 6 (2 neu, 3 Rückstand)" in labels(menu_model(snapshot, "de"))
    assert "Waiting: 6" in labels(menu_model(snap(waiting=5, uploading=1), "en"))


def test_the_menu_says_whether_it_is_safe_to_pack_up() -> None:
    """With nothing left to upload the menu says it is safe to pack up; else how many
    pictures are still to go, in English and German."""
    assert "Safe to pack up" in labels(menu_model(snap(uploaded=4), "en"))
    assert "Sicher zum Abbauen" in labels(menu_model(snap(uploaded=4), "de"))
    assert "2 pictures still to go" in labels(menu_model(snap(waiting=1, failed=1), "en"))
    assert "Noch 2 Bilder ausstehend" in labels(menu_model(snap(waiting=1, failed=1), "de"))
