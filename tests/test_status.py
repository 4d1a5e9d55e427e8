"""The one status reader: from a queue database read-only, or from a live engine, and its
JSON form (the keys ``boothsync status --json`` prints)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from boothsync.config import load_config
from boothsync.daemon import instance_state
from boothsync.demo import write_sample_jpeg
from boothsync.engine import Engine
from boothsync.health import Health
from boothsync.outbox import MISSING_FOLDERS_FLAG, PAUSED_FLAG, Outbox, Stats
from boothsync.paths import outbox_path
from boothsync.receiver import Receiver
from boothsync.status import Status, from_engine, read_database, report, to_json
from tests.helpers import wait_for
from tests.test_cli import write_config


def test_snapshot_from_a_database_tolerates_odd_values() -> None:
    """An unknown health or a garbled flag reads as unknown / none, never as an error."""
    stats = Stats(destinations={}, totals={}, last_upload=None, last_error=None)
    snapshot = Status(stats, {"x": ("strange", "")}, paused=False, missing_folders=()).snapshot()
    assert snapshot.health["x"].health == Health.UNKNOWN
    assert not snapshot.paused
    assert snapshot.missing_folders == ()


def test_the_flags_are_read_by_their_names(tmp_path: Path) -> None:
    """The paused and missing-folders flags the engine writes are what the status reads;
    a flag that is not a JSON list reads as no missing folder."""
    database = tmp_path / "outbox.sqlite3"
    writer = Outbox(database)
    try:
        writer.set_flag(PAUSED_FLAG, "1")
        writer.set_flag(MISSING_FOLDERS_FLAG, '["/a", "/b"]')
        status = read_database(writer)
        assert status.paused
        assert status.missing_folders == ("/a", "/b")
        writer.set_flag(PAUSED_FLAG, "0")
        writer.set_flag(MISSING_FOLDERS_FLAG, "{not json")
        status = read_database(writer)
        assert not status.paused
        assert status.missing_folders == ()
    finally:
        writer.close()


def test_a_live_engine_and_its_database_give_the_same_status(tmp_path: Path) -> None:
    """The status of an engine in this process is the one `status --json` reads from its
    queue database in another: the same counts, health, last upload and flags."""
    with Receiver(tmp_path / "received") as receiver:
        config = load_config(write_config(tmp_path, receiver.base_url))
        engine = Engine(config)
        engine.start()
        try:
            write_sample_jpeg(
                tmp_path / "hot" / "one.jpg", datetime(2026, 6, 1, 20), "1", (1, 1, 1)
            )
            wait_for(
                lambda: (
                    from_engine(engine).stats.totals.get("uploaded") == 1
                    and from_engine(engine).health["eventpics"][0] == Health.ONLINE
                    # and recorded for other processes, just after
                    and engine.outbox.health().get("eventpics", ("",))[0] == "online"
                ),
                timeout=30,
            )
            engine.pause()
            live = from_engine(engine)
            database = outbox_path(config)
            instance = instance_state(database.parent)
            wait_for(lambda: report(config, database, instance)["paused"], timeout=30)
            assert to_json(live, config, database, instance) == report(config, database, instance)
            assert live.uploaded_today == 1
        finally:
            engine.stop()
