"""The watcher: real folders, real watchdog observers, a real outbox."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from watchdog.observers.api import EventEmitter
from watchdog.observers.polling import PollingObserver

from boothsync.config import WatchConfig
from boothsync.errors import OutboxError
from boothsync.outbox import Outbox
from boothsync.watcher import BUILTIN_IGNORES, Watcher, matches
from tests.helpers import wait_for

LINUX = sys.platform.startswith("linux")
PICTURE = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8

# Long enough that a file arriving sooner cannot have come through the settle path.
LONG_SETTLE = 30.0


class RecordingOutbox(Outbox):
    """The real outbox, noting every add() and is_known() so tests can count them."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.lock = threading.Lock()
        self.adds: list[tuple[Path, int, int, int]] = []  # path, size, mtime_ns, new jobs
        self.lookups: list[Path] = []
        self.fail_adds = 0

    def add(
        self,
        path: Path,
        *,
        size: int,
        mtime_ns: int,
        watch: str,
        destinations: Mapping[str, str | None],
    ) -> int:
        with self.lock:
            if self.fail_adds:
                self.fail_adds -= 1
                raise OutboxError("queue database outbox.sqlite3: disk I/O error")
        new = super().add(
            path, size=size, mtime_ns=mtime_ns, watch=watch, destinations=destinations
        )
        with self.lock:
            self.adds.append((path, size, mtime_ns, new))
        return new

    def is_known(self, path: Path, size: int, mtime_ns: int) -> bool:
        with self.lock:
            self.lookups.append(path)
        return super().is_known(path, size, mtime_ns)

    def enqueued(self) -> dict[Path, list[tuple[int, int]]]:
        """Every file that got new jobs, with the (size, mtime_ns) of each time it did."""
        result: dict[Path, list[tuple[int, int]]] = {}
        with self.lock:
            for path, size, mtime_ns, new in self.adds:
                if new:
                    result.setdefault(path, []).append((size, mtime_ns))
        return result

    def lookup_count(self, path: Path) -> int:
        with self.lock:
            return self.lookups.count(path)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[RecordingOutbox]:
    box = RecordingOutbox(tmp_path / "state" / "outbox.sqlite3")
    yield box
    box.close()


@pytest.fixture
def hot(tmp_path: Path) -> Path:
    folder = tmp_path / "hot"
    folder.mkdir()
    return folder


def watch_of(path: Path, **overrides: Any) -> WatchConfig:
    values: dict[str, Any] = {"settle_seconds": 0.3, "destinations": ("gallery",)}
    values.update(overrides)
    return WatchConfig(path=path, **values)


StartWatcher = Callable[..., Watcher]


@pytest.fixture
def start_watcher(outbox: RecordingOutbox) -> Iterator[StartWatcher]:
    """Start a watcher over the given watches and wait until it is ready; stopped afterwards."""
    started: list[Watcher] = []

    def start(*watches: WatchConfig, rescan_interval: float = 300.0) -> Watcher:
        watcher = Watcher(watches, outbox, rescan_interval=rescan_interval)
        started.append(watcher)
        watcher.start()
        wait_for(watcher.ready.is_set, timeout=5, what="the watcher to be ready")
        return watcher

    yield start
    for watcher in started:
        watcher.stop()


def write(path: Path, data: bytes = PICTURE) -> Path:
    path.write_bytes(data)
    return path


def wait_enqueued(outbox: RecordingOutbox, *paths: Path, timeout: float = 5.0) -> None:
    wait_for(
        lambda: all(p in outbox.enqueued() for p in paths),
        timeout=timeout,
        what=f"{len(paths)} file(s) to be queued",
    )


def settle_down(watcher: Watcher, outbox: RecordingOutbox, present: Path) -> None:
    """Wait until the watcher has finished what it was doing and scanned again.

    ``present`` is a matching file in a watched folder: the scan looks it up, and the worker
    only scans after finishing its previous pass.
    """
    before = outbox.lookup_count(present)
    watcher.scan()
    wait_for(lambda: outbox.lookup_count(present) > before, timeout=5, what="a scan")


def fast_settle() -> float:
    """A settle time that proves the fast path on Linux; elsewhere the settle path has to do."""
    return LONG_SETTLE if LINUX else 0.3


# -- filters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["IMG_1.JPG", "img_2.jpg", "Photo.JpEg", "print.PNG", "anim.gif", "a b (1).jpg"]
)
def test_default_patterns_match_pictures_in_any_case(tmp_path: Path, name: str) -> None:
    """The default patterns match pictures whatever the case of the name."""
    assert matches(name, watch_of(tmp_path))


