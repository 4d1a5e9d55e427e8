"""The folder destination: exact copies, never an overwrite, never a second copy, clean errors."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from boothsync.destinations import UploadItem
from boothsync.destinations import folder as folder_module
from boothsync.destinations.folder import FolderConfig, FolderDestination, safe_name
from boothsync.errors import (
    DestinationUnavailable,
    NetworkError,
    RetryableError,
    SourceFileError,
    UploadError,
)
from boothsync.health import Health
from boothsync.outbox import Outbox
from boothsync.uploader import Uploader
from tests.helpers import queue, wait_for


def destination(root: Path, *, album_folders: bool = False) -> FolderDestination:
    return FolderDestination(FolderConfig(name="usb", path=root, album_folders=album_folders))


def item(path: Path, *, name: str | None = None, album_id: str | None = None) -> UploadItem:
    return UploadItem(
        path=path,
        file_name=name or path.name,
        size=path.stat().st_size,
        content_type="image/jpeg",
        taken_at_ms=None,
        album_id=album_id,
    )


def source(tmp_path: Path, content: bytes, name: str = "IMG_0001.jpg") -> Path:
    """A picture in its own source folder (so several may share one name)."""
    folder = tmp_path / "source" / hashlib.sha256(content).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path


def leftovers(folder: Path) -> list[Path]:
    """Temporary files anywhere below ``folder``."""
    return [p for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".part"]


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "usb"
    folder.mkdir()
    yield folder
    assert leftovers(folder) == [], "a temporary file was left behind"


def test_copy_is_byte_exact(tmp_path: Path, root: Path) -> None:
    """A picture larger than one chunk arrives with exactly its bytes, under its own name."""
    content = os.urandom(1024 * 1024 + 12345)
    path = source(tmp_path, content)
    destination(root).upload(item(path))
    assert [p.name for p in root.iterdir()] == ["IMG_0001.jpg"]
    assert (root / "IMG_0001.jpg").read_bytes() == content
    assert path.read_bytes() == content


def test_empty_file_is_copied(tmp_path: Path, root: Path) -> None:
    """A zero-byte file is copied too (and a second try of it is no second copy)."""
    path = source(tmp_path, b"", "empty.jpg")
    gallery = destination(root)
    gallery.upload(item(path))
    gallery.upload(item(path))
    assert [p.name for p in root.iterdir()] == ["empty.jpg"]


def test_taken_name_gets_a_number(tmp_path: Path, root: Path) -> None:
    """A name held by other content is never overwritten: " (1)", then " (2)" before the suffix."""
    (root / "IMG_0001.jpg").write_bytes(b"someone else's picture")
    first = source(tmp_path, b"first picture")
    second = source(tmp_path, b"second picture")
    gallery = destination(root)
    gallery.upload(item(first))
    gallery.upload(item(second))
    assert (root / "IMG_0001.jpg").read_bytes() == b"someone else's picture"
    assert (root / "IMG_0001 (1).jpg").read_bytes() == b"first picture"
    assert (root / "IMG_0001 (2).jpg").read_bytes() == b"second picture"


def test_name_without_extension_gets_a_number_at_the_end(tmp_path: Path, root: Path) -> None:
    """Without an extension the number goes at the end of the name."""
    (root / "capture").write_bytes(b"older")
    destination(root).upload(item(source(tmp_path, b"newer", "capture")))
    assert (root / "capture (1)").read_bytes() == b"newer"


def test_retry_of_the_same_content_makes_no_second_copy(tmp_path: Path, root: Path) -> None:
    """Sent again (a crash after the copy, before the queue heard of it): still one copy."""
    path = source(tmp_path, b"the picture" * 1000)
    gallery = destination(root)
    gallery.upload(item(path))
    gallery.upload(item(path))
    assert [p.name for p in root.iterdir()] == ["IMG_0001.jpg"]


def test_retry_finds_its_copy_under_a_numbered_name(tmp_path: Path, root: Path) -> None:
    """The earlier copy went to " (1)" (the name was taken): a retry finds it there."""
    (root / "IMG_0001.jpg").write_bytes(b"x" * 11)  # same size, other bytes
    path = source(tmp_path, b"the picture")
    gallery = destination(root)
    gallery.upload(item(path))
    gallery.upload(item(path))
    assert sorted(p.name for p in root.iterdir()) == ["IMG_0001 (1).jpg", "IMG_0001.jpg"]
    assert (root / "IMG_0001.jpg").read_bytes() == b"x" * 11


def test_album_folders(tmp_path: Path, root: Path) -> None:
    """With album_folders a picture with an album goes into a subfolder named after it."""
    path = source(tmp_path, b"party")
    destination(root, album_folders=True).upload(item(path, album_id="ceremony"))
    destination(root, album_folders=True).upload(item(source(tmp_path, b"x", "a.jpg")))
    destination(root).upload(item(source(tmp_path, b"y", "b.jpg"), album_id="ceremony"))
    assert (root / "ceremony" / "IMG_0001.jpg").read_bytes() == b"party"
    assert (root / "a.jpg").read_bytes() == b"x"  # no album: the folder itself
    assert (root / "b.jpg").read_bytes() == b"y"  # album_folders off


def test_album_and_file_names_stay_inside_the_folder(tmp_path: Path, root: Path) -> None:
    """An album id or a name with separators or characters a drive refuses is made safe."""
    path = source(tmp_path, b"odd", "12:30.jpg")
    destination(root, album_folders=True).upload(item(path, album_id="../x/y"))
    assert (root / "_x_y" / "12_30.jpg").read_bytes() == b"odd"
    assert not (tmp_path / "x").exists()
    assert safe_name("..") == "_" and safe_name("") == "_" and safe_name("a. ") == "a"
    assert safe_name(".hidden.jpg") == "hidden.jpg" and safe_name("con.jpg") == "_con.jpg"


def test_missing_folder_is_offline_and_the_probe_says_so(tmp_path: Path) -> None:
    """A folder that is not there is a NetworkError (offline) that says what to plug in."""
    missing = tmp_path / "unplugged"
    gallery = destination(missing)
    with pytest.raises(NetworkError, match="is not there"):
        gallery.upload(item(source(tmp_path, b"pic")))
    with pytest.raises(NetworkError, match=r"unplugged is not there \(a drive not plugged in"):
        gallery.probe()
    checks = gallery.check()
    assert [c.ok for c in checks] == [False] and "not mounted" in checks[0].detail
    missing.mkdir()
    gallery.probe()
    assert all(c.ok for c in gallery.check())


def test_a_file_where_the_folder_should_be_is_not_a_folder(tmp_path: Path) -> None:
    """A path that names a file is no folder: offline, probe fails, nothing is written."""
    blocker = tmp_path / "usb"
    blocker.write_bytes(b"not a folder")
    gallery = destination(blocker)
    with pytest.raises(NetworkError):
        gallery.probe()
    with pytest.raises(NetworkError):
        gallery.upload(item(source(tmp_path, b"pic")))
    assert blocker.read_bytes() == b"not a folder"


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root may write into a read-only folder; the mapping is tested by the next test",
)
def test_read_only_folder_pauses_the_destination(tmp_path: Path, root: Path) -> None:
    """A folder boothsync may not write into: DestinationUnavailable, and check says so."""
    root.chmod(0o555)
    try:
        gallery = destination(root)
        with pytest.raises(DestinationUnavailable, match="permission denied"):
            gallery.upload(item(source(tmp_path, b"pic")))
        assert [c.ok for c in gallery.check()] == [True, False]
    finally:
        root.chmod(0o755)


def refusing(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """Make creating files in the folder module fail with ``code``, as the filesystem would."""
    real_open = open

    def fake_open(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "x" in mode:
            raise OSError(code, os.strerror(code), str(file))
        return real_open(file, mode, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(folder_module, "open", fake_open, raising=False)


def test_permission_denied_pauses_the_destination(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EACCES while writing is DestinationUnavailable naming the folder; check reports it."""
    refusing(monkeypatch, errno.EACCES)
    gallery = destination(root)
    with pytest.raises(DestinationUnavailable, match=rf"cannot write into {root}: permission"):
        gallery.upload(item(source(tmp_path, b"pic")))
    checks = gallery.check()
    assert [c.ok for c in checks] == [True, False]
    assert "permission denied" in checks[1].detail
    assert list(root.iterdir()) == []


