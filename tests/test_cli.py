"""The boothsync command as an operator runs it: real processes, real signals, real HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from boothsync import __version__
from boothsync.config import WEB_LISTEN_ENV
from boothsync.demo import write_sample_jpeg
from boothsync.receiver import DEMO_API_KEY, Faults, Receiver
from tests.fakes.picpeak import DEMO_TOKEN as PICPEAK_TOKEN
from tests.fakes.picpeak import PicPeakServer
from tests.helpers import wait_for

BOOTHSYNC = [sys.executable, "-m", "boothsync"]
SECRET = "s3cr3t-key-that-must-never-show"


def write_config(
    tmp_path: Path, base_url: str, *, api_key: str = DEMO_API_KEY, extra: str = ""
) -> Path:
    hot = tmp_path / "hot"
    hot.mkdir(exist_ok=True)
    config = tmp_path / "boothsync.toml"
    config.write_text(
        f"""
[booth]
name = "cli-booth"
timezone = "Europe/Berlin"

[[watch]]
path = "{hot.as_posix()}"
settle_seconds = 0.3
{extra}

[destinations.eventpics]
type = "eventpics"
api_key = "{api_key}"
link_id = "demo"
album_id = "a1"
base_url = "{base_url}"

[state]
dir = "{(tmp_path / "state").as_posix()}"
""",
        encoding="utf-8",
    )
    return config


# What a service manager hands a process; a test runs boothsync as an operator would,
# unless it sets these itself.
SERVICE_VARIABLES = (
    "STATE_DIRECTORY",
    "LOGS_DIRECTORY",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
)


def env(**extra: str) -> dict[str, str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if (not k.startswith("BOOTHSYNC_") or k == WEB_LISTEN_ENV) and k not in SERVICE_VARIABLES
    }
    environ.update(extra)
    return environ


def boothsync(
    *args: str, cwd: Path | None = None, python: str = sys.executable, **environ: str
) -> subprocess.CompletedProcess[str]:
    """``boothsync ARGS`` run by ``python``, in ``cwd``, with ``environ`` added."""
    return subprocess.run(
        [python, "-m", "boothsync", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env(**environ),
        check=False,
    )


class Daemon:
    """A `boothsync run` process whose output is collected as it comes.

    Its stderr is no terminal, so its log lines go to its log file: ``output`` is what it
    printed followed by that file. The log folder is ``daemon-logs`` beside the config
    (through ``$LOGS_DIRECTORY``).
    """

    def __init__(self, *args: str, cwd: Path | None = None, **environ: str) -> None:
        config = Path(args[args.index("-c") + 1]) if "-c" in args else Path.cwd() / "boothsync"
        environ.setdefault("LOGS_DIRECTORY", str(config.parent / "daemon-logs"))
        self.log_dir = Path(environ["LOGS_DIRECTORY"])
        self.process = subprocess.Popen(
            [*BOOTHSYNC, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(**environ),
            cwd=cwd,
        )
        self.lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.process.stdout, self.process.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.lines.append(line)

    @property
    def output(self) -> str:
        try:
            logged = (self.log_dir / "boothsync.log").read_text(encoding="utf-8")
        except FileNotFoundError:
            logged = ""
        return "".join(self.lines) + logged

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=30)
        for reader in self._readers:
            reader.join(5)
        return code


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received", faults=Faults(seed=3)) as server:
        yield server


def status(config: Path) -> dict[str, Any]:
    result = boothsync("status", "-c", str(config), "--json")
    # 3: something needs the operator (failed pictures, a rejected key); the report says what.
    assert result.returncode in (0, 3), result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_version_from_the_script_and_the_module() -> None:
    """`boothsync --version` and `python -m boothsync --version` print the same version."""
    script = Path(sys.executable).parent / ("boothsync.exe" if os.name == "nt" else "boothsync")
    by_module = boothsync("--version")
    assert by_module.returncode == 0
    assert by_module.stdout.strip() == f"boothsync {__version__}"
    by_script = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, check=False
    )
    assert by_script.stdout == by_module.stdout


def test_run_uploads_reports_status_and_stops_cleanly_on_sigterm(
    tmp_path: Path, receiver: Receiver
) -> None:
    """`boothsync run` uploads dropped pictures, `status --json` counts them while it runs,
    and SIGTERM ends it with exit code 0 and no traceback."""
    config = write_config(tmp_path, receiver.base_url)
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30, what="the daemon to be ready")
        for index in range(3):
            write_sample_jpeg(
                tmp_path / "hot" / f"IMG_{index}.jpg",
                datetime(2026, 6, 1, 20, index),
                "x",
                (1, 2, 3),
            )
        wait_for(lambda: len(receiver.received()) == 3, timeout=30)
        report = wait_for(lambda: (s := status(config))["totals"]["uploaded"] == 3 and s)
        assert report["destinations"]["eventpics"]["uploaded"] == 3
        assert report["destinations"]["eventpics"]["health"] == "online"
        assert report["last_upload"]["file"].startswith("IMG_")
        assert report["last_upload"]["taken_at_source"] == "exif:DateTimeOriginal"
        taken = datetime.fromisoformat(report["last_upload"]["taken_at"])
        assert taken.astimezone(ZoneInfo("Europe/Berlin")).replace(minute=0, tzinfo=None) == (
            datetime(2026, 6, 1, 20, 0)
        )
        assert report["sources"] == {"exif:DateTimeOriginal": 3}
    finally:
        code = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.output
    assert "Traceback" not in daemon.output


def test_sigint_stops_gracefully_too(tmp_path: Path, receiver: Receiver) -> None:
    """Ctrl+C (SIGINT) is a graceful stop with exit code 0."""
    config = write_config(tmp_path, receiver.base_url)
    daemon = Daemon("run", "-c", str(config))
    wait_for(lambda: "ready" in daemon.output, timeout=30)
    assert daemon.stop(signal.SIGINT) == 0
    assert "Traceback" not in daemon.output


def upload_hanging(tmp_path: Path, receiver: Receiver, name: str) -> tuple[Path, Daemon]:
    """A running daemon whose one upload hangs at the receiver."""
    config = write_config(tmp_path, receiver.base_url)
    receiver.faults.delay = 60.0
    daemon = Daemon("run", "-c", str(config))
    wait_for(lambda: "ready" in daemon.output, timeout=30)
    write_sample_jpeg(tmp_path / "hot" / name, datetime(2026, 6, 1, 20, 0), "x", (1, 2, 3))
    wait_for(lambda: status(config)["totals"]["uploading"] == 1, timeout=30)
    return config, daemon


def test_stop_during_a_slow_upload_is_bounded_and_nothing_is_lost(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A stop while an upload hangs ends the process within the grace time with exit 0;
    the next run uploads the picture."""
    config, daemon = upload_hanging(tmp_path, receiver, "stuck.jpg")
    assert daemon.stop(signal.SIGTERM) == 0
    assert "Traceback" not in daemon.output

    receiver.faults.delay = 0.0
    second = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: [r.file_name for r in receiver.received()] == ["stuck.jpg"], timeout=30)
    finally:
        assert second.stop() == 0


