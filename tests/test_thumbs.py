"""The dashboard's thumbnails, made with Pillow from real picture files in tmp_path."""

from __future__ import annotations

import logging
import os
import stat
import struct
import threading
import zlib
from pathlib import Path

import pytest
from PIL import Image

from boothsync.web.thumbs import Thumbnails

ORIENTATION = 0x0112


def picture(path: Path, size: tuple[int, int] = (1200, 800), *, orientation: int = 1) -> Path:
    """A JPEG of ``size`` pixels as stored, with an EXIF orientation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, (200, 40, 40))
    image.paste((20, 40, 200), (0, 0, size[0] // 2, size[1]))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    image.save(path, "JPEG", quality=90, exif=exif.tobytes())
    return path


def bomb(path: Path, width: int = 40_000, height: int = 40_000) -> Path:
    """A small PNG whose header claims ``width`` x ``height`` pixels: a decompression bomb."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (1, 1)).save(path, "PNG")
    data = bytearray(path.read_bytes())
    # The IHDR chunk follows the 8-byte signature: length, type, then width and height.
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(bytes(data))
    return path


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "boothsync.web.thumbs" and record.levelno == logging.WARNING
    ]


def leftovers(folder: Path) -> list[str]:
    """What is in the thumbnail folder besides thumbnails (temporary files)."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.removesuffix(".jpg").isdigit())


def test_a_thumbnail_is_made_once_and_kept(tmp_path: Path) -> None:
    """The first get() makes a small RGB JPEG named by the file id in a private folder; the
    second returns the same file untouched (same inode, same time), and made() finds it."""
    source = picture(tmp_path / "hot" / "IMG_1.jpg", (3000, 2000))
    folder = tmp_path / "state" / "thumbs"
    thumbs = Thumbnails(folder)
    assert thumbs.made(7) is None

    made = thumbs.get(7, source)
    assert made == folder / "7.jpg"
    with Image.open(made) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (320, 213))
    first = made.stat()
    if os.name == "posix":
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700

    assert thumbs.get(7, source) == made
    again = made.stat()
    assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    assert thumbs.made(7) == made
    assert Thumbnails(folder).made(7) == made
    assert leftovers(folder) == []


def test_the_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A picture stored landscape with EXIF orientation 6 (turned a quarter) is a portrait
    picture, and so is its thumbnail."""
    source = picture(tmp_path / "IMG_1.jpg", (1200, 800), orientation=6)
    made = Thumbnails(tmp_path / "thumbs", edge=240).get(1, source)
    assert made is not None
    with Image.open(made) as image:
        assert image.size == (160, 240)
        assert ORIENTATION not in image.getexif()


def test_a_picture_with_transparency_comes_out_on_white(tmp_path: Path) -> None:
    """A PNG (not a JPEG: no draft mode) with transparent parts gives an RGB thumbnail whose
    transparent parts are white."""
    source = tmp_path / "overlay.png"
    Image.new("RGBA", (400, 400), (0, 0, 0, 0)).save(source)
    made = Thumbnails(tmp_path / "thumbs", edge=100).get(3, source)
    assert made is not None
    with Image.open(made) as image:
        assert (image.mode, image.size) == ("RGB", (100, 100))
        pixel = image.getpixel((50, 50))
        assert isinstance(pixel, tuple) and min(pixel) > 240


