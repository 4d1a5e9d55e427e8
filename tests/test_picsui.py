"""The Picsui destination: the protocol against the local Picsui-like server, rate-limit
pacing, the duplicate guard of a POST that may have arrived, captions, error answers."""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from boothsync.config import UploadConfig
from boothsync.destinations import DestinationContext, UploadItem
from boothsync.destinations.picsui import (
    PicsuiConfig,
    PicsuiDestination,
    RateLimiter,
    check_caption,
    render_caption,
    seconds_until_reset,
)
from boothsync.engine import Engine
from boothsync.errors import (
    FileRejected,
    NetworkError,
    ServerBusy,
    Unauthorized,
    UnknownTarget,
)
from boothsync.receiver import Faults
from tests.fakes.multipart import parse_multipart
from tests.fakes.picsui import ENDPOINT, PicsuiServer
from tests.helpers import engine_config, wait_for

BERLIN = ZoneInfo("Europe/Berlin")
TAKEN_MS = 1_700_000_000_123  # 2023-11-14 22:13:20 UTC, 23:13 in Berlin
MOCK_BASE = "https://picsui.test/v1"

Handler = Callable[[httpx.Request], httpx.Response]


def make_config(base_url: str, **overrides: object) -> PicsuiConfig:
    values: dict[str, object] = {
        "name": "picsui",
        "api_key": "demo-key",
        "event_id": "demo-event",
        "base_url": base_url,
        "timeout": 10.0,
    }
    values.update(overrides)
    return PicsuiConfig(**values)  # type: ignore[arg-type]


def real(server: PicsuiServer, **overrides: object) -> PicsuiDestination:
    context = DestinationContext(booth="Booth A", tz=BERLIN)
    return PicsuiDestination(make_config(server.base_url, **overrides), context=context)


def mocked(handler: Handler, **overrides: object) -> PicsuiDestination:
    return PicsuiDestination(
        make_config(MOCK_BASE, **overrides), transport=httpx.MockTransport(handler)
    )


def picture(folder: Path, name: str = "IMG_0001.JPG", *, seed: int = 0) -> UploadItem:
    path = folder / name
    # Every byte value, line ends included, so a parser that touches them shows.
    path.write_bytes(bytes((i * 7 + seed) % 256 for i in range(70_000)) + b"\r\n--\r\n\n\r")
    return UploadItem(
        path=path,
        file_name=name,
        size=path.stat().st_size,
        content_type="image/jpeg",
        taken_at_ms=TAKEN_MS,
        album_id=None,
    )


def interrupted_then_retried(handler: Handler, folder: Path) -> NetworkError:
    """One picture uploaded through ``handler``: the first try must fail with a NetworkError
    (returned), then the same item is uploaded again."""
    destination = mocked(handler)
    item = picture(folder)
    try:
        with pytest.raises(NetworkError) as caught:
            destination.upload(item)
        destination.upload(item)
    finally:
        destination.close()
    return caught.value


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PicsuiServer]:
    with PicsuiServer(tmp_path / "gallery") as running:
        yield running


# The protocol, against the local server


def test_upload_is_byte_exact_with_its_caption(tmp_path: Path, server: PicsuiServer) -> None:
    """The file arrives byte for byte in field photo, with its type and the rendered caption."""
    item = picture(tmp_path)
    destination = real(server, caption="{booth} {taken:%H:%M} {file}")
    try:
        destination.upload(item)
    finally:
        destination.close()
    [record] = server.received()
    assert record.file_name == "IMG_0001.JPG"
    assert record.content_type == "image/jpeg"
    assert record.caption == "Booth A 23:13 IMG_0001.JPG"
    assert record.size == item.size
    assert record.sha256 == hashlib.sha256(item.path.read_bytes()).hexdigest()
    assert record.path.read_bytes() == item.path.read_bytes()