def test_killed_daemon_loses_nothing(tmp_path: Path, receiver: Receiver) -> None:
    """A daemon killed (SIGKILL) mid-upload leaves the picture queued; the next run sends it."""
    config, daemon = upload_hanging(tmp_path, receiver, "crash.jpg")
    daemon.stop(signal.SIGKILL)
    assert receiver.received() == []

    receiver.faults.delay = 0.0
    second = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: [r.file_name for r in receiver.received()] == ["crash.jpg"], timeout=30)
        wait_for(
            lambda: (
                status(config)["totals"]
                == {"waiting": 0, "uploading": 0, "uploaded": 1, "failed": 0}
            )
        )
    finally:
        assert second.stop() == 0


def test_retry_puts_failed_files_back(tmp_path: Path, receiver: Receiver) -> None:
    """`boothsync retry` re-queues a file the gallery refused; once accepted it is uploaded."""
    config = write_config(tmp_path, receiver.base_url)
    receiver.faults.fail_next = [("getuploadurl", 415)]
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30)
        write_sample_jpeg(
            tmp_path / "hot" / "refused.jpg", datetime(2026, 6, 1, 20, 0), "x", (1, 2, 3)
        )
        failed = wait_for(lambda: (s := status(config))["totals"]["failed"] == 1 and s, timeout=30)
        assert "415" in failed["last_error"]["error"]
        result = boothsync("retry", "-c", str(config))
        assert result.returncode == 0 and "1 failed upload(s) queued again" in result.stdout
        assert "queued again" not in result.stderr  # said once, not again as a log line
        wait_for(lambda: [r.file_name for r in receiver.received()] == ["refused.jpg"], timeout=30)
    finally:
        assert daemon.stop() == 0