@pytest.mark.parametrize(
    "name",
    [
        "x.jpg.tmp",
        "x.TMP",
        "x.jpg.part",
        "x.partial",
        "x.jpg.crdownload",
        "~x.jpg",
        ".x.jpg",
        ".syncthing.x.jpg.tmp",
        "~syncthing~x.jpg.tmp",
        "Thumbs.db",
        "thumbs.db",
        ".DS_Store",
    ],
)
def test_builtin_ignores_win_over_any_pattern(tmp_path: Path, name: str) -> None:
    """Temporaries, lock files, hidden files and OS litter never match, even with pattern '*'."""
    assert not matches(name, watch_of(tmp_path, patterns=("*",)))


@pytest.mark.parametrize("name", ["notes.txt", "clip.mov", "x.jpg.bak", "jpg", "IMG_1.JPG.xmp"])
def test_other_extensions_do_not_match(tmp_path: Path, name: str) -> None:
    """Names the patterns do not cover are not pictures."""
    assert not matches(name, watch_of(tmp_path))


def test_configured_ignores_apply_case_insensitively(tmp_path: Path) -> None:
    """The watch's own ignore globs exclude names the patterns would take."""
    watch = watch_of(tmp_path, ignore=("*_thumb.jpg",))
    assert not matches("IMG_1_THUMB.JPG", watch)
    assert matches("IMG_1.JPG", watch)


def test_every_builtin_ignore_is_tested() -> None:
    """The list of built-in ignores is the one documented."""
    assert BUILTIN_IGNORES == (
        "*.tmp",
        "*.part",
        "*.partial",
        "*.crdownload",
        "~*",
        ".*",
        ".syncthing.*",
        "~syncthing~*",
        "Thumbs.db",
        ".DS_Store",
    )


# -- files arriving -------------------------------------------------------------------------


