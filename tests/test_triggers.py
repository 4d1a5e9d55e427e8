"""The booth's own done signals: dslrBooth URL triggers over real HTTP, Sparkbooth's status file."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from boothsync.errors import BoothsyncError
from boothsync.triggers import DslrBoothTriggers, SparkboothStatus
from tests.helpers import wait_for

PRINT = r"C:\Users\booth\Pictures\dslrBooth\Prints\20240518_201512.jpg"
ORIGINAL_1 = r"C:\Users\booth\Pictures\dslrBooth\Originals\20240518_201501_1.jpg"
ORIGINAL_2 = r"C:\Users\booth\Pictures\dslrBooth\Originals\20240518_201505_2.jpg"
SPACED = r"C:\Users\Photo Booth\Pictures\Hochzeit Müller\Prints\print 1.jpg"


@dataclass
class Calls:
    """What the triggers handed to their callbacks, in order."""

    events: list[Path | str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_file(self, path: Path) -> None:
        with self.lock:
            self.events.append(path)

    def on_session_end(self) -> None:
        with self.lock:
            self.events.append("session_end")

    def files(self) -> list[Path]:
        with self.lock:
            return [e for e in self.events if isinstance(e, Path)]

    def snapshot(self) -> list[Path | str]:
        with self.lock:
            return list(self.events)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def triggers(calls: Calls) -> Iterator[DslrBoothTriggers]:
    running = DslrBoothTriggers(port=0, on_file=calls.on_file, on_session_end=calls.on_session_end)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as http:
        yield http


def port_of(triggers: DslrBoothTriggers) -> int:
    port = httpx.URL(triggers.url).port
    assert port is not None
    return port


def trigger(client: httpx.Client, url: str, event: str, *params: str) -> httpx.Response:
    query = {"event_type": event} | {f"param{i}": p for i, p in enumerate(params, start=1)}
    return client.get(url, params=query)


def settle(client: httpx.Client, triggers: DslrBoothTriggers, calls: Calls) -> list[Path | str]:
    """Everything the callbacks got for the triggers sent so far (a session_end marks the end)."""
    before = calls.snapshot().count("session_end")
    assert trigger(client, triggers.url, "session_end").status_code == 200
    wait_for(lambda: calls.snapshot().count("session_end") > before, what="the session_end call")
    events = calls.snapshot()
    assert events[-1] == "session_end"
    return events[:-1]


# dslrBooth URL triggers


def test_url_names_the_bound_port(triggers: DslrBoothTriggers) -> None:
    """url is the exact address to paste into dslrBooth, with the port actually bound."""
    port = port_of(triggers)
    assert port > 0
    assert triggers.url == f"http://127.0.0.1:{port}/dslrbooth"
    with socket.create_connection(("127.0.0.1", port), timeout=10):
        pass


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (("file_download", ORIGINAL_1), [ORIGINAL_1]),
        (("file_download", "IMG_0001.JPG"), []),
        (
            ("processing_start", ORIGINAL_1, ORIGINAL_2, PRINT),
            [ORIGINAL_1, ORIGINAL_2, PRINT],
        ),
        (("printing", PRINT, "2", "Canon SELPHY CP1500"), [PRINT]),
        (
            ("file_upload", PRINT, "https://fotoshare.co/i/abc123.jpg", "photo", "Wedding"),
            [PRINT],
        ),
        (("printing", SPACED, "1", "DNP DS620"), [SPACED]),
        (
            ("file_upload", "/Users/booth/Pictures/dslrBooth/Prints/a.jpg"),
            ["/Users/booth/Pictures/dslrBooth/Prints/a.jpg"],
        ),
    ],
    ids=["download", "download-bare-name", "processing", "printing", "upload", "spaces", "macos"],
)
def test_file_events_hand_over_every_file_path(
    triggers: DslrBoothTriggers,
    calls: Calls,
    client: httpx.Client,
    params: tuple[str, ...],
    expected: list[str],
) -> None:
    """A file event hands every parameter that is an absolute file path to on_file, in order."""
    response = trigger(client, triggers.url, *params)

    assert response.status_code == 200
    assert response.text.strip() == "ok"
    assert settle(client, triggers, calls) == [Path(p) for p in expected]


def test_percent_encoded_windows_paths_are_decoded(
    triggers: DslrBoothTriggers, calls: Calls, client: httpx.Client
) -> None:
    """Paths encoded in any usual way (%5C, %20, +, UTF-8 escapes) or not at all arrive intact."""
    base = triggers.url
    encoded = (
        "C%3A%5CUsers%5CPhoto%20Booth%5CPictures%5CHochzeit+M%C3%BCller%5CPrints%5Cprint%201.jpg"
    )
    assert client.get(f"{base}?event_type=printing&param1={encoded}&param2=1").status_code == 200
    assert client.get(f"{base}?event_type=file_upload&param1=C:\\x\\y.jpg").status_code == 200
    # The URL pasted into dslrBooth with a "?" at its end.
    assert client.get(f"{base}??event_type=printing&param1=C:\\x\\z.jpg").status_code == 200

    assert settle(client, triggers, calls) == [
        Path(SPACED),
        Path(r"C:\x\y.jpg"),
        Path(r"C:\x\z.jpg"),
    ]


def test_unencoded_spaces_in_the_request_line_are_accepted(
    triggers: DslrBoothTriggers, calls: Calls
) -> None:
    """A trigger whose path was put into the URL without encoding is still understood."""
    port = port_of(triggers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(
            f"GET /dslrbooth?event_type=printing&param1={SPACED} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n\r\n".encode()
        )
        answer = conn.makefile("rb").read()

    assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.0 200 OK"
    wait_for(calls.files, what="the printed file")
    assert calls.files() == [Path(SPACED)]


def test_head_post_and_root_path_are_answered(
    triggers: DslrBoothTriggers, calls: Calls, client: httpx.Client
) -> None:
    """HEAD, a POSTed form and the bare root path all work like the GET dslrBooth sends."""
    root = triggers.url.removesuffix("dslrbooth")

    head = client.head(triggers.url, params={"event_type": "printing", "param1": ORIGINAL_1})
    form = client.post(triggers.url, data={"event_type": "printing", "param1": ORIGINAL_2})
    query = client.post(triggers.url, params={"event_type": "file_download", "param1": PRINT})
    at_root = client.get(root, params={"event_type": "printing", "param1": SPACED})

    assert [r.status_code for r in (head, form, query, at_root)] == [200, 200, 200, 200]
    assert head.content == b""
    assert settle(client, triggers, calls) == [
        Path(ORIGINAL_1),
        Path(ORIGINAL_2),
        Path(PRINT),
        Path(SPACED),
    ]


@pytest.mark.parametrize("event", ["session_end", "sharing_screen"])
def test_end_of_session_calls_on_session_end(
    triggers: DslrBoothTriggers, calls: Calls, client: httpx.Client, event: str
) -> None:
    """session_end and sharing_screen call on_session_end (the caller then scans its folders)."""
    assert trigger(client, triggers.url, event).status_code == 200

    wait_for(lambda: calls.snapshot() == ["session_end"], what="on_session_end")


def test_other_and_unknown_events_are_answered_without_calls(
    triggers: DslrBoothTriggers, calls: Calls, client: httpx.Client
) -> None:
    """Events that name no finished file, known or not, get 200 and call nothing."""
    for params in [
        ("session_start", "print"),
        ("countdown_start", "3"),
        ("countdown", "50"),
        ("capture_start",),
        ("video_recording_started", r"C:\x\clip.mp4"),
    ]:
        response = trigger(client, triggers.url, *params)
        assert (response.status_code, response.text.strip()) == (200, "ok")

    assert settle(client, triggers, calls) == []


@pytest.mark.parametrize("query", ["", "?param1=C:\\a\\b.jpg", "?event_type="])
def test_missing_event_type_is_400(
    triggers: DslrBoothTriggers, calls: Calls, client: httpx.Client, query: str
) -> None:
    """A request without an event_type is refused with 400 and a short text, calling nothing."""
    response = client.get(triggers.url + query)

    assert response.status_code == 400
    assert response.text.strip() == "missing event_type"
    assert settle(client, triggers, calls) == []


def test_other_paths_are_404(triggers: DslrBoothTriggers, client: httpx.Client) -> None:
    """A path other than /dslrbooth or / is not a trigger: 404."""
    url = triggers.url.replace("/dslrbooth", "/favicon.ico")
    assert client.get(url, params={"event_type": "session_end"}).status_code == 404


def test_a_raising_callback_is_logged_and_the_booth_still_gets_200(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """A callback that raises is logged in one line; answers and later calls go on."""
    ended = threading.Event()

    def on_file(path: Path) -> None:
        raise OSError("disk trouble")

    triggers = DslrBoothTriggers(port=0, on_file=on_file, on_session_end=ended.set)
    triggers.start()
    try:
        with caplog.at_level(logging.WARNING, logger="boothsync.triggers"):
            assert trigger(client, triggers.url, "printing", PRINT).status_code == 200
            assert trigger(client, triggers.url, "session_end").status_code == 200
            wait_for(ended.is_set, what="the call after the failed one")
    finally:
        triggers.stop()

    [record] = [r for r in caplog.records if r.name == "boothsync.triggers"]
    message = record.getMessage()
    assert PRINT in message
    assert "OSError: disk trouble" in message
    assert "\n" not in message
    assert record.exc_info is None


def test_a_slow_callback_never_delays_the_answer(client: httpx.Client) -> None:
    """dslrBooth gets its answer while a callback is still busy."""
    release = threading.Event()
    started = threading.Event()

    def on_file(path: Path) -> None:
        started.set()
        release.wait(30)

    triggers = DslrBoothTriggers(port=0, on_file=on_file, on_session_end=lambda: None)
    triggers.start()
    try:
        assert trigger(client, triggers.url, "printing", PRINT).status_code == 200
        wait_for(started.is_set, what="the callback to start")
        began = time.monotonic()
        assert trigger(client, triggers.url, "printing", ORIGINAL_1).status_code == 200
        assert time.monotonic() - began < 5
    finally:
        release.set()
        triggers.stop()


def test_port_in_use_is_a_one_line_error(calls: Calls) -> None:
    """A port another program listens on gives one BoothsyncError line that says what to do."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        triggers = DslrBoothTriggers(
            port=port, on_file=calls.on_file, on_session_end=calls.on_session_end
        )

        with pytest.raises(BoothsyncError) as caught:
            triggers.start()
        triggers.stop()

    message = str(caught.value)
    assert message.startswith(f"cannot listen for dslrBooth triggers on 127.0.0.1:{port}: ")
    assert message.endswith("; change [triggers] port")
    assert "\n" not in message
    assert isinstance(caught.value.__cause__, OSError)