def test_events_lists_events_and_albums(tmp_path: Path, receiver: Receiver) -> None:
    """`boothsync events` shows each event's link_id and its album ids and titles."""
    config = write_config(tmp_path, receiver.base_url)
    result = boothsync("events", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert 'link_id = "demo"' in result.stdout
    assert 'album_id = "a1"  Ceremony' in result.stdout
    assert 'album_id = "a2"  Party' in result.stdout


@pytest.mark.parametrize("link", ["", 'link_id = ""', 'link_id = "  "'])
def test_events_needs_only_the_key(tmp_path: Path, receiver: Receiver, link: str) -> None:
    """`boothsync events` is how the link_id is found: a config with only the key (no
    link_id, or an empty one, and no [[watch]] yet) lists the events, where `check` still
    names the missing link_id."""
    config = tmp_path / "boothsync.toml"
    config.write_text(
        f"""
[destinations.eventpics]
type = "eventpics"
api_key = "{DEMO_API_KEY}"
{link}
base_url = "{receiver.base_url}"
""",
        encoding="utf-8",
    )
    result = boothsync("events", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert 'link_id = "demo"' in result.stdout
    assert 'album_id = "a1"  Ceremony' in result.stdout
    refused = boothsync("check", "-c", str(config))
    assert refused.returncode == 2
    assert "Traceback" not in refused.stderr


def test_events_needs_only_the_token_for_picpeak_and_says_what_picsui_needs(
    tmp_path: Path,
) -> None:
    """A PicPeak table with only its token and server lists the events with their event_id;
    a Picsui table without event_id (Picsui has no list of a key's events) is one line
    naming event_id, exit 1, while the other destinations are still listed."""
    with PicPeakServer(tmp_path / "picpeak", events={12: "Gala"}) as picpeak:
        config = tmp_path / "boothsync.toml"
        config.write_text(
            f"""
[destinations.picpeak]
type = "picpeak"
api_token = "{PICPEAK_TOKEN}"
event_id = 0
base_url = "{picpeak.base_url}"

[destinations.picsui]
type = "picsui"
api_key = "some-key"
base_url = "http://127.0.0.1:9/v1"
""",
            encoding="utf-8",
        )
        result = boothsync("events", "-c", str(config))
    assert result.returncode == 1
    assert "Gala\n    event_id = 12" in result.stdout
    assert result.stderr.count("\n") == 1
    assert "picsui" in result.stderr and "event_id in [destinations.picsui]" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_passes_for_a_good_config(tmp_path: Path, receiver: Receiver) -> None:
    """`boothsync check` confirms config, folder, key, link and album, and exits 0."""
    config = write_config(tmp_path, receiver.base_url)
    result = boothsync("check", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[FAIL]" not in result.stdout
    assert "eventpics: album 'a1' exists" in result.stdout
    assert "all good" in result.stdout


@pytest.mark.parametrize(
    ("edit", "expect"),
    [
        ({"api_key": "wrong"}, "API key accepted"),
        ({"link_id": "nope"}, "link_id 'nope' exists"),
        ({"album": "zz"}, "album 'zz' exists"),
    ],
)
def test_check_fails_and_says_what_is_wrong(
    tmp_path: Path, receiver: Receiver, edit: dict[str, str], expect: str
) -> None:
    """A wrong key, link or album is one failed line and a non-zero exit."""
    config = write_config(tmp_path, receiver.base_url, api_key=edit.get("api_key", DEMO_API_KEY))
    text = config.read_text()
    if "link_id" in edit:
        text = text.replace('link_id = "demo"', f'link_id = "{edit["link_id"]}"')
    if "album" in edit:
        text = text.replace('album_id = "a1"', f'album_id = "{edit["album"]}"')
    config.write_text(text)
    result = boothsync("check", "-c", str(config))
    assert result.returncode == 1
    assert f"[FAIL] eventpics: {expect}" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_check_fails_when_the_api_is_unreachable(tmp_path: Path) -> None:
    """An unreachable API is reported as such, with a non-zero exit and no traceback."""
    config = write_config(tmp_path, "http://127.0.0.1:9")
    result = boothsync("check", "-c", str(config))
    assert result.returncode == 1
    assert "[FAIL] eventpics: API reachable" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


GOOD_DESTINATION = """
[destinations.eventpics]
type = "eventpics"
api_key = "k"
link_id = "demo"
"""


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[[watch]]\npath = 1\n" + GOOD_DESTINATION, "watch #1: path"),
        (
            "[booth]\ntimezone = 'Mars/Olympus'\n[[watch]]\npath = 'x'\n" + GOOD_DESTINATION,
            "booth.timezone",
        ),
        (
            "[[watch]]\npath = 'x'\nafter_upload = 'archive'\n" + GOOD_DESTINATION,
            'watch #1 (path "x"): after_upload',
        ),
        (
            "[[watch]]\npath = 'x'\n" + GOOD_DESTINATION + "colour = 'red'\n",
            "destinations.eventpics.colour",
        ),
        (
            "[[watch]]\npath = 'x'\n[upload]\nconcurrency = 0\n" + GOOD_DESTINATION,
            "upload.concurrency",
        ),
        ("this is = = not toml", ""),
    ],
)
def test_config_errors_are_one_line_with_exit_code_2(tmp_path: Path, text: str, key: str) -> None:
    """A broken config is one line naming the file and the key, exit code 2, no traceback."""
    config = tmp_path / "broken.toml"
    config.write_text(text)
    result = boothsync("run", "-c", str(config))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "broken.toml" in lines[0] and key in lines[0]
    assert "Traceback" not in result.stderr


def test_check_refuses_a_windows_path_that_toml_turned_into_control_characters(
    tmp_path: Path,
) -> None:
    """`check` refuses path = "C:\\booth\\new" (TOML reads \\b and \\n in double quotes as
    control characters) in one line with the two ways to write it, instead of "[ok]"."""
    config = tmp_path / "boothsync.toml"
    config.write_text('[[watch]]\npath = "C:\\booth\\new"\n' + GOOD_DESTINATION)
    result = boothsync("check", "-c", str(config))
    assert result.returncode == 2
    assert "[ok]" not in result.stdout
    assert result.stderr.strip().splitlines() == [
        f'boothsync: {config}: watch #1: path: TOML turned \\b, \\n in "double quotes" into '
        "control characters; write 'C:\\booth\\new' (single quotes) or \"C:/booth/new\""
    ]


def test_missing_config_is_one_line_with_exit_code_2(tmp_path: Path) -> None:
    """Without any config file, every command says where it looked, in one line."""
    result = boothsync("status", cwd=tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_config_found_through_the_environment(tmp_path: Path, receiver: Receiver) -> None:
    """$BOOTHSYNC_CONFIG is used when -c is not given."""
    config = write_config(tmp_path, receiver.base_url)
    result = boothsync("status", "--json", cwd=tmp_path / "hot", BOOTHSYNC_CONFIG=str(config))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["uploaded"] == 0


def test_the_api_key_never_shows_in_any_output(tmp_path: Path, receiver: Receiver) -> None:
    """Even at debug level, with a rejected key, the key appears in no log line or output."""
    config = write_config(tmp_path, receiver.base_url, api_key=SECRET)
    daemon = Daemon("run", "-c", str(config), "--log-level", "debug")
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30)
        write_sample_jpeg(tmp_path / "hot" / "k.jpg", datetime(2026, 6, 1, 20, 0), "x", (1, 2, 3))
        wait_for(lambda: "api_key" in daemon.output, timeout=30, what="the rejected-key line")
    finally:
        assert daemon.stop() == 0
    outputs = [daemon.output]
    for command in ("status", "check", "events"):
        result = boothsync(command, "-c", str(config), "--log-level", "debug")
        outputs.append(result.stdout + result.stderr)
    assert all(SECRET not in output for output in outputs)


def test_log_level_from_the_environment_is_validated(tmp_path: Path, receiver: Receiver) -> None:
    """An unknown $BOOTHSYNC_LOG_LEVEL is a one-line error naming the variable."""
    config = write_config(tmp_path, receiver.base_url)
    result = boothsync("status", "-c", str(config), BOOTHSYNC_LOG_LEVEL="loud")
    assert result.returncode == 2
    assert "BOOTHSYNC_LOG_LEVEL" in result.stderr


def test_receiver_command_serves_the_protocol(tmp_path: Path) -> None:
    """`boothsync receiver --port 0 --dir D` serves EventPics on a free port until Ctrl+C."""
    daemon = Daemon("receiver", "--port", "0", "--dir", str(tmp_path / "recv"))
    try:
        line = wait_for(
            lambda: next((ln for ln in daemon.lines if "receiver on http" in ln), None), timeout=30
        )
        base = line.split(" on ", 1)[1].strip()
        answer = httpx.get(f"{base}/geteventsandalbums", headers={"X-API-Key": DEMO_API_KEY})
        assert answer.status_code == 200
        assert answer.json()["events"][0]["linkId"] == "demo"
    finally:
        assert daemon.stop(signal.SIGINT) == 0


def test_demo_uploads_samples_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    """`boothsync demo` writes samples, shows each upload with time and album, stops on Ctrl+C.
    Its dashboard offers no Reload config: the demo has no config file to read again."""
    folder = tmp_path / "demo"
    daemon = Daemon("demo", "--dir", str(folder), "--no-browser")
    try:
        wait_for(lambda: daemon.output.count("uploaded  demo-") == 3, timeout=60, what="3 uploads")
        wait_for(lambda: "Ctrl+C" in daemon.output, timeout=10)
        login = re.search(r"Dashboard: (http://127\.0\.0\.1:\d+/login\?token=\S+)", daemon.output)
        assert login is not None, daemon.output
        with httpx.Client(follow_redirects=True, timeout=10) as client:
            page = client.get(login.group(1))
            assert page.status_code == 200 and 'id="state"' in page.text, page.text
            assert 'id="reload"' not in page.text
    finally:
        code = daemon.stop(signal.SIGINT)
    assert code == 0, daemon.output
    assert "album a1" in daemon.output
    assert re.search(r"Dashboard: http://127\.0\.0\.1:\d+/login\?token=", daemon.output)
    assert "Traceback" not in daemon.output
    received = list((folder / "received").rglob("demo-*.jpg"))
    assert len(received) == 3


def test_an_unusable_state_folder_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A state folder that cannot be created stops `run` with one line naming it, exit 1."""
    (tmp_path / "a-file").write_text("")
    config = write_config(tmp_path, "http://127.0.0.1:9")
    config.write_text(
        config.read_text().replace(
            (tmp_path / "state").as_posix(), (tmp_path / "a-file" / "state").as_posix()
        )
    )
    result = boothsync("run", "-c", str(config))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "a-file" in result.stderr and "Traceback" not in result.stderr


def test_a_fixed_key_is_used_as_soon_as_the_config_is_saved(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A rejected key pauses uploads; saving the fixed key delivers everything, nothing failed."""
    config = write_config(tmp_path, receiver.base_url, api_key="wrong-key-1234")
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30)
        for index in range(2):
            write_sample_jpeg(
                tmp_path / "hot" / f"k{index}.jpg", datetime(2026, 6, 1, 20, index), "k", (1, 2, 3)
            )
        wait_for(
            lambda: (
                (s := status(config))["destinations"]["eventpics"]["health"] == "unauthorized"
                and s["totals"]["waiting"] == 2
            ),
            timeout=30,
        )
        config.write_text(config.read_text().replace("wrong-key-1234", DEMO_API_KEY))
        wait_for(lambda: len(receiver.received()) == 2, timeout=30)
        # Online is recorded once the upload is on the disk, a moment after it is counted.
        report = wait_for(
            lambda: (
                (s := status(config))["totals"]["uploaded"] == 2
                and s["destinations"]["eventpics"]["health"] == "online"
                and s
            ),
            timeout=15,
        )
        assert report["totals"]["failed"] == 0
    finally:
        assert daemon.stop() == 0
    assert "the config changed" in daemon.output
    assert "wrong-key-1234" not in daemon.output


