"""Hostile or broken servers: huge answers, trickling answers, redirects, clear text, a TLS
mismatch and error bodies that quote the key. Against the local servers over real HTTP on
127.0.0.1 (https where it matters, with a certificate made for the test), and
httpx.MockTransport where one client's reading of an answer is the point."""

from __future__ import annotations

import hashlib
import json
import shutil
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from boothsync.bandwidth import Bandwidth
from boothsync.destinations import CheckItem, GalleryEvent, UploadItem
from boothsync.destinations.eventpics import EventPicsConfig, EventPicsDestination
from boothsync.destinations.http import REDACTED, HttpDestination, server_message
from boothsync.destinations.picpeak import PicPeakConfig, PicPeakDestination
from boothsync.destinations.picsui import PicsuiConfig, PicsuiDestination
from boothsync.destinations.transport import DeadlineTransport
from boothsync.errors import (
    DestinationUnavailable,
    FileRejected,
    NetworkError,
    ServerBusy,
    UploadError,
)
from boothsync.health import Health
from boothsync.outbox import Outbox
from boothsync.receiver import DEMO_API_KEY, Receiver
from boothsync.uploader import Uploader
from tests.fakes.picpeak import PicPeakServer
from tests.fakes.picsui import ENDPOINT as PICSUI_ENDPOINT
from tests.fakes.picsui import PicsuiServer
from tests.helpers import queue, wait_for

HUGE = 100 * 1024 * 1024
ELSEWHERE = "https://elsewhere.example/getuploadurl"
PICSUI_KEY = "picsui-secret-key"
PICPEAK_TOKEN = "pp_live_secret_token"


def picture(folder: Path, size: int = 100_000, name: str = "IMG_0001.jpg") -> UploadItem:
    path = folder / name
    path.write_bytes(bytes(i % 251 for i in range(size)))
    return UploadItem(
        path=path,
        file_name=name,
        size=size,
        content_type="image/jpeg",
        taken_at_ms=None,
        album_id=None,
    )


def eventpics(
    base_url: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None
) -> EventPicsDestination:
    config = EventPicsConfig(
        name="eventpics",
        api_key=DEMO_API_KEY,
        link_id="demo",
        base_url=base_url,
        timeout=timeout,
    )
    return EventPicsDestination(config, transport=transport)


