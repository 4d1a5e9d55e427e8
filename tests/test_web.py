"""The dashboard as a browser and an attacker reach it: a real `boothsync run`, its dashboard
over real HTTP on 127.0.0.1, the login link from `boothsync dashboard --print-url`."""

from __future__ import annotations

import re
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from boothsync.demo import write_sample_jpeg
from boothsync.receiver import DEMO_API_KEY, Receiver
from tests.helpers import wait_for
from tests.test_cli import Daemon, boothsync, status, write_config

HOSTILE = "<img src=x onerror=alert(1)>.jpg"


class Running:
    """A `boothsync run` with its dashboard, and a browser-like client logged in to it."""

    def __init__(self, tmp_path: Path, receiver: Receiver, *, extra: str = "") -> None:
        self.tmp_path = tmp_path
        self.config = write_config(tmp_path, receiver.base_url, extra=extra)
        self.daemon = Daemon("run", "-c", str(self.config))
        wait_for(lambda: "ready" in self.daemon.output, timeout=30, what="the daemon")
        self.base = wait_for(self._base, timeout=15, what="the dashboard's address")

    def _base(self) -> str | None:
        found = re.search(r"dashboard on (http://\S+)", self.daemon.output)
        return found.group(1).rstrip(" (") if found else None

    def login_url(self) -> str:
        result = boothsync("dashboard", "-c", str(self.config), "--print-url")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 1
        return lines[0]

    @contextmanager
    def client(self) -> Iterator[httpx.Client]:
        """A client logged in through a fresh login link."""
        with httpx.Client(base_url=self.base, timeout=10) as client:
            answer = client.get(self.login_url())
            assert answer.status_code == 303, answer.text
            yield client

    def csrf(self, client: httpx.Client) -> str:
        page = client.get("/")
        assert page.status_code == 200
        found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        assert found is not None
        return found.group(1)

    def stop(self) -> int:
        return self.daemon.stop(signal.SIGTERM)


@pytest.fixture
def running(tmp_path: Path, receiver: Receiver) -> Iterator[Running]:
    run = Running(tmp_path, receiver)
    try:
        yield run
    finally:
        code = run.stop()
        assert code == 0, run.daemon.output
        assert "Traceback" not in run.daemon.output


def drop(folder: Path, name: str, minute: int = 0) -> Path:
    path = folder / name
    write_sample_jpeg(path, datetime(2026, 6, 1, 20, minute), "x", (200, 40, 40))
    return path


def test_the_login_link_works_once_and_gives_a_strict_session_cookie(running: Running) -> None:
    """`dashboard --print-url` prints one URL; opening it logs in with an HttpOnly,
    SameSite=Strict cookie; the same link a second time logs nobody in."""
    url = running.login_url()
    assert urlsplit(url).path == "/login"
    with httpx.Client(timeout=10) as first:
        answer = first.get(url)
        assert answer.status_code == 303
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert first.get(f"{running.base}/api/status").status_code == 200
    with httpx.Client(timeout=10) as second:
        again = second.get(url)
        assert again.status_code == 401
        assert "set-cookie" not in again.headers
        assert second.get(f"{running.base}/api/status").status_code == 401


def test_api_status_is_the_json_of_status_json(running: Running, tmp_path: Path) -> None:
    """GET /api/status answers exactly what `boothsync status --json` prints."""
    drop(tmp_path / "hot", "IMG_1.jpg")
    wait_for(lambda: status(running.config)["totals"]["uploaded"] == 1, timeout=30)
    with running.client() as client:
        # Two reads a moment apart: equal once the flags written after the upload (health,
        # keeping the computer awake) have settled.
        wait_for(lambda: client.get("/api/status").json() == status(running.config), timeout=15)


def test_without_a_session_nothing_is_shown_or_done(running: Running) -> None:
    """No session cookie: the API and the live parts answer 401, the page leads to the login,
    and a command changes nothing."""
    with httpx.Client(base_url=running.base, timeout=10) as stranger:
        assert stranger.get("/api/status").status_code == 401
        assert stranger.get("/live").status_code == 401
        page = stranger.get("/")
        assert page.status_code == 303
        assert page.headers["location"] == "/login"
        assert stranger.post("/api/pause").status_code == 401
        for path in ("/setup", "/settings", "/setup/browse?path=/", "/thumbs/1.jpg"):
            answer = stranger.get(path)
            assert answer.status_code in (303, 401), path
            assert "folder" not in answer.text.lower(), path
        forged = stranger.get("/api/status", headers={"Cookie": "boothsync-1=made-up"})
        assert forged.status_code == 401
    assert status(running.config)["paused"] is False


