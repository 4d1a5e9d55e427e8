"""Delivery under faults: the real uploader and outbox against the local receiver over HTTP.

Every test here runs the whole client path (outbox in tmp_path, worker threads, the EventPics
destination, httpx) against :class:`boothsync.receiver.Receiver` on 127.0.0.1 with its fault
injection, and checks what the gallery ended up with, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest

from boothsync.bandwidth import Bandwidth
from boothsync.destinations.eventpics import EventPicsConfig, EventPicsDestination
from boothsync.health import Health
from boothsync.outbox import Outbox
from boothsync.receiver import DEMO_API_KEY, Faults, ReceivedFile, Receiver
from boothsync.retry import backoff
from boothsync.uploader import Uploader
from tests.helpers import jpeg, wait_for


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    yield box
    box.close()


def pictures(folder: Path, prefix: str, count: int) -> dict[str, str]:
    """``count`` pictures of distinct random content; returns {file name: SHA-256}."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for index in range(count):
        path = folder / f"{prefix}{index:03d}.jpg"
        data = jpeg(os.urandom(20_000 + 997 * index))
        path.write_bytes(data)
        made[path.name] = hashlib.sha256(data).hexdigest()
    return made


def queue_all(outbox: Outbox, folder: Path, names: dict[str, str], *destinations: str) -> None:
    for name in names:
        path = folder / name
        st = path.stat()
        outbox.add(
            path,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            watch=str(folder),
            destinations=dict.fromkeys(destinations),
        )


def eventpics(name: str, receiver: Receiver) -> EventPicsDestination:
    return EventPicsDestination(
        EventPicsConfig(name=name, api_key=DEMO_API_KEY, link_id="demo", base_url=receiver.base_url)
    )


@contextmanager
def uploading(
    outbox: Outbox, *destinations: EventPicsDestination, **kwargs: object
) -> Iterator[Uploader]:
    """A running uploader over ``destinations``; stopped and closed on the way out."""
    uploader = Uploader(
        outbox,
        {d.name: d for d in destinations},
        tz=ZoneInfo("UTC"),
        **kwargs,  # type: ignore[arg-type]
    )
    uploader.start()
    try:
        yield uploader
    finally:
        uploader.stop(5)
        for destination in destinations:
            destination.close()


def delivered(*receivers: Receiver) -> dict[str, set[str]]:
    """What the receivers stored: {file name asked for: the SHA-256s received under it}."""
    got: dict[str, set[str]] = {}
    records: list[ReceivedFile] = [r for receiver in receivers for r in receiver.received()]
    for record in records:
        got.setdefault(record.file_name, set()).add(record.sha256)
    return got


def exactly(sent: dict[str, str]) -> dict[str, set[str]]:
    return {name: {sha256} for name, sha256 in sent.items()}


def injected(receiver: Receiver) -> int:
    """Answers that were not a success: injected errors and resets (status 0)."""
    counts = receiver.counts()
    return sum(n for statuses in counts.values() for status, n in statuses.items() if status != 200)


# Tests may shorten the job backoff: the behaviour is the same, the run is shorter.
def quick_backoff(attempts: int) -> float:
    return backoff(attempts, base=0.2, cap=2.0)


