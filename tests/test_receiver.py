"""The local EventPics receiver, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from boothsync.receiver import (
    DEMO_API_KEY,
    AlbumSpec,
    EventSpec,
    Faults,
    ReceivedFile,
    Receiver,
)
from tests.helpers import wait_for

JPEG = {"Content-Type": "image/jpeg"}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    with Receiver(tmp_path / "received", faults=Faults(seed=1)) as running:
        yield running


@pytest.fixture
def client(receiver: Receiver) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=receiver.base_url, timeout=10) as http:
        yield http


def ask(client: httpx.Client, **fields: Any) -> httpx.Response:
    body: dict[str, Any] = {"apiKey": DEMO_API_KEY, "linkId": "demo", "fileName": "IMG_0001.jpg"}
    body.update(fields)
    return client.post("/getuploadurl", json={k: v for k, v in body.items() if v is not ...})


def upload_url(client: httpx.Client, **fields: Any) -> str:
    response = ask(client, **fields)
    assert response.status_code == 200, response.text
    url = response.json()["uploadUrl"]
    assert isinstance(url, str)
    return url


def part_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")] if folder.exists() else []


def test_upload_is_stored_byte_exact_with_its_record(
    receiver: Receiver, client: httpx.Client
) -> None:
    """An uploaded file is stored byte for byte, with a sidecar and a record of what was asked."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    url = upload_url(client, albumId="a1", takenAt=1_700_000_000_123)
    assert url.startswith(f"{receiver.base_url}/upload/")

    response = client.put(url, content=data, headers=JPEG)

    assert response.status_code == 200
    assert response.content == b""
    sha256 = hashlib.sha256(data).hexdigest()
    assert response.headers["ETag"] == f'"{sha256}"'
    [record] = receiver.received()
    stored = receiver.directory / "demo" / "a1" / "IMG_0001.jpg"
    assert record.path == stored
    assert stored.read_bytes() == data
    assert (record.file_name, record.link_id, record.album_id) == ("IMG_0001.jpg", "demo", "a1")
    assert (record.taken_at, record.content_type) == (1_700_000_000_123, "image/jpeg")
    assert (record.size, record.sha256) == (len(data), sha256)
    assert abs(record.received_at - time.time()) < 60
    sidecar = json.loads(stored.with_name("IMG_0001.jpg.json").read_text(encoding="utf-8"))
    assert sidecar == {
        "fileName": "IMG_0001.jpg",
        "linkId": "demo",
        "albumId": "a1",
        "takenAt": 1_700_000_000_123,
        "contentType": "image/jpeg",
        "size": len(data),
        "sha256": sha256,
        "receivedAt": record.received_at,
    }
    assert part_files(receiver.directory) == []
    assert receiver.counts() == {"getuploadurl": {200: 1}, "put": {200: 1}}


def test_same_name_gets_a_numbered_suffix(receiver: Receiver, client: httpx.Client) -> None:
    """A second file of the same name is stored as 'name (1).ext', never over the first."""
    for payload in (b"first", b"second", b"third"):
        assert client.put(upload_url(client), content=payload, headers=JPEG).status_code == 200

    folder = receiver.directory / "demo" / "_no-album"
    names = [record.path.name for record in receiver.received()]
    assert names == ["IMG_0001.jpg", "IMG_0001 (1).jpg", "IMG_0001 (2).jpg"]
    assert [(folder / name).read_bytes() for name in names] == [b"first", b"second", b"third"]
    assert all(record.file_name == "IMG_0001.jpg" for record in receiver.received())
    assert (folder / "IMG_0001 (2).jpg.json").is_file()


def test_second_put_to_one_url_is_counted_as_reuse(
    receiver: Receiver, client: httpx.Client
) -> None:
    """A PUT to an upload URL that already took a file is counted in url_reuses."""
    url = upload_url(client)
    assert client.put(url, content=b"once", headers=JPEG).status_code == 200
    assert receiver.url_reuses == 0

    assert client.put(url, content=b"twice", headers=JPEG).status_code == 200

    assert receiver.url_reuses == 1