def test_status_shows_a_wrong_key_at_start_and_after_a_reload_without_a_picture(
    tmp_path: Path, receiver: Receiver
) -> None:
    """`status` says `online` soon after the start, and `unauthorized` (naming api_key) soon
    after a wrong key is saved, though no picture came: each start and reload checks every
    destination once."""
    config = write_config(tmp_path, receiver.base_url)
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(
            lambda: status(config)["destinations"]["eventpics"]["health"] == "online", timeout=30
        )
        config.write_text(config.read_text().replace(DEMO_API_KEY, "wrong-key-1234"))
        entry = wait_for(
            lambda: (
                (e := status(config)["destinations"]["eventpics"])["health"] == "unauthorized" and e
            ),
            timeout=30,
        )
        assert "api_key" in entry["detail"]
        assert status(config)["totals"] == dict.fromkeys(
            ("waiting", "uploading", "uploaded", "failed"), 0
        )
    finally:
        assert daemon.stop() == 0
    assert "wrong-key-1234" not in daemon.output


def test_a_broken_config_edit_is_reported_and_uploads_go_on(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Saving a broken config while running is one error line; the running config stays."""
    config = write_config(tmp_path, receiver.base_url)
    good = config.read_text()
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30)
        config.write_text(good + "\n[upload]\nconcurrency = 0\n")
        wait_for(lambda: "config change is ignored" in daemon.output, timeout=30)
        write_sample_jpeg(
            tmp_path / "hot" / "after.jpg", datetime(2026, 6, 1, 20, 0), "a", (1, 2, 3)
        )
        wait_for(lambda: [r.file_name for r in receiver.received()] == ["after.jpg"], timeout=30)
    finally:
        assert daemon.stop() == 0
    assert "upload.concurrency" in daemon.output
    assert "Traceback" not in daemon.output


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_rereads_the_config(tmp_path: Path, receiver: Receiver) -> None:
    """SIGHUP makes the daemon reread its config even when the file looks unchanged."""
    config = write_config(tmp_path, receiver.base_url, api_key="wrong-key-1234")
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30)
        before = config.stat()
        # Same length and the old time stamp: only the signal can make it look again.
        config.write_text(config.read_text().replace("wrong-key-1234", "demo-key-fixed"))
        os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert config.stat().st_size == before.st_size
        daemon.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "the config changed" in daemon.output, timeout=30)
    finally:
        assert daemon.stop() == 0


def test_pause_and_resume_control_a_running_daemon(tmp_path: Path, receiver: Receiver) -> None:
    """`boothsync pause` stops a running `boothsync run` from uploading (status says paused,
    a dropped picture waits); `boothsync resume` sends it."""
    config = write_config(tmp_path, receiver.base_url)
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30, what="the daemon to be ready")
        assert status(config)["paused"] is False

        result = boothsync("pause", "-c", str(config))
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("\n") == 1
        assert result.stdout.startswith(f"paused: boothsync (pid {daemon.process.pid})")
        # The command returns once the running boothsync took it.
        assert status(config)["paused"] is True
        write_sample_jpeg(
            tmp_path / "hot" / "held.jpg", datetime(2026, 6, 1, 20, 0), "x", (1, 2, 3)
        )
        wait_for(lambda: status(config)["totals"]["waiting"] == 1, timeout=30)
        threading.Event().wait(1.0)  # time passes: nothing may be uploaded in it
        assert receiver.received() == []
        assert status(config)["paused"] is True
        text = boothsync("status", "-c", str(config))
        assert "uploads: paused" in text.stdout

        result = boothsync("resume", "-c", str(config))
        assert result.returncode == 0 and result.stdout.startswith("resumed:"), result.stderr
        wait_for(lambda: [r.file_name for r in receiver.received()] == ["held.jpg"], timeout=30)
        assert status(config)["paused"] is False
        assert "paused" not in boothsync("status", "-c", str(config)).stdout
    finally:
        code = daemon.stop()
    assert code == 0, daemon.output
    assert "Traceback" not in daemon.output
    assert "uploads paused" in daemon.output and "uploads resumed" in daemon.output


def test_status_names_missing_watch_folders(tmp_path: Path, receiver: Receiver) -> None:
    """A watch folder that does not exist while the daemon runs is listed by status, in text
    and JSON."""
    gone = tmp_path / "not-there"
    config = write_config(
        tmp_path,
        receiver.base_url,
        extra=f'\n[[watch]]\npath = "{gone.as_posix()}"\n',
    )
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30, what="the daemon to be ready")
        wait_for(
            lambda: status(config)["missing_folders"] == [str(gone)],
            timeout=30,
            what="the missing folder in status",
        )
        text = boothsync("status", "-c", str(config)).stdout
        assert f"watch folder missing: {gone}" in text
    finally:
        assert daemon.stop() == 0


def test_a_pause_survives_a_config_reload(tmp_path: Path, receiver: Receiver) -> None:
    """Saving the config while paused keeps uploads paused; the operator's pause is theirs."""
    config = write_config(tmp_path, receiver.base_url)
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30)
        assert boothsync("pause", "-c", str(config)).returncode == 0
        wait_for(lambda: status(config)["paused"] is True, timeout=30)
        config.write_text(config.read_text().replace('name = "cli-booth"', 'name = "booth-2"'))
        wait_for(lambda: "the config changed" in daemon.output, timeout=30)
        wait_for(lambda: daemon.output.count("ready") >= 2, timeout=30)
        assert status(config)["paused"] is True
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize("command", ["pause", "resume", "reload"])
def test_commands_without_a_running_boothsync_say_so(tmp_path: Path, command: str) -> None:
    """`pause`, `resume` and `reload` with no boothsync holding the state folder exit 1 with
    one line naming the folder and what to do, and leave no queue behind them."""
    config = write_config(tmp_path, "http://127.0.0.1:9")
    result = boothsync(command, "-c", str(config))
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"nothing to {command}: no boothsync runs" in lines[0]
    assert str(tmp_path / "state") in lines[0] and "boothsync run" in lines[0]
    assert result.stdout == ""
    assert not (tmp_path / "state").exists()