def test_stop_is_idempotent_and_leaves_nothing_running(calls: Calls, client: httpx.Client) -> None:
    """stop() joins every thread, closes the socket, and can be called again (or before start)."""
    never_started = DslrBoothTriggers(port=0, on_file=calls.on_file, on_session_end=lambda: None)
    never_started.stop()
    never_started.stop()

    before = set(threading.enumerate())
    triggers = DslrBoothTriggers(port=0, on_file=calls.on_file, on_session_end=lambda: None)
    triggers.start()
    port = port_of(triggers)
    idle = socket.create_connection(("127.0.0.1", port), timeout=10)  # connects, never asks
    try:
        assert trigger(client, triggers.url, "printing", PRINT).status_code == 200

        triggers.stop()
        triggers.stop()
    finally:
        idle.close()

    assert [t.name for t in threading.enumerate() if t not in before] == []
    assert calls.files() == [Path(PRINT)]  # asked before stop: still handed over
    with pytest.raises(httpx.ConnectError):
        trigger(client, triggers.url, "session_end")
    with pytest.raises(RuntimeError):
        triggers.start()


# Sparkbooth status file

LAYOUT_1 = r"C:\Users\booth\Pictures\Sparkbooth\2024-05-18\layout_0001.jpg"
LAYOUT_2 = r"C:\Users\booth\Pictures\Sparkbooth\2024-05-18\layout_0002.jpg"
LAYOUT_3 = r"C:\Users\booth\Pictures\Sparkbooth\2024-05-18\layout_0003.jpg"