def test_a_command_needs_the_csrf_token(running: Running) -> None:
    """A POST with the session cookie but without the page's CSRF token (what a page of
    another site could send) is refused and changes nothing; with the token it works."""
    with running.client() as client:
        refused = client.post("/api/pause")
        assert refused.status_code == 403
        wrong = client.post("/api/pause", headers={"X-CSRF-Token": "guessed"})
        assert wrong.status_code == 403
        assert status(running.config)["paused"] is False
        token = running.csrf(client)
        done = client.post("/api/pause", headers={"X-CSRF-Token": token})
        assert done.status_code == 200
        wait_for(lambda: status(running.config)["paused"] is True, timeout=10)
        client.post("/api/resume", headers={"X-CSRF-Token": token})
        wait_for(lambda: status(running.config)["paused"] is False, timeout=10)


@pytest.mark.parametrize(
    "host", ["evil.example", "rebind.attacker.test:{port}", "127.0.0.1.nip.io:{port}", ""]
)
def test_a_foreign_host_is_refused_even_with_a_session(running: Running, host: str) -> None:
    """A request whose Host is not the dashboard's address (a DNS rebinding page) is refused,
    session or not."""
    port = urlsplit(running.base).port
    with running.client() as client:
        answer = client.get("/api/status", headers={"Host": host.format(port=port)})
        assert answer.status_code == 403
        assert "totals" not in answer.text


