"""The one contract every destination keeps, run against each one's local server.

Like rclone's fstests: a new gallery service gets these for free by adding a ``Gallery``
adapter below (its local server, a config pointing at it, and how to read back what arrived).
Checked for each: an upload arrives byte-exact; a probe answers while the service is there and
is a NetworkError while it is not; the account's event is listed; a wrong key pauses the
destination (Unauthorized) instead of failing pictures; a server error is retryable; a redirect
of the API pauses the destination instead of being followed; `check()` passes; and pictures go
through the real engine, byte-exact.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from boothsync.config import (
    DestinationConfig,
)
from boothsync.demo import write_sample_jpeg
from boothsync.destinations import REGISTRY, Destination, DestinationContext, UploadItem, create
from boothsync.destinations.eventpics import EventPicsConfig
from boothsync.destinations.folder import FolderConfig
from boothsync.destinations.picpeak import PicPeakConfig
from boothsync.destinations.picsui import PicsuiConfig
from boothsync.engine import Engine
from boothsync.errors import DestinationUnavailable, NetworkError, RetryableError, Unauthorized
from boothsync.receiver import DEMO_API_KEY, Faults, Receiver
from tests.fakes.picpeak import PicPeakServer
from tests.fakes.picsui import ENDPOINT, PicsuiServer
from tests.helpers import engine_config, wait_for


@dataclass
class Gallery:
    """One destination type with its local server: what the contract needs to know."""

    config: DestinationConfig
    received: Callable[[], dict[str, str]]  # file name -> sha256 of what arrived
    wrong_key: DestinationConfig | None  # the same destination with a key it refuses
    fail_next: Callable[[int], None] | None  # the next upload request gets this status
    unreachable: DestinationConfig  # the same destination where nothing answers
    redirect: Callable[[str], None] | None = None  # the next upload request: a 301 there


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def nowhere() -> str:
    return f"http://127.0.0.1:{free_port()}"


def eventpics(stack: ExitStack, tmp_path: Path) -> Gallery:
    faults = Faults(seed=1)
    server = stack.enter_context(Receiver(tmp_path / "eventpics", faults=faults))
    config = EventPicsConfig(
        name="gallery", api_key=DEMO_API_KEY, link_id="demo", base_url=server.base_url
    )
    return Gallery(
        config=config,
        received=lambda: {r.file_name: r.sha256 for r in server.received()},
        wrong_key=replace(config, api_key="not-the-key"),
        fail_next=lambda status: faults.fail_next.append(("getuploadurl", status)),
        unreachable=replace(config, base_url=nowhere()),
        redirect=lambda url: faults.redirect_next.append(("getuploadurl", 301, url)),
    )


def picsui(stack: ExitStack, tmp_path: Path) -> Gallery:
    server = stack.enter_context(
        PicsuiServer(tmp_path / "picsui", api_key="picsui-key", event_id="ev-1")
    )
    config = PicsuiConfig(
        name="gallery", api_key="picsui-key", event_id="ev-1", base_url=server.base_url
    )
    return Gallery(
        config=config,
        received=lambda: {r.file_name: r.sha256 for r in server.received()},
        wrong_key=replace(config, api_key="not-the-key"),
        fail_next=lambda status: server.faults.fail_next.append((ENDPOINT, status)),
        unreachable=replace(config, base_url=nowhere()),
        redirect=lambda url: server.faults.redirect_next.append((ENDPOINT, 301, url)),
    )


def picpeak(stack: ExitStack, tmp_path: Path) -> Gallery:
    server = stack.enter_context(
        PicPeakServer(
            tmp_path / "picpeak",
            tokens={"pp_live_contract": {"read", "write"}},
            events={7: "Contract wedding"},
        )
    )
    config = PicPeakConfig(
        name="gallery", api_token="pp_live_contract", event_id=7, base_url=server.base_url
    )
    return Gallery(
        config=config,
        received=lambda: {r.file_name: r.sha256 for r in server.received()},
        wrong_key=replace(config, api_token="pp_live_wrong"),
        fail_next=lambda status: server.faults.fail_next.append(("photos", status)),
        unreachable=replace(config, base_url=nowhere()),
        redirect=lambda url: server.faults.redirect_next.append(("photos", 301, url)),
    )


def folder(stack: ExitStack, tmp_path: Path) -> Gallery:
    target = tmp_path / "copies"
    target.mkdir()

    def received() -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in target.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        }

    config = FolderConfig(name="gallery", path=target)
    return Gallery(
        config=config,
        received=received,
        wrong_key=None,  # a folder has no key
        fail_next=None,  # nor a server that answers
        unreachable=replace(config, path=tmp_path / "unplugged-drive"),
    )


GALLERIES: dict[str, Callable[[ExitStack, Path], Gallery]] = {
    "eventpics": eventpics,
    "picsui": picsui,
    "picpeak": picpeak,
    "folder": folder,
}


def test_every_registered_type_runs_the_contract() -> None:
    """No destination type escapes the contract: each one in the registry has an adapter."""
    assert set(GALLERIES) == set(REGISTRY)


@pytest.fixture(params=sorted(GALLERIES))
def gallery(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gallery]:
    with ExitStack() as stack:
        yield GALLERIES[request.param](stack, tmp_path)


@pytest.fixture
def made(gallery: Gallery) -> Iterator[Callable[[DestinationConfig], Destination]]:
    opened: list[Destination] = []

    def make(config: DestinationConfig) -> Destination:
        destination = create(config, context=DestinationContext(booth="contract"))
        opened.append(destination)
        return destination

    yield make
    for destination in opened:
        destination.close()


def picture(tmp_path: Path, name: str, seed: int = 1) -> UploadItem:
    path = tmp_path / "pictures" / name
    path.parent.mkdir(exist_ok=True)
    write_sample_jpeg(path, datetime(2026, 6, 1, 20, seed % 60), name, (seed % 255, 40, 90))
    return UploadItem(
        path=path,
        file_name=name,
        size=path.stat().st_size,
        content_type="image/jpeg",
        taken_at_ms=1_780_000_000_000,
        album_id=None,
    )


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_upload_arrives_byte_exact(gallery: Gallery, made: Any, tmp_path: Path) -> None:
    """What upload() returned for has arrived, with exactly the file's bytes."""
    item = picture(tmp_path, "IMG_0001.jpg")
    made(gallery.config).upload(item)
    assert gallery.received() == {"IMG_0001.jpg": sha(item.path)}