def test_status_while_the_queue_is_being_created_says_nothing_is_queued(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A queue file whose creation has not committed yet (no tables, version 0), as `status`
    can meet it in the first moment of a start: nothing queued yet, exit 0, not a schema
    error."""
    config = write_config(tmp_path, receiver.base_url)
    (tmp_path / "state").mkdir()
    sqlite3.connect(tmp_path / "state" / "outbox.sqlite3").close()
    result = boothsync("status", "--json", "-c", str(config))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["queue_exists"] is False
    assert report["totals"] == dict.fromkeys(("waiting", "uploading", "uploaded", "failed"), 0)


def test_output_read_by_nobody_ends_quietly(tmp_path: Path, receiver: Receiver) -> None:
    """`boothsync status --json | head -0`: when the reader of the output is gone, the command
    ends with exit code 1 and no traceback."""
    config = write_config(tmp_path, receiver.base_url)
    process = subprocess.Popen(
        [*BOOTHSYNC, "status", "--json", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env(),
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the only reader: every write to the pipe now fails
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 1
    assert err == ""


def test_status_says_whether_boothsync_runs(tmp_path: Path, receiver: Receiver) -> None:
    """`status` says, in words and in JSON, that boothsync never ran, that it runs (with its
    pid), that it stopped (and when), and that it ended without a clean stop."""
    config = write_config(tmp_path, receiver.base_url)

    def text() -> str:
        return boothsync("status", "-c", str(config)).stdout.splitlines()[0]

    assert text() == "boothsync: not running (it never ran with this queue)"
    assert {k: status(config)[k] for k in ("running", "pid", "since")} == {
        "running": False,
        "pid": None,
        "since": None,
    }
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30, what="the daemon to be ready")
        report = status(config)
        assert report["running"] is True and report["pid"] == daemon.process.pid
        assert datetime.fromisoformat(report["since"]) <= datetime.now().astimezone()
        assert text().startswith(f"boothsync: running (pid {daemon.process.pid}, since ")
    finally:
        assert daemon.stop() == 0
    report = status(config)
    assert report["running"] is False and report["pid"] is None
    assert text() == f"boothsync: not running (stopped {report['since']})"

    killed = Daemon("run", "-c", str(config))
    wait_for(lambda: status(config)["running"], timeout=30, what="the second daemon to run")
    killed.stop(signal.SIGKILL)
    assert status(config)["since"] is None
    assert "ended without a clean stop" in text()


def test_status_exits_3_while_pictures_failed_until_they_are_forgotten(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A refused picture makes `status` exit 3 (words and JSON) and name `retry` and
    `forget`; `forget NAME` with a name that did not fail is one line listing those that did;
    `forget` drops them, and `status` exits 0 again."""
    config = write_config(tmp_path, receiver.base_url)
    receiver.faults.fail_next = [("getuploadurl", 415), ("getuploadurl", 415)]
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30)
        for index, name in enumerate(("one.jpg", "two.jpg")):
            write_sample_jpeg(tmp_path / "hot" / name, datetime(2026, 6, 1, 20, index), name, (1,))
        wait_for(lambda: status(config)["totals"]["failed"] == 2, timeout=30)
        words = boothsync("status", "-c", str(config))
        assert words.returncode == 3
        assert "`boothsync forget`" in words.stdout
        assert boothsync("status", "--json", "-c", str(config)).returncode == 3

        typo = boothsync("forget", "-c", str(config), "three.jpg")
        assert typo.returncode == 1 and typo.stdout == ""
        assert typo.stderr.strip().splitlines() == [
            "boothsync: no failed picture is called 'three.jpg'; failed now: one.jpg, two.jpg"
        ]
        one = boothsync("forget", "-c", str(config), "one.jpg")
        assert one.returncode == 0, one.stderr
        assert "forgotten: one.jpg (to eventpics)" in one.stdout
        assert boothsync("status", "-c", str(config)).returncode == 3
        rest = boothsync("forget", "-c", str(config))
        assert rest.returncode == 0 and "1 failed upload(s) forgotten" in rest.stdout
        assert "forgotten" not in rest.stderr  # said once, not again as a log line
        after = boothsync("status", "--json", "-c", str(config))
        assert after.returncode == 0, after.stdout
        assert json.loads(after.stdout)["totals"] == {
            "waiting": 0,
            "uploading": 0,
            "uploaded": 0,
            "failed": 0,
        }
    finally:
        assert daemon.stop() == 0