@pytest.mark.parametrize(
    "api_key", [..., None, "", "wrong-key", 42], ids=["missing", "null", "empty", "wrong", "int"]
)
def test_getuploadurl_without_a_known_key_is_401(client: httpx.Client, api_key: Any) -> None:
    """getuploadurl with a missing or unknown apiKey is refused with 401 and a JSON error."""
    response = ask(client, apiKey=api_key)

    assert response.status_code == 401
    assert response.json()["error"]


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {DEMO_API_KEY}"}, {"X-API-Key": DEMO_API_KEY}],
    ids=["bearer", "x-api-key"],
)
def test_events_listing_accepts_both_key_headers(
    client: httpx.Client, headers: dict[str, str]
) -> None:
    """geteventsandalbums takes the key as a Bearer token or as X-API-Key."""
    response = client.get("/geteventsandalbums", headers=headers)

    assert response.status_code == 200
    assert response.json() == {
        "events": [
            {
                "title": "Demo Wedding",
                "linkId": "demo",
                "albums": [{"id": "a1", "title": "Ceremony"}, {"id": "a2", "title": "Party"}],
            }
        ]
    }


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"X-API-Key": "wrong-key"}, {"Authorization": ""}],
    ids=["none", "bearer-wrong", "x-api-key-wrong", "empty"],
)
def test_events_listing_without_a_known_key_is_401(
    client: httpx.Client, headers: dict[str, str]
) -> None:
    """geteventsandalbums without a known key, in either header, is refused with 401."""
    response = client.get("/geteventsandalbums", headers=headers)

    assert response.status_code == 401
    assert response.json()["error"]


def test_each_key_sees_only_its_own_events(tmp_path: Path) -> None:
    """A receiver given its own keys knows exactly those keys and their events."""
    keys = {"k1": [EventSpec("Gala", "gala", [AlbumSpec("x", "X")])], "k2": []}
    with Receiver(tmp_path, keys=keys) as receiver, httpx.Client() as http:
        base = receiver.base_url
        assert http.get(f"{base}/geteventsandalbums", headers={"X-API-Key": "k2"}).json() == {
            "events": []
        }
        body = {"apiKey": "k1", "linkId": "gala", "fileName": "a.jpg", "albumId": "x"}
        assert http.post(f"{base}/getuploadurl", json=body).status_code == 200
        denied = http.post(f"{base}/getuploadurl", json={**body, "apiKey": DEMO_API_KEY})
        assert denied.status_code == 401


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"linkId": "nope"}, "unknown linkId"),
        ({"linkId": ...}, "unknown linkId"),
        ({"albumId": "zz"}, "unknown albumId"),
        ({"albumId": 1}, "unknown albumId"),
    ],
    ids=["link", "no-link", "album", "album-not-a-string"],
)
def test_unknown_link_or_album_is_404(
    receiver: Receiver, client: httpx.Client, fields: dict[str, Any], needle: str
) -> None:
    """getuploadurl for a link or album the key does not have is refused with 404."""
    response = ask(client, **fields)

    assert response.status_code == 404
    assert needle in response.json()["error"]
    assert receiver.counts() == {"getuploadurl": {404: 1}}