def test_uploads_resume_within_seconds_after_the_receiver_comes_back(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A receiver that stops makes the destination offline (nothing fails, no attempt is
    counted); started again on the same port, it is online again and the waiting pictures go
    within 5 s, each delivered byte-exact."""
    folder = tmp_path / "hot"
    first = Receiver(tmp_path / "received-1").start()
    port = urlsplit(first.base_url).port
    assert port is not None
    second: Receiver | None = None
    before = pictures(folder, "before", 4)
    after = pictures(folder, "after", 6)
    try:
        queue_all(outbox, folder, before, "eventpics")
        with uploading(outbox, eventpics("eventpics", first)) as uploader:
            wait_for(lambda: len(first.received()) == 4)
            first.stop()
            queue_all(outbox, folder, after, "eventpics")
            uploader.wake()
            wait_for(lambda: uploader.health()["eventpics"].health is Health.OFFLINE)
            # Recorded for other processes just after.
            wait_for(lambda: outbox.health()["eventpics"][0] == "offline", timeout=5)
            # The outage itself: a span of time, not a wait for something to happen.
            threading.Event().wait(3.0)
            second = Receiver(tmp_path / "received-2", port=port).start()
            back = time.monotonic()
            wait_for(lambda: second is not None and second.received(), timeout=7.5)
            print(f"uploads resumed {time.monotonic() - back:.2f} s after the receiver came back")
            wait_for(lambda: outbox.stats().totals["uploaded"] == 10, timeout=30)
            # Online once the upload is on the disk, a moment after the queue counts it.
            wait_for(lambda: uploader.health()["eventpics"].health is Health.ONLINE, timeout=5)
        stats = outbox.stats()
        assert stats.totals["failed"] == 0
        assert outbox.health()["eventpics"][0] == "online"
        assert delivered(first) == exactly(before)
        assert delivered(second) == exactly(after)
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_thirty_percent_of_requests_failing_loses_nothing(tmp_path: Path, outbox: Outbox) -> None:
    """With about 30 % of requests answered 500, 503, 429, reset or slowly, every picture
    arrives byte-exact and none is marked failed."""
    folder = tmp_path / "hot"
    sent = pictures(folder, "IMG_", 20)
    faults = Faults(
        seed=5,
        error_rate=0.15,
        error_status=503,
        reset_rate=0.12,
        delay=0.02,
        fail_next=[
            ("getuploadurl", 500),
            ("put", 500),
            ("put", 429),
            ("getuploadurl", 429),
            ("put", 0),
            ("getuploadurl", 502),
        ],
    )
    with Receiver(tmp_path / "received", faults=faults) as receiver:
        queue_all(outbox, folder, sent, "eventpics")
        with uploading(
            outbox, eventpics("eventpics", receiver), job_backoff=quick_backoff
        ) as uploader:
            wait_for(lambda: outbox.stats().totals["uploaded"] == 20, timeout=40)
            assert outbox.stats().totals["failed"] == 0
            assert uploader.health()["eventpics"].health is not Health.UNAUTHORIZED
        assert delivered(receiver) == exactly(sent)
        assert injected(receiver) >= 6
        counts = receiver.counts()
    print(f"answers given: {counts}")


def test_a_rate_limited_destination_waits_and_the_other_goes_on(
    tmp_path: Path, outbox: Outbox
) -> None:
    """A 429 with Retry-After makes that destination rate-limited until then, while the other
    destination takes every picture; afterwards both have everything and nothing failed."""
    folder = tmp_path / "hot"
    sent = pictures(folder, "IMG_", 5)
    # Long enough for five uploads to the other gallery on a busy machine.
    limited = Faults(fail_next=[("getuploadurl", 429)], retry_after="10")
    with (
        Receiver(tmp_path / "limited", faults=limited) as slow,
        Receiver(tmp_path / "backup") as other,
    ):
        queue_all(outbox, folder, sent, "eventpics", "backup")
        with uploading(
            outbox, eventpics("eventpics", slow), eventpics("backup", other), concurrency=1
        ) as uploader:
            wait_for(lambda: uploader.health()["eventpics"].health is Health.RATE_LIMITED)
            wait_for(lambda: len(other.received()) == 5)
            # Everything reached the other gallery while this one still asked us to wait.
            assert uploader.health()["eventpics"].health is Health.RATE_LIMITED
            assert outbox.health()["eventpics"][0] == "rate-limited"
            wait_for(lambda: outbox.stats().totals["uploaded"] == 10, timeout=30)
            # Online once the upload is on the disk, a moment after the queue counts it.
            wait_for(lambda: uploader.health()["eventpics"].health is Health.ONLINE, timeout=5)
        assert outbox.stats().totals["failed"] == 0
        assert delivered(slow) == delivered(other) == exactly(sent)


def test_urls_that_expire_before_a_slow_put_are_renewed_and_nothing_fails(
    tmp_path: Path, outbox: Outbox
) -> None:
    """Upload URLs that live 2 s, with requests so slow that they expire before the PUT is
    looked at: each expired URL is replaced by a new one, never reused, and every picture
    arrives once the PUTs are quicker; none fails."""
    folder = tmp_path / "hot"
    sent = pictures(folder, "IMG_", 6)
    faults = Faults(url_lifetime=2.0, delay=2.1)
    with Receiver(tmp_path / "received", faults=faults) as receiver:
        queue_all(outbox, folder, sent, "eventpics")
        with uploading(outbox, eventpics("eventpics", receiver), job_backoff=quick_backoff):
            wait_for(lambda: receiver.counts().get("put", {}).get(403, 0) >= 1, timeout=15)
            assert outbox.stats().totals["failed"] == 0
            faults.delay = 0.3
            wait_for(lambda: outbox.stats().totals["uploaded"] == 6, timeout=20)
        assert outbox.stats().totals["failed"] == 0
        assert delivered(receiver) == exactly(sent)
        assert receiver.url_reuses == 0


@pytest.mark.parametrize("same_times", [False, True], ids=["rewritten", "times-put-back"])
def test_a_picture_rewritten_while_it_is_sent_is_never_stored_torn(
    tmp_path: Path, outbox: Outbox, same_times: bool
) -> None:
    """A picture rewritten in place while its PUT is under way (even by a writer that puts
    its times back) is cut off before the last bytes, so the gallery stores nothing of that
    request; the new version then goes whole. Nothing stored matches neither version."""
    folder = tmp_path / "hot"
    folder.mkdir()
    path = folder / "IMG_0001.jpg"
    old, new = jpeg(os.urandom(400_000)), jpeg(os.urandom(400_000))
    path.write_bytes(old)
    queue_all(outbox, folder, {path.name: ""}, "eventpics")
    with Receiver(tmp_path / "received") as receiver:
        # 400 kB at 200 kB/s: the PUT takes two seconds, time enough to rewrite the file.
        with uploading(
            outbox,
            eventpics("eventpics", receiver),
            bandwidth=Bandwidth(200_000),
            changed_delay=0.1,
        ):
            wait_for(
                lambda: receiver.counts().get("getuploadurl", {}).get(200, 0) >= 1,
                what="the upload URL to be handed out",
            )
            st = path.stat()
            with path.open("r+b") as handle:
                handle.write(new)
            if same_times:
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
            wait_for(lambda: outbox.stats().totals["uploaded"] == 1, timeout=20)
        stored = [record.sha256 for record in receiver.received()]
    assert stored == [hashlib.sha256(new).hexdigest()]