def test_status_exits_3_and_names_the_error_while_the_key_is_rejected(
    tmp_path: Path, receiver: Receiver
) -> None:
    """With the gallery rejecting the key, `status` exits 3 and its last error is that
    rejection (in JSON and words), though no picture failed."""
    config = write_config(tmp_path, receiver.base_url, api_key="wrong-key-1234")
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30)
        write_sample_jpeg(tmp_path / "hot" / "k.jpg", datetime(2026, 6, 1, 20, 0), "k", (1,))
        report = wait_for(
            lambda: (
                (s := status(config))["destinations"]["eventpics"]["health"] == "unauthorized" and s
            ),
            timeout=30,
        )
    finally:
        assert daemon.stop() == 0
    result = boothsync("status", "--json", "-c", str(config))
    assert result.returncode == 3
    error = json.loads(result.stdout)["last_error"]
    assert error is not None and error["destination"] == "eventpics"
    assert "api_key" in error["error"] and error["file"] is None
    assert report["totals"]["failed"] == 0
    words = boothsync("status", "-c", str(config)).stdout
    assert f"last error: eventpics at {error['at']}: " in words


def test_a_second_ctrl_c_cuts_the_stop_short_with_130(tmp_path: Path, receiver: Receiver) -> None:
    """Ctrl+C stops gracefully (exit 0, tested above); a second one while an upload holds the
    stop up ends at once with 130, the code for interrupted."""
    _, daemon = upload_hanging(tmp_path, receiver, "slow.jpg")
    daemon.process.send_signal(signal.SIGINT)
    wait_for(lambda: "stopping:" in daemon.output, timeout=30, what="the graceful stop")
    assert daemon.stop(signal.SIGINT) == 130
    assert "Traceback" not in daemon.output