def test_no_caption_template_sends_no_caption(tmp_path: Path, server: PicsuiServer) -> None:
    """Without a caption template the form carries the photo only."""
    destination = real(server)
    try:
        destination.upload(picture(tmp_path))
    finally:
        destination.close()
    assert [r.caption for r in server.received()] == [None]


def test_wrong_key_is_unauthorized(tmp_path: Path) -> None:
    """A 401 pauses the destination with a message naming the config table, never the key."""
    with PicsuiServer(tmp_path / "gallery", api_key="right-key") as server:
        destination = real(server, api_key="wrong-key-123")
        try:
            with pytest.raises(Unauthorized) as caught:
                destination.upload(picture(tmp_path))
        finally:
            destination.close()
        assert server.received() == []
    message = str(caught.value)
    assert "Picsui rejected the API key (401)" in message
    assert "[destinations.picsui]" in message
    assert "wrong-key-123" not in message


def test_unknown_event_is_unknown_target(tmp_path: Path, server: PicsuiServer) -> None:
    """A 404 on the event pauses the destination and names the event_id."""
    destination = real(server, event_id="no-such-event")
    try:
        with pytest.raises(UnknownTarget, match="no-such-event"):
            destination.upload(picture(tmp_path))
        with pytest.raises(UnknownTarget, match="no-such-event"):
            destination.events()
    finally:
        destination.close()


def test_events_and_check(server: PicsuiServer) -> None:
    """events() gives the one event (id under event_id); check() confirms key and event and
    says albums are ignored."""
    destination = real(server)
    try:
        [event] = destination.events()
        items = destination.check(["a1"])
    finally:
        destination.close()
    assert (event.title, event.link_id, event.albums, event.id_key) == (
        "Demo Event",
        "demo-event",
        (),
        "event_id",
    )
    assert all(item.ok for item in items)
    assert [item.label for item in items] == [
        "picsui: API reachable",
        "picsui: API key accepted",
        "picsui: event_id 'demo-event' exists",
        "picsui: albums",
    ]
    assert "ignored" in items[-1].detail


def test_check_reports_a_wrong_key_and_a_missing_event(tmp_path: Path) -> None:
    """check() says which step failed: the key, or the event."""
    with PicsuiServer(tmp_path / "gallery", api_key="right") as server:
        bad_key = real(server, api_key="wrong")
        bad_event = real(server, api_key="right", event_id="gone")
        try:
            key_items = bad_key.check()
            event_items = bad_event.check()
        finally:
            bad_key.close()
            bad_event.close()
    assert [i.ok for i in key_items] == [True, False]
    assert [i.ok for i in event_items] == [True, True, False]
    assert "gone" in event_items[-1].detail


# Sending again after an unanswered POST