def ended_within(seconds: float, call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` in a thread: what it raised (None if it returned). The test fails unless
    it ended within ``seconds`` (stopping the server then ends the call)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, name="hostile-call", daemon=True)
    thread.start()
    wait_for(lambda: outcome, timeout=seconds, what="the request to end")
    thread.join()
    return outcome[0]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received") as running:
        yield running


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command makes the test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_receiver(tmp_path: Path, certificate: tuple[Path, Path]) -> Iterator[Receiver]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with Receiver(tmp_path / "received-tls", ssl_context=context) as running:
        yield running


def trusting(certificate: tuple[Path, Path]) -> DeadlineTransport:
    """The client's own transport, trusting the test certificate."""
    return DeadlineTransport(ssl_context=ssl.create_default_context(cafile=str(certificate[0])))


# Bounded answers

CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    import httpx
    from boothsync.destinations.eventpics import EventPicsConfig
    from boothsync.destinations import UploadItem
    from boothsync.destinations.eventpics import EventPicsDestination
    from boothsync.errors import UploadError

    base, path, steps = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    item = UploadItem(path=path, file_name=path.name, size=path.stat().st_size,
                      content_type="image/jpeg", taken_at_ms=None, album_id=None)
    client = EventPicsDestination(
        EventPicsConfig(name="e", api_key="demo-key", link_id="demo", base_url=base))
    client.probe()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    said = []
    for faults, call in steps:
        httpx.post(base + "/_control/faults", json=faults).raise_for_status()
        try:
            client.upload(item) if call == "upload" else client.events()
            said.append("ok")
        except UploadError as exc:
            said.append(f"{type(exc).__name__}: {exc}")
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"grew_kib": after - before, "said": said}))
    """
)


def test_huge_answers_are_read_only_in_part(receiver: Receiver, tmp_path: Path) -> None:
    """A 100 MB error body, a 100 MB getuploadurl answer, a 100 MB events list and a 100 MB
    answer to the PUT leave the memory of the process that reads them as it was: at most
    16 KiB of an error is read, and a success answer above its limit is a retryable error
    naming the limit."""
    pytest.importorskip("resource")  # peak memory of a process, as the kernel counts it
    if sys.platform == "darwin":
        pytest.skip("ru_maxrss counts bytes on macOS, KiB here")
    item = picture(tmp_path)
    steps = [
        ({"answer_bytes": {"getuploadurl": HUGE}, "fail_next": [["getuploadurl", 500]]}, "upload"),
        ({}, "upload"),
        ({"answer_bytes": {"geteventsandalbums": HUGE}}, "events"),
        ({"answer_bytes": {"put": HUGE}}, "upload"),
    ]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, receiver.base_url, str(item.path), json.dumps(steps)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    error, url, events, put = report["said"]
    assert error.startswith("ServerBusy: ") and error.endswith("answered 500: injected fault 500")
    assert url.startswith("ServerBusy: EventPics (127.0.0.1:") and url.endswith(
        "answered getuploadurl with more than 64 KiB, the most boothsync reads of that answer"
    )
    assert events.startswith("ServerBusy: ") and "geteventsandalbums with more than 2 MiB" in events
    assert put == "ok"
    assert len(receiver.received()) == 1
    # Reading any of them whole would have grown the peak by at least 100 MB.
    assert report["grew_kib"] < 32 * 1024, report


class Endless(httpx.SyncByteStream):
    """An answer body of 100 MB, with no length announced, counting the bytes read of it."""

    def __init__(self, start: bytes = b"") -> None:
        self.start = start
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        block = b" " * 65536
        self.sent = len(self.start)
        yield self.start
        while self.sent < HUGE:
            self.sent += len(block)
            yield block


def picsui(handler: Callable[[httpx.Request], httpx.Response]) -> PicsuiDestination:
    config = PicsuiConfig(
        name="picsui", api_key=PICSUI_KEY, event_id="ev-1", base_url="https://picsui.test/v1"
    )
    return PicsuiDestination(config, transport=httpx.MockTransport(handler))


def picpeak(handler: Callable[[httpx.Request], httpx.Response]) -> PicPeakDestination:
    config = PicPeakConfig(
        name="picpeak", api_token=PICPEAK_TOKEN, event_id=7, base_url="https://photos.test"
    )
    return PicPeakDestination(config, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("make", "call", "status", "start", "said"),
    [
        (picsui, "events", 200, b'{"data": {"name": "x"}}', "the event with more than 64 KiB"),
        (picsui, "upload", 500, b'{"error": "overloaded"}', "answered 500: overloaded"),
        (picpeak, "events", 200, b'{"events": []}', "events listing with more than 2 MiB"),
        (picpeak, "upload", 201, b'{"id": 1}', "photo upload with more than 64 KiB"),
        (picpeak, "upload", 503, b'{"error": "down"}', "answered 503: down"),
    ],
    ids=["picsui-event", "picsui-error", "picpeak-list", "picpeak-answer", "picpeak-error"],
)
def test_every_http_service_reads_a_bounded_part(
    tmp_path: Path,
    make: Callable[[Callable[[httpx.Request], httpx.Response]], HttpDestination],
    call: str,
    status: int,
    start: bytes,
    said: str,
) -> None:
    """Picsui and PicPeak read answers of no announced length only up to their limit too:
    a success that goes on is a ServerBusy naming the limit, an error keeps its first words."""
    body = Endless(start)

    def answer(request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(status, stream=body)

    destination = make(answer)
    try:
        with pytest.raises(ServerBusy) as caught:
            if call == "upload":
                destination.upload(picture(tmp_path))  # type: ignore[attr-defined]
            else:
                destination.events()  # type: ignore[attr-defined]
    finally:
        destination.close()
    assert said in str(caught.value)
    assert body.sent < 4 * 1024 * 1024, f"read {body.sent} bytes"


# Deadlines


def test_a_server_trickling_its_headers_is_cut_at_the_deadline(
    receiver: Receiver, tmp_path: Path
) -> None:
    """getuploadurl answered one byte every half second, headers included, fails as a network
    error once its deadline (timeout plus a second per 16 KiB it may read) has passed,
    though no single read ever waits as long as the timeout."""
    receiver.faults.trickle["getuploadurl"] = 0.5
    receiver.faults.answer_bytes["getuploadurl"] = 10_000
    client = eventpics(receiver.base_url, timeout=3.0)
    try:
        caught = ended_within(60, lambda: client.upload(picture(tmp_path)))
    finally:
        client.close()
    assert isinstance(caught, NetworkError), caught
    assert "did not complete the request within 7 s, its deadline" in str(caught)
    assert receiver.counts().get("put") is None


def test_a_trickled_answer_to_the_put_and_to_a_probe_is_cut(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The PUT's deadline scales with the body (64 KiB: 4 s more than the timeout); the
    probe's is five seconds; both end a trickling answer as a network error."""
    receiver.faults.trickle.update({"put": 0.5, "other": 0.5})
    receiver.faults.answer_bytes.update({"put": 10_000, "other": 10_000})
    client = eventpics(receiver.base_url, timeout=2.0)
    try:
        put = ended_within(60, lambda: client.upload(picture(tmp_path, size=64 * 1024)))
        probe = ended_within(60, client.probe)
    finally:
        client.close()
    assert isinstance(put, NetworkError) and put.maybe_delivered, put
    assert "upload storage (127.0.0.1:" in str(put) and "within 7 s" in str(put)
    assert isinstance(probe, NetworkError) and "within 5 s, its deadline" in str(probe)


def test_waiting_for_the_bandwidth_limit_does_not_count_against_the_deadline(
    receiver: Receiver, tmp_path: Path
) -> None:
    """A picture held back by a bandwidth limit slower than the floor rate (2 kB/s for 8 KiB,
    about 4 s, where the PUT's deadline is 2.5 s) still goes through: the deadline bounds the
    server and the network, not boothsync's own pacing."""
    item = picture(tmp_path, size=8 * 1024)
    slow = UploadItem(**{**item.__dict__, "bandwidth": Bandwidth(2048)})
    client = eventpics(receiver.base_url, timeout=1.0)
    try:
        assert ended_within(60, lambda: client.upload(slow)) is None
    finally:
        client.close()
    (record,) = receiver.received()
    assert record.sha256 == hashlib.sha256(item.path.read_bytes()).hexdigest()


class Hanging:
    """A destination that promises each upload within ``deadline`` seconds, then blocks."""

    type = "hanging"

    def __init__(self, deadline: float) -> None:
        self.name = "hanging"
        self.deadline = deadline
        self.started = threading.Event()
        self.release = threading.Event()

    def upload(self, item: UploadItem) -> None:
        self.started.set()
        self.release.wait(120)

    def upload_deadline(self, size: int) -> float:
        return self.deadline

    def events(self) -> list[GalleryEvent]:
        return []

    def probe(self) -> None:
        pass

    def check(self, album_ids: Collection[str] = ()) -> list[CheckItem]:
        return []

    def close(self) -> None:
        pass


def test_a_worker_stuck_past_its_deadline_is_not_alive(tmp_path: Path) -> None:
    """A worker whose upload runs past the time its destination allows (with the quick
    retries, about 19 s for a 0.2 s deadline) plus the grace makes ``alive`` False, so the
    service watchdog sees it; once the upload ends it is alive again."""
    outbox = Outbox(tmp_path / "state" / "outbox.sqlite3")
    hanging = Hanging(deadline=0.2)
    path = tmp_path / "IMG_0001.jpg"
    path.write_bytes(b"\xff\xd8 pixels")
    queue(outbox, path, "hanging")
    uploader = Uploader(
        outbox, {"hanging": hanging}, tz=ZoneInfo("UTC"), concurrency=1, stuck_grace=0.2
    )
    uploader.start()
    try:
        wait_for(hanging.started.is_set, what="the upload to start")
        assert uploader.alive
        wait_for(lambda: not uploader.alive, timeout=60, what="the stuck worker to show")
        hanging.release.set()
        wait_for(lambda: uploader.alive, what="the worker to be free again")
    finally:
        hanging.release.set()
        uploader.stop(5)
        outbox.close()


# Redirects


def test_a_redirect_on_getuploadurl_pauses_and_fails_no_picture(
    receiver: Receiver, tmp_path: Path
) -> None:
    """A 301 on getuploadurl is not followed (the body carries the key): the destination
    pauses with one line naming base_url and where it pointed, the picture waits, none fails."""
    receiver.faults.redirect_next.append(("getuploadurl", 301, ELSEWHERE))
    outbox = Outbox(tmp_path / "state" / "outbox.sqlite3")
    path = tmp_path / "IMG_0001.jpg"
    path.write_bytes(b"\xff\xd8 pixels")
    queue(outbox, path, "eventpics")
    client = eventpics(receiver.base_url)
    uploader = Uploader(outbox, {"eventpics": client}, tz=ZoneInfo("UTC"), concurrency=1)
    uploader.start()
    try:
        health = wait_for(
            lambda: (h := uploader.health()["eventpics"]).health is Health.UNAUTHORIZED and h,
            what="the destination to pause",
        )
    finally:
        uploader.stop(5)
        client.close()
    totals = outbox.stats().totals
    outbox.close()
    assert (totals["failed"], totals["waiting"]) == (0, 1)
    assert "\n" not in health.detail
    assert "answered getuploadurl with a redirect (301) to https://elsewhere.example" in (
        health.detail
    )
    assert f"check base_url in [destinations.eventpics] (now {receiver.base_url})" in (
        health.detail
    )
    assert "put" not in receiver.counts()


def test_a_redirect_on_the_events_list_pauses(receiver: Receiver) -> None:
    """The events list is not followed to another address either (it carries the key)."""
    receiver.faults.redirect_next.append(("geteventsandalbums", 302, "/v2/geteventsandalbums"))
    client = eventpics(receiver.base_url)
    try:
        with pytest.raises(DestinationUnavailable) as caught:
            client.events()
    finally:
        client.close()
    assert f"redirect (302) to {receiver.base_url}/v2/geteventsandalbums" in str(caught.value)


@pytest.mark.parametrize("status", [307, 308])
def test_a_307_or_308_on_the_put_is_followed_with_the_whole_file(
    receiver: Receiver, tmp_path: Path, status: int
) -> None:
    """The storage's 307/308 is followed: the file is read and sent again, and arrives once,
    byte-exact."""
    receiver.faults.redirect_next.append(("put", status, ""))
    item = picture(tmp_path, size=300_000)
    client = eventpics(receiver.base_url)
    try:
        client.upload(item)
    finally:
        client.close()
    (record,) = receiver.received()
    assert record.sha256 == hashlib.sha256(item.path.read_bytes()).hexdigest()
    assert receiver.counts()["put"] == {status: 1, 200: 1}


@pytest.mark.parametrize("status", [301, 302, 303])
def test_other_redirects_of_the_put_are_refused(
    receiver: Receiver, tmp_path: Path, status: int
) -> None:
    """A 301/302/303 would turn the upload into a GET or drop its body: refused with one line,
    the destination pauses."""
    receiver.faults.redirect_next.append(("put", status, ""))
    client = eventpics(receiver.base_url)
    try:
        with pytest.raises(DestinationUnavailable, match=r"only 307 and 308") as caught:
            client.upload(picture(tmp_path))
    finally:
        client.close()
    assert f"a redirect ({status}) to http://127.0.0.1:" in str(caught.value)
    assert receiver.received() == []


def test_the_put_follows_three_redirects_at_most(receiver: Receiver, tmp_path: Path) -> None:
    """A storage that keeps redirecting is left after three redirects."""
    receiver.faults.redirect_next.extend([("put", 307, "")] * 4)
    client = eventpics(receiver.base_url)
    try:
        with pytest.raises(DestinationUnavailable, match="more than 3 times"):
            client.upload(picture(tmp_path))
    finally:
        client.close()
    assert receiver.counts()["put"] == {307: 4}
    assert receiver.received() == []


# Never in clear text


def test_https_upload_follows_a_307_to_https_only(
    tls_receiver: Receiver, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    """Over https, a 307 to https is followed; a 307 to http:// is refused, and nothing is sent
    in clear text."""
    port = tls_receiver.base_url.rsplit(":", 1)[1]
    faults = tls_receiver.faults
    faults.redirect_next.append(("put", 307, ""))
    client = eventpics(tls_receiver.base_url, transport=trusting(certificate))
    try:
        client.upload(picture(tmp_path))
        faults.redirect_next.append(("put", 307, f"http://127.0.0.1:{port}{{path}}"))
        with pytest.raises(DestinationUnavailable) as caught:
            client.upload(picture(tmp_path))
    finally:
        client.close()
    assert f"redirected the upload to http://127.0.0.1:{port}: refused" in str(caught.value)
    assert tls_receiver.counts()["put"] == {307: 2, 200: 1}
    assert len(tls_receiver.received()) == 1


def test_an_upload_url_in_clear_text_is_refused_when_base_url_is_https(
    tls_receiver: Receiver, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    """An http:// upload URL from an https:// API pauses the destination; no byte of the
    picture is sent anywhere."""
    tls_receiver.faults.upload_scheme = "http"
    client = eventpics(tls_receiver.base_url, transport=trusting(certificate))
    try:
        with pytest.raises(DestinationUnavailable) as caught:
            client.upload(picture(tmp_path))
    finally:
        client.close()
    assert "handed out an upload URL in clear text (http://127.0.0.1:" in str(caught.value)
    assert "/upload/" not in str(caught.value)  # the grant itself is not shown
    assert "put" not in tls_receiver.counts()


def test_an_http_base_url_takes_http_upload_urls(receiver: Receiver, tmp_path: Path) -> None:
    """With base_url on http:// (this machine, the venue's network) http upload URLs are fine."""
    client = eventpics(receiver.base_url)
    try:
        client.upload(picture(tmp_path))
    finally:
        client.close()
    assert len(receiver.received()) == 1


def test_plain_http_behind_an_https_base_url_is_said_in_words(
    receiver: Receiver, tmp_path: Path
) -> None:
    """base_url https:// at a plain http server: one line saying it does not answer in TLS and
    what to change, for uploads, listings and the probe alike."""
    client = eventpics(receiver.base_url.replace("http://", "https://"))
    host = receiver.base_url.split("://", 1)[1]
    try:
        for call in (lambda: client.upload(picture(tmp_path)), client.events):
            with pytest.raises(NetworkError) as caught:
                call()
            assert str(caught.value) == (
                f"cannot reach EventPics ({host}): it does not answer in TLS (https); if it is "
                "a plain http server, base_url must say http:// (SSL: WRONG_VERSION_NUMBER)"
            )
        with pytest.raises(NetworkError, match=r"does not answer in TLS \(https\); if it is"):
            client.probe()
    finally:
        client.close()


# No key in a message


def test_an_eventpics_error_that_quotes_the_key_is_redacted(
    receiver: Receiver, tmp_path: Path
) -> None:
    """A server that quotes the API key in its error words (a 500, a 400) leaves no trace of
    it in the message that goes to the queue and the status."""
    receiver.faults.echo_key = True
    receiver.faults.fail_next.append(("getuploadurl", 500))
    client = eventpics(receiver.base_url)
    try:
        with pytest.raises(ServerBusy) as busy:
            client.upload(picture(tmp_path))
        bad_name = UploadItem(**{**picture(tmp_path).__dict__, "file_name": ".."})
        with pytest.raises(FileRejected) as rejected:
            client.upload(bad_name)
    finally:
        client.close()
    for caught in (busy, rejected):
        assert DEMO_API_KEY not in str(caught.value)
        assert f"(key '{REDACTED}')" in str(caught.value)


def test_picsui_and_picpeak_errors_that_quote_the_key_are_redacted(tmp_path: Path) -> None:
    """The same for Picsui's key and PicPeak's token, carried in the Authorization header."""
    with (
        PicsuiServer(tmp_path / "picsui", api_key=PICSUI_KEY, event_id="ev-1") as picsui_server,
        PicPeakServer(
            tmp_path / "picpeak", tokens={PICPEAK_TOKEN: {"read", "write"}}, events={7: "W"}
        ) as picpeak_server,
    ):
        picsui_server.faults.echo_key = True
        picsui_server.faults.fail_next.append((PICSUI_ENDPOINT, 500))
        picpeak_server.faults.echo_key = True
        picpeak_server.faults.fail_next.append(("photos", 500))
        clients: list[HttpDestination] = [
            PicsuiDestination(
                PicsuiConfig(
                    name="picsui",
                    api_key=PICSUI_KEY,
                    event_id="ev-1",
                    base_url=picsui_server.base_url,
                )
            ),
            PicPeakDestination(
                PicPeakConfig(
                    name="picpeak",
                    api_token=PICPEAK_TOKEN,
                    event_id=7,
                    base_url=picpeak_server.base_url,
                )
            ),
        ]
        messages = []
        for client in clients:
            try:
                with pytest.raises(UploadError) as caught:
                    client.upload(picture(tmp_path))  # type: ignore[attr-defined]
            finally:
                client.close()
            messages.append(str(caught.value))
    for message, secret in zip(messages, (PICSUI_KEY, PICPEAK_TOKEN), strict=True):
        assert secret not in message and f"'{REDACTED}'" in message, message


def test_a_key_cut_by_the_line_limit_leaves_no_part_behind() -> None:
    """The key is taken out before a long message is cut short, so not even its first
    characters remain where the cut would fall inside it."""
    key = "k3y-" + "x" * 40
    answer = httpx.Response(500, text="e" * 180 + key + " more words")
    message = server_message(answer, (key,))
    assert "k3y-" not in message and REDACTED in message
    assert server_message(answer).endswith("…") and "k3y-" in server_message(answer)


# The transport


def test_proxies_from_the_environment_are_used(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY from the environment still carries the requests (with their deadlines), and
    NO_PROXY still sends a host's requests directly."""
    nowhere = "http://127.0.0.1:9"  # nothing listens there: only the proxy can answer
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", receiver.base_url)
    proxied = eventpics(nowhere)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = eventpics(nowhere)
    try:
        proxied.upload(picture(tmp_path))
        with pytest.raises(NetworkError, match="cannot reach"):
            direct.upload(picture(tmp_path))
    finally:
        proxied.close()
        direct.close()
    assert len(receiver.received()) == 1


def test_a_compressed_answer_that_was_not_asked_for_is_not_unpacked(tmp_path: Path) -> None:
    """boothsync asks for answers as they are: one compressed anyway (which could unpack to
    far more than came) is not unpacked but retried later."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        compressed = httpx.ByteStream(b"\x1f\x8b compressed")
        return httpx.Response(200, stream=compressed, headers={"Content-Encoding": "gzip"})

    client = eventpics("https://api.example.test", transport=httpx.MockTransport(answer))
    try:
        with pytest.raises(ServerBusy, match=r"getuploadurl compressed \(gzip\)"):
            client.upload(picture(tmp_path))
    finally:
        client.close()
    assert seen[0].headers["Accept-Encoding"] == "identity"