def test_ctrl_c_before_a_command_is_done_is_130_and_one_line(tmp_path: Path) -> None:
    """Ctrl+C while `events` waits for a gallery that does not answer ends it with 130 and one
    line saying it was interrupted, no traceback."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        config = write_config(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}")
        process = subprocess.Popen(
            [*BOOTHSYNC, "events", "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
            # As from a terminal: a test run started in the background (`pytest &` in a
            # script) ignores Ctrl+C, and its children would inherit that.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        silent.settimeout(30)
        connection, _ = silent.accept()
        with connection:
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert err.strip().splitlines() == ["boothsync events: interrupted"]


# -- boothsync init ---------------------------------------------------------------------------


def test_init_with_flags_writes_a_minimal_private_config_that_checks(
    tmp_path: Path, receiver: Receiver
) -> None:
    """`boothsync init` with flags (a script) writes only what was chosen, readable by this
    account only, checks it and exits 0; the key shows in no output."""
    (tmp_path / "hot").mkdir()
    config = tmp_path / "boothsync.toml"
    result = boothsync(
        "init", "-c", str(config), "--folder", str(tmp_path / "hot"), "--api-key",
        DEMO_API_KEY, "--base-url", receiver.base_url, "--link-id", "demo", "--album-id", "a2",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all good" in result.stdout and "[FAIL]" not in result.stdout
    assert DEMO_API_KEY not in result.stdout + result.stderr
    text = config.read_text(encoding="utf-8")
    assert "[destinations.eventpics]" in text and 'album_id = "a2"' in text
    assert "picsui" not in text and "picpeak" not in text and "folder" not in text
    if os.name == "posix":
        assert config.stat().st_mode & 0o777 == 0o600
    checked = boothsync("check", "-c", str(config))
    assert checked.returncode == 0, checked.stdout


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--api-key", "wrong-key"], "--api-key"),
        (["--api-key", DEMO_API_KEY, "--link-id", "nope"], "--link-id"),
        (["--api-key", DEMO_API_KEY, "--link-id", "demo", "--album-id", "zz"], "--album-id"),
    ],
)
def test_init_with_a_wrong_flag_is_one_line_and_writes_nothing(
    tmp_path: Path, receiver: Receiver, flags: list[str], named: str
) -> None:
    """A key, link or album the gallery does not know, given as a flag, is one line naming
    the flag, a non-zero exit, and no file."""
    (tmp_path / "hot").mkdir()
    config = tmp_path / "boothsync.toml"
    result = boothsync(
        "init", "-c", str(config), "--folder", str(tmp_path / "hot"),
        "--base-url", receiver.base_url, *flags,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and named in result.stderr
    assert "wrong-key" not in result.stderr
    assert not config.exists()


def test_init_asks_and_a_wrong_key_at_the_prompt_is_asked_again(
    tmp_path: Path, receiver: Receiver
) -> None:
    """At the prompts, a missing folder and a wrong key are one line each and the question
    again; the events and albums are listed to pick by number; what was picked is written."""
    (tmp_path / "hot").mkdir()
    config = tmp_path / "boothsync.toml"
    answers = f"{tmp_path / 'nothere'}\n{tmp_path / 'hot'}\neventpics\nwrong-key\n"
    answers += f"{DEMO_API_KEY}\n1\n3\n"
    result = subprocess.run(
        [*BOOTHSYNC, "init", "-c", str(config), "--base-url", receiver.base_url],
        input=answers, capture_output=True, text=True, timeout=60, env=env(), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("does not exist") == 1
    assert result.stdout.count("rejected this api key (401): type it again") == 1
    assert "Demo Wedding" in result.stdout and "Party" in result.stdout
    assert DEMO_API_KEY not in result.stdout and "wrong-key" not in result.stdout
    text = config.read_text(encoding="utf-8")
    assert 'link_id = "demo"' in text and 'album_id = "a2"' in text


def test_init_reads_the_key_without_echo_on_a_terminal(tmp_path: Path, receiver: Receiver) -> None:
    """On a terminal the key is typed without echo: it never appears on the screen."""
    pty = pytest.importorskip("pty")
    (tmp_path / "hot").mkdir()
    config = tmp_path / "boothsync.toml"
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*BOOTHSYNC, "init", "-c", str(config), "--folder", str(tmp_path / "hot"),
         "--type", "eventpics", "--base-url", receiver.base_url],
        stdin=terminal, stdout=terminal, stderr=terminal, env=env(), start_new_session=True,
    )  # fmt: skip
    os.close(terminal)
    screen = bytearray()

    def read_until(text: bytes) -> bool:
        import select

        while select.select([controller], [], [], 0.05)[0]:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                return text in screen
            if not chunk:
                break
            screen.extend(chunk)
        return text in screen

    try:
        wait_for(lambda: read_until(b"(not shown): "), timeout=30)
        os.write(controller, DEMO_API_KEY.encode() + b"\n")
        wait_for(lambda: read_until(b"number [1]: "), timeout=30)
        os.write(controller, b"1\n")
        wait_for(lambda: read_until(b"Album: number [1]: "), timeout=30)
        os.write(controller, b"2\n")
        wait_for(lambda: read_until(b"all good"), timeout=30)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)
    assert DEMO_API_KEY.encode() not in screen
    assert 'album_id = "a1"' in config.read_text(encoding="utf-8")


def test_init_refuses_to_replace_a_config_and_fails_cleanly_without_answers(
    tmp_path: Path,
) -> None:
    """An existing config is never overwritten without --force; input that ends before an
    answer is one line naming the flag that gives it, exit 2."""
    config = tmp_path / "boothsync.toml"
    config.write_text("# mine\n", encoding="utf-8")
    kept = boothsync("init", "-c", str(config))
    assert kept.returncode == 2 and "--force" in kept.stderr
    assert config.read_text(encoding="utf-8") == "# mine\n"
    fresh = tmp_path / "new.toml"
    ended = subprocess.run(
        [*BOOTHSYNC, "init", "-c", str(fresh)],
        input="", capture_output=True, text=True, timeout=60, env=env(), check=False,
    )  # fmt: skip
    assert ended.returncode == 2
    assert ended.stderr.count("\n") == 1 and "--folder" in ended.stderr
    assert not fresh.exists()
    # A wrong flag is said before any question is asked (here: none could be answered).
    typo = subprocess.run(
        [*BOOTHSYNC, "init", "-c", str(fresh), "--type", "eventpix"],
        input="", capture_output=True, text=True, timeout=60, env=env(), check=False,
    )  # fmt: skip
    assert typo.returncode == 2
    assert typo.stderr.strip().splitlines() == [
        "boothsync: --type: unknown gallery type 'eventpix'; did you mean \"eventpics\"?"
    ]


def test_init_example_prints_the_reference_and_no_config_points_at_init(tmp_path: Path) -> None:
    """`boothsync init --example` prints the full reference config (also where the source
    folder is not at hand: it ships in the package, the same file); with no config at all
    the message points at `boothsync init`, not at a file the operator may not have."""
    root = Path(__file__).resolve().parents[1]
    reference = (root / "boothsync.toml.example").read_text(encoding="utf-8")
    packaged = (root / "boothsync" / "boothsync.toml.example").read_text(encoding="utf-8")
    assert packaged == reference, "copy boothsync.toml.example into boothsync/ after editing it"
    printed = boothsync("init", "--example", cwd=tmp_path)
    assert printed.returncode == 0
    assert printed.stdout == reference
    missing = boothsync("status", cwd=tmp_path, XDG_CONFIG_HOME=str(tmp_path / "none"))
    assert missing.returncode == 2
    assert "boothsync init" in missing.stderr and "toml.example" not in missing.stderr


# `boothsync setup` with the wizard and the run after it stood in for (a browser's clicks and
# a daemon are not what is checked): prints where it would open a login link.
SETUP_OPENS = """
import sys
from pathlib import Path

