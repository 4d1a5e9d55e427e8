"""The dashboard's gatekeeping rules, each on its own: login links, sessions, the Host check,
the slowing down of wrong passwords; and the same rules through a real server in-process."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from boothsync.config import WebConfig
from boothsync.engine import Engine
from boothsync.web import auth
from boothsync.web.app import Dashboard, create_app
from boothsync.web.backend import EngineBackend
from boothsync.web.server import DashboardServer, login_link, serving_url
from tests.helpers import Clock, engine_config, wait_for


def test_a_login_token_works_once(tmp_path: Path) -> None:
    """A login token is taken once; a second time, or a made-up one, is refused."""
    token = auth.make_login_token(tmp_path)
    assert auth.take_login_token(tmp_path, token)
    assert not auth.take_login_token(tmp_path, token)
    assert not auth.take_login_token(tmp_path, "made-up")
    assert not auth.take_login_token(tmp_path, "")


def test_a_login_token_expires(tmp_path: Path) -> None:
    """A token older than LOGIN_TOKEN_SECONDS logs nobody in."""
    token = auth.make_login_token(tmp_path)
    later = time.time() + auth.LOGIN_TOKEN_SECONDS + 1
    assert not auth.take_login_token(tmp_path, token, now=later)


def test_a_login_token_is_only_for_its_state_folder(tmp_path: Path) -> None:
    """A token left for one boothsync does not log in to another (another state folder), and
    the folder holding tokens is this account's only."""
    token = auth.make_login_token(tmp_path / "a")
    assert not auth.take_login_token(tmp_path / "b", token)
    if os.name == "posix":
        assert auth.login_folder(tmp_path / "a").stat().st_mode & 0o777 == 0o700
    # The file holds a digest, not the token: reading the folder gives nobody a login.
    assert token not in " ".join(os.listdir(auth.login_folder(tmp_path / "a")))


def test_sessions_end_after_being_idle() -> None:
    """A session unused for longer than its idle time is gone; using it keeps it alive."""
    clock = Clock()
    sessions = auth.Sessions(idle=60, clock=clock)
    session = sessions.create()
    clock.advance(59)
    assert sessions.get(session.id) is session
    clock.advance(59)
    assert sessions.get(session.id) is session
    clock.advance(61)
    assert sessions.get(session.id) is None
    assert sessions.get(None) is None
    assert sessions.get("made-up") is None


def test_sessions_are_bounded() -> None:
    """Beyond the limit, the least recently used session goes first."""
    sessions = auth.Sessions(limit=2)
    first, second = sessions.create(), sessions.create()
    sessions.get(first.id)
    sessions.create()
    assert sessions.get(second.id) is None
    assert sessions.get(first.id) is first


@pytest.mark.parametrize(
    ("host", "listen", "allowed"),
    [
        ("127.0.0.1:8700", "127.0.0.1", True),
        ("localhost:8700", "127.0.0.1", True),
        ("[::1]:8700", "127.0.0.1", True),
        ("127.0.0.1:8701", "127.0.0.1", False),
        ("127.0.0.1", "127.0.0.1", False),
        ("evil.example:8700", "127.0.0.1", False),
        ("192.168.1.20:8700", "127.0.0.1", False),
        ("192.168.1.20:8700", "0.0.0.0", True),
        ("evil.example:8700", "0.0.0.0", False),
        ("127.0.0.1.nip.io:8700", "0.0.0.0", False),
        ("", "127.0.0.1", False),
        (None, "127.0.0.1", False),
        ("[::1:8700", "127.0.0.1", False),
    ],
)
def test_only_the_dashboards_own_address_is_a_host(
    host: str | None, listen: str, allowed: bool
) -> None:
    """The Host check: the loopback names on a loopback address; any IP address or this
    computer's name on all addresses; never another name, never another port."""
    assert auth.allowed_host(host, listen, 8700) is allowed


def test_wrong_passwords_lock_the_password_login_for_a_while() -> None:
    """After the limit of wrong passwords, password logins wait out the lockout."""
    throttle = auth.LoginThrottle(limit=3, lockout=60)
    for _ in range(2):
        throttle.failed()
        assert throttle.locked_for() == 0
    throttle.failed()
    assert 0 < throttle.locked_for() <= 60
    throttle.succeeded()
    assert throttle.locked_for() == 0