@pytest.fixture
def status_file(tmp_path: Path) -> Path:
    return tmp_path / "sparkbooth-status.txt"


@pytest.fixture
def follow(status_file: Path) -> Iterator[Callable[[], tuple[SparkboothStatus, list[Path]]]]:
    started: list[SparkboothStatus] = []

    def start() -> tuple[SparkboothStatus, list[Path]]:
        reported: list[Path] = []
        status = SparkboothStatus(status_file, on_file=reported.append, interval=0.02)
        status.start()
        started.append(status)
        return status, reported

    yield start
    for status in started:
        status.stop()


def overwrite(path: Path, text: str) -> None:
    """Write the whole file in place, as an overwriting booth does."""
    before = path.stat() if path.exists() else None
    path.write_bytes(text.encode())
    after = path.stat()
    if before is not None and (before.st_size, before.st_mtime_ns) == (
        after.st_size,
        after.st_mtime_ns,
    ):
        # Same length within the filesystem's timestamp granularity: nothing tells this write
        # from the last, for the follower or for anyone. Make the new write visible.
        stamp = before.st_mtime_ns + 1_000_000_000
        os.utime(path, ns=(stamp, stamp))


def append(path: Path, text: str) -> None:
    with path.open("ab") as f:
        f.write(text.encode())