import boothsync.cli as cli
import boothsync.daemon as daemon

source = Path(sys.argv[1])


def first_setup(target, *, on_serving=None, **_):
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    print("wizard saved", target.name)
    return True


daemon.first_setup = first_setup
daemon.run_service = lambda config, level: print("runs") or 0
cli._open_when_served = lambda folder, page: print("opens", page)
sys.exit(cli.main(["setup"]))
"""


def test_setup_opens_the_settings_only_for_a_config_that_was_there(tmp_path: Path) -> None:
    """After the first config is saved, the wizard's own page goes on to the dashboard:
    `boothsync setup` opens no second login link. With a config there already, it opens that
    config's settings once the boothsync it starts serves."""
    source = write_config(tmp_path, "http://127.0.0.1:9")
    script = tmp_path / "setup_opens.py"
    script.write_text(SETUP_OPENS, encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environ = env(XDG_CONFIG_HOME=str(tmp_path / "config"))

    def setup() -> list[str]:
        done = subprocess.run(
            [sys.executable, str(script), str(source)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=elsewhere,
            env=environ,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.splitlines()

    assert setup() == ["wizard saved boothsync.toml", "runs"]
    assert (tmp_path / "config" / "boothsync" / "boothsync.toml").is_file()
    assert setup() == ["opens /settings", "runs"]