def test_closed_file_is_queued_once_without_waiting_to_settle(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """A file written in place and closed is queued once, with its size and mtime.

    On Linux the writer's close is the signal: the file is queued long before it could
    have settled.
    """
    watcher = start_watcher(watch_of(hot, settle_seconds=fast_settle()))
    path = write(hot / "IMG_0001.jpg")
    st = path.stat()

    wait_enqueued(outbox, path, timeout=3 if LINUX else 5)
    settle_down(watcher, outbox, path)

    assert outbox.enqueued() == {path: [(st.st_size, st.st_mtime_ns)]}
    job = outbox.claim()
    assert job is not None
    assert (job.path, job.size, job.mtime_ns) == (path, st.st_size, st.st_mtime_ns)
    assert (job.watch, job.destination) == (str(hot), "gallery")


@pytest.mark.parametrize("poll", [False, True], ids=["native", "polling"])
def test_file_still_being_written_is_queued_only_when_complete(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher, poll: bool
) -> None:
    """A file that keeps growing is never queued; once closed and stable it is, complete."""
    start_watcher(watch_of(hot, settle_seconds=0.5, poll=poll, poll_interval=0.1))
    path = hot / "growing.jpg"
    chunk = b"x" * 4096
    written = [0]
    stop_writing = threading.Event()

    def append_slowly() -> None:
        with open(path, "wb") as handle:
            while True:
                handle.write(chunk)
                handle.flush()
                written[0] += 1
                if stop_writing.wait(0.1):
                    break

    writer = threading.Thread(target=append_slowly, name="test-writer")
    writer.start()
    try:
        # Three settle times' worth of writing.
        wait_for(lambda: written[0] >= 15, timeout=10, what="the writer to write a while")
        assert path not in outbox.enqueued()
    finally:
        stop_writing.set()
        writer.join()

    wait_enqueued(outbox, path)
    size = path.stat().st_size
    assert size == written[0] * len(chunk)
    assert [s for s, _ in outbox.enqueued()[path]] == [size]


def test_file_renamed_into_place_is_queued_once_and_the_temp_name_never(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """Written as x.jpg.tmp and renamed to x.jpg, the file is queued once as x.jpg only."""
    watcher = start_watcher(watch_of(hot, settle_seconds=fast_settle()))
    temp = write(hot / "x.jpg.tmp")
    final = hot / "x.jpg"
    os.replace(temp, final)

    wait_enqueued(outbox, final, timeout=3 if LINUX else 5)
    settle_down(watcher, outbox, final)

    assert list(outbox.enqueued()) == [final]
    assert len(outbox.enqueued()[final]) == 1
    assert all(path != temp for path, *_ in outbox.adds)


def test_file_moved_in_from_another_folder_is_queued(
    tmp_path: Path, hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """A finished picture moved in from elsewhere is queued (at once on Linux)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    source = write(elsewhere / "moved.jpg")
    start_watcher(watch_of(hot, settle_seconds=fast_settle()))

    target = hot / "moved.jpg"
    os.replace(source, target)

    wait_enqueued(outbox, target, timeout=3 if LINUX else 5)
    assert outbox.enqueued()[target] == [(target.stat().st_size, target.stat().st_mtime_ns)]


def test_files_there_at_start_are_queued_and_known_ones_are_not_added_again(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """Pictures already in the folder are queued at start, except those the outbox knows."""
    known = write(hot / "known.jpg")
    st = known.stat()
    outbox.add(
        known, size=st.st_size, mtime_ns=st.st_mtime_ns, watch=str(hot), destinations={"g": None}
    )
    new = [write(hot / f"old_{i}.jpg") for i in range(3)]
    outbox.adds.clear()

    watcher = start_watcher(watch_of(hot))
    wait_enqueued(outbox, *new)
    settle_down(watcher, outbox, known)

    assert sorted(outbox.enqueued()) == sorted(new)
    assert all(path != known for path, *_ in outbox.adds)


def test_changed_file_with_a_known_name_is_queued_again(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """A new version of a known file (new size) is a new picture."""
    path = write(hot / "again.jpg")
    st = path.stat()
    outbox.add(
        path, size=st.st_size, mtime_ns=st.st_mtime_ns, watch=str(hot), destinations={"g": None}
    )
    outbox.adds.clear()
    start_watcher(watch_of(hot))

    write(path, PICTURE * 2)

    wait_enqueued(outbox, path)
    assert [size for size, _ in outbox.enqueued()[path]] == [len(PICTURE) * 2]


def test_only_matching_names_are_ever_queued(
    tmp_path: Path, hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """Case-insensitive patterns; ignored names and other extensions never reach the outbox."""
    anything = tmp_path / "anything"
    anything.mkdir()
    watcher = start_watcher(watch_of(hot), watch_of(anything, patterns=("*",), ignore=("*.xmp",)))
    for name in ["notes.txt", "clip.mov", "~lock.jpg", ".hidden.jpg", "IMG_9.JPG.xmp"]:
        write(hot / name)
    for name in [*BUILTIN_IGNORES, "x.jpg.tmp", "y.jpg.part", "z.xmp"]:
        if not any(ch in name for ch in "*?"):
            write(anything / name)
    write(anything / "a.tmp")
    write(anything / "b.crdownload")
    (anything / "folder.jpg").mkdir()
    upper = write(hot / "IMG_1.JPG")
    other = write(anything / "keep.bin")

    wait_enqueued(outbox, upper, other)
    settle_down(watcher, outbox, upper)

    assert sorted(outbox.enqueued()) == sorted([upper, other])


def test_polling_mode_finds_new_files(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """With poll = true a PollingObserver watches the folder, and new pictures are queued."""
    start_watcher(watch_of(hot, poll=True, poll_interval=0.1))
    observers = [t for t in threading.enumerate() if isinstance(t, PollingObserver)]
    assert len(observers) == 1
    assert observers[0].name.startswith("watcher")

    path = write(hot / "polled.jpg")

    wait_enqueued(outbox, path)


def test_burst_of_files_is_queued_exactly_once_each(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """Two hundred small files dropped at once are all queued, each exactly once."""
    watcher = start_watcher(watch_of(hot))
    paths = [write(hot / f"burst_{i:03}.jpg", PICTURE + i.to_bytes(2, "big")) for i in range(200)]

    wait_enqueued(outbox, *paths, timeout=15)
    settle_down(watcher, outbox, paths[-1])

    enqueued = outbox.enqueued()
    assert sorted(enqueued) == sorted(paths)
    assert all(len(versions) == 1 for versions in enqueued.values())
    assert outbox.stats().totals["waiting"] == 200


# -- things going wrong ---------------------------------------------------------------------


def test_missing_folder_is_warned_about_once_and_watched_when_it_appears(
    tmp_path: Path,
    hot: Path,
    outbox: RecordingOutbox,
    start_watcher: StartWatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A folder missing at start is one warning, no crash; once created, its files are queued."""
    caplog.set_level(logging.INFO, logger="boothsync.watcher")
    later = tmp_path / "later"
    # A known file in a present folder: each rescan looks it up, which counts the rescans.
    marker = write(hot / "marker.jpg")
    st = marker.stat()
    outbox.add(marker, size=st.st_size, mtime_ns=st.st_mtime_ns, watch="x", destinations={})

    start_watcher(watch_of(later), watch_of(hot), rescan_interval=0.1)
    wait_for(lambda: outbox.lookup_count(marker) >= 5, what="a few rescans")

    def lines(level: int, text: str) -> list[str]:
        return [
            r.getMessage()
            for r in caplog.records
            if r.levelno == level and str(later) in r.getMessage() and text in r.getMessage()
        ]

    assert len(lines(logging.WARNING, "does not exist")) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    later.mkdir()
    path = write(later / "late.jpg")

    wait_enqueued(outbox, path)
    assert len(lines(logging.INFO, "there now")) == 1
    assert len(lines(logging.WARNING, "does not exist")) == 1


def test_folder_that_vanishes_and_returns_is_watched_again(
    hot: Path,
    outbox: RecordingOutbox,
    start_watcher: StartWatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A watched folder deleted while running is one warning; when it is back, it is watched."""
    caplog.set_level(logging.INFO, logger="boothsync.watcher")
    start_watcher(watch_of(hot), rescan_interval=0.2)
    first = write(hot / "first.jpg")
    wait_enqueued(outbox, first)

    shutil.rmtree(hot)
    wait_for(
        lambda: any(
            r.levelno == logging.WARNING and str(hot) in r.getMessage() for r in caplog.records
        ),
        what="a warning about the vanished folder",
    )

    hot.mkdir()
    second = write(hot / "second.jpg")

    wait_enqueued(outbox, second)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1


def test_dead_observer_is_restarted(
    hot: Path,
    outbox: RecordingOutbox,
    start_watcher: StartWatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When watchdog's emitter dies, the observer is restarted and events flow again."""
    caplog.set_level(logging.INFO, logger="boothsync.watcher")
    watcher = start_watcher(watch_of(hot, settle_seconds=fast_settle()))
    emitters = [t for t in threading.enumerate() if isinstance(t, EventEmitter)]
    assert len(emitters) == 1
    emitters[0].stop()
    emitters[0].join(5)

    watcher.scan()  # a scan also checks the observers (as a timer does every few seconds)
    wait_for(
        lambda: any(t.is_alive() for t in threading.enumerate() if isinstance(t, EventEmitter)),
        what="a new emitter",
    )
    assert any("restarting" in r.getMessage() for r in caplog.records)

    path = write(hot / "after_restart.jpg")
    wait_enqueued(outbox, path, timeout=3 if LINUX else 5)


@pytest.mark.skipif(sys.platform == "win32", reason="Windows cannot delete an open file")
def test_file_vanishing_while_pending_is_dropped_quietly(
    hot: Path,
    outbox: RecordingOutbox,
    start_watcher: StartWatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A file deleted before it settled is forgotten without a warning, and never queued."""
    caplog.set_level(logging.DEBUG, logger="boothsync.watcher")
    watcher = start_watcher(watch_of(hot, settle_seconds=1.0))
    doomed = hot / "doomed.jpg"
    with open(doomed, "wb") as handle:
        handle.write(PICTURE)
        handle.flush()
        wait_for(
            lambda: outbox.lookup_count(doomed) > 0,
            what="the watcher to notice the file",
        )
        doomed.unlink()
    sentinel = write(hot / "sentinel.jpg")

    wait_enqueued(outbox, sentinel)
    settle_down(watcher, outbox, sentinel)

    assert doomed not in outbox.enqueued()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_failing_outbox_keeps_the_file_pending_until_it_can_be_added(
    hot: Path,
    outbox: RecordingOutbox,
    start_watcher: StartWatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When add() fails, one error line names the file and the reason; the file is retried."""
    caplog.set_level(logging.INFO, logger="boothsync.watcher")
    outbox.fail_adds = 1
    start_watcher(watch_of(hot))

    path = write(hot / "retry.jpg")

    wait_enqueued(outbox, path, timeout=10)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert str(path) in errors[0]
    assert "disk I/O error" in errors[0]


def test_stop_joins_every_thread_and_can_be_called_twice(
    tmp_path: Path, hot: Path, outbox: RecordingOutbox
) -> None:
    """stop() ends every thread the watcher started (all named watcher…); twice is harmless."""
    before = set(threading.enumerate())
    watcher = Watcher(
        [watch_of(hot), watch_of(tmp_path / "missing"), replace(watch_of(hot), poll=True)],
        outbox,
    )
    watcher.start()
    wait_for(watcher.ready.is_set, timeout=5, what="the watcher to be ready")
    started = [t for t in threading.enumerate() if t not in before]
    assert started
    assert all(t.name.startswith("watcher") for t in started), [t.name for t in started]

    watcher.stop()
    watcher.stop()

    assert not [t for t in started if t.is_alive()]


def test_stop_before_start_is_harmless(hot: Path, outbox: RecordingOutbox) -> None:
    """A watcher that never started can be stopped, and cannot be started afterwards."""
    watcher = Watcher([watch_of(hot)], outbox)
    watcher.stop()
    with pytest.raises(RuntimeError):
        watcher.start()