def test_full_disk_is_tried_again_and_leaves_nothing(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC (here at the flush to disk) is a RetryableError, and the partial copy is gone."""

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(folder_module.os, "fsync", full)
    with pytest.raises(RetryableError, match="is full") as caught:
        destination(root).upload(item(source(tmp_path, os.urandom(300_000))))
    assert type(caught.value) is RetryableError
    assert list(root.iterdir()) == []


def test_source_that_shrinks_fails_the_file_and_leaves_nothing(tmp_path: Path, root: Path) -> None:
    """A picture that is shorter than its size says: SourceFileError, no copy, no temp file."""
    path = source(tmp_path, b"0123456789")
    short = UploadItem(path, path.name, 20, "image/jpeg", None, None)
    with pytest.raises(SourceFileError):
        destination(root).upload(short)
    assert list(root.iterdir()) == []


def no_hard_links(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make os.link fail as on a FAT drive; returns a list counting the attempts."""
    calls: list[int] = []

    def refuse(src: object, dst: object) -> None:
        calls.append(1)
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(folder_module.os, "link", refuse)
    return calls


def test_without_hard_links_names_are_still_never_overwritten(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a filesystem without hard links: same results, and os.link is not asked again."""
    calls = no_hard_links(monkeypatch)
    (root / "IMG_0001.jpg").write_bytes(b"older")
    gallery = destination(root)
    path = source(tmp_path, b"newer picture")
    gallery.upload(item(path))
    gallery.upload(item(path))
    gallery.upload(item(source(tmp_path, b"third")))
    assert (root / "IMG_0001.jpg").read_bytes() == b"older"
    assert (root / "IMG_0001 (1).jpg").read_bytes() == b"newer picture"
    assert (root / "IMG_0001 (2).jpg").read_bytes() == b"third"
    assert len(calls) == 1


def race(root: Path, items: list[UploadItem], gallery: FolderDestination) -> None:
    """Upload every item at once from its own thread; re-raise what any of them raised."""
    start = threading.Barrier(len(items))
    errors: list[BaseException] = []

    def send(one: UploadItem) -> None:
        start.wait()
        try:
            gallery.upload(one)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(one,)) for one in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-hard-links"])
def test_eight_workers_with_one_name_lose_nothing(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch, links: bool
) -> None:
    """8 threads copy 8 different files of the same name at once: 8 files, each content once."""
    if not links:
        no_hard_links(monkeypatch)
    contents = [os.urandom(200_000) for _ in range(8)]
    race(root, [item(source(tmp_path, c)) for c in contents], destination(root))
    names = sorted(p.name for p in root.iterdir())
    assert names == sorted(["IMG_0001.jpg", *(f"IMG_0001 ({n}).jpg" for n in range(1, 8))])
    found = sorted(p.read_bytes() for p in root.iterdir())
    assert found == sorted(contents)


def test_eight_workers_with_the_same_picture_make_one_copy(tmp_path: Path, root: Path) -> None:
    """The same content sent by 8 threads at once ends up in the folder once."""
    path = source(tmp_path, os.urandom(500_000))
    race(root, [item(path) for _ in range(8)], destination(root))
    assert [p.name for p in root.iterdir()] == ["IMG_0001.jpg"]
    assert (root / "IMG_0001.jpg").read_bytes() == path.read_bytes()


def test_events_and_close(root: Path) -> None:
    """A folder has no events or albums to list, and nothing to close."""
    gallery = destination(root)
    assert gallery.events() == []
    assert gallery.type == "folder" and gallery.name == "usb"
    gallery.close()


# -- with the uploader ----------------------------------------------------------------------------


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "state" / "outbox.sqlite3")
    yield box
    box.close()


def running(outbox: Outbox, gallery: FolderDestination) -> Uploader:
    uploader = Uploader(
        outbox,
        {gallery.name: gallery},
        tz=ZoneInfo("UTC"),
        probe_base=0.05,
        probe_cap=0.1,
        job_backoff=lambda attempts: 0.05,
    )
    uploader.start()
    return uploader


def health_of(uploader: Uploader) -> Callable[[], Health]:
    return lambda: uploader.health()["usb"].health


def test_unplugged_drive_is_offline_until_it_is_back(tmp_path: Path, outbox: Outbox) -> None:
    """The uploader treats a missing folder as offline, probes, and copies once it is back."""
    drive = tmp_path / "drive"
    path = source(tmp_path, b"waiting picture")
    queue(outbox, path, "usb")
    uploader = running(outbox, destination(drive))
    try:
        wait_for(lambda: health_of(uploader)() is Health.OFFLINE, what="offline")
        assert outbox.stats().totals["waiting"] == 1
        drive.mkdir()
        wait_for(lambda: outbox.stats().totals["uploaded"] == 1, what="the copy")
        assert health_of(uploader)() is Health.ONLINE
    finally:
        uploader.stop(5)
    assert (drive / "IMG_0001.jpg").read_bytes() == b"waiting picture"


def test_folder_that_refuses_writes_pauses_the_destination(
    tmp_path: Path, root: Path, outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Permission denied pauses the destination (the file waits), not a failure of the file."""
    refusing(monkeypatch, errno.EACCES)
    queue(outbox, source(tmp_path, b"pic"), "usb")
    uploader = running(outbox, destination(root))
    try:
        wait_for(lambda: health_of(uploader)() is Health.UNAUTHORIZED, what="paused")
        assert outbox.stats().totals["failed"] == 0
        assert "permission denied" in uploader.health()["usb"].detail
    finally:
        uploader.stop(5)


def test_errors_are_upload_errors_only(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected OSError while writing comes out as an UploadError, never raw."""
    refusing(monkeypatch, errno.EIO)
    with pytest.raises(UploadError) as caught:
        destination(root).upload(item(source(tmp_path, b"pic")))
    assert not isinstance(caught.value, OSError)


def test_leftovers_of_an_unfinished_copy_are_removed(tmp_path: Path, root: Path) -> None:
    """A temporary file untouched for over an hour (a hard stop mid-copy) goes at the next copy;
    a fresh one (another booth's copy in progress) stays."""
    stale = root / ".IMG_0009.jpg.boothsync-0badc0de.part"
    fresh = root / ".IMG_0010.jpg.boothsync-00c0ffee.part"
    stale.write_bytes(b"half a pic")
    fresh.write_bytes(b"in progress")
    os.utime(stale, (1_000_000_000, 1_000_000_000))
    destination(root).upload(item(source(tmp_path, b"pic")))
    assert not stale.exists()
    assert fresh.exists()
    fresh.unlink()


def test_long_name_fits_the_temporary_name(tmp_path: Path, root: Path) -> None:
    """A name near the 255-byte limit, in multi-byte characters, still copies."""
    name = "ü" * 120 + ".jpg"  # 244 bytes in UTF-8
    destination(root).upload(item(source(tmp_path, b"long", name)))
    assert (root / name).read_bytes() == b"long"
