"""Fixtures shared by the test suite."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from boothsync.config import Config
from boothsync.engine import Engine
from tests.helpers import Clock, wait_for


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