def test_null_album_means_no_album(receiver: Receiver, client: httpx.Client) -> None:
    """albumId null is the same as no album: the file goes to _no-album."""
    assert client.put(upload_url(client, albumId=None), content=b"x", headers=JPEG).is_success

    [record] = receiver.received()
    assert record.album_id is None
    assert record.path.parent == receiver.directory / "demo" / "_no-album"


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"", b"[1, 2]", b'"text"', b"\xff\xfe\x00"],
    ids=["broken", "empty", "list", "string", "bytes"],
)
def test_body_that_is_not_a_json_object_is_400(client: httpx.Client, body: bytes) -> None:
    """getuploadurl whose body is not a JSON object is refused with 400 and a JSON error."""
    response = client.post(
        "/getuploadurl", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"]


@pytest.mark.parametrize(
    "file_name",
    [..., None, "", "a/b.jpg", "a\\b.jpg", "a\0.jpg", "..", 7],
    ids=["missing", "null", "empty", "slash", "backslash", "nul", "dotdot", "int"],
)
def test_bad_file_name_is_400(receiver: Receiver, client: httpx.Client, file_name: Any) -> None:
    """A fileName that is missing, empty or not a plain name is refused with 400."""
    response = ask(client, fileName=file_name)

    assert response.status_code == 400
    assert "fileName" in response.json()["error"]


@pytest.mark.parametrize(
    "taken_at", ["1700000000000", 1.5, True, None], ids=["string", "float", "bool", "null"]
)
def test_taken_at_that_is_not_an_integer_is_400(client: httpx.Client, taken_at: Any) -> None:
    """A takenAt that is present but not an integer (bool included) is refused with 400."""
    response = ask(client, takenAt=taken_at)

    assert response.status_code == 400
    assert "takenAt" in response.json()["error"]


def test_expired_upload_url_is_403(receiver: Receiver, client: httpx.Client) -> None:
    """A PUT after the URL's lifetime is refused with S3's 403 'Request has expired'."""
    receiver.faults.url_lifetime = 0.05
    issued = time.monotonic()
    url = upload_url(client)
    wait_for(lambda: time.monotonic() > issued + 0.1, what="the upload URL to expire")

    response = client.put(url, content=b"late", headers=JPEG)

    assert response.status_code == 403
    assert "<Code>AccessDenied</Code>" in response.text
    assert "<Message>Request has expired</Message>" in response.text
    assert receiver.received() == []


def test_unknown_upload_token_is_403_signature(receiver: Receiver, client: httpx.Client) -> None:
    """A PUT to an upload URL the receiver never issued is refused like a bad S3 signature."""
    response = client.put("/upload/made-up-token", content=b"x" * 100_000, headers=JPEG)

    assert response.status_code == 403
    assert response.text.startswith("<?xml")
    assert "<Error><Code>SignatureDoesNotMatch</Code>" in response.text
    # The unread body was drained: the same connection still answers.
    assert client.get("/geteventsandalbums", headers={"X-API-Key": DEMO_API_KEY}).is_success


def test_chunked_put_is_refused_411(receiver: Receiver, client: httpx.Client) -> None:
    """A PUT without Content-Length (chunked) is refused with 411 and stores nothing."""
    url = upload_url(client)

    response = client.put(url, content=iter([b"chunk one, ", b"chunk two"]), headers=JPEG)

    assert response.status_code == 411
    assert "MissingContentLength" in response.text
    assert receiver.received() == []
    assert part_files(receiver.directory) == []
    # The URL was not spent by the refused attempt.
    assert client.put(url, content=b"whole", headers=JPEG).status_code == 200


def test_put_without_content_type_is_400(receiver: Receiver, client: httpx.Client) -> None:
    """A PUT without a Content-Type header is refused with 400 and stores nothing."""
    response = client.put(upload_url(client), content=b"bytes")

    assert response.status_code == 400
    assert receiver.received() == []


def test_oversized_put_is_413(receiver: Receiver, client: httpx.Client) -> None:
    """A PUT declaring more than 200 MB is refused with 413 before any body is read."""
    url = httpx.URL(upload_url(client))
    with socket.create_connection((url.host, url.port or 80), timeout=10) as conn:
        conn.sendall(
            f"PUT {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.netloc.decode()}\r\n"
            f"Content-Type: image/jpeg\r\nContent-Length: {300 * 1024 * 1024}\r\n\r\n".encode()
        )
        status_line = conn.makefile("rb").readline()

    assert status_line.split()[1] == b"413"
    assert receiver.received() == []


def test_client_gone_mid_body_leaves_nothing(receiver: Receiver, client: httpx.Client) -> None:
    """An upload whose client disconnects mid-body leaves no file and no record."""
    url = httpx.URL(upload_url(client))
    folder = receiver.directory / "demo" / "_no-album"
    with socket.create_connection((url.host, url.port or 80), timeout=10) as conn:
        conn.sendall(
            f"PUT {url.raw_path.decode()} HTTP/1.1\r\nHost: {url.netloc.decode()}\r\n"
            "Content-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n".encode()
            + b"x" * 1000
        )
        wait_for(lambda: part_files(folder), what="the upload to start")

    wait_for(lambda: not part_files(folder), what="the partial upload to be removed")
    assert list(folder.iterdir()) == []
    assert receiver.received() == []
    assert client.put(str(url), content=b"whole", headers=JPEG).status_code == 200


def test_fail_next_forces_answers_in_order(receiver: Receiver, client: httpx.Client) -> None:
    """fail_next entries are taken one by one by their endpoint; status 0 resets the connection."""
    receiver.faults.fail_next = [
        ("getuploadurl", 503),
        ("put", 0),
        ("geteventsandalbums", 500),
    ]

    assert ask(client).status_code == 503
    url = upload_url(client)
    with pytest.raises(httpx.TransportError):
        client.put(url, content=b"x" * 100_000, headers=JPEG)
    assert receiver.received() == []
    assert client.put(url, content=b"again", headers=JPEG).status_code == 200
    listing = client.get("/geteventsandalbums", headers={"X-API-Key": DEMO_API_KEY})
    assert listing.status_code == 500

    assert receiver.faults.fail_next == []
    assert receiver.url_reuses == 0
    assert receiver.counts() == {
        "getuploadurl": {503: 1, 200: 1},
        "put": {0: 1, 200: 1},
        "geteventsandalbums": {500: 1},
    }


def test_error_rate_one_answers_error_status_with_retry_after(
    receiver: Receiver, client: httpx.Client
) -> None:
    """With error_rate 1.0 every getuploadurl and PUT gets error_status and Retry-After."""
    url = upload_url(client)
    receiver.faults.error_rate = 1.0
    receiver.faults.error_status = 429
    receiver.faults.retry_after = "7"

    refused_url = ask(client)
    refused_put = client.put(url, content=b"x" * 100_000, headers=JPEG)

    assert (refused_url.status_code, refused_url.headers["Retry-After"]) == (429, "7")
    assert (refused_put.status_code, refused_put.headers["Retry-After"]) == (429, "7")
    assert "<Error>" in refused_put.text
    assert receiver.received() == []
    listing = client.get("/geteventsandalbums", headers={"X-API-Key": DEMO_API_KEY})
    assert listing.status_code == 200


def test_reset_rate_one_never_answers(receiver: Receiver, client: httpx.Client) -> None:
    """With reset_rate 1.0 every API request ends in a transport error, counted as status 0."""
    receiver.faults.reset_rate = 1.0

    with pytest.raises(httpx.TransportError):
        ask(client)
    with pytest.raises(httpx.TransportError):
        client.get("/geteventsandalbums", headers={"X-API-Key": DEMO_API_KEY})

    assert receiver.counts() == {"getuploadurl": {0: 1}, "geteventsandalbums": {0: 1}}
    assert client.get("/_control/received").status_code == 200


def test_control_endpoints(receiver: Receiver, client: httpx.Client) -> None:
    """/_control/faults merges fields into the faults; /_control/received lists the records."""
    assert client.put(upload_url(client), content=b"pic", headers=JPEG).status_code == 200

    changed = client.post(
        "/_control/faults",
        json={"error_rate": 1, "error_status": 500, "fail_next": [["put", 0]]},
    )
    listed = client.get("/_control/received")

    assert changed.status_code == 200
    assert receiver.faults.error_rate == 1.0
    assert receiver.faults.error_status == 500
    assert receiver.faults.fail_next == [("put", 0)]
    assert receiver.faults.url_lifetime == 300.0
    assert ask(client).status_code == 500
    assert listed.status_code == 200
    assert [ReceivedFile.from_json(item) for item in listed.json()] == receiver.received()
    assert isinstance(listed.json()[0]["path"], str)
    counts = client.get("/_control/counts").json()
    assert counts["counts"] == {"getuploadurl": {"200": 1, "500": 1}, "put": {"200": 1}}
    assert counts["urlReuses"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": 2},
        {"nonsense": 1},
        {"fail_next": [["delete", 500]]},
        [1],
        {"seed": "x"},
        {"answer_bytes": {"put": -1}},
        {"trickle": {"nowhere": 1}},
        {"redirect_next": [["put", 200, ""]]},
        {"upload_scheme": "ftp"},
        {"echo_key": 1},
    ],
    ids=[
        "rate",
        "unknown",
        "endpoint",
        "not-object",
        "seed",
        "answer-bytes",
        "trickle",
        "redirect",
        "scheme",
        "echo",
    ],
)
def test_control_rejects_bad_faults(receiver: Receiver, client: httpx.Client, body: object) -> None:
    """/_control/faults refuses unknown fields and bad values with 400 and changes nothing."""
    response = client.post("/_control/faults", json=body)

    assert response.status_code == 400
    assert receiver.faults == Faults(seed=1)