def test_probe_tells_reachable_from_unreachable(gallery: Gallery, made: Any) -> None:
    """A probe returns while the service is there and raises NetworkError while it is not."""
    made(gallery.config).probe()
    with pytest.raises(NetworkError):
        made(gallery.unreachable).probe()


def test_an_unreachable_service_is_a_network_error(
    gallery: Gallery, made: Any, tmp_path: Path
) -> None:
    """Uploading where nothing answers is a NetworkError (the picture waits, nothing fails)."""
    with pytest.raises(NetworkError):
        made(gallery.unreachable).upload(picture(tmp_path, "IMG_0002.jpg"))


def test_events_are_listed(gallery: Gallery, made: Any) -> None:
    """events() answers with the events the account can upload to (none for a folder)."""
    events = made(gallery.config).events()
    if isinstance(gallery.config, FolderConfig):
        assert events == []
    else:
        assert events and all(e.link_id for e in events)


def test_a_wrong_key_pauses_the_destination(gallery: Gallery, made: Any, tmp_path: Path) -> None:
    """A key the service refuses is Unauthorized: the destination pauses, no picture fails."""
    if gallery.wrong_key is None:
        pytest.skip("this destination has no key")
    with pytest.raises(Unauthorized) as caught:
        made(gallery.wrong_key).upload(picture(tmp_path, "IMG_0003.jpg"))
    assert "not-the-key" not in str(caught.value) and "pp_live_wrong" not in str(caught.value)
    assert gallery.received() == {}


