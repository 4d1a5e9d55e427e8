"""The EventPics client on its own, over httpx.MockTransport: the protocol, exactly."""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from boothsync.destinations import UploadItem
from boothsync.destinations.eventpics import EventPicsConfig, EventPicsDestination
from boothsync.errors import (
    FileRejected,
    NetworkError,
    ServerBusy,
    SourceFileError,
    Unauthorized,
    UnknownTarget,
    UploadUrlRejected,
)
from boothsync.receiver import DEMO_API_KEY, Faults, Receiver

KEY = "secret-key-123"
BASE = "https://api.example.test"

Handler = Callable[[httpx.Request], httpx.Response]


def destination(handler: Handler, **overrides: object) -> EventPicsDestination:
    values: dict[str, object] = {
        "name": "eventpics",
        "api_key": KEY,
        "link_id": "link1",
        "album_id": "a1",
        "base_url": BASE,
    }
    values.update(overrides)
    return EventPicsDestination(
        EventPicsConfig(**values),  # type: ignore[arg-type]
        transport=httpx.MockTransport(handler),
    )


@pytest.fixture
def picture(tmp_path: Path) -> UploadItem:
    path = tmp_path / "IMG_0001.JPG"
    path.write_bytes(bytes(range(256)) * 1000)
    return UploadItem(
        path=path,
        file_name=path.name,
        size=path.stat().st_size,
        content_type="image/jpeg",
        taken_at_ms=1_700_000_000_123,
        album_id=None,
    )


class Server:
    """Answers getuploadurl with a fresh URL each time and records every request."""

    def __init__(self, put_statuses: list[int] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.put_statuses = list(put_statuses or [])
        self.issued = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = request.read()
        self.bodies.append(body)
        if request.url.path == "/getuploadurl":
            self.issued += 1
            return httpx.Response(200, json={"uploadUrl": f"https://storage.test/u/{self.issued}"})
        if request.method == "PUT":
            status = self.put_statuses.pop(0) if self.put_statuses else 200
            return httpx.Response(
                status, text="<Error><Message>Request has expired</Message></Error>"
            )
        return httpx.Response(404)


def test_upload_asks_for_a_url_then_puts_the_bytes(picture: UploadItem) -> None:
    """getuploadurl gets key, link, base name, takenAt and album; the PUT carries the bytes."""
    server = Server()
    destination(server).upload(picture)
    ask, put = server.requests
    assert ask.method == "POST" and str(ask.url) == f"{BASE}/getuploadurl"
    assert json.loads(server.bodies[0]) == {
        "apiKey": KEY,
        "linkId": "link1",
        "fileName": "IMG_0001.JPG",
        "takenAt": 1_700_000_000_123,
        "albumId": "a1",
    }
    assert put.method == "PUT" and str(put.url) == "https://storage.test/u/1"
    assert put.headers["Content-Type"] == "image/jpeg"
    assert put.headers["Content-Length"] == str(picture.size)
    assert "Transfer-Encoding" not in put.headers
    assert server.bodies[1] == picture.path.read_bytes()


def test_watch_album_overrides_the_destination_album(picture: UploadItem) -> None:
    """An album set on the watch folder wins over the destination's album."""
    server = Server()
    item = UploadItem(**{**picture.__dict__, "album_id": "a2"})
    destination(server).upload(item)
    assert json.loads(server.bodies[0])["albumId"] == "a2"


def test_no_album_and_no_time_are_left_out(picture: UploadItem) -> None:
    """Without an album or a capture time the optional fields are not sent at all."""
    server = Server()
    item = UploadItem(**{**picture.__dict__, "taken_at_ms": None})
    destination(server, album_id=None).upload(item)
    assert set(json.loads(server.bodies[0])) == {"apiKey", "linkId", "fileName"}


@pytest.mark.parametrize("status", [403, 400])
def test_a_refused_put_is_an_upload_url_error(picture: UploadItem, status: int) -> None:
    """403/400 from the storage means the URL is no good: the caller asks for a new one."""
    with pytest.raises(UploadUrlRejected, match="Request has expired"):
        destination(Server(put_statuses=[status])).upload(picture)


def test_each_attempt_gets_a_fresh_url(picture: UploadItem) -> None:
    """A URL is never reused: the second attempt asks getuploadurl again."""
    server = Server(put_statuses=[403])
    client = destination(server)
    with pytest.raises(UploadUrlRejected):
        client.upload(picture)
    client.upload(picture)
    puts = [str(r.url) for r in server.requests if r.method == "PUT"]
    assert puts == ["https://storage.test/u/1", "https://storage.test/u/2"]


def answering(status: int, **kwargs: object) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, **kwargs)  # type: ignore[arg-type]

    return handler