def let_polls_pass(count: int = 5, interval: float = 0.02) -> None:
    """Let the follower look at an unchanged file a few times."""
    until = time.monotonic() + count * interval
    wait_for(lambda: time.monotonic() > until, what="a few polls")


def test_overwritten_status_reports_each_saved_layout_once(
    status_file: Path, follow: Callable[[], tuple[SparkboothStatus, list[Path]]]
) -> None:
    """A status file overwritten with each status reports every new SAVED_LAYOUT write once."""
    overwrite(status_file, "START\r\n")
    _, reported = follow()

    for status in ["SESSION_START", "COUNTDOWN", "TAKE_PHOTO_1", "DEVELOPING_PHOTOS"]:
        overwrite(status_file, status + "\r\n")
    overwrite(status_file, f"SAVED_LAYOUT\t{LAYOUT_1}\r\n")
    wait_for(lambda: len(reported) == 1, what="the first layout")
    overwrite(status_file, "SESSION_COMPLETE\r\n")
    overwrite(status_file, f"SAVED_LAYOUT\t{LAYOUT_2}\r\n")
    wait_for(lambda: len(reported) == 2, what="the second layout")
    let_polls_pass()
    # The booth reused the name: a new write of the same line is a new picture.
    overwrite(status_file, f"SAVED_LAYOUT\t{LAYOUT_2}\r\n")
    wait_for(lambda: len(reported) == 3, what="the rewritten layout")
    overwrite(status_file, f"SAVED_LAYOUT\t{LAYOUT_3}")  # no line break at all
    wait_for(lambda: len(reported) == 4, what="the third layout")
    let_polls_pass()

    assert reported == [Path(LAYOUT_1), Path(LAYOUT_2), Path(LAYOUT_2), Path(LAYOUT_3)]