def test_passwords_compare_whole() -> None:
    """Only the exact password matches."""
    assert auth.password_matches("correct horse", "correct horse")
    assert not auth.password_matches("correct horse", "correct hors")
    assert not auth.password_matches("correct horse", "")


# -- through a real server, in this process ------------------------------------------------------


@contextmanager
def serving(
    tmp_path: Path, *, password: str | None = None, throttle: auth.LoginThrottle | None = None
) -> Iterator[tuple[DashboardServer, httpx.Client]]:
    # Nothing is uploaded here: the gallery's address only has to read as one.
    config = engine_config(tmp_path, "http://127.0.0.1:9")
    engine = Engine(config)
    engine.start()
    web = WebConfig(listen="127.0.0.1:0", password=password)
    state = tmp_path / "state"

    def make_app(served: WebConfig) -> object:
        dashboard = Dashboard(EngineBackend(lambda: engine, lambda: config), served, state)
        if throttle is not None:
            dashboard.throttle = throttle
        return create_app(dashboard)

    server = DashboardServer(make_app, web, state)
    assert server.start()
    try:
        wait_for(lambda: server.started.is_set(), timeout=10)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield server, client
    finally:
        server.stop()
        engine.stop()


def test_the_server_says_where_it_serves_and_stops(tmp_path: Path) -> None:
    """While it serves, the state folder names its address (a chosen port filled in); once
    stopped, nothing does and the thread is gone."""
    with serving(tmp_path) as (server, _):
        assert serving_url(tmp_path / "state") == server.url
        assert not server.url.endswith(":0")
        with httpx.Client(timeout=10) as client:
            assert client.get(f"{server.url}/mode").text == "running"
    assert serving_url(tmp_path / "state") is None
    assert not server.alive


def test_a_locked_password_login_refuses_even_the_right_password(tmp_path: Path) -> None:
    """Once the wrong passwords reached the limit, even the right one is refused (429) until
    the lockout ends; the login link still works."""
    throttle = auth.LoginThrottle(delay=0.0, limit=2, lockout=300)
    with serving(tmp_path, password="right", throttle=throttle) as (_, client):
        for _ in range(2):
            assert client.post("/login", data={"password": "wrong"}).status_code == 401
        locked = client.post("/login", data={"password": "right"})
        assert locked.status_code == 429
        assert client.get("/api/status").status_code == 401
        link = login_link(tmp_path / "state")
        assert client.get(link).status_code == 303
        assert client.get("/api/status").status_code == 200


def test_a_login_link_leads_only_to_a_page_of_the_dashboard(tmp_path: Path) -> None:
    """A login link's `next` may name a page of the dashboard, never another site."""
    with serving(tmp_path) as (_server, _), httpx.Client(timeout=10) as client:
        for wanted, landing in (
            ("/settings", "/settings"),
            ("https://evil.example/", "/"),
            ("//evil.example", "/"),
        ):
            link = login_link(tmp_path / "state")
            answer = client.get(f"{link}&next={wanted}")
            assert answer.status_code == 303
            assert answer.headers["location"] == landing


def test_a_large_or_broken_body_is_a_400(tmp_path: Path) -> None:
    """A body too large for a form, or a broken one, gets a 400 and no traceback."""
    with serving(tmp_path) as (_, client):
        client.get(login_link(tmp_path / "state"))
        page = client.get("/").text
        token = re.search(r'name="csrf-token" content="([^"]+)"', page)
        assert token is not None
        headers = {"X-CSRF-Token": token.group(1)}
        huge = client.post("/setup/type", content=b"x" * 100_000, headers=headers)
        assert huge.status_code == 400
        broken = client.post(
            "/api/retry",
            content=b"{not json",
            headers={**headers, "Content-Type": "application/json"},
        )
        assert broken.status_code == 400


def test_a_login_posted_from_another_site_is_refused(tmp_path: Path) -> None:
    """A password login sent by a page of another site is refused, even with the right
    password; from the dashboard's own page it logs in."""
    with serving(tmp_path, password="right") as (server, client):
        foreign = client.post(
            "/login", data={"password": "right"}, headers={"Origin": "http://evil.example"}
        )
        assert foreign.status_code == 403
        cross = client.post(
            "/login", data={"password": "right"}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert cross.status_code == 403
        assert client.get("/api/status").status_code == 401
        own = client.post("/login", data={"password": "right"}, headers={"Origin": server.url})
        assert own.status_code == 303
        assert client.get("/api/status").status_code == 200