def test_no_cors_and_strict_headers(running: Running) -> None:
    """No answer allows another origin (no CORS headers, a preflight is refused), and every
    page carries a Content-Security-Policy without inline scripts."""
    with running.client() as client:
        preflight = client.request(
            "OPTIONS",
            "/api/pause",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 405
        for path in ("/", "/live", "/api/status", "/login"):
            answer = client.get(path, headers={"Origin": "http://evil.example"})
            assert not any(h.lower().startswith("access-control-") for h in answer.headers)
            csp = answer.headers["content-security-policy"]
            assert "script-src 'self'" in csp
            assert "unsafe-inline" not in csp
            assert answer.headers["x-frame-options"] == "DENY"
        page = client.get("/").text
        assert re.search(r"<script(?![^>]*\ssrc=)[^>]*>", page) is None, "an inline script"


def test_a_hostile_file_name_is_text_and_the_key_is_nowhere(
    running: Running, tmp_path: Path, receiver: Receiver
) -> None:
    """A picture named like HTML is shown as text; the API key is in no page, fragment or
    answer, nor in the log."""
    drop(tmp_path / "hot", HOSTILE)
    wait_for(lambda: status(running.config)["totals"]["uploaded"] == 1, timeout=30)
    with running.client() as client:
        page = wait_for(
            lambda: (text := client.get("/live").text) and "onerror" in text and text,
            timeout=15,
            what="the picture on the page",
        )
        assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in page
        assert "<img src=x" not in page
        bodies = [client.get(path).text for path in ("/", "/live", "/api/status", "/login")]
    for body in [*bodies, running.daemon.output]:
        assert DEMO_API_KEY not in body


def test_retry_and_pause_from_the_dashboard(
    running: Running, tmp_path: Path, receiver: Receiver
) -> None:
    """A picture the gallery refuses for good shows under failed with its reason; Retry of
    that one picture after the cause is gone uploads it."""
    receiver.faults.fail_next = [("getuploadurl", 415)]
    drop(tmp_path / "hot", "IMG_bad.jpg")
    wait_for(lambda: status(running.config)["totals"]["failed"] == 1, timeout=30)
    with running.client() as client:
        live = client.get("/live").text
        job = re.search(r'class="failed-job" data-job="(\d+)"', live)
        assert job is not None, live
        assert "415" in live
        # A boothsync run on a config file can read it again.
        assert 'id="reload"' in live
        token = running.csrf(client)
        answer = client.post(
            "/api/retry", json={"id": int(job.group(1))}, headers={"X-CSRF-Token": token}
        )
        assert answer.json() == {"retried": 1}
        assert (
            client.post("/api/retry", json={"id": "x"}, headers={"X-CSRF-Token": token}).status_code
            == 400
        )
    wait_for(lambda: status(running.config)["totals"]["uploaded"] == 1, timeout=30)


def test_a_taken_port_is_one_line_and_uploads_go_on(tmp_path: Path, receiver: Receiver) -> None:
    """When the dashboard's port is taken, boothsync says so in one line and uploads anyway;
    `dashboard` then says there is none."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = write_config(tmp_path, receiver.base_url)
        daemon = Daemon("run", "-c", str(config), BOOTHSYNC_WEB_LISTEN=f"127.0.0.1:{port}")
        try:
            wait_for(lambda: "ready" in daemon.output, timeout=30)
            drop(tmp_path / "hot", "IMG_1.jpg")
            wait_for(lambda: len(receiver.received()) == 1, timeout=30)
            # The dashboard starts after the first scan, on its own time: wait for its word.
            wait_for(lambda: "cannot listen" in daemon.output, timeout=30)
            lines = [line for line in daemon.output.splitlines() if "cannot listen" in line]
            assert len(lines) == 1
            assert f"127.0.0.1:{port}" in lines[0]
            result = boothsync("dashboard", "-c", str(config), "--print-url")
            assert result.returncode == 1
            assert "serves no dashboard" in result.stderr
        finally:
            assert daemon.stop() == 0
    assert "Traceback" not in daemon.output


def test_dashboard_without_a_running_boothsync_says_so(tmp_path: Path) -> None:
    """`boothsync dashboard` with nothing running is one line and exit 1."""
    config = write_config(tmp_path, "http://127.0.0.1:9")
    result = boothsync("dashboard", "-c", str(config), "--print-url")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "no boothsync runs" in result.stderr


def test_listening_beyond_loopback_needs_the_password_and_slows_wrong_ones(
    tmp_path: Path, receiver: Receiver
) -> None:
    """With listen on all addresses and a password, the login page takes the password; a
    wrong one is answered no sooner than a second later and logs nobody in."""
    config = write_config(tmp_path, receiver.base_url)
    daemon = Daemon(
        "run",
        "-c",
        str(config),
        BOOTHSYNC_WEB_LISTEN="0.0.0.0:0",
        BOOTHSYNC_WEB_PASSWORD="correct horse",
    )
    try:
        found = wait_for(
            lambda: re.search(r"dashboard on http://127\.0\.0\.1:(\d+)", daemon.output),
            timeout=30,
        )
        base = f"http://127.0.0.1:{found.group(1)}"
        with httpx.Client(base_url=base, timeout=10) as client:
            started = time.monotonic()
            wrong = client.post("/login", data={"password": "battery staple"})
            assert time.monotonic() - started >= 1.0
            assert wrong.status_code == 401
            assert client.get("/api/status").status_code == 401
            right = client.post("/login", data={"password": "correct horse"})
            assert right.status_code == 303
            assert client.get("/api/status").status_code == 200
            assert "correct horse" not in client.get("/").text
    finally:
        assert daemon.stop() == 0
    assert "correct horse" not in daemon.output


def test_a_deleted_picture_keeps_its_thumbnail(tmp_path: Path, receiver: Receiver) -> None:
    """A picture deleted after its upload (after_upload = "delete") still shows with its
    thumbnail, made as it was uploaded, with no browser open at the time."""
    run = Running(tmp_path, receiver, extra='after_upload = "delete"')
    try:
        picture = drop(tmp_path / "hot", "IMG_gone.jpg")
        wait_for(lambda: not picture.exists(), timeout=60, what="the picture to be deleted")
        with run.client() as client:
            live = client.get("/live").text
            found = re.search(r'<img src="(/thumbs/\d+\.jpg)"', live)
            assert found is not None, live
            thumb = client.get(found.group(1))
            assert thumb.status_code == 200
            assert thumb.headers["content-type"] == "image/jpeg"
            assert thumb.content.startswith(b"\xff\xd8")
        with httpx.Client(base_url=run.base, timeout=10) as stranger:
            assert stranger.get(found.group(1)).status_code == 401
    finally:
        assert run.stop() == 0