def test_maybe_delivered_upload_is_found_and_not_sent_again(
    tmp_path: Path, server: PicsuiServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A POST stored but unanswered is looked up in the listing next time: one copy only."""
    server.faults.drop_after_store = 1
    item = picture(tmp_path)
    destination = real(server)
    try:
        with pytest.raises(NetworkError) as caught:
            destination.upload(item)
        assert caught.value.maybe_delivered
        with caplog.at_level(logging.INFO, logger="boothsync.destinations.picsui"):
            destination.upload(item)
        # Settled: a later upload of the same file is a plain POST again.
        assert len(server.received()) == 1
    finally:
        destination.close()
    assert "already in the gallery" in caplog.text
    assert [r.file_name for r in server.received()] == ["IMG_0001.JPG"]


def test_maybe_delivered_with_another_size_in_the_gallery_is_sent(tmp_path: Path) -> None:
    """A listed file of the same name but another size is not ours: the file goes again."""
    posts: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            posts.append(request.read())
            if len(posts) == 1:
                raise httpx.RemoteProtocolError("Server disconnected", request=request)
            return httpx.Response(201, json={"id": "p2"})
        return httpx.Response(200, json={"photos": [{"file_name": "IMG_0001.JPG", "size": 3}]})

    interrupted_then_retried(handler, tmp_path)
    assert len(posts) == 2


@pytest.mark.parametrize(
    "listing",
    [
        httpx.Response(200, text="<html>oops</html>"),
        httpx.Response(200, json={"weird": True}),
        httpx.Response(500, json={"error": "down"}),
    ],
    ids=["not-json", "no-list", "error"],
)
def test_maybe_delivered_with_an_unusable_listing_sends_again(
    tmp_path: Path, listing: httpx.Response
) -> None:
    """When the listing cannot tell, the file is sent again rather than lost."""
    posts = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal posts
        if request.method == "GET":
            return listing
        posts += 1
        request.read()
        if posts == 1:
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(201, json={"id": "p1"})

    assert interrupted_then_retried(handler, tmp_path).maybe_delivered
    assert posts == 2


def test_listing_follows_a_next_link(tmp_path: Path) -> None:
    """A listing page with a ``next`` URL is followed to find the file."""
    pages: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            request.read()
            raise httpx.RemoteProtocolError("Server disconnected", request=request)
        pages.append(str(request.url))
        if "page=2" in str(request.url):
            return httpx.Response(200, json={"data": [{"filename": "IMG_0001.JPG"}]})
        return httpx.Response(200, json={"data": [{"filename": "x.jpg"}], "next": "?page=2"})

    interrupted_then_retried(handler, tmp_path)
    assert len(pages) == 2


# Rate limits


@pytest.mark.parametrize("style", ["delta", "epoch", "epoch_ms"])
def test_engine_paces_uploads_by_the_rate_limit(
    tmp_path: Path, style: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Files through a server allowing 5 requests per 2 s with 3 workers: all arrive, at most
    one is answered 429 (the scaled-down form of 25 files at 10 per 15 s)."""
    count = 12
    with PicsuiServer(
        tmp_path / "gallery",
        limit=(5, 2.0),
        reset_style=style,  # type: ignore[arg-type]
    ) as server:
        config = engine_config(tmp_path, server.base_url, settle_seconds=0.2)
        config = dataclasses.replace(config, upload=UploadConfig(concurrency=3))
        destination = real(server)
        engine = Engine(config, destinations={"eventpics": destination})
        engine.start()
        try:
            assert engine.wait_ready(10)
            for i in range(count):
                picture(tmp_path / "hot", f"IMG_{i:04d}.JPG", seed=i)
            wait_for(lambda: len(server.received()) >= count, timeout=30, what="every file")
        finally:
            engine.stop(10)
            destination.close()
        assert sorted(r.file_name for r in server.received()) == [
            f"IMG_{i:04d}.JPG" for i in range(count)
        ]
        assert server.answered_429 <= 1


def test_workers_never_both_spend_the_last_request(tmp_path: Path) -> None:
    """Concurrent uploads through one object never go past the server's window."""
    with PicsuiServer(tmp_path / "gallery", limit=(4, 60.0)) as server:
        destination = real(server)
        items = [picture(tmp_path, f"IMG_{i}.JPG", seed=i) for i in range(8)]
        outcomes: list[str] = []
        lock = threading.Lock()

        def work(item: UploadItem) -> None:
            try:
                destination.upload(item)
                result = "sent"
            except ServerBusy as exc:
                assert exc.status == 429 and exc.retry_after is not None
                result = "wait"
            with lock:
                outcomes.append(result)

        threads = [threading.Thread(target=work, args=(item,)) for item in items]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(20)
        finally:
            destination.close()
        assert sorted(outcomes) == ["sent"] * 4 + ["wait"] * 4
        assert server.answered_429 == 0
        assert server.requests_seen == 4


@pytest.mark.parametrize("skew", [3600.0, -3600.0])
@pytest.mark.parametrize("style", ["epoch", "epoch_ms"])
def test_server_clock_skew_is_read_through_its_date(
    tmp_path: Path, style: str, skew: float
) -> None:
    """A server whose clock is an hour off: the wait is still its window, not an hour."""
    with PicsuiServer(
        tmp_path / "gallery",
        limit=(2, 30.0),
        reset_style=style,  # type: ignore[arg-type]
        clock_skew=skew,
    ) as server:
        destination = real(server)
        try:
            destination.upload(picture(tmp_path, "a.jpg", seed=1))
            destination.upload(picture(tmp_path, "b.jpg", seed=2))
            with pytest.raises(ServerBusy) as caught:
                destination.upload(picture(tmp_path, "c.jpg", seed=3))
        finally:
            destination.close()
        assert server.requests_seen == 2
    assert caught.value.status == 429
    assert caught.value.retry_after is not None
    assert 25 <= caught.value.retry_after <= 32


def test_reset_units_and_the_servers_clock() -> None:
    """Reset values are delta seconds, epoch seconds or epoch ms by size; epochs are read
    against the answer's Date, else local time."""
    server_now = 1_900_000_000.0  # far from the local clock: only Date can make sense of it
    date = email.utils.formatdate(server_now, usegmt=True)
    assert seconds_until_reset("12", date=date) == 12.0
    assert seconds_until_reset(str(int(server_now) + 7), date=date) == 7.0
    assert seconds_until_reset(str(int(server_now * 1000) + 7500), date=date) == 7.5
    local = time.time()
    assert seconds_until_reset(str(int(local) + 30), date=None, now=local) == pytest.approx(
        30, abs=1
    )
    assert seconds_until_reset(str(int(local) + 30), date="garbage", now=local) == pytest.approx(
        30, abs=1
    )
    assert seconds_until_reset(str(int(server_now) - 5), date=date) == 0.0
    assert seconds_until_reset("soon", date=date) is None
    assert seconds_until_reset(None) is None


@pytest.mark.parametrize(
    ("reset", "expected"),
    [("9", 9.0), ("1900000009", 9.0), ("1900000009000", 9.0)],
    ids=["delta", "epoch", "epoch_ms"],
)
def test_spent_window_is_not_sent_to(tmp_path: Path, reset: str, expected: float) -> None:
    """Remaining 0 makes the next upload wait (429, seconds until the reset by the server's
    Date, message with the local time) without a request."""
    requests = 0
    date = email.utils.formatdate(1_900_000_000, usegmt=True)

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal requests
        requests += 1
        request.read()
        headers = {
            "X-RateLimit-Limit": "10",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": reset,
            "Date": date,
        }
        return httpx.Response(201, json={"id": "p1"}, headers=headers)

    destination = mocked(handler)
    try:
        destination.upload(picture(tmp_path))
        with pytest.raises(ServerBusy) as caught:
            destination.upload(picture(tmp_path, "IMG_0002.JPG"))
    finally:
        destination.close()
    assert requests == 1
    assert caught.value.status == 429
    assert caught.value.retry_after == pytest.approx(expected, abs=0.5)
    assert "Picsui's rate limit is used up until " in str(caught.value)


def test_server_429_waits_by_retry_after_then_by_the_reset(tmp_path: Path) -> None:
    """A 429 answer waits Retry-After, or the reset headers without one; nothing goes
    meanwhile."""
    answers = [
        httpx.Response(429, headers={"Retry-After": "4"}, json={"error": "slow down"}),
        httpx.Response(
            429,
            headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "6"},
            json={"message": "slow down"},
        ),
    ]
    for answer in answers:
        requests = 0

        def handler(request: httpx.Request, answer: httpx.Response = answer) -> httpx.Response:
            nonlocal requests
            requests += 1
            request.read()
            return answer

        destination = mocked(handler)
        try:
            with pytest.raises(ServerBusy) as first:
                destination.upload(picture(tmp_path))
            with pytest.raises(ServerBusy) as second:
                destination.upload(picture(tmp_path))
        finally:
            destination.close()
        assert requests == 1
        assert first.value.status == second.value.status == 429
        assert first.value.retry_after in (4.0, 6.0)
        assert second.value.retry_after is not None and second.value.retry_after > 3