def damaged(path: Path, kind: str) -> Path:
    """A file named like a picture that gives none: cut short, garbage, a video, a bomb."""
    if kind == "bomb":
        return bomb(path)
    whole = picture(path, (1600, 1200)).read_bytes()
    if kind == "truncated":
        path.write_bytes(whole[: len(whole) // 2])
    elif kind == "corrupt":
        path.write_bytes(whole[:2] + os.urandom(4096))
    elif kind == "video":
        path.write_bytes(b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(64))
    return path


@pytest.mark.parametrize("kind", ["truncated", "corrupt", "video", "bomb"])
def test_a_file_that_gives_no_picture_is_none_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """A truncated or corrupt JPEG, a video or a decompression bomb gives no thumbnail and
    raises nothing; one warning names the file, however often it is asked for."""
    source = damaged(tmp_path / "hot" / "IMG_1.jpg", kind)
    folder = tmp_path / "thumbs"
    thumbs = Thumbnails(folder)
    caplog.set_level(logging.WARNING)
    assert thumbs.get(5, source) is None
    assert thumbs.get(5, source) is None
    (line,) = warnings(caplog)
    assert str(source) in line
    assert thumbs.made(5) is None
    assert leftovers(folder) == []


def test_a_vanished_picture_is_none_until_it_is_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A picture that is gone gives None and one warning; should it come back (a share
    mounted again), it gets its thumbnail."""
    source = tmp_path / "hot" / "IMG_1.jpg"
    thumbs = Thumbnails(tmp_path / "thumbs")
    caplog.set_level(logging.WARNING)
    assert thumbs.get(1, source) is None
    assert thumbs.get(1, source) is None
    assert len(warnings(caplog)) == 1
    picture(source)
    assert thumbs.get(1, source) == tmp_path / "thumbs" / "1.jpg"


@pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW"), reason="no O_NOFOLLOW here")
def test_a_symbolic_link_is_never_followed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A picture's name that is a symbolic link gives no thumbnail, even to a real picture:
    a thumbnail must not show what a link points to."""
    target = picture(tmp_path / "elsewhere" / "private.jpg")
    source = tmp_path / "hot" / "IMG_1.jpg"
    source.parent.mkdir()
    source.symlink_to(target)
    thumbs = Thumbnails(tmp_path / "thumbs")
    caplog.set_level(logging.WARNING)
    assert thumbs.get(1, source) is None
    (line,) = warnings(caplog)
    assert str(source) in line and "symbolic link" in line
    assert thumbs.made(1) is None


def test_beyond_the_bound_the_oldest_thumbnails_go(tmp_path: Path) -> None:
    """Once the folder holds more than max_files thumbnails, the oldest (by modification time)
    are deleted; the one just made stays."""
    source = picture(tmp_path / "IMG_1.jpg", (400, 300))
    folder = tmp_path / "thumbs"
    thumbs = Thumbnails(folder, edge=64, max_files=3)
    for file_id, age in ((1, 300), (2, 100), (3, 200)):
        made = thumbs.get(file_id, source)
        assert made is not None
        os.utime(made, (1_000_000 - age, 1_000_000 - age))

    assert thumbs.get(4, source) == folder / "4.jpg"
    assert sorted(p.name for p in folder.iterdir()) == ["2.jpg", "3.jpg", "4.jpg"]
    assert thumbs.get(5, source) == folder / "5.jpg"
    assert sorted(p.name for p in folder.iterdir()) == ["2.jpg", "4.jpg", "5.jpg"]


def test_threads_asking_for_the_same_picture_make_it_once(tmp_path: Path) -> None:
    """Threads asking for one picture at the same moment all get the one whole thumbnail,
    made once (every thread sees the same file), and nothing half-written is left."""
    source = picture(tmp_path / "IMG_1.jpg", (2400, 1600))
    thumbs = Thumbnails(tmp_path / "thumbs")
    start = threading.Barrier(8)
    seen: list[tuple[Path | None, int]] = []
    lock = threading.Lock()

    def ask() -> None:
        start.wait()
        made = thumbs.get(9, source)
        inode = made.stat().st_ino if made is not None else -1
        with lock:
            seen.append((made, inode))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8
    assert {made for made, _ in seen} == {tmp_path / "thumbs" / "9.jpg"}
    assert len({inode for _, inode in seen}) == 1
    with Image.open(tmp_path / "thumbs" / "9.jpg") as image:
        image.load()
        assert image.size == (320, 213)
    assert leftovers(tmp_path / "thumbs") == []


def test_the_dashboard_makes_only_the_newest_thumbnails_of_a_burst(tmp_path: Path) -> None:
    """Of a burst of uploads, the thumbnails of the newest 24 (what the page shows) are made,
    once the uploads pause; the older ones cost nothing."""
    from types import SimpleNamespace

    from boothsync.paths import state_dir
    from boothsync.web.backend import RECENT_PICTURES, EngineBackend
    from tests.helpers import engine_config, wait_for

    config = engine_config(tmp_path, "http://127.0.0.1:9")
    pictures = []
    for number in range(30):
        picture = tmp_path / "hot" / f"IMG_{number}.jpg"
        Image.new("RGB", (64, 48), (number * 8, 80, 120)).save(picture)
        pictures.append(picture)
    backend = EngineBackend(lambda: None, lambda: config)
    backend.start()
    try:
        # The burst: 30 uploads reported back to back.
        for number, picture in enumerate(pictures):
            job = SimpleNamespace(file_id=number, path=picture)
            backend.uploaded(SimpleNamespace(outcome="uploaded", job=job))
        folder = state_dir(config) / "thumbs"

        def made() -> set[str]:
            return {p.name for p in folder.glob("*.jpg")} if folder.is_dir() else set()

        wait_for(lambda: len(made()) == RECENT_PICTURES, timeout=15, what="the thumbnails")
        assert made() == {f"{number}.jpg" for number in range(30 - RECENT_PICTURES, 30)}
    finally:
        backend.close()
