"""The watcher: real folders, real watchdog observers, a real outbox."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from watchdog.observers.api import EventEmitter
from watchdog.observers.polling import PollingObserver

from boothsync.config import WatchConfig
from boothsync.errors import OutboxError
from boothsync.outbox import Job, Known, NewFile, Outbox
from boothsync.watcher import BUILTIN_IGNORES, CLOSE_QUIET, Watcher, matches
from tests.helpers import jpeg, wait_for

LINUX = sys.platform.startswith("linux")
PICTURE = jpeg(bytes(range(256)) * 8)

# Long enough that a file arriving sooner cannot have come through the settle path.
LONG_SETTLE = 30.0

# watchdog's recursive inotify watch registers a folder created inside it twice when its
# parent is new too (mkdir -p), and warns that it replaced the first registration: harmless.
WATCHDOG_REREGISTERS = pytest.mark.filterwarnings(
    "ignore:Callback with id .* already exists:RuntimeWarning"
)


class RecordingOutbox(Outbox):
    """The real outbox, noting every add() and known() so tests can count them."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.lock = threading.Lock()
        self.adds: list[tuple[Path, int, int, int]] = []  # path, size, mtime_ns, new jobs
        self.lookups: list[Path] = []
        self.first_queued_at: dict[Path, float] = {}  # monotonic time of the first new jobs
        self.fail_adds = 0
        self.batches: list[int] = []  # files per add_many() call, failed ones included
        # When set: add_many() says it has begun (``adding``), then waits for ``hold``.
        self.hold: threading.Event | None = None
        self.adding = threading.Event()

    def add_many(self, files: Sequence[NewFile]) -> list[int]:
        hold = self.hold
        if hold is not None:
            self.adding.set()
            hold.wait(10)
        with self.lock:
            self.batches.append(len(files))
            if self.fail_adds:
                self.fail_adds -= 1
                raise OutboxError("queue database outbox.sqlite3: disk I/O error")
        counts = super().add_many(files)
        with self.lock:
            for file, new in zip(files, counts, strict=True):
                self.adds.append((file.path, file.size, file.mtime_ns, new))
                if new:
                    self.first_queued_at.setdefault(file.path, time.monotonic())
        return counts

    def known(self, path: Path, size: int, mtime_ns: int) -> Known:
        with self.lock:
            self.lookups.append(path)
        return super().known(path, size, mtime_ns)

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

    def claim_all(self) -> dict[Path, list[Job]]:
        """Claim every waiting job: what was queued, with its watch, destination and album."""
        jobs: dict[Path, list[Job]] = {}
        while (job := self.claim()) is not None:
            jobs.setdefault(job.path, []).append(job)
        return jobs


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

    def start(*watches: WatchConfig, **options: Any) -> Watcher:
        watcher = Watcher(watches, outbox, **options)
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


def let_time_pass(seconds: float) -> None:
    """Let time pass, to show that something does not happen in it (never to wait for a thing)."""
    threading.Event().wait(seconds)


def tree(root: Path, *relative: str) -> list[Path]:
    """Write a picture at each relative path below ``root``, making folders as needed."""
    paths = []
    for name in relative:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.append(write(path, PICTURE + name.encode()))
    return paths


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

    wait_enqueued(outbox, path, timeout=10)
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

    wait_enqueued(outbox, final, timeout=10)
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

    wait_enqueued(outbox, target, timeout=10)
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


# -- closed files: a short quiet window after the writer's last close ------------------------


