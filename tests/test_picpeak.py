"""The PicPeak destination against the PicPeak-like local server (and MockTransport for the
answers a real server should never give)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from boothsync.destinations import SentPicture, UploadItem
from boothsync.destinations.picpeak import PicPeakConfig, PicPeakDestination
from boothsync.engine import Engine
from boothsync.errors import FileRejected, ServerBusy, Unauthorized, UnknownTarget
from boothsync.receiver import Faults
from tests.fakes.picpeak import DEMO_TOKEN, PicPeakServer
from tests.helpers import engine_config, wait_for

Handler = Callable[[httpx.Request], httpx.Response]


def config(base_url: str, **overrides: object) -> PicPeakConfig:
    values: dict[str, object] = {
        "name": "gallery",
        "api_token": DEMO_TOKEN,
        "event_id": 1,
        "base_url": base_url,
    }
    values.update(overrides)
    return PicPeakConfig(**values)  # type: ignore[arg-type]


def item_for(path: Path, content_type: str = "image/jpeg") -> UploadItem:
    return UploadItem(
        path=path,
        file_name=path.name,
        size=path.stat().st_size,
        content_type=content_type,
        taken_at_ms=None,
        album_id=None,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PicPeakServer]:
    with PicPeakServer(
        tmp_path / "picpeak",
        tokens={DEMO_TOKEN: {"write"}, "pp_live_reader": {"read"}},
        events={1: "Demo wedding", 7: "Gala"},
    ) as running:
        yield running


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "IMG_0001.JPG"
    path.write_bytes(os.urandom(300_000))
    return path


def test_upload_arrives_byte_exact(server: PicPeakServer, picture: Path) -> None:
    """A photo goes to the configured event in field `photo` and is stored unchanged."""
    destination = PicPeakDestination(config(server.base_url))
    try:
        destination.upload(item_for(picture))
    finally:
        destination.close()
    [record] = server.received()
    assert record.event_id == 1
    assert record.file_name == "IMG_0001.JPG"
    assert record.content_type == "image/jpeg"
    assert record.path.read_bytes() == picture.read_bytes()
    assert record.sha256 == hashlib.sha256(picture.read_bytes()).hexdigest()


def test_unknown_token_pauses_with_a_message_naming_api_token(
    server: PicPeakServer, picture: Path
) -> None:
    """401 is Unauthorized, telling the operator to check api_token in the section."""
    destination = PicPeakDestination(config(server.base_url, api_token="pp_live_wrong"))
    with pytest.raises(Unauthorized) as caught:
        destination.upload(item_for(picture))
    destination.close()
    message = str(caught.value)
    assert "PicPeak rejected the API token (401)" in message
    assert "api_token in [destinations.gallery]" in message
    assert "pp_live_wrong" not in message
    assert server.received() == []


def test_token_without_write_scope_says_so(server: PicPeakServer, picture: Path) -> None:
    """403 is Unauthorized too, naming the missing `write` scope and PicPeak's own words."""
    destination = PicPeakDestination(config(server.base_url, api_token="pp_live_reader"))
    with pytest.raises(Unauthorized) as caught:
        destination.upload(item_for(picture))
    destination.close()
    message = str(caught.value)
    assert caught.value.status == 403
    assert "`write` scope" in message
    assert "Token lacks required scope: write" in message
    assert "api_token in [destinations.gallery]" in message


def test_unknown_event_names_event_id(server: PicPeakServer, picture: Path) -> None:
    """404 is UnknownTarget: PicPeak has no such event; check event_id."""
    destination = PicPeakDestination(config(server.base_url, event_id=99))
    with pytest.raises(UnknownTarget) as caught:
        destination.upload(item_for(picture))
    destination.close()
    assert "PicPeak has no event 99" in str(caught.value)
    assert "event_id in [destinations.gallery]" in str(caught.value)