def test_hostile_faults_shape_the_answers(receiver: Receiver, client: httpx.Client) -> None:
    """Faults set through /_control/faults: a redirect for the next request, answers padded
    with spaces (still JSON), trickled answers, upload URLs in another scheme, and errors that
    quote the key the request carried."""
    changed = client.post(
        "/_control/faults",
        json={
            "redirect_next": [["getuploadurl", 307, "https://elsewhere.example{path}"]],
            "answer_bytes": {"getuploadurl": 100_000},
            "trickle": {"geteventsandalbums": 0.001},
            "upload_scheme": "https",
            "echo_key": True,
        },
    )
    assert changed.status_code == 200, changed.text

    redirected = ask(client)
    padded = ask(client)
    events = client.get("/geteventsandalbums", headers={"X-API-Key": "wrong-key"})

    assert redirected.status_code == 307
    assert redirected.headers["Location"] == "https://elsewhere.example/getuploadurl"
    assert len(padded.content) == 100_000
    assert padded.json()["uploadUrl"].startswith(f"https://{receiver.base_url[7:]}/upload/")
    assert events.status_code == 401 and events.json() == {
        "error": "unknown API key (key 'wrong-key')"
    }
    assert receiver.faults.redirect_next == []


def test_unknown_paths_are_404(receiver: Receiver, client: httpx.Client) -> None:
    """Anything but the protocol's endpoints (and the page at GET /) answers 404."""
    assert client.post("/", json={}).status_code == 404
    assert client.get("/getuploadurl").status_code == 404
    assert client.delete("/upload/x").status_code == 404
    assert client.post("/_control/nothing", json={}).status_code == 404
    assert receiver.counts() == {"other": {404: 4}}