def test_appended_status_reports_only_new_lines(
    status_file: Path, follow: Callable[[], tuple[SparkboothStatus, list[Path]]]
) -> None:
    """A status file that grows by a line per status reports each new SAVED_LAYOUT line once."""
    append(status_file, "START\r\n")
    _, reported = follow()

    append(status_file, "SESSION_START\r\nCOUNTDOWN\r\nTAKE_PHOTO_1\r\nDEVELOPING_PHOTOS\r\n")
    append(status_file, f"SAVED_LAYOUT\t{LAYOUT_1}\r\n")
    wait_for(lambda: len(reported) == 1, what="the first layout")
    append(status_file, "ENCODING_GIF\r\nSESSION_COMPLETE\r\nSESSION_START\r\n")
    let_polls_pass()
    append(status_file, f"SAVED_LAYOUT\t{LAYOUT_2}\r\nSESSION_COMPLETE\r\n")
    append(status_file, f"SESSION_START\r\nSAVED_LAYOUT\t{LAYOUT_3}\r\nSESSION_CANCELLED\r\n")
    wait_for(lambda: len(reported) == 3, what="the other layouts")
    let_polls_pass()

    assert reported == [Path(LAYOUT_1), Path(LAYOUT_2), Path(LAYOUT_3)]


def test_half_written_line_is_not_cut_short(status_file: Path) -> None:
    """An appended line whose break has not arrived yet is reported whole once it has."""
    append(status_file, "START\r\n")
    reported: list[Path] = []
    # A poll that never comes by itself: the test decides when the follower looks.
    status = SparkboothStatus(status_file, on_file=reported.append, interval=3600)
    status.start()
    try:
        append(status_file, f"SAVED_LAYOUT\t{LAYOUT_1[:20]}")
        status._poll()  # looks while the line is half there
        append(status_file, f"{LAYOUT_1[20:]}\r\n")
        status._poll()
    finally:
        status.stop()

    assert reported == [Path(LAYOUT_1)]


def test_line_without_break_replaced_at_once_is_still_reported(status_file: Path) -> None:
    """A status without a line break that is overwritten before the next look still counts."""
    overwrite(status_file, "DEVELOPING_PHOTOS")
    reported: list[Path] = []
    status = SparkboothStatus(status_file, on_file=reported.append, interval=3600)
    status.start()
    try:
        overwrite(status_file, f"SAVED_LAYOUT\t{LAYOUT_1}")
        status._poll()  # sees the layout, but cannot yet know whether the line is whole
        overwrite(status_file, "SESSION_COMPLETE")
        status._poll()
        status._poll()
    finally:
        status.stop()

    assert reported == [Path(LAYOUT_1)]


def test_lines_there_at_start_are_not_reported(
    status_file: Path, follow: Callable[[], tuple[SparkboothStatus, list[Path]]]
) -> None:
    """What the status file says before start() is old news; only later layouts count."""
    append(status_file, f"SAVED_LAYOUT\t{LAYOUT_1}\r\nSESSION_COMPLETE\r\nSAVED_LAYOUT\t{LAYOUT_2}")
    _, reported = follow()
    let_polls_pass()

    append(status_file, f"\r\nSAVED_LAYOUT\t{LAYOUT_3}\r\n")
    wait_for(lambda: reported, what="the new layout")
    let_polls_pass()

    assert reported == [Path(LAYOUT_3)]


def test_a_single_saved_layout_at_start_is_old_news(
    status_file: Path, follow: Callable[[], tuple[SparkboothStatus, list[Path]]]
) -> None:
    """A status file showing a saved layout at start reports nothing until it changes."""
    overwrite(status_file, f"SAVED_LAYOUT\t{LAYOUT_1}")
    _, reported = follow()
    let_polls_pass()
    assert reported == []

    overwrite(status_file, f"SAVED_LAYOUT\t{LAYOUT_2}")
    wait_for(lambda: reported, what="the new layout")
    assert reported == [Path(LAYOUT_2)]


