"""Uploads over a venue's slow uplink: the gallery can only answer once a picture's last
bytes crossed the link, seconds after the sender's system took them all."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bench.link import Link
from boothsync.engine import Engine
from boothsync.receiver import Faults, Receiver
from tests.helpers import engine_config, jpeg, wait_for


def test_a_late_answer_to_a_large_picture_is_waited_for(
    tmp_path: Path, engine_for: Callable[..., Engine]
) -> None:
    """A gallery that answers a PUT later than `timeout` after the last byte left boothsync
    (the bytes were still crossing a slow uplink from the system's send buffer) is waited
    for, in proportion to the picture's size: the picture goes once, rather than timing out
    and being sent again and again."""
    with Receiver(tmp_path / "received", faults=Faults(answer_delay={"put": 1.5})) as receiver:
        config = engine_config(tmp_path, receiver.base_url)
        gallery = replace(config.destinations["eventpics"], timeout=0.5)
        config = replace(config, destinations={"eventpics": gallery})
        (tmp_path / "hot" / "IMG_late.jpg").write_bytes(jpeg(os.urandom(64 * 1024)))
        engine = engine_for(config)
        wait_for(lambda: engine.outbox.counts()["uploaded"] == 1, timeout=60, what="the upload")
        assert len(receiver.received()) == 1
        assert receiver.counts()["put"] == {200: 1}, receiver.counts()


def test_a_picture_goes_through_a_slow_link(
    tmp_path: Path, receiver: Receiver, engine_for: Callable[..., Engine]
) -> None:
    """Through a shaped link (256 kbit/s up, 20 ms), a picture several times the timeout's
    worth of the link arrives once, whole."""
    port = int(receiver.base_url.rsplit(":", 1)[1])
    with Link("127.0.0.1", port, up_bps=256_000, down_bps=2_000_000, rtt=0.02) as link:
        config = engine_config(tmp_path, link.base_url)
        gallery = replace(config.destinations["eventpics"], timeout=1.0)
        config = replace(config, destinations={"eventpics": gallery})
        picture = jpeg(os.urandom(96 * 1024))
        (tmp_path / "hot" / "IMG_slow.jpg").write_bytes(picture)
        engine = engine_for(config)
        wait_for(lambda: len(receiver.received()) == 1, timeout=60, what="the upload")
        # The receiver counts its answer once sent, a moment after it kept the file.
        wait_for(lambda: engine.snapshot().stats.totals["uploaded"] == 1, timeout=30)
    assert receiver.counts()["put"] == {200: 1}, receiver.counts()
    assert (tmp_path / "received").rglob("IMG_slow.jpg")