class _Markup(HTMLParser):
    """The elements and attributes of a page, and its text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)

    def handle_data(self, data: str) -> None:
        self.text += data + " "


def test_the_page_at_root_lists_what_arrived(receiver: Receiver, client: httpx.Client) -> None:
    """GET / (the URL the demo prints) is an HTML page listing every upload: its name, takenAt
    as a time, its album with its title, the event; not a JSON error. Before any upload it
    says that nothing arrived."""
    empty = client.get("/")
    assert empty.status_code == 200
    assert empty.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Nothing received yet." in empty.text

    first = upload_url(client, fileName="IMG_0001.jpg", albumId="a2", takenAt=1_750_000_000_123)
    assert client.put(first, content=b"one", headers=JPEG).status_code == 200
    second = upload_url(client, fileName="IMG_0002.jpg")
    assert client.put(second, content=b"two", headers=JPEG).status_code == 200
    page = client.get("/")
    assert page.status_code == 200
    markup = _Markup()
    markup.feed(page.text)
    taken = datetime.fromtimestamp(1_750_000_000.123).astimezone()
    text = " ".join(markup.text.split())
    assert "2 files received, newest first." in text
    assert "IMG_0001.jpg " + taken.isoformat(sep=" ", timespec="milliseconds") in text
    assert "a2 (Party) demo" in text
    assert "IMG_0002.jpg not sent no album demo" in text
    assert text.index("IMG_0002.jpg") < text.index("IMG_0001.jpg")
    assert client.head("/").status_code == 200
    assert receiver.counts() == {"getuploadurl": {200: 2}, "put": {200: 2}, "other": {200: 3}}


def test_the_page_escapes_hostile_names(receiver: Receiver, client: httpx.Client) -> None:
    """A picture's name is whatever the uploader sent: on the page it is text, never markup
    (no element, no attribute, no script of its own), and a script policy forbids any."""
    hostile = "<img src=x onerror=alert(1)>&amp;\"'<b onclick=x><script>alert(2).jpg"
    url = upload_url(client, fileName=hostile, albumId="a1")
    assert client.put(url, content=b"x", headers=JPEG).status_code == 200
    page = client.get("/")
    assert page.status_code == 200
    assert "<img" not in page.text and "<script" not in page.text
    markup = _Markup()
    markup.feed(page.text)
    assert set(markup.tags) <= {
        "html", "head", "meta", "title", "style", "body", "h1", "p", "code",
        "table", "thead", "tbody", "tr", "th", "td",
    }  # fmt: skip
    assert markup.attributes <= {"lang", "charset", "http-equiv", "content"}
    assert hostile in markup.text
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_unexpected_error_is_500_and_the_receiver_goes_on(
    receiver: Receiver, client: httpx.Client
) -> None:
    """A failure while storing answers 500 with a JSON error; the next request still works."""
    (receiver.directory / "demo").write_text("a file where a folder belongs")

    response = client.put(upload_url(client), content=b"x" * 1000, headers=JPEG)

    assert response.status_code == 500
    assert "internal error" in response.json()["error"]
    assert ask(client).status_code == 200


def test_stop_cuts_a_delayed_answer(tmp_path: Path) -> None:
    """stop() does not wait out a fault delay: the waiting request ends without an answer."""
    receiver = Receiver(tmp_path, faults=Faults(delay=60)).start()
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            httpx.get(f"{receiver.base_url}/geteventsandalbums", timeout=30)
        except httpx.TransportError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call, name="caller")
    caller.start()
    wait_for(
        lambda: any(t.name == "receiver-conn" for t in threading.enumerate()),
        what="the request to arrive",
    )
    began = time.monotonic()
    receiver.stop()
    caller.join(10)

    assert time.monotonic() - began < 5
    assert len(outcome) == 1


def test_stop_is_idempotent_and_leaves_no_thread(tmp_path: Path) -> None:
    """stop() twice is fine; afterwards no receiver thread runs and the port is closed."""
    receiver = Receiver(tmp_path).start()
    with httpx.Client(base_url=receiver.base_url) as http:
        # A kept-alive connection holds a handler thread until stop() cuts it.
        assert http.get("/geteventsandalbums", headers={"X-API-Key": DEMO_API_KEY}).is_success

        receiver.stop()
        receiver.stop()

        assert [t.name for t in threading.enumerate() if t.name.startswith("receiver")] == []
        with pytest.raises(httpx.TransportError):
            http.get("/geteventsandalbums", headers={"X-API-Key": DEMO_API_KEY})
    with pytest.raises(RuntimeError):
        receiver.start()


def test_stop_without_start_releases_the_port(tmp_path: Path) -> None:
    """A receiver that never served still stops cleanly and frees its socket."""
    receiver = Receiver(tmp_path)
    port = int(receiver.base_url.rsplit(":", 1)[1])

    receiver.stop()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))