def test_a_server_error_is_retried_later(gallery: Gallery, made: Any, tmp_path: Path) -> None:
    """A 503 is retryable, and the next try goes through."""
    if gallery.fail_next is None:
        pytest.skip("this destination has no server")
    gallery.fail_next(503)
    destination = made(gallery.config)
    item = picture(tmp_path, "IMG_0004.jpg")
    with pytest.raises(RetryableError):
        destination.upload(item)
    destination.upload(item)
    assert gallery.received() == {"IMG_0004.jpg": sha(item.path)}


def test_a_redirect_of_the_api_pauses_the_destination(
    gallery: Gallery, made: Any, tmp_path: Path
) -> None:
    """An API that answers with a redirect is not followed there (the request carries the
    key): the destination pauses with one line naming base_url and where it pointed, and the
    next try, once the API answers again, goes through."""
    if gallery.redirect is None:
        pytest.skip("this destination has no server")
    gallery.redirect("https://elsewhere.example/api")
    destination = made(gallery.config)
    item = picture(tmp_path, "IMG_0005.jpg")
    with pytest.raises(DestinationUnavailable) as caught:
        destination.upload(item)
    message = str(caught.value)
    assert "\n" not in message and "redirect (301) to https://elsewhere.example/api" in message
    assert "check base_url in [destinations.gallery]" in message
    assert gallery.received() == {}
    destination.upload(item)
    assert gallery.received() == {"IMG_0005.jpg": sha(item.path)}


def test_check_passes(gallery: Gallery, made: Any) -> None:
    """check() reaches the service and every line holds."""
    items = made(gallery.config).check()
    assert items and all(i.ok for i in items), items


def test_pictures_go_through_the_engine(gallery: Gallery, tmp_path: Path) -> None:
    """The real engine, watching a folder, delivers every picture byte-exact."""
    config = engine_config(tmp_path, "http://127.0.0.1:9", settle_seconds=0.2)
    config = replace(
        config,
        destinations={"gallery": gallery.config},
        watches=tuple(replace(w, destinations=("gallery",)) for w in config.watches),
    )
    engine = Engine(config)
    engine.start()
    try:
        engine.wait_ready(10)
        hot = tmp_path / "hot"
        expected = {}
        for n in range(5):
            name = f"IMG_{n:04}.jpg"
            write_sample_jpeg(hot / name, datetime(2026, 6, 1, 20, n), name, (n * 40, 9, 9))
            expected[name] = sha(hot / name)
        wait_for(lambda: gallery.received() == expected, timeout=30, what="5 pictures")
    finally:
        engine.stop(10)


def test_a_shrunk_copy_for_one_destination_leaves_the_others_the_original(
    tmp_path: Path,
) -> None:
    """With max_edge on one destination, it gets a smaller JPEG with the same capture time,
    while another destination gets the original bytes, and the original file is untouched."""
    from PIL import Image

    from boothsync.capture import capture_time

    small_dir, full_dir = tmp_path / "small", tmp_path / "full"
    small_dir.mkdir()
    full_dir.mkdir()
    config = engine_config(tmp_path, "http://127.0.0.1:9", settle_seconds=0.2)
    config = replace(
        config,
        destinations={
            "small": FolderConfig(name="small", path=small_dir, max_edge=64, quality=70),
            "full": FolderConfig(name="full", path=full_dir),
        },
        watches=tuple(replace(w, destinations=("small", "full")) for w in config.watches),
    )
    engine = Engine(config)
    engine.start()
    try:
        engine.wait_ready(10)
        original = tmp_path / "hot" / "IMG_0100.jpg"
        write_sample_jpeg(original, datetime(2026, 6, 1, 22, 15), "big", (200, 10, 10))
        before = original.read_bytes()
        wait_for(
            lambda: (small_dir / "IMG_0100.jpg").exists() and (full_dir / "IMG_0100.jpg").exists(),
            timeout=30,
        )
    finally:
        engine.stop(10)
    assert original.read_bytes() == before
    assert (full_dir / "IMG_0100.jpg").read_bytes() == before
    with Image.open(small_dir / "IMG_0100.jpg") as shrunk, Image.open(original) as full:
        assert max(shrunk.size) == 64 < max(full.size)
    tz = config.booth.tz
    assert capture_time(small_dir / "IMG_0100.jpg", tz) == capture_time(original, tz)