def test_401_is_unauthorized_and_names_the_config_key(picture: UploadItem) -> None:
    """A rejected key says which config section to fix and never shows the key."""
    with pytest.raises(Unauthorized) as info:
        destination(answering(401, json={"error": "bad key"})).upload(picture)
    assert "api_key" in str(info.value) and "[destinations.eventpics]" in str(info.value)
    assert KEY not in str(info.value)


def test_404_on_getuploadurl_is_an_unknown_target(picture: UploadItem) -> None:
    """An unknown linkId or album pauses the destination and points at `boothsync events`."""
    with pytest.raises(UnknownTarget, match="link1"):
        destination(answering(404, json={"error": "no such link"})).upload(picture)


def test_429_carries_retry_after(picture: UploadItem) -> None:
    """A rate limit is retryable and keeps the server's Retry-After."""
    with pytest.raises(ServerBusy) as info:
        destination(answering(429, headers={"Retry-After": "42"})).upload(picture)
    assert info.value.retry_after == 42.0


def test_other_4xx_fails_the_file_with_the_servers_message(picture: UploadItem) -> None:
    """A 4xx that is not about the key or the link fails this file with the server's words."""
    with pytest.raises(FileRejected, match="file type not allowed"):
        destination(answering(422, json={"message": "file type not allowed"})).upload(picture)


def test_garbage_answer_is_retryable(picture: UploadItem) -> None:
    """A 200 that is not JSON, or JSON without uploadUrl, is a server hiccup, not a lost file."""
    with pytest.raises(ServerBusy, match="not JSON"):
        destination(answering(200, text="<html>captive portal</html>")).upload(picture)
    with pytest.raises(ServerBusy, match="without an uploadUrl"):
        destination(answering(200, json={"url": 5})).upload(picture)


def test_network_failure_is_a_network_error(picture: UploadItem) -> None:
    """Connection errors become NetworkError; nothing above sees an httpx type."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(NetworkError, match="cannot reach"):
        destination(refuse).upload(picture)


def test_a_file_that_vanished_is_a_source_file_error(picture: UploadItem) -> None:
    """A picture deleted after it was queued is reported as the file's problem."""
    picture.path.unlink()
    with pytest.raises(SourceFileError, match=picture.path.name):
        destination(Server()).upload(picture)


def test_events_sends_the_key_as_bearer_and_accepts_album_id_too() -> None:
    """geteventsandalbums is read with a Bearer key; albums may use "id" or "albumId"."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "events": [
                    {
                        "title": "Wedding",
                        "linkId": "link1",
                        "albums": [
                            {"id": "a1", "title": "Ceremony"},
                            {"albumId": 7, "title": "Party"},
                        ],
                    }
                ]
            },
        )

    events = destination(handler).events()
    assert seen[0].headers["Authorization"] == f"Bearer {KEY}"
    assert [(e.title, e.link_id, [(a.id, a.title) for a in e.albums]) for e in events] == [
        ("Wedding", "link1", [("a1", "Ceremony"), ("7", "Party")])
    ]


def test_check_reports_each_item() -> None:
    """check() confirms reachability, key, link and albums, and names what is missing."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "events": [
                    {"title": "Wedding", "linkId": "link1", "albums": [{"id": "a1", "title": "C"}]}
                ]
            },
        )

    items = destination(handler).check(["a9"])
    assert [(i.ok, i.label) for i in items] == [
        (True, "eventpics: API reachable"),
        (True, "eventpics: API key accepted"),
        (True, "eventpics: link_id 'link1' exists"),
        (True, "eventpics: album 'a1' exists"),
        (False, "eventpics: album 'a9' exists"),
    ]
    bad_key = destination(answering(401)).check()
    assert [(i.ok, i.label) for i in bad_key][-1] == (False, "eventpics: API key accepted")