def test_rate_limiter_reserves_under_a_lock() -> None:
    """Remaining 1 with one request of ours under way: nothing left to reserve."""
    clock = [100.0]
    limiter = RateLimiter(clock=lambda: clock[0])
    first = limiter.reserve()  # nothing known yet: it goes alone
    limiter.observe(httpx.Headers({"X-RateLimit-Remaining": "2", "X-RateLimit-Reset": "10"}), first)
    limiter.done(first)
    second = limiter.reserve()
    third = limiter.reserve()
    with pytest.raises(ServerBusy) as caught:
        limiter.reserve()
    assert caught.value.retry_after == pytest.approx(10, abs=0.1)
    # An answer counted before ours was: Remaining 1 with `third` still out means 0.
    limiter.observe(
        httpx.Headers({"X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "10"}), second
    )
    limiter.done(second)
    with pytest.raises(ServerBusy):
        limiter.reserve()
    limiter.done(third)
    clock[0] += 10.5  # the window reset: one request finds out the new state
    assert limiter.reserve() > third


def test_an_answered_request_is_not_counted_again_while_its_body_is_read() -> None:
    """A request whose answer came (its body still being read) was counted by the server:
    a later answer's Remaining is lowered only by the requests still unanswered."""
    limiter = RateLimiter(clock=lambda: 100.0)
    first = limiter.reserve()
    limiter.observe(httpx.Headers({"X-RateLimit-Remaining": "3", "X-RateLimit-Reset": "60"}), first)
    second = limiter.reserve()
    third = limiter.reserve()
    # `second` answered while `first` is still reading its body and `third` is out:
    # the server counted first and second, so Remaining 2 less `third` leaves 1.
    limiter.observe(
        httpx.Headers({"X-RateLimit-Remaining": "2", "X-RateLimit-Reset": "60"}), second
    )
    fourth = limiter.reserve()
    assert fourth > third
    with pytest.raises(ServerBusy):
        limiter.reserve()  # four of four spent


def test_a_server_without_rate_limit_headers_is_not_paced() -> None:
    """No X-RateLimit headers: after the first answer, requests go side by side."""
    limiter = RateLimiter()
    first = limiter.reserve()
    limiter.observe(httpx.Headers({}), first)
    tickets = [limiter.reserve() for _ in range(5)]
    assert len(set(tickets)) == 5


# Error answers


@pytest.mark.parametrize(
    ("answer", "kind", "text"),
    [
        (httpx.Response(413, text="too big"), FileRejected, "too large (413)"),
        (httpx.Response(422, json={"message": "Not an image."}), FileRejected, "Not an image."),
        (httpx.Response(400, json={"error": "bad filename"}), FileRejected, "bad filename"),
        (httpx.Response(403, json={"error": "no"}), Unauthorized, "check api_key"),
        (httpx.Response(503, text="maintenance"), ServerBusy, "503"),
        (httpx.Response(502, text="<html>bad gateway</html>"), ServerBusy, "502"),
    ],
)
def test_error_answers(
    tmp_path: Path, answer: httpx.Response, kind: type[Exception], text: str
) -> None:
    """Each error status means what the error tree says, with the server's words."""

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        return answer

    destination = mocked(handler)
    try:
        with pytest.raises(kind) as caught:
            destination.upload(picture(tmp_path))
    finally:
        destination.close()
    assert text in str(caught.value)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>maintenance</html>"),
        httpx.Response(200, content=b"\xff\xfe\x00garbage"),
        httpx.Response(200, json=["not", "an", "event"]),
    ],
    ids=["html", "binary", "wrong-shape"],
)
def test_garbage_answers_are_server_busy(answer: httpx.Response) -> None:
    """An event answer that is not the JSON expected is a server in trouble (retried)."""
    destination = mocked(lambda request: answer)
    try:
        with pytest.raises(ServerBusy):
            destination.events()
    finally:
        destination.close()