@pytest.mark.skipif(not LINUX, reason="close events come from inotify")
def test_closed_file_is_queued_after_a_short_quiet_window_not_the_settle_time(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """A file written and closed is queued once it stood still for CLOSE_QUIET after the close.

    The settle time (30 s) is far longer than the wait allowed here, so the close alone got it
    queued; and not before the quiet window, which bridges a writer that reopens the file.
    """
    start_watcher(watch_of(hot, settle_seconds=LONG_SETTLE))
    before_writing = time.monotonic()
    path = write(hot / "closed.jpg")

    wait_enqueued(outbox, path, timeout=10)

    assert outbox.first_queued_at[path] - before_writing >= CLOSE_QUIET
    assert outbox.enqueued()[path] == [(path.stat().st_size, path.stat().st_mtime_ns)]


def test_writer_that_closes_and_reopens_to_append_is_queued_once_complete(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """A writer that opens, appends 64 KiB and closes, every 30 ms for 1.5 s, is queued once.

    Each close would be a partial picture; only the last one, followed by quiet, counts. On
    Linux the settle time is 30 s, so it is the close events (native mode) that get it queued.
    """
    watcher = start_watcher(watch_of(hot, settle_seconds=fast_settle()))
    path = hot / "appended.jpg"
    piece = b"\xab" * 65536
    pieces = 50

    def append_piece_by_piece() -> None:
        pause = threading.Event()
        for _ in range(pieces):
            with open(path, "ab") as handle:
                handle.write(piece)
            pause.wait(0.03)

    writer = threading.Thread(target=append_piece_by_piece, name="test-writer")
    writer.start()
    writer.join()

    wait_enqueued(outbox, path, timeout=10)
    settle_down(watcher, outbox, path)

    assert path.stat().st_size == pieces * len(piece)
    assert outbox.enqueued() == {path: [(path.stat().st_size, path.stat().st_mtime_ns)]}


@pytest.mark.skipif(not LINUX, reason="close events come from inotify")
def test_closed_file_reopened_and_held_open_waits_for_the_next_close(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """A file closed, then opened again and written, is not queued while the writer holds it.

    However long the writer pauses with the file open, it is queued only after its next close
    (or the settle time), complete.
    """
    start_watcher(watch_of(hot, settle_seconds=LONG_SETTLE))
    path = write(hot / "metadata.jpg")
    with open(path, "ab") as handle:
        handle.write(b"EXIF metadata added after the first close")
        handle.flush()
        let_time_pass(CLOSE_QUIET * 5)
        assert path not in outbox.enqueued()

    wait_enqueued(outbox, path, timeout=10)
    assert outbox.enqueued()[path] == [(path.stat().st_size, path.stat().st_mtime_ns)]


# -- only when the writer is done: held open, cut short ---------------------------------------


def pieces_of(data: bytes, count: int) -> list[bytes]:
    step = -(-len(data) // count)
    return [data[i : i + step] for i in range(0, len(data), step)]


@pytest.mark.parametrize("poll", [False, True], ids=["native", "polling"])
def test_picture_held_open_through_long_pauses_is_queued_once_after_its_close(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher, poll: bool
) -> None:
    """A JPEG written in four pieces, its writer holding it open through pauses three times
    the settle time, is queued once, whole, only after the writer closed it."""
    watcher = start_watcher(watch_of(hot, settle_seconds=0.2, poll=poll, poll_interval=0.1))
    path = hot / "IMG_0001.jpg"
    data = jpeg(os.urandom(40_000))
    with path.open("wb") as handle:
        for piece in pieces_of(data, 4):
            handle.write(piece)
            handle.flush()
            let_time_pass(0.6)
            assert path not in outbox.enqueued()

    wait_enqueued(outbox, path)
    settle_down(watcher, outbox, path)
    assert outbox.enqueued() == {path: [(len(data), path.stat().st_mtime_ns)]}


@pytest.mark.skipif(not LINUX, reason="the kernel's word on writers is Linux's (file leases)")
def test_whole_picture_held_open_for_writing_waits_until_it_is_closed(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """A picture that looks whole but that some process holds open for writing (here without
    writing anything, so no event says so) waits however long, and goes once it is closed."""
    path = write(hot / "IMG_0001.jpg")
    with path.open("ab"):
        start_watcher(watch_of(hot, settle_seconds=0.1))  # its first scan finds the file
        let_time_pass(1.0)
        assert path not in outbox.enqueued()
    wait_enqueued(outbox, path)


@pytest.mark.skipif(not LINUX, reason="write and close events come from inotify")
def test_without_the_kernels_word_a_picture_written_since_its_close_counts_as_open(
    hot: Path,
    outbox: RecordingOutbox,
    start_watcher: StartWatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the kernel cannot tell (a file of another owner, a network file system), a file
    written to since its last close is held open by its writer: it waits for the close, even
    when what is there already looks whole."""
    monkeypatch.setattr("boothsync.watcher.writer_holds", lambda path: None)
    start_watcher(watch_of(hot, settle_seconds=0.1))
    path = hot / "IMG_0001.jpg"
    with path.open("wb") as handle:
        handle.write(PICTURE)
        handle.flush()
        let_time_pass(1.0)
        assert path not in outbox.enqueued()
        handle.write(b"a trailer the booth adds before it closes")
    wait_enqueued(outbox, path)
    assert outbox.enqueued()[path] == [(path.stat().st_size, path.stat().st_mtime_ns)]


@pytest.mark.skipif(not LINUX, reason="the kernel's word on writers is Linux's (file leases)")
def test_a_file_held_open_past_the_cap_goes_with_a_warning_naming_it(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher, caplog: Any
) -> None:
    """A booth program that never closes its file still gets it out: after the open-for-writing
    cap the settle rules decide, and one warning names the file."""
    path = write(hot / "IMG_0001.jpg")
    with caplog.at_level(logging.WARNING, logger="boothsync.watcher"), path.open("ab"):
        start_watcher(watch_of(hot, settle_seconds=0.1), open_cap=0.5)
        wait_enqueued(outbox, path)
    assert f"{path} has been open for writing" in caplog.text


def test_picture_closed_and_reopened_to_append_is_queued_only_whole(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """A JPEG whose writer closes it halfway and reopens it 0.6 s later to append the rest is
    never queued halfway: its end marker is missing until the second write."""
    watcher = start_watcher(watch_of(hot, settle_seconds=0.2))
    path = hot / "IMG_0001.jpg"
    data = jpeg(os.urandom(60_000))
    path.write_bytes(data[:30_000])
    let_time_pass(0.6)
    with path.open("ab") as handle:
        handle.write(data[30_000:])

    wait_enqueued(outbox, path)
    settle_down(watcher, outbox, path)
    assert outbox.enqueued() == {path: [(len(data), path.stat().st_mtime_ns)]}


def mp4_box(kind: bytes, body: bytes, *, size: int | None = None) -> bytes:
    return (len(body) + 8 if size is None else size).to_bytes(4, "big") + kind + body


def test_video_streamed_with_its_index_last_is_queued_only_whole(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """An MP4 written the way ffmpeg writes one (media data in pieces with pauses, the index
    box last, then the media box's size patched in its header), closed after every piece, is
    queued once: when its boxes add up, index included."""
    watcher = start_watcher(watch_of(hot, settle_seconds=0.2, patterns=("*.mp4",)))
    path = hot / "boomerang.mp4"
    media = os.urandom(90_000)
    head = mp4_box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41")
    path.write_bytes(head + mp4_box(b"mdat", b"", size=0))  # size 0 until it is known
    for piece in pieces_of(media, 3):
        with path.open("ab") as handle:
            handle.write(piece)
        let_time_pass(0.6)
        assert path not in outbox.enqueued()
    with path.open("ab") as handle:
        handle.write(mp4_box(b"moov", mp4_box(b"mvhd", bytes(100))))
    let_time_pass(0.6)
    assert path not in outbox.enqueued()
    with path.open("r+b") as handle:  # the header patched last
        handle.seek(len(head))
        handle.write((len(media) + 8).to_bytes(4, "big"))

    wait_enqueued(outbox, path)
    settle_down(watcher, outbox, path)
    assert outbox.enqueued() == {path: [(path.stat().st_size, path.stat().st_mtime_ns)]}


def test_picture_cut_short_for_good_still_goes_with_a_warning_naming_it(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher, caplog: Any
) -> None:
    """A truncated JPEG that nobody finishes goes as it is once it has stood still for the
    incomplete wait: a damaged picture still belongs in the gallery, and one warning says so."""
    with caplog.at_level(logging.WARNING, logger="boothsync.watcher"):
        start_watcher(watch_of(hot, settle_seconds=0.1), incomplete_wait=0.5)
        path = write(hot / "IMG_0001.jpg", PICTURE[:-500])
        wait_enqueued(outbox, path)
    assert f"{path} looks cut short" in caplog.text


def test_picture_renamed_in_while_cut_short_waits_for_the_rest(
    hot: Path, tmp_path: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """A rename into the folder is complete at once only when what was renamed looks whole."""
    start_watcher(watch_of(hot, settle_seconds=0.1))
    data = jpeg(os.urandom(20_000))
    staging = tmp_path / "staging.jpg"
    staging.write_bytes(data[:10_000])
    path = hot / "IMG_0001.jpg"
    staging.rename(path)
    let_time_pass(0.5)
    assert path not in outbox.enqueued()
    with path.open("ab") as handle:
        handle.write(data[10_000:])
    wait_enqueued(outbox, path)
    assert outbox.enqueued()[path] == [(len(data), path.stat().st_mtime_ns)]


# -- subfolders ------------------------------------------------------------------------------

SKIPPED = [
    "@eaDir/IMG_1.jpg/SYNOPHOTO_THUMB_XL.jpg",
    "raw/2024-05-01-12-00-00_01.jpg",
    "RAW/upper.jpg",
    "forget/discarded.jpg",
    ".hidden/x.jpg",
    "#recycle/x.jpg",
    "$RECYCLE.BIN/x.jpg",
    "System Volume Information/x.jpg",
    "uploaded/done.jpg",
    "Prints/raw/deep.jpg",
]


@WATCHDOG_REREGISTERS
def test_recursive_watch_takes_every_subfolder_except_the_skipped_ones(
    tmp_path: Path, hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """With recursive = true, pictures in subfolders at any depth are queued, ones there at
    start, written later, in new folders and in folders moved in; never any in @eaDir, raw,
    forget, hidden folders, recycle bins, System Volume Information or the move_to folder."""
    there = tree(hot, "root.jpg", "Prints/a.jpg", "Prints/2024/05/b.jpg", *SKIPPED)
    elsewhere = tmp_path / "elsewhere"
    moved_in = tree(elsewhere, "batch/c.jpg", "batch/inner/d.jpg", "batch/raw/no.jpg")[:2]
    watcher = start_watcher(
        watch_of(hot, recursive=True, after_upload="move", move_to=hot / "uploaded")
    )
    wait_enqueued(outbox, *there[:3])

    later = tree(hot, "Prints/e.jpg", "New/Deeper/f.jpg", "raw/g.jpg", "@eaDir/h.jpg")[:2]
    os.replace(elsewhere / "batch", hot / "batch")
    moved_in = [hot / p.relative_to(elsewhere) for p in moved_in]

    wait_enqueued(outbox, *later, *moved_in)
    settle_down(watcher, outbox, there[0])

    assert sorted(outbox.enqueued()) == sorted([*there[:3], *later, *moved_in])
    assert all(len(versions) == 1 for versions in outbox.enqueued().values())


def test_watch_that_is_not_recursive_never_takes_a_file_in_a_subfolder(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """Without recursive, only the folder's own pictures are queued, never its subfolders'."""
    tree(hot, "Prints/old.jpg")
    watcher = start_watcher(watch_of(hot))
    (hot / "New").mkdir()
    tree(hot, "Prints/new.jpg", "New/new.jpg")
    top = write(hot / "top.jpg")

    wait_enqueued(outbox, top)
    settle_down(watcher, outbox, top)

    assert list(outbox.enqueued()) == [top]


@WATCHDOG_REREGISTERS
def test_folder_of_another_watch_inside_a_recursive_one_belongs_to_that_watch(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """A watched folder inside a recursive watch is left to its own watch and destinations."""
    inner = hot / "Prints"
    inner.mkdir()
    there = write(inner / "there.jpg")
    watcher = start_watcher(
        watch_of(hot, recursive=True, destinations=("outer",)),
        watch_of(inner, destinations=("inner",)),
    )
    outer_file = write(hot / "outer.jpg")
    inner_file = write(inner / "inner.jpg")

    wait_enqueued(outbox, there, outer_file, inner_file)
    settle_down(watcher, outbox, outer_file)

    jobs = outbox.claim_all()
    assert {path: [(job.watch, job.destination) for job in js] for path, js in jobs.items()} == {
        there: [(str(inner), "inner")],
        outer_file: [(str(hot), "outer")],
        inner_file: [(str(inner), "inner")],
    }


@WATCHDOG_REREGISTERS
def test_subfolder_albums_route_pictures_to_their_album(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """A picture goes to its first-level subfolder's album (names case-insensitive), at any
    depth below it; pictures in the folder itself or other subfolders go to the watch's album.
    """
    start_watcher(
        watch_of(
            hot,
            recursive=True,
            album_id="watch-album",
            albums={"Prints": "prints-album", "Originals": "originals-album"},
            destinations=("gallery", "backup"),
        )
    )
    paths = tree(hot, "root.jpg", "prints/a.jpg", "ORIGINALS/2024/b.jpg", "Other/c.jpg")

    wait_enqueued(outbox, *paths)

    jobs = outbox.claim_all()
    albums = {p.relative_to(hot).as_posix(): {j.album_id for j in jobs[p]} for p in paths}
    assert albums == {
        "root.jpg": {"watch-album"},
        "prints/a.jpg": {"prints-album"},
        "ORIGINALS/2024/b.jpg": {"originals-album"},
        "Other/c.jpg": {"watch-album"},
    }
    assert all(sorted(j.destination for j in jobs[p]) == ["backup", "gallery"] for p in paths)


@WATCHDOG_REREGISTERS
def test_without_an_album_the_destination_album_applies(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """A picture outside the albums map, in a watch without album_id, has no album of its own."""
    start_watcher(watch_of(hot, recursive=True, albums={"Prints": "p"}))
    path = tree(hot, "Other/x.jpg")[0]

    wait_enqueued(outbox, path)

    assert [job.album_id for job in outbox.claim_all()[path]] == [None]


def test_each_folder_is_scanned_again_at_its_own_interval(
    tmp_path: Path, hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """scan_interval is per watch: a folder with a short one is rescanned often, the other not."""
    slow = tmp_path / "slow"
    slow.mkdir()
    markers = []
    for folder in (hot, slow):
        marker = write(folder / "marker.jpg")
        st = marker.stat()
        outbox.add(marker, size=st.st_size, mtime_ns=st.st_mtime_ns, watch="x", destinations={})
        markers.append(marker)

    start_watcher(watch_of(hot, scan_interval=0.05), watch_of(slow, scan_interval=300))
    wait_for(lambda: outbox.lookup_count(markers[0]) >= 5, what="a few rescans of the fast one")

    assert outbox.lookup_count(markers[1]) == 1


# -- notify(): the booth software says a file is done -----------------------------------------


def test_notified_file_is_queued_without_events_or_settling(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """A file named by notify() is queued after the quiet window, with no event and no settle.

    Polling every minute with a 30 s settle time, nothing but the notification can queue it
    within the few seconds allowed.
    """
    watcher = start_watcher(watch_of(hot, poll=True, poll_interval=60, settle_seconds=LONG_SETTLE))
    path = write(hot / "print.jpg")
    notified = time.monotonic()

    assert watcher.notify(path)

    wait_enqueued(outbox, path, timeout=10)
    assert outbox.first_queued_at[path] - notified >= CLOSE_QUIET
    assert outbox.enqueued()[path] == [(path.stat().st_size, path.stat().st_mtime_ns)]


@WATCHDOG_REREGISTERS
def test_notified_path_as_a_string_in_a_subfolder_is_queued_with_its_album(
    hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """notify() takes the path as the booth software writes it, a string in native form."""
    watcher = start_watcher(
        watch_of(
            hot,
            recursive=True,
            poll=True,
            poll_interval=60,
            settle_seconds=LONG_SETTLE,
            albums={"Prints": "p"},
        )
    )
    path = tree(hot, "Prints/x.jpg")[0]

    assert watcher.notify(os.path.join(str(hot), "Prints", "..", "Prints", "x.jpg"))

    wait_enqueued(outbox, path, timeout=10)
    assert [job.album_id for job in outbox.claim_all()[path]] == ["p"]


def test_notify_refuses_anything_but_a_picture_of_a_watched_folder(
    tmp_path: Path, hot: Path, outbox: RecordingOutbox
) -> None:
    """notify() says False, and does nothing, for paths that are not the watcher's to take."""
    deep = tmp_path / "deep"
    watcher = Watcher([watch_of(hot), watch_of(deep, recursive=True)], outbox)

    assert watcher.notify(hot / "x.jpg")
    assert watcher.notify(str(hot / "X.JPG"))
    assert watcher.notify(deep / "Prints" / "2024" / "x.jpg")
    refused = [
        "",
        "x.jpg",
        "hot/x.jpg",
        str(hot / "x.jpg") + "\0",
        str(hot / "notes.txt"),
        str(hot / ".hidden.jpg"),
        str(hot / "x.jpg.tmp"),
        str(hot / "sub" / "x.jpg"),
        str(hot / ".." / "elsewhere" / "x.jpg"),
        str(tmp_path / "x.jpg"),
        str(hot),
        str(deep / "raw" / "x.jpg"),
        str(deep / "Prints" / "@eaDir" / "x.jpg"),
        str(deep / ".git" / "x.jpg"),
    ]
    assert [p for p in refused if watcher.notify(p)] == []


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

    start_watcher(watch_of(later, scan_interval=0.1), watch_of(hot, scan_interval=0.1))
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
    start_watcher(watch_of(hot, scan_interval=0.2))
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
    wait_enqueued(outbox, path, timeout=10)


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


def test_a_queue_that_failed_for_good_is_not_tried_again_for_each_picture(
    hot: Path,
    outbox: RecordingOutbox,
    start_watcher: StartWatcher,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the queue cannot be written (its owner stops on ``failure`` with one line), the
    watcher neither tries to add the pictures that settle meanwhile nor logs an error for
    each: they stay in the folder for the next start's scan."""
    caplog.set_level(logging.INFO, logger="boothsync.watcher")
    outbox.failure = OutboxError("queue database outbox.sqlite3: the disk is full")
    offered: list[Path] = []
    original = Watcher._enqueue

    def noting(watcher: Watcher, batch: Any, *, failed: bool = False) -> Any:
        offered.extend(path for path, _ in batch)
        return original(watcher, batch, failed=failed)

    monkeypatch.setattr(Watcher, "_enqueue", noting)
    start_watcher(watch_of(hot, settle_seconds=0.1))
    paths = [write(hot / f"guest-{i}.jpg") for i in range(5)]

    wait_for(lambda: set(paths) <= set(offered), timeout=10, what="every picture to settle")
    assert outbox.batches == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def burst_behind_a_held_add(
    tmp_path: Path, hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher, count: int
) -> list[Path]:
    """One picture renamed in, its add held up; ``count`` more renamed in meanwhile and seen
    by the watcher; then the add goes on. Returns every target."""
    staging = tmp_path / "staging"
    staging.mkdir()
    sources = [write(staging / f"IMG_{i:04d}.jpg", PICTURE + bytes([i])) for i in range(count + 1)]
    watcher = start_watcher(watch_of(hot, settle_seconds=LONG_SETTLE))
    outbox.hold = threading.Event()
    targets = [hot / source.name for source in sources]
    os.replace(sources[0], targets[0])
    wait_for(outbox.adding.is_set, timeout=5, what="the first add to begin")
    for source, target in zip(sources[1:], targets[1:], strict=True):
        os.replace(source, target)
    # The watcher's own queue of notifications: the renames are all in it, none handled yet.
    wait_for(lambda: len(watcher._hints) >= count, timeout=5, what="the renames to be seen")
    outbox.hold.set()
    return targets


@pytest.mark.skipif(not LINUX, reason="renames are reported as such by inotify only")
def test_a_burst_renamed_in_is_queued_in_one_transaction(
    tmp_path: Path, hot: Path, outbox: RecordingOutbox, start_watcher: StartWatcher
) -> None:
    """Pictures renamed in while the watcher was busy are queued together, one add_many()
    for all of them, each picture once."""
    targets = burst_behind_a_held_add(tmp_path, hot, outbox, start_watcher, 60)
    wait_enqueued(outbox, *targets, timeout=10)
    assert outbox.batches == [1, 60]
    assert all(len(outbox.enqueued()[t]) == 1 for t in targets)


@pytest.mark.skipif(not LINUX, reason="renames are reported as such by inotify only")
def test_a_failed_batch_is_retried_for_each_of_its_pictures(
    tmp_path: Path,
    hot: Path,
    outbox: RecordingOutbox,
    start_watcher: StartWatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When the add of a batch fails, every picture of it gets its error line and is queued
    by a later try, once."""
    caplog.set_level(logging.INFO, logger="boothsync.watcher")
    count = 20
    original = outbox.add_many
    calls = 0

    def fail_the_second(files: Sequence[NewFile]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 2:
            outbox.fail_adds = 1
        return original(files)

    outbox.add_many = fail_the_second  # type: ignore[method-assign]
    targets = burst_behind_a_held_add(tmp_path, hot, outbox, start_watcher, count)
    wait_enqueued(outbox, *targets, timeout=10)
    assert outbox.batches[:2] == [1, count]
    assert all(len(outbox.enqueued()[t]) == 1 for t in targets)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == count
    assert all(str(t) in "\n".join(errors) for t in targets[1:])


def test_stop_joins_every_thread_and_can_be_called_twice(
    tmp_path: Path, hot: Path, outbox: RecordingOutbox
) -> None:
    """stop() ends every thread the watcher started, watchdog's own included; the worker,
    the observers and their emitters are named watcher…; twice is harmless."""
    before = set(threading.enumerate())
    watcher = Watcher(
        [watch_of(hot), watch_of(tmp_path / "missing"), replace(watch_of(hot), poll=True)],
        outbox,
    )
    watcher.start()
    wait_for(watcher.ready.is_set, timeout=5, what="the watcher to be ready")
    started = [t for t in threading.enumerate() if t not in before]
    names = {t.name for t in started}
    assert {
        "watcher",
        "watcher-0-observer",
        "watcher-0-emitter",
        "watcher-2-observer",
        "watcher-2-emitter",
    } <= names, names

    watcher.stop()
    watcher.stop()

    assert not [t for t in started if t.is_alive()]


class _StuckObserver(PollingObserver):
    """A polling observer whose stop blocks until ``release`` is set (as a watchdog release
    whose stop hangs would)."""

    release = threading.Event()

    def on_thread_stop(self) -> None:
        self.release.wait(30)
        super().on_thread_stop()


def test_stop_is_bounded_when_the_observer_stop_blocks(
    hot: Path, outbox: RecordingOutbox, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """An observer whose stop() never returns costs Watcher.stop() its timeout and one
    warning, not a daemon that cannot stop."""
    monkeypatch.setattr(
        "boothsync.watcher._new_observer", lambda watch: _StuckObserver(timeout=0.1)
    )
    _StuckObserver.release.clear()
    watcher = Watcher([watch_of(hot)], outbox)
    watcher.start()
    wait_for(watcher.ready.is_set, timeout=5, what="the watcher to be ready")
    stopper = threading.Thread(target=watcher.stop, kwargs={"timeout": 1.0}, name="test-stop")
    try:
        with caplog.at_level(logging.WARNING, logger="boothsync.watcher"):
            stopper.start()
            wait_for(lambda: not stopper.is_alive(), timeout=10, what="stop() to return")
        assert "did not stop within" in caplog.text
    finally:
        # Let the stuck stop finish, so the test leaves no thread behind.
        _StuckObserver.release.set()
        stopper.join(10)


def test_stop_before_start_is_harmless(hot: Path, outbox: RecordingOutbox) -> None:
    """A watcher that never started can be stopped, and cannot be started afterwards."""
    watcher = Watcher([watch_of(hot)], outbox)
    watcher.stop()
    with pytest.raises(RuntimeError):
        watcher.start()


def test_missing_folders_lists_the_folders_missing_now(
    tmp_path: Path, hot: Path, start_watcher: StartWatcher
) -> None:
    """missing_folders() names a folder missing at start, forgets it once it is created, and
    names a folder deleted while watched."""
    later = tmp_path / "later"
    watcher = start_watcher(watch_of(later, scan_interval=0.1), watch_of(hot, scan_interval=0.1))
    assert watcher.missing_folders() == [later]

    later.mkdir()
    wait_for(lambda: watcher.missing_folders() == [], what="the created folder to be found")

    shutil.rmtree(hot)
    wait_for(lambda: watcher.missing_folders() == [hot], what="the deleted folder to be missed")
