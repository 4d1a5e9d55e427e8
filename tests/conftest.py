"""Fixtures shared by the test suite."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from boothsync.config import Config
from boothsync.engine import Engine
from boothsync.receiver import Receiver
from tests.browser import REPORTS
from tests.browser import browser as browser
from tests.browser import chromium_driver as chromium_driver
from tests.helpers import Clock, wait_for

# Every boothsync a test starts serves its dashboard on a free port of its own: two test runs
# side by side (or a boothsync of the machine's) never fight over 8700. A test that wants
# another address writes [web] listen into its config and clears this.
os.environ["BOOTHSYNC_WEB_LISTEN"] = "127.0.0.1:0"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test, for fixtures that act on a failure (the browser
    screenshot)."""
    report = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    """Every test stops the threads it started."""
    before = set(threading.enumerate())
    yield

    def leaked() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t not in before and t.is_alive()]

    try:
        wait_for(lambda: not leaked(), timeout=10, what="threads to stop")
    except AssertionError:
        names = ", ".join(t.name for t in leaked())
        pytest.fail(f"threads still running after the test: {names}")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    """The local EventPics receiver on 127.0.0.1, storing in ``tmp_path/received`` (a test
    module may have its own, with faults of its own)."""
    with Receiver(tmp_path / "received") as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    """A clock the test moves by hand."""
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Where a test's queue database goes."""
    return tmp_path / "state" / "outbox.sqlite3"


@pytest.fixture
def engine_for() -> Iterator[Callable[..., Engine]]:
    """Start an engine on a config, ready (first scan done); every one is stopped afterwards."""
    engines: list[Engine] = []

    def start(config: Config, **options: Any) -> Engine:
        engine = Engine(config, **options)
        engine.start()
        engines.append(engine)
        assert engine.wait_ready(10)
        return engine

    yield start
    for engine in engines:
        engine.stop(5)