def test_oversize_is_refused_before_sending(
    server: PicPeakServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file over 100 MB fails at once; the server sees no request at all."""
    path = tmp_path / "huge.jpg"
    with path.open("wb") as handle:
        handle.truncate(100 * 1024 * 1024 + 1)  # sparse: no 100 MB written
    destination = PicPeakDestination(config(server.base_url))
    with pytest.raises(FileRejected, match="larger than PicPeak's 100 MB limit"):
        destination.upload(item_for(path))
    destination.close()
    assert server.requests() == {}


def test_server_size_setting_fails_the_one_file(tmp_path: Path, picture: Path) -> None:
    """Over the server's own (lower) size setting PicPeak answers 400; the file fails with
    the server's words."""
    with PicPeakServer(tmp_path / "small", max_file_bytes=1024 * 1024 // 10) as small:
        destination = PicPeakDestination(config(small.base_url))
        with pytest.raises(FileRejected, match="File too large"):
            destination.upload(item_for(picture))
        destination.close()
        assert small.received() == []


def test_non_image_is_refused_before_sending(server: PicPeakServer, tmp_path: Path) -> None:
    """PicPeak's API takes only images: a video fails at once instead of retrying a 500."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"x" * 100)
    destination = PicPeakDestination(config(server.base_url))
    with pytest.raises(FileRejected, match="only images"):
        destination.upload(item_for(path, "video/mp4"))
    destination.close()
    assert server.requests() == {}


def test_events_follow_two_pages(tmp_path: Path) -> None:
    """events() reads page after page until the total is reached, each id as event_id."""
    names = {n: f"Event {n}" for n in range(1, 151)}
    with PicPeakServer(tmp_path / "many", events=names) as many:
        destination = PicPeakDestination(config(many.base_url))
        events = destination.events()
        destination.close()
        assert many.requests() == {"events": 2}
    assert sorted(int(e.link_id) for e in events) == list(range(1, 151))
    assert {e.id_key for e in events} == {"event_id"}
    assert all(e.albums == () for e in events)
    assert next(e for e in events if e.link_id == "42").title == "Event 42"


def test_check_confirms_token_and_event(server: PicPeakServer) -> None:
    """check() reports reachable, token accepted, the event found; albums are ignored."""
    destination = PicPeakDestination(config(server.base_url, event_id=7))
    items = destination.check(["a1"])
    destination.close()
    assert [i.ok for i in items] == [True, True, True, True]
    assert items[2].detail == "Gala"
    assert "ignored" in items[3].detail


def test_check_reports_a_missing_event(server: PicPeakServer) -> None:
    """An event_id not among the token's events fails its check line."""
    destination = PicPeakDestination(config(server.base_url, event_id=3))
    items = destination.check()
    destination.close()
    assert [i.ok for i in items] == [True, True, False]
    assert "known: " in items[2].detail


def test_code_only_error_body_surfaces(tmp_path: Path, picture: Path) -> None:
    """A body with only {"code": ...} still puts the server's word into the message."""
    with PicPeakServer(tmp_path / "codes", error_shape="code") as codes:
        destination = PicPeakDestination(config(codes.base_url, api_token="pp_live_nobody"))
        with pytest.raises(Unauthorized, match="INVALID_TOKEN"):
            destination.upload(item_for(picture))
        destination.close()


def test_rate_limit_carries_retry_after(tmp_path: Path, picture: Path) -> None:
    """429 is ServerBusy with status 429 and the Retry-After seconds (the uploader then waits)."""
    faults = Faults(fail_next=[("photos", 429)], retry_after="30")
    with PicPeakServer(tmp_path / "busy", faults=faults) as busy:
        destination = PicPeakDestination(config(busy.base_url))
        with pytest.raises(ServerBusy) as caught:
            destination.upload(item_for(picture))
        assert caught.value.status == 429
        assert caught.value.retry_after == 30.0
        destination.upload(item_for(picture))  # the next one goes through
        destination.close()
        assert len(busy.received()) == 1


def test_proxy_413_fails_the_file(tmp_path: Path, picture: Path) -> None:
    """A 413 (from a proxy in front of PicPeak) fails the one file."""
    with PicPeakServer(tmp_path / "proxy", faults=Faults(fail_next=[("photos", 413)])) as proxy:
        destination = PicPeakDestination(config(proxy.base_url))
        with pytest.raises(FileRejected, match="too large"):
            destination.upload(item_for(picture))
        destination.close()


def mocked(handler: Handler) -> PicPeakDestination:
    return PicPeakDestination(
        config("https://picpeak.example.test"), transport=httpx.MockTransport(handler)
    )


def test_size_mismatch_is_retried(picture: Path) -> None:
    """A 201 whose size_bytes differs from what was sent is ServerBusy: send it again."""

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(201, json={"id": 5, "filename": "x.jpg", "size_bytes": 12})

    destination = mocked(handler)
    with pytest.raises(ServerBusy, match="stored 12 bytes"):
        destination.upload(item_for(picture))


def test_garbage_answer_is_retried(picture: Path) -> None:
    """A 201 that is not JSON is a server in trouble: ServerBusy."""

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(201, content=b"<html>oops</html>")

    destination = mocked(handler)
    with pytest.raises(ServerBusy, match="not JSON"):
        destination.upload(item_for(picture))


def test_error_prefers_error_then_message_then_code(picture: Path) -> None:
    """With both keys the `error` text wins; a plain 400 fails the file with it."""

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(400, json={"code": "NO_FILE", "error": "No file uploaded"})

    destination = mocked(handler)
    with pytest.raises(FileRejected) as caught:
        destination.upload(item_for(picture))
    assert "No file uploaded" in str(caught.value)
    assert "NO_FILE" not in str(caught.value)


def test_engine_delivers_several_files(tmp_path: Path, server: PicPeakServer) -> None:
    """Through the real engine, every picture dropped into the hot folder arrives byte-exact."""
    cfg = engine_config(tmp_path, server.base_url, settle_seconds=0.2)
    destination = PicPeakDestination(config(server.base_url))
    contents = {f"IMG_{n:04d}.jpg": os.urandom(50_000 + n) for n in range(4)}
    engine = Engine(cfg, destinations={"eventpics": destination})
    engine.start()
    try:
        for name, data in contents.items():
            (tmp_path / "hot" / name).write_bytes(data)
        wait_for(lambda: len(server.received()) == len(contents), what="all uploads")
    finally:
        engine.stop()
        destination.close()
    by_name = {r.file_name: r.path.read_bytes() for r in server.received()}
    assert by_name == contents


# -- what the event holds (boothsync verify) ---------------------------------------------------


def test_the_gallery_is_listed_by_size_through_a_guests_share_login(
    server: PicPeakServer, picture: Path, tmp_path: Path
) -> None:
    """PicPeak's API lists no photos and its gallery renames them: the list comes from the
    gallery its guests see (share link, share login), one key per photo, its size, which is
    the key of a picture sent as it is; a photo deleted by the admin leaves the list."""
    second = tmp_path / "IMG_0002.JPG"
    second.write_bytes(os.urandom(123_456))
    destination = PicPeakDestination(config(server.base_url))
    try:
        destination.upload(item_for(picture))
        destination.upload(item_for(second))
        assert sorted(destination.list_pictures()) == ["123456 bytes", "300000 bytes"]
        assert destination.gallery_key(SentPicture("IMG_0002.JPG", None, 123_456)) == (
            "123456 bytes"
        )
        assert server.remove("IMG_0001.JPG")
        assert destination.list_pictures() == ["123456 bytes"]
    finally:
        destination.close()
    assert server.requests().get("share-login") == 2


def test_a_picture_sent_shrunk_has_no_key(server: PicPeakServer) -> None:
    """With max_edge a picture may be sent shrunk, at a size boothsync does not keep: it has no
    key, and verify can only count."""
    destination = PicPeakDestination(config(server.base_url, max_edge=2048))
    try:
        assert destination.gallery_key(SentPicture("IMG_0001.JPG", None, 1000)) is None
    finally:
        destination.close()


def test_an_archived_gallery_is_said_in_one_line(server: PicPeakServer) -> None:
    """A gallery PicPeak shows nobody (archived) cannot be listed: one error naming the event,
    not the token's fault."""
    server.archived.add(1)
    destination = PicPeakDestination(config(server.base_url))
    try:
        with pytest.raises(UnknownTarget, match="does not show the gallery of event 1"):
            destination.list_pictures()
    finally:
        destination.close()


@pytest.mark.parametrize(
    "answer",
    [{"slug": "gala-7"}, {"share_token": "abc"}, [], {"slug": 7, "share_token": "abc"}],
    ids=["no token", "no slug", "a list", "a number"],
)
def test_a_share_link_without_slug_and_token_is_a_server_in_trouble(answer: object) -> None:
    """A share link answer that lacks what the login needs: ServerBusy naming it, and no
    login is tried with it."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json=answer)

    with pytest.raises(ServerBusy, match="without its slug and share token"):
        mocked(handler).list_pictures()
    assert seen == ["/api/v1/events/1/share-link"]


def test_the_guest_login_travels_instead_of_the_api_token() -> None:
    """The gallery's photo list is asked with the guest's token from the share login, not the
    API token, and the slug is one path segment however it is spelt."""
    asked: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        if request.url.path.endswith("/share-link"):
            return httpx.Response(200, json={"slug": "a/b c", "share_token": "s3cr3t"})
        if request.url.path == "/api/auth/gallery/share-login":
            return httpx.Response(200, json={"token": "guest-jwt", "event": {}})
        return httpx.Response(200, json={"photos": [{"id": 1, "size": 5}, {"id": 2}]})

    assert mocked(handler).list_pictures() == ["5 bytes", "a photo of unknown size"]
    login, listing = asked[1], asked[2]
    assert json.loads(login.content) == {"slug": "a/b c", "token": "s3cr3t"}
    assert listing.url.raw_path == b"/api/gallery/a%2Fb%20c/photos"
    assert listing.headers["Authorization"] == "Bearer guest-jwt"
    assert DEMO_TOKEN not in str(listing.headers)