def test_key_goes_in_the_authorization_header(tmp_path: Path) -> None:
    """The key travels as a Bearer token to /events/{id}/photos, as multipart."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return httpx.Response(201, json={"id": "p1"})

    destination = mocked(handler, api_key="k-123", caption="{file}")
    try:
        destination.upload(picture(tmp_path))
    finally:
        destination.close()
    [request] = seen
    assert request.url == f"{MOCK_BASE}/events/demo-event/photos"
    assert request.headers["Authorization"] == "Bearer k-123"
    parts = parse_multipart(request.content, request.headers["Content-Type"])
    fields = {params["name"]: data for params, _, _, data in parts}
    assert fields["caption"] == b"IMG_0001.JPG"
    assert fields["photo"] == (tmp_path / "IMG_0001.JPG").read_bytes()


# Captions


def test_render_caption() -> None:
    """Templates are str.format with booth, file and a time-zone aware taken."""
    taken = datetime.fromtimestamp(TAKEN_MS / 1000, tz=BERLIN)
    text = render_caption(
        "{booth} {taken:%Y-%m-%d %H:%M} {file}", booth="B", file="a.jpg", taken=taken
    )
    assert text == "B 2023-11-14 23:13 a.jpg"


@pytest.mark.parametrize(
    ("template", "text"),
    [
        ("{booth} {camera}", "unknown field {camera}"),
        ("{0}", "positional field"),
        ("{}", "positional field"),
        ("{booth", "not a valid template"),
        ("{booth:d}", "cannot be rendered"),
        ("{taken.nope}", "cannot be rendered"),
    ],
)
def test_check_caption_names_the_problem(template: str, text: str) -> None:
    """check_caption raises a ValueError naming what is wrong."""
    with pytest.raises(ValueError, match=text.replace("{", r"\{").replace("}", r"\}")):
        check_caption(template)


@pytest.mark.parametrize("template", ["{booth}", "{file} at {taken:%H:%M}", "plain", "{{x}}"])
def test_check_caption_accepts_good_templates(template: str) -> None:
    """Valid templates pass silently."""
    check_caption(template)


def test_caption_without_a_capture_time_uses_now(tmp_path: Path) -> None:
    """No taken_at: the caption uses the current time in the booth's zone."""
    item = dataclasses.replace(picture(tmp_path), taken_at_ms=None)
    destination = PicsuiDestination(
        make_config(MOCK_BASE, caption="{taken:%Y}"),
        context=DestinationContext(booth="x", tz=UTC),
        transport=httpx.MockTransport(lambda r: httpx.Response(201)),
    )
    try:
        assert destination.caption(item) == str(datetime.now(UTC).year)
    finally:
        destination.close()


def test_server_stores_duplicates_under_free_names(tmp_path: Path, server: PicsuiServer) -> None:
    """The local server keeps two uploads of one name apart (the client's guard matters)."""
    destination = real(server)
    item = picture(tmp_path)
    try:
        destination.upload(item)
        destination.upload(item)
    finally:
        destination.close()
    names = sorted(os.listdir(tmp_path / "gallery" / "demo-event"))
    assert names == ["IMG_0001 (1).JPG", "IMG_0001.JPG"]


def test_server_faults(tmp_path: Path) -> None:
    """Forced statuses come first, with the rate-limit headers on every answer."""
    with PicsuiServer(tmp_path / "gallery", faults=Faults(fail_next=[(ENDPOINT, 503)])) as server:
        response = httpx.get(
            f"{server.base_url}/events/demo-event",
            headers={"Authorization": "Bearer demo-key"},
        )
        assert response.status_code == 503
        names = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Date")
        assert all(name in response.headers for name in names)
        assert httpx.get(server.base_url).status_code == 200
