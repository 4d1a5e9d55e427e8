"""Shrinking JPEGs for a slow link: smaller, upright, metadata kept, the original untouched."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path

import piexif
import pytest
from PIL import Image, ImageCms

from boothsync.capture import capture_time
from boothsync.downscale import downscale

TAKEN = datetime(2024, 5, 17, 21, 30, 15, tzinfo=UTC)
RED = (255, 0, 0)
BLUE = (0, 0, 255)


def write_jpeg(
    path: Path,
    size: tuple[int, int] = (4000, 3000),
    *,
    orientation: int | None = None,
    icc: bytes | None = None,
    xmp: bytes | None = None,
) -> Path:
    """A blue JPEG of ``size`` with a red block in its stored top-left corner and EXIF times."""
    image = Image.new("RGB", size, BLUE)
    image.paste(RED, (0, 0, size[0] // 4, size[1] // 4))
    stamp = TAKEN.strftime("%Y:%m:%d %H:%M:%S").encode()
    zeroth: dict[int, object] = {piexif.ImageIFD.Make: b"boothsync", piexif.ImageIFD.Model: b"t"}
    if orientation is not None:
        zeroth[piexif.ImageIFD.Orientation] = orientation
    exif = piexif.dump(
        {
            "0th": zeroth,
            "Exif": {
                piexif.ExifIFD.DateTimeOriginal: stamp,
                piexif.ExifIFD.OffsetTimeOriginal: b"+00:00",
            },
        }
    )
    options: dict[str, object] = {"quality": 90, "exif": exif}
    if icc is not None:
        options["icc_profile"] = icc
    if xmp is not None:
        options["xmp"] = xmp
    image.save(path, "JPEG", **options)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jpeg(tmp_path_factory.mktemp("large") / "IMG_0001.JPG")


def test_large_jpeg_is_shrunk_with_its_capture_time(large: Path, tmp_path: Path) -> None:
    """A 4000x3000 JPEG comes back 1600x1200, EXIF capture time readable, original unchanged."""
    before = sha256(large)
    small = downscale(large, max_edge=1600, quality=85, into=tmp_path / "out")
    assert small is not None
    assert small.parent == tmp_path / "out"
    with Image.open(small) as image:
        assert image.format == "JPEG"
        assert image.size == (1600, 1200)
    capture = capture_time(small, UTC)
    assert capture.source.startswith("exif:")
    assert capture.taken_at_ms == int(TAKEN.timestamp() * 1000)
    assert capture == capture_time(large, UTC)
    assert piexif.load(str(small))["0th"][piexif.ImageIFD.Make] == b"boothsync"
    assert sha256(large) == before
    assert small.stat().st_size < large.stat().st_size


def test_quality_is_honoured(large: Path, tmp_path: Path) -> None:
    """A lower quality gives a smaller file of the same size in pixels."""
    photo = tmp_path / "photo.jpg"
    image = Image.effect_noise((3000, 2000), 64).convert("RGB")
    image.save(photo, "JPEG", quality=95)
    low = downscale(photo, max_edge=1000, quality=20, into=tmp_path / "low")
    high = downscale(photo, max_edge=1000, quality=95, into=tmp_path / "high")
    assert low is not None and high is not None
    assert low.stat().st_size < high.stat().st_size


def test_portrait_stays_portrait_and_says_upright(tmp_path: Path) -> None:
    """A picture stored sideways with orientation 6 is turned upright, its EXIF then says 1."""
    original = write_jpeg(tmp_path / "portrait.jpg", orientation=6)
    before = sha256(original)
    small = downscale(original, max_edge=1600, quality=90, into=tmp_path / "out")
    assert small is not None
    with Image.open(small) as image:
        assert image.size == (1200, 1600)
        rgb = image.convert("RGB")
        # Orientation 6 shows the stored top-left corner at the top right.
        top_right = rgb.getpixel((1200 - 20, 20))
        top_left = rgb.getpixel((20, 20))
    assert isinstance(top_right, tuple) and isinstance(top_left, tuple)
    assert top_right[0] > 200 and top_right[2] < 60
    assert top_left[2] > 200 and top_left[0] < 60
    exif = piexif.load(str(small))
    assert exif["0th"][piexif.ImageIFD.Orientation] == 1
    assert exif["0th"][piexif.ImageIFD.Make] == b"boothsync"
    assert capture_time(small, UTC).taken_at_ms == int(TAKEN.timestamp() * 1000)
    assert sha256(original) == before


def test_icc_profile_and_xmp_are_kept(tmp_path: Path) -> None:
    """The colour profile and the XMP packet travel with the smaller copy."""
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:format="image/jpeg"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )
    original = write_jpeg(tmp_path / "colour.jpg", (2400, 1600), icc=icc, xmp=xmp)
    small = downscale(original, max_edge=1200, quality=85, into=tmp_path / "out")
    assert small is not None
    with Image.open(small) as image:
        assert image.size == (1200, 800)
        assert image.info.get("icc_profile") == icc
        assert b'dc:format="image/jpeg"' in image.info.get("xmp", b"")


def test_png_is_sent_as_it_is(tmp_path: Path) -> None:
    """A PNG (even one named .jpg) is not touched: None, nothing written."""
    png = tmp_path / "looks-like.jpg"
    Image.new("RGB", (4000, 3000), BLUE).save(png, "PNG")
    out = tmp_path / "out"
    assert downscale(png, max_edge=1600, quality=85, into=out) is None
    assert not out.exists() or not any(out.iterdir())


def test_small_jpeg_is_sent_as_it_is(tmp_path: Path) -> None:
    """A JPEG whose longer edge is not above max_edge gives None: the original goes."""
    small = write_jpeg(tmp_path / "small.jpg", (1600, 900))
    out = tmp_path / "out"
    assert downscale(small, max_edge=1600, quality=85, into=out) is None
    assert not out.exists() or not any(out.iterdir())


def test_corrupt_jpeg_gives_none_and_one_warning(
    large: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A JPEG cut short gives None and exactly one warning that names the file."""
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(large.read_bytes()[: large.stat().st_size // 3])
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="boothsync.downscale"):
        assert downscale(broken, max_edge=1600, quality=85, into=out) is None
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert str(broken) in warnings[0].getMessage()
    assert not out.exists() or not any(out.iterdir())


def test_garbage_named_jpeg_gives_none_and_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A .jpg that is no picture at all: None and one warning, never an exception."""
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)
    with caplog.at_level(logging.WARNING, logger="boothsync.downscale"):
        assert downscale(junk, max_edge=100, quality=85, into=tmp_path / "out") is None
    assert len([r for r in caplog.records if str(junk) in r.getMessage()]) == 1


def test_too_many_pixels_are_refused(
    large: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Above Pillow's decompression-bomb limit nothing is decoded: None and a warning."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000 * 3000 - 1)
    with (
        caplog.at_level(logging.WARNING, logger="boothsync.downscale"),
        pytest.warns(Image.DecompressionBombWarning),
    ):
        assert downscale(large, max_edge=1600, quality=85, into=tmp_path / "a") is None
    # Far above the limit Pillow refuses by itself; the answer is the same.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    with caplog.at_level(logging.WARNING, logger="boothsync.downscale"):
        assert downscale(large, max_edge=1600, quality=85, into=tmp_path / "b") is None
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(messages) == 2
    assert all(str(large) in m and "pixels" in m for m in messages)


def test_copies_of_the_same_picture_do_not_collide(large: Path, tmp_path: Path) -> None:
    """Two shrunk copies into one folder get two names; neither overwrites the other."""
    first = downscale(large, max_edge=800, quality=85, into=tmp_path)
    second = downscale(large, max_edge=400, quality=85, into=tmp_path)
    assert first is not None and second is not None and first != second
    with Image.open(first) as a, Image.open(second) as b:
        assert (a.size, b.size) == ((800, 600), (400, 300))


def intel_exif(*, orientation: int, make: bytes) -> bytes:
    """An EXIF block in Intel byte order: IFD0 with Make (ASCII) and Orientation (SHORT)."""
    entries = 2
    data_at = 8 + 2 + 12 * entries + 4
    ifd = entries.to_bytes(2, "little")
    ifd += (0x010F).to_bytes(2, "little") + (2).to_bytes(2, "little")
    ifd += len(make).to_bytes(4, "little") + data_at.to_bytes(4, "little")
    ifd += (0x0112).to_bytes(2, "little") + (3).to_bytes(2, "little")
    ifd += (1).to_bytes(4, "little") + orientation.to_bytes(2, "little") + b"\x00\x00"
    ifd += (0).to_bytes(4, "little")
    return b"Exif\x00\x00II*\x00" + (8).to_bytes(4, "little") + ifd + make


def test_little_endian_exif_turned_the_other_way(tmp_path: Path) -> None:
    """EXIF in Intel byte order with orientation 8: upright, marked 1, other tags unchanged."""
    image = Image.new("RGB", (3000, 2000), BLUE)
    image.paste(RED, (0, 0, 750, 500))
    raw = intel_exif(orientation=8, make=b"boothsync\x00")
    original = tmp_path / "left.jpg"
    image.save(original, "JPEG", exif=raw)
    small = downscale(original, max_edge=1500, quality=90, into=tmp_path / "out")
    assert small is not None
    with Image.open(small) as shrunk:
        assert shrunk.size == (1000, 1500)
        # Orientation 8 shows the stored top-left corner at the bottom left.
        bottom_left = shrunk.convert("RGB").getpixel((20, 1500 - 20))
        kept = shrunk.getexif()
        block = shrunk.info["exif"]
    assert isinstance(bottom_left, tuple) and bottom_left[0] > 200
    assert kept[0x0112] == 1 and kept[0x010F] == "boothsync"
    # Changed where it lay: every other byte of the block is the original's.
    assert block == intel_exif(orientation=1, make=b"boothsync\x00")