def test_against_the_receiver_an_expired_url_is_refused_and_a_new_one_works(
    tmp_path: Path, picture: UploadItem
) -> None:
    """Over real HTTP, a URL that outlived its lifetime is refused; the next attempt's URL works."""
    with Receiver(tmp_path / "received", faults=Faults(url_lifetime=0.0)) as receiver:
        client = EventPicsDestination(
            EventPicsConfig(
                name="eventpics", api_key=DEMO_API_KEY, link_id="demo", base_url=receiver.base_url
            )
        )
        try:
            with pytest.raises(UploadUrlRejected, match="expired"):
                client.upload(picture)
            receiver.faults.url_lifetime = 300.0
            client.upload(picture)
        finally:
            client.close()
        (record,) = receiver.received()
    assert record.sha256 == hashlib.sha256(picture.path.read_bytes()).hexdigest()
    assert receiver.url_reuses == 0


def test_a_large_picture_is_streamed_not_loaded(tmp_path: Path) -> None:
    """The PUT reads the file in chunks: a 48 MB upload never holds the file in memory."""
    path = tmp_path / "big.jpg"
    block = os.urandom(1024 * 1024)
    with path.open("wb") as handle:
        for _ in range(48):
            handle.write(block)
    item = UploadItem(
        path=path,
        file_name=path.name,
        size=path.stat().st_size,
        content_type="image/jpeg",
        taken_at_ms=None,
        album_id=None,
    )
    with Receiver(tmp_path / "received") as receiver:
        client = EventPicsDestination(
            EventPicsConfig(
                name="eventpics", api_key=DEMO_API_KEY, link_id="demo", base_url=receiver.base_url
            )
        )
        try:
            tracemalloc.start()
            client.upload(item)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            client.close()
        (record,) = receiver.received()
    assert record.size == item.size
    # Client and receiver together, in this process, stay far below the file's size.
    assert peak < 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("status", [200, 401, 404, 500])
def test_a_probe_is_one_short_get_and_any_answer_means_reachable(status: int) -> None:
    """probe() sends one GET of base_url with a short timeout; any HTTP answer, even an
    error, means the API can be reached."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status)

    destination(answer).probe()
    (request,) = seen
    assert (request.method, str(request.url).rstrip("/")) == ("GET", BASE)
    assert request.extensions["timeout"]["connect"] == 5.0
    assert KEY not in str(request.url) and KEY not in str(request.headers)


def test_a_probe_without_an_answer_is_a_network_error() -> None:
    """No connection, or no answer in time, raises NetworkError naming the host."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def silent(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler in (refuse, silent):
        with pytest.raises(NetworkError, match=r"api\.example\.test"):
            destination(handler).probe()


def test_a_probe_against_the_receiver_follows_it_up_and_down(tmp_path: Path) -> None:
    """Over real HTTP, the probe answers while the receiver runs and fails once it stopped."""
    receiver = Receiver(tmp_path / "received").start()
    client = EventPicsDestination(
        EventPicsConfig(
            name="eventpics", api_key=DEMO_API_KEY, link_id="demo", base_url=receiver.base_url
        )
    )
    try:
        client.probe()
        receiver.stop()
        with pytest.raises(NetworkError, match="cannot reach"):
            client.probe()
    finally:
        receiver.stop()
        client.close()