def test_file_created_later_is_followed(
    status_file: Path,
    follow: Callable[[], tuple[SparkboothStatus, list[Path]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A status file that does not exist yet is logged once and followed when it appears."""
    with caplog.at_level(logging.INFO, logger="boothsync.triggers"):
        _, reported = follow()
        let_polls_pass()
        append(status_file, f"START\r\nSESSION_START\r\nSAVED_LAYOUT\t{LAYOUT_1}\r\n")
        wait_for(lambda: reported, what="the layout in the new file")

    assert reported == [Path(LAYOUT_1)]
    missing = [r for r in caplog.records if "does not exist yet" in r.getMessage()]
    assert len(missing) == 1
    assert missing[0].levelno == logging.INFO


def test_replaced_or_recreated_file_is_followed(
    status_file: Path, follow: Callable[[], tuple[SparkboothStatus, list[Path]]]
) -> None:
    """A status file replaced by a new one, or deleted and written again, is read afresh."""
    append(status_file, "START\r\n")
    _, reported = follow()

    fresh = status_file.with_name("sparkbooth-status.new")
    fresh.write_bytes(f"START\r\nSAVED_LAYOUT\t{LAYOUT_1}\r\n".encode())
    os.replace(fresh, status_file)
    wait_for(lambda: len(reported) == 1, what="the layout in the replacement")
    status_file.unlink()
    let_polls_pass()
    status_file.write_bytes(f"SAVED_LAYOUT\t{LAYOUT_2}\r\n".encode())
    wait_for(lambda: len(reported) == 2, what="the layout in the recreated file")
    let_polls_pass()

    assert reported == [Path(LAYOUT_1), Path(LAYOUT_2)]


@pytest.mark.parametrize(
    "content",
    [
        b"\xef\xbb\xbfSTART\r\nSAVED_LAYOUT\t%s\r\n",
        b"\xef\xbb\xbfSAVED_LAYOUT\t%s",
        b"START\nSAVED_LAYOUT\t%s\n",
        b"START\rSAVED_LAYOUT\t%s\r\n",
    ],
    ids=["bom-crlf", "bom-no-break", "lf", "cr"],
)
def test_bom_and_any_line_break_are_understood(
    status_file: Path,
    follow: Callable[[], tuple[SparkboothStatus, list[Path]]],
    content: bytes,
) -> None:
    """A UTF-8 BOM and CRLF, LF or CR line breaks never end up in the reported path."""
    _, reported = follow()
    spaced = r"C:\Users\Photo Booth\Pictures\Hochzeit Müller\layout 0001.jpg"

    status_file.write_bytes(content % spaced.encode())
    wait_for(lambda: reported, what="the layout")
    let_polls_pass()

    assert reported == [Path(spaced)]


def test_raising_callback_is_logged_and_following_goes_on(
    status_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A callback that raises is logged in one line and the next layout is still reported."""
    reported: list[Path] = []

    def on_file(path: Path) -> None:
        if path == Path(LAYOUT_1):
            raise RuntimeError("outbox busy")
        reported.append(path)

    status = SparkboothStatus(status_file, on_file=on_file, interval=0.02)
    with caplog.at_level(logging.WARNING, logger="boothsync.triggers"):
        status.start()
        try:
            append(status_file, f"SAVED_LAYOUT\t{LAYOUT_1}\r\n")
            append(status_file, f"SAVED_LAYOUT\t{LAYOUT_2}\r\n")
            wait_for(lambda: reported, what="the second layout")
        finally:
            status.stop()
            status.stop()

    assert reported == [Path(LAYOUT_2)]
    [record] = [r for r in caplog.records if r.name == "boothsync.triggers"]
    assert "outbox busy" in record.getMessage()
    assert record.exc_info is None
    assert not any(t.name == "triggers-sparkbooth" for t in threading.enumerate())


def test_large_status_file_is_read_only_at_its_end(
    status_file: Path, follow: Callable[[], tuple[SparkboothStatus, list[Path]]]
) -> None:
    """A new file larger than the read window reports the layouts in its last 64 KiB, whole."""
    append(status_file, "START\r\n")
    _, reported = follow()

    filler = "COUNTDOWN\r\n" * 20_000  # about 220 KiB
    fresh = status_file.with_name("sparkbooth-status.new")
    fresh.write_bytes(f"SAVED_LAYOUT\t{LAYOUT_1}\r\n{filler}SAVED_LAYOUT\t{LAYOUT_2}\r\n".encode())
    os.replace(fresh, status_file)
    wait_for(lambda: reported, what="the layout at the end")
    let_polls_pass()

    assert reported == [Path(LAYOUT_2)]
