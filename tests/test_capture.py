"""Capture time and content type: generated pictures, real camera files checked
against exiftool, and damaged input that must never stop an upload."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import piexif
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, features

from boothsync.capture import Capture, capture_time, content_type
from boothsync.errors import SourceFileError

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "exif-samples"
BERLIN = ZoneInfo("Europe/Berlin")
# A fixed "now" keeps the verdict on future-dated files independent of the day the suite runs.
NOW = datetime(2025, 6, 1, tzinfo=UTC).timestamp()
SOURCES = {"exif:DateTimeOriginal", "exif:DateTimeDigitized", "exif:DateTime", "mtime"}

ORIGINAL = piexif.ExifIFD.DateTimeOriginal
DIGITIZED = piexif.ExifIFD.DateTimeDigitized
MODIFIED = piexif.ImageIFD.DateTime


def ms(
    year: int, month: int, day: int, hour: int, minute: int, second: int, *, tz: tzinfo = UTC
) -> int:
    """Unix milliseconds of a wall-clock time in ``tz``."""
    return round(datetime(year, month, day, hour, minute, second, tzinfo=tz).timestamp() * 1000)


def exif_block(
    exif: Mapping[int, object] | None = None, ifd0: Mapping[int, object] | None = None
) -> bytes:
    """An APP1 payload ("Exif\\0\\0" + big-endian TIFF) written by piexif."""
    block: bytes = piexif.dump({"0th": dict(ifd0 or {}), "Exif": dict(exif or {})})
    return block


def write_jpeg(path: Path, block: bytes | None = None) -> Path:
    image = Image.new("RGB", (8, 8), "white")
    if block is None:
        image.save(path, "JPEG")
    else:
        image.save(path, "JPEG", exif=block)
    return path


def set_mtime(path: Path, when_ms: int) -> None:
    os.utime(path, ns=(when_ms * 1_000_000, when_ms * 1_000_000))


def mtime_ms(path: Path) -> int:
    return os.stat(path).st_mtime_ns // 1_000_000


def app1_span(data: bytes) -> tuple[int, int]:
    """Start and end offsets of the APP1 "Exif" segment of a JPEG."""
    start = data.index(b"\xff\xe1")
    while data[start + 4 : start + 10] != b"Exif\x00\x00":
        start = data.index(b"\xff\xe1", start + 2)
    (length,) = struct.unpack(">H", data[start + 2 : start + 4])
    return start, start + 2 + length


def patch_entry(
    block: bytes, tag: int, *, typ: int | None = None, count: int | None = None
) -> bytes:
    """Rewrite the type or count of one IFD entry in a big-endian piexif block."""
    for typ_now in range(1, 13):
        at = block.find(struct.pack(">HH", tag, typ_now), 14)
        if at >= 0:
            break
    else:
        raise AssertionError(f"tag {tag:#x} not in block")
    patched = bytearray(block)
    if typ is not None:
        patched[at + 2 : at + 4] = struct.pack(">H", typ)
    if count is not None:
        patched[at + 4 : at + 8] = struct.pack(">L", count)
    return bytes(patched)


# ---------------------------------------------------------------------------
# Generated pictures


def test_original_is_read_in_the_booth_zone_in_summer(tmp_path: Path) -> None:
    """A DateTimeOriginal without offset is Berlin summer time (UTC+2) for a Berlin booth."""
    path = write_jpeg(tmp_path / "a.jpg", exif_block({ORIGINAL: "2024:07:15 12:00:00"}))
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 15, 10, 0, 0), "exif:DateTimeOriginal"
    )


def test_original_is_read_in_the_booth_zone_in_winter(tmp_path: Path) -> None:
    """The same wall-clock time in January is UTC+1."""
    path = write_jpeg(tmp_path / "a.jpg", exif_block({ORIGINAL: "2024:01:15 12:00:00"}))
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 1, 15, 11, 0, 0), "exif:DateTimeOriginal"
    )


def test_original_in_another_zone(tmp_path: Path) -> None:
    """The zone passed in decides, not the machine's zone."""
    path = write_jpeg(tmp_path / "a.jpg", exif_block({ORIGINAL: "2024:07:15 12:00:00"}))
    result = capture_time(path, ZoneInfo("America/New_York"), now=NOW)
    assert result.taken_at_ms == ms(2024, 7, 15, 16, 0, 0)


@pytest.mark.parametrize(
    ("stamp", "expected_utc"),
    [
        # 02:30 does not exist on the spring-forward night: fold=0 reads it with the
        # offset before the change (+01:00).
        ("2024:03:31 02:30:00", (2024, 3, 31, 1, 30, 0)),
        # 02:30 happens twice on the fall-back night: fold=0 is the first one (+02:00).
        ("2024:10:27 02:30:00", (2024, 10, 27, 0, 30, 0)),
    ],
)
def test_dst_gap_and_overlap_use_fold_zero(
    tmp_path: Path, stamp: str, expected_utc: tuple[int, ...]
) -> None:
    """A local time in a DST gap or overlap is read as datetime does with fold=0."""
    path = write_jpeg(tmp_path / "a.jpg", exif_block({ORIGINAL: stamp}))
    assert capture_time(path, BERLIN, now=NOW).taken_at_ms == ms(*expected_utc)


@pytest.mark.parametrize(
    ("subsec", "millis"),
    [("5", 500), ("05", 50), ("123", 123), ("123456", 123), ("00", 0), ("", 0), ("1a", 0)],
)
def test_subsec_is_a_decimal_fraction(tmp_path: Path, subsec: str, millis: int) -> None:
    """SubSecTimeOriginal adds milliseconds: "5" is 500, "05" is 50, digits past three are cut."""
    block = exif_block({ORIGINAL: "2024:07:15 12:00:00", piexif.ExifIFD.SubSecTimeOriginal: subsec})
    path = write_jpeg(tmp_path / "a.jpg", block)
    assert capture_time(path, BERLIN, now=NOW).taken_at_ms == ms(2024, 7, 15, 10, 0, 0) + millis


@pytest.mark.parametrize(
    ("offset", "expected_utc"),
    [
        ("+02:00", (2024, 1, 15, 10, 0, 0)),
        ("-05:30", (2024, 1, 15, 17, 30, 0)),
        ("+0900", (2024, 1, 15, 3, 0, 0)),
        ("Z", (2024, 1, 15, 12, 0, 0)),
    ],
)
def test_offset_time_overrides_the_zone(
    tmp_path: Path, offset: str, expected_utc: tuple[int, ...]
) -> None:
    """OffsetTimeOriginal, when the camera wrote it, beats the booth's zone."""
    block = exif_block({ORIGINAL: "2024:01:15 12:00:00", piexif.ExifIFD.OffsetTimeOriginal: offset})
    path = write_jpeg(tmp_path / "a.jpg", block)
    assert capture_time(path, BERLIN, now=NOW).taken_at_ms == ms(*expected_utc)


@pytest.mark.parametrize("offset", ["", "   :  ", "+25:00", "02:00", "CET"])
def test_unusable_offset_falls_back_to_the_zone(tmp_path: Path, offset: str) -> None:
    """A blank or nonsensical OffsetTimeOriginal is ignored; the time itself still counts."""
    block = exif_block({ORIGINAL: "2024:01:15 12:00:00", piexif.ExifIFD.OffsetTimeOriginal: offset})
    path = write_jpeg(tmp_path / "a.jpg", block)
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 1, 15, 11, 0, 0), "exif:DateTimeOriginal"
    )


def test_subsec_and_offset_together(tmp_path: Path) -> None:
    """Fraction and offset combine."""
    block = exif_block(
        {
            ORIGINAL: "2024:01:15 12:00:00",
            piexif.ExifIFD.SubSecTimeOriginal: "25",
            piexif.ExifIFD.OffsetTimeOriginal: "-03:00",
        }
    )
    path = write_jpeg(tmp_path / "a.jpg", block)
    assert capture_time(path, BERLIN, now=NOW).taken_at_ms == ms(2024, 1, 15, 15, 0, 0) + 250


def test_falls_back_to_digitized(tmp_path: Path) -> None:
    """Without DateTimeOriginal, DateTimeDigitized with its own fraction and offset is used."""
    block = exif_block(
        {
            DIGITIZED: "2024:07:15 12:00:00",
            piexif.ExifIFD.SubSecTimeDigitized: "7",
            piexif.ExifIFD.OffsetTimeDigitized: "+01:00",
            # The Original's companions must not leak into the Digitized time.
            piexif.ExifIFD.SubSecTimeOriginal: "3",
            piexif.ExifIFD.OffsetTimeOriginal: "-08:00",
        },
        ifd0={MODIFIED: "2024:08:01 09:00:00"},
    )
    path = write_jpeg(tmp_path / "a.jpg", block)
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 15, 11, 0, 0) + 700, "exif:DateTimeDigitized"
    )


def test_falls_back_to_datetime(tmp_path: Path) -> None:
    """Without Original and Digitized, IFD0 DateTime with SubSecTime and OffsetTime is used."""
    block = exif_block(
        {piexif.ExifIFD.SubSecTime: "123", piexif.ExifIFD.OffsetTime: "+05:00"},
        ifd0={MODIFIED: "2024:07:15 12:00:00"},
    )
    path = write_jpeg(tmp_path / "a.jpg", block)
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 15, 7, 0, 0) + 123, "exif:DateTime"
    )


def test_datetime_alone_is_read_in_the_zone(tmp_path: Path) -> None:
    """Booth software that writes only IFD0 DateTime still gets its time, in the booth zone."""
    path = write_jpeg(tmp_path / "a.jpg", exif_block(ifd0={MODIFIED: "2024:07:15 12:00:00"}))
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 15, 10, 0, 0), "exif:DateTime"
    )


def test_falls_back_to_mtime_without_exif(tmp_path: Path) -> None:
    """A JPEG without EXIF gets its file modification time, to the millisecond."""
    path = write_jpeg(tmp_path / "a.jpg")
    set_mtime(path, ms(2024, 7, 15, 10, 0, 0) + 456)
    assert capture_time(path, BERLIN, now=NOW) == Capture(ms(2024, 7, 15, 10, 0, 0) + 456, "mtime")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "    :  :     :  :  ",
        "0000:00:00 00:00:00",
        "1980:01:01 00:00:00",
        "1989:12:31 22:59:59",
        "2999:01:01 00:00:00",
        "2025:06:03 00:00:00",
        "2024:02:30 10:00:00",
        "2024:13:01 10:00:00",
        "yesterday",
        "2024:07:15",
    ],
)
def test_untrustworthy_original_is_skipped(tmp_path: Path, bad: str) -> None:
    """A blank, zero, pre-1990, far-future or unparsable DateTimeOriginal yields to the next one."""
    block = exif_block({ORIGINAL: bad, DIGITIZED: "2024:07:15 12:00:00"})
    path = write_jpeg(tmp_path / "a.jpg", block)
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 15, 10, 0, 0), "exif:DateTimeDigitized"
    )


def test_every_exif_time_untrustworthy_gives_mtime(tmp_path: Path) -> None:
    """When all three EXIF times are unusable, the mtime is used."""
    block = exif_block(
        {ORIGINAL: "0000:00:00 00:00:00", DIGITIZED: "1980:01:01 00:00:00"},
        ifd0={MODIFIED: "2099:01:01 00:00:00"},
    )
    path = write_jpeg(tmp_path / "a.jpg", block)
    set_mtime(path, ms(2024, 7, 15, 10, 0, 0))
    assert capture_time(path, BERLIN, now=NOW) == Capture(ms(2024, 7, 15, 10, 0, 0), "mtime")


def test_future_limit_is_one_day_after_now(tmp_path: Path) -> None:
    """A time up to a day ahead of now is trusted (zones, clock drift); beyond that it is not."""
    path = write_jpeg(tmp_path / "a.jpg", exif_block({ORIGINAL: "2024:07:15 12:00:00"}))
    taken = ms(2024, 7, 15, 10, 0, 0)
    assert capture_time(path, BERLIN, now=(taken - 86_400_000) / 1000).source == (
        "exif:DateTimeOriginal"
    )
    assert capture_time(path, BERLIN, now=(taken - 86_400_001) / 1000).source == "mtime"


def test_now_defaults_to_the_clock(tmp_path: Path) -> None:
    """Without ``now``, a time ten years ahead of the real clock is not trusted."""
    ahead = datetime.now(UTC) + timedelta(days=3650)
    path = write_jpeg(
        tmp_path / "a.jpg", exif_block({ORIGINAL: ahead.strftime("%Y:%m:%d %H:%M:%S")})
    )
    assert capture_time(path, BERLIN).source == "mtime"


@pytest.mark.parametrize(
    "stamp",
    [
        "2024-07-15 12:00:00",
        "2024:07:15 12:00:00\x00\x00\x00",
        "2024:07:15 12:00:00   ",
        b"2024:07:15 12:00:00\x00 junk after the terminator",
    ],
)
def test_date_separators_and_padding(tmp_path: Path, stamp: str | bytes) -> None:
    """'-' as date separator, trailing NULs and spaces are accepted; text after a NUL is ignored."""
    path = write_jpeg(tmp_path / "a.jpg", exif_block({ORIGINAL: stamp}))
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 15, 10, 0, 0), "exif:DateTimeOriginal"
    )


def test_png_exif_chunk(tmp_path: Path) -> None:
    """A PNG's eXIf chunk is read."""
    path = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(path, exif=exif_block({ORIGINAL: "2024:07:15 12:00:00"}))
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 15, 10, 0, 0), "exif:DateTimeOriginal"
    )


def test_png_exif_chunk_after_image_data(tmp_path: Path) -> None:
    """An eXIf chunk after IDAT (older writers put it there) is found by seeking past the data."""
    path = tmp_path / "a.png"
    Image.new("RGB", (64, 64)).save(path)
    data = path.read_bytes()
    tiff = exif_block({ORIGINAL: "2024:07:15 12:00:00"})[6:]
    chunk = struct.pack(">L", len(tiff)) + b"eXIf" + tiff + b"\x00\x00\x00\x00"
    iend = data.rindex(b"IEND") - 4
    assert data.index(b"IDAT") < iend
    path.write_bytes(data[:iend] + chunk + data[iend:])
    assert capture_time(path, BERLIN, now=NOW).source == "exif:DateTimeOriginal"


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_webp_exif_chunk(tmp_path: Path) -> None:
    """A WebP's EXIF chunk is read."""
    path = tmp_path / "a.webp"
    Image.new("RGB", (8, 8)).save(path, exif=exif_block({ORIGINAL: "2024:07:15 12:00:00"}))
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 15, 10, 0, 0), "exif:DateTimeOriginal"
    )


def test_gif_uses_mtime(tmp_path: Path) -> None:
    """A GIF has no EXIF: its mtime is the capture time."""
    path = tmp_path / "a.gif"
    Image.new("P", (8, 8)).save(path)
    set_mtime(path, ms(2024, 7, 15, 10, 0, 0))
    assert capture_time(path, BERLIN, now=NOW) == Capture(ms(2024, 7, 15, 10, 0, 0), "mtime")


def test_mp4_uses_mtime(tmp_path: Path) -> None:
    """Video containers get their mtime for now."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64))
    set_mtime(path, ms(2024, 7, 15, 10, 0, 0))
    assert capture_time(path, BERLIN, now=NOW) == Capture(ms(2024, 7, 15, 10, 0, 0), "mtime")


def test_content_decides_not_the_extension(tmp_path: Path) -> None:
    """A JPEG saved as .png (or without extension) still has its EXIF read."""
    block = exif_block({ORIGINAL: "2024:07:15 12:00:00"})
    for name in ("really-a-jpeg.png", "no-extension"):
        path = write_jpeg(tmp_path / "a.jpg", block).rename(tmp_path / name)
        assert capture_time(path, BERLIN, now=NOW).source == "exif:DateTimeOriginal"


def test_exif_after_other_app_segments(tmp_path: Path) -> None:
    """APP0, an XMP APP1 and an APP2 before the Exif APP1 are stepped over."""
    jpeg = write_jpeg(tmp_path / "plain.jpg").read_bytes()
    block = exif_block({ORIGINAL: "2024:07:15 12:00:00"})
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"
    segments = b"".join(
        b"\xff" + marker + struct.pack(">H", len(body) + 2) + body
        for marker, body in ((b"\xe1", xmp), (b"\xe2", bytes(3000)), (b"\xe1", block))
    )
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg[:2] + b"\xff\xff" + segments + jpeg[2:])  # with a fill byte
    assert capture_time(path, BERLIN, now=NOW).source == "exif:DateTimeOriginal"


def test_exif_beyond_the_scan_limit_is_not_searched(tmp_path: Path) -> None:
    """The segment walk stops after 256 KiB: a file that is not a camera JPEG costs little."""
    jpeg = write_jpeg(tmp_path / "plain.jpg").read_bytes()
    filler = (b"\xff\xe2" + struct.pack(">H", 65535) + bytes(65533)) * 5
    block = exif_block({ORIGINAL: "2024:07:15 12:00:00"})
    app1 = b"\xff\xe1" + struct.pack(">H", len(block) + 2) + block
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg[:2] + filler + app1 + jpeg[2:])
    assert capture_time(path, BERLIN, now=NOW).source == "mtime"


def test_wrong_type_for_original_falls_through(tmp_path: Path) -> None:
    """A DateTimeOriginal stored as numbers instead of text is skipped, not crashed on."""
    block = exif_block({ORIGINAL: "2024:07:15 12:00:00", DIGITIZED: "2024:07:16 12:00:00"})
    path = write_jpeg(tmp_path / "a.jpg", patch_entry(block, ORIGINAL, typ=3))  # SHORT
    assert capture_time(path, BERLIN, now=NOW).source == "exif:DateTimeDigitized"


def test_huge_count_on_another_tag_is_harmless(tmp_path: Path) -> None:
    """A 4-billion-element count on one tag neither allocates it nor hides the other tags."""
    block = exif_block(
        {
            ORIGINAL: "2024:07:15 12:00:00",
            piexif.ExifIFD.ISOSpeedRatings: 100,
        }
    )
    block = patch_entry(block, piexif.ExifIFD.ISOSpeedRatings, count=0xFFFFFFFF)
    path = write_jpeg(tmp_path / "a.jpg", block)
    assert capture_time(path, BERLIN, now=NOW).source == "exif:DateTimeOriginal"


def test_huge_count_on_the_time_itself(tmp_path: Path) -> None:
    """A DateTimeOriginal claiming 4 billion characters is skipped."""
    block = exif_block({ORIGINAL: "2024:07:15 12:00:00", DIGITIZED: "2024:07:16 12:00:00"})
    path = write_jpeg(tmp_path / "a.jpg", patch_entry(block, ORIGINAL, count=0xFFFFFFFF))
    assert capture_time(path, BERLIN, now=NOW).source == "exif:DateTimeDigitized"


def test_exif_pointer_out_of_range_keeps_ifd0_datetime(tmp_path: Path) -> None:
    """A broken pointer to the Exif directory still leaves IFD0's DateTime usable."""
    block = exif_block({ORIGINAL: "2024:07:15 12:00:00"}, ifd0={MODIFIED: "2024:07:16 12:00:00"})
    at = block.index(struct.pack(">HHL", piexif.ImageIFD.ExifTag, 4, 1))
    broken = block[: at + 8] + struct.pack(">L", 0x7FFFFFF0) + block[at + 12 :]
    path = write_jpeg(tmp_path / "a.jpg", broken)
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 16, 10, 0, 0), "exif:DateTime"
    )


def test_exif_pointer_loop_terminates(tmp_path: Path) -> None:
    """An Exif directory pointer that points back at IFD0 ends in a result, not a loop."""
    block = exif_block({ORIGINAL: "2024:07:15 12:00:00"}, ifd0={MODIFIED: "2024:07:16 12:00:00"})
    at = block.index(struct.pack(">HHL", piexif.ImageIFD.ExifTag, 4, 1))
    looped = block[: at + 8] + struct.pack(">L", 8) + block[at + 12 :]
    path = write_jpeg(tmp_path / "a.jpg", looped)
    assert capture_time(path, BERLIN, now=NOW).source == "exif:DateTime"


def test_damaged_exif_logs_one_warning_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Unreadable EXIF is reported once per file, with its path, and the mtime is used."""
    jpeg = write_jpeg(tmp_path / "plain.jpg").read_bytes()
    payload = b"Exif\x00\x00XX\x00*not a tiff header at all"
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    path = tmp_path / "damaged.jpg"
    path.write_bytes(jpeg[:2] + app1 + jpeg[2:])
    caplog.set_level(logging.DEBUG, logger="boothsync.capture")
    assert capture_time(path, BERLIN, now=NOW).source == "mtime"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()


# ---------------------------------------------------------------------------
# Files that are not pictures, or not there


def test_zero_byte_file(tmp_path: Path) -> None:
    """An empty file (the booth has only just created it) gets its mtime."""
    path = tmp_path / "empty.jpg"
    path.touch()
    assert capture_time(path, BERLIN, now=NOW) == Capture(mtime_ms(path), "mtime")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    """A text file with a picture's name gets its mtime."""
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    assert capture_time(path, BERLIN, now=NOW) == Capture(mtime_ms(path), "mtime")


def test_directory(tmp_path: Path) -> None:
    """A directory that matched a pattern gets its mtime rather than an error."""
    path = tmp_path / "folder.jpg"
    path.mkdir()
    assert capture_time(path, BERLIN, now=NOW) == Capture(mtime_ms(path), "mtime")


def test_vanished_file_raises_source_file_error(tmp_path: Path) -> None:
    """A file deleted before its upload raises SourceFileError naming it."""
    path = tmp_path / "gone.jpg"
    with pytest.raises(SourceFileError, match=r"gone\.jpg: vanished before upload"):
        capture_time(path, BERLIN, now=NOW)


@pytest.mark.skipif(
    sys.platform == "win32" or os.geteuid() == 0, reason="permissions do not bind root"
)
def test_unreadable_file_raises_source_file_error(tmp_path: Path) -> None:
    """A file the daemon may not read raises SourceFileError instead of guessing from the mtime."""
    path = write_jpeg(tmp_path / "locked.jpg", exif_block({ORIGINAL: "2024:07:15 12:00:00"}))
    path.chmod(0)
    try:
        with pytest.raises(SourceFileError, match=r"locked\.jpg: cannot be read"):
            capture_time(path, BERLIN, now=NOW)
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jpg", "image/jpeg"),
        ("A.JPEG", "image/jpeg"),
        ("a.Png", "image/png"),
        ("a.gif", "image/gif"),
        ("a.webp", "image/webp"),
        ("a.HEIC", "image/heic"),
        ("a.mp4", "video/mp4"),
        ("a.MOV", "video/quicktime"),
        ("a.tiff", "image/tiff"),
        ("a.tar.gz", "application/octet-stream"),
        ("a.unknown-ext", "application/octet-stream"),
        ("no-extension", "application/octet-stream"),
    ],
)
def test_content_type_by_extension(name: str, expected: str) -> None:
    """The content type follows the extension, case-insensitively, else a generic type."""
    assert content_type(Path(name)) == expected


# ---------------------------------------------------------------------------
# Real camera files against exiftool

SAMPLE_FILES = sorted(SAMPLES.glob("*.jpg")) if SAMPLES.is_dir() else []

# (source, exiftool tags of the time, its fraction and its offset), most trusted first.
# exiftool calls DateTimeDigitized "CreateDate" and DateTime "ModifyDate".
REFERENCE_RULES = (
    (
        "exif:DateTimeOriginal",
        "ExifIFD:DateTimeOriginal",
        "ExifIFD:SubSecTimeOriginal",
        "ExifIFD:OffsetTimeOriginal",
    ),
    (
        "exif:DateTimeDigitized",
        "ExifIFD:CreateDate",
        "ExifIFD:SubSecTimeDigitized",
        "ExifIFD:OffsetTimeDigitized",
    ),
    ("exif:DateTime", "IFD0:ModifyDate", "ExifIFD:SubSecTime", "ExifIFD:OffsetTime"),
)


@pytest.fixture(scope="module")
def exiftool_tags() -> dict[str, dict[str, Any]]:
    if not SAMPLE_FILES:
        pytest.skip(f"no sample pictures at {SAMPLES}")
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("exiftool is not on PATH (Debian: apt-get install libimage-exiftool-perl)")
    tags = [f"-EXIF:{name}" for _, *names in REFERENCE_RULES for name in names]
    run = subprocess.run(
        [exiftool, "-j", "-n", "-G1", "-a", "-q", "-q", *tags, *map(str, SAMPLE_FILES)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return {Path(entry["SourceFile"]).name: entry for entry in json.loads(run.stdout)}


def reference_time(tags: Mapping[str, Any], tz: tzinfo, now: float) -> tuple[int, str] | None:
    """The documented rule, applied independently to exiftool's raw values."""
    for source, stamp_key, subsec_key, offset_key in REFERENCE_RULES:
        stamp = str(tags.get(stamp_key, "")).split("\x00")[0].strip()
        try:
            naive = datetime.strptime(stamp.replace("-", ":"), "%Y:%m:%d %H:%M:%S")
        except ValueError:
            continue
        subsec = str(tags.get(subsec_key, "")).strip()
        millis = int((subsec + "000")[:3]) if subsec.isdigit() else 0
        offset = str(tags.get(offset_key, "")).strip()
        zone: tzinfo = tz
        if offset == "Z":
            zone = UTC
        elif len(offset) == 6 and offset[0] in "+-" and offset[3] == ":":
            minutes = int(offset[1:3]) * 60 + int(offset[4:6])
            zone = timezone(timedelta(minutes=-minutes if offset[0] == "-" else minutes))
        taken = round(naive.replace(tzinfo=zone).timestamp() * 1000) + millis
        if ms(1990, 1, 1, 0, 0, 0) <= taken <= round(now * 1000) + 86_400_000:
            return taken, source
    return None


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Los_Angeles"])
def test_samples_match_exiftool(exiftool_tags: dict[str, dict[str, Any]], zone: str) -> None:
    """Every sample camera file gets exactly the time and source that exiftool's values imply."""
    tz = ZoneInfo(zone)
    assert set(exiftool_tags) == {p.name for p in SAMPLE_FILES}
    for path in SAMPLE_FILES:
        expected = reference_time(exiftool_tags[path.name], tz, NOW)
        result = capture_time(path, tz, now=NOW)
        if expected is None:
            assert result == Capture(mtime_ms(path), "mtime"), path.name
        else:
            assert (result.taken_at_ms, result.source) == expected, path.name


@pytest.mark.skipif(not SAMPLE_FILES, reason=f"no sample pictures at {SAMPLES}")
def test_sample_with_clock_years_ahead_uses_datetime() -> None:
    """The Polaroid's DateTimeOriginal (2026-11-24) is not trusted before then; IFD0 DateTime is."""
    path = SAMPLES / "WWL_(Polaroid)_ION230.jpg"
    if not path.exists():
        pytest.skip(f"{path.name} not among the samples")
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2008, 7, 31, 17, 32, 6, tz=BERLIN), "exif:DateTime"
    )


# ---------------------------------------------------------------------------
# Damaged input never raises


def samples_with_exif() -> Iterator[tuple[Path, bytes, tuple[int, int]]]:
    for path in SAMPLE_FILES:
        data = path.read_bytes()
        try:
            yield path, data, app1_span(data)
        except ValueError:
            continue


@pytest.mark.skipif(not SAMPLE_FILES, reason=f"no sample pictures at {SAMPLES}")
def test_truncated_samples(tmp_path: Path) -> None:
    """A file cut anywhere (still being copied) gets a Capture; with all its EXIF, the right one."""
    target = tmp_path / "cut.jpg"
    for name in ("Canon_40D.jpg", "Nikon_D70.jpg", "kodak-dc210.jpg"):
        source = SAMPLES / name
        if not source.exists():
            continue
        data = source.read_bytes()
        _, end = app1_span(data)
        full = capture_time(source, BERLIN, now=NOW)
        cuts = [*range(0, 64), *range(64, end + 64, 97), end, len(data) // 2]
        for cut in cuts:
            target.write_bytes(data[:cut])
            result = capture_time(target, BERLIN, now=NOW)
            assert result.source in SOURCES, (name, cut)
            if cut >= end:
                assert result == full, (name, cut)


@pytest.mark.skipif(not SAMPLE_FILES, reason=f"no sample pictures at {SAMPLES}")
def test_flipped_bytes_in_exif_never_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Random damage in the EXIF segment of real files yields a Capture and at most one warning."""
    rng = random.Random(20240715)
    target = tmp_path / "mutated.jpg"
    caplog.set_level(logging.WARNING, logger="boothsync.capture")
    mutations = 0
    for path, data, (start, end) in samples_with_exif():
        # The first 64 bytes of the TIFF hold the header and IFD0's entries: hit them often.
        hot = min(end, start + 10 + 64)
        for _ in range(12):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                at = rng.randrange(start + 4, hot if rng.random() < 0.5 else end)
                mutated[at] = rng.randrange(256)
            target.write_bytes(mutated)
            caplog.clear()
            result = capture_time(target, BERLIN, now=NOW)
            assert isinstance(result, Capture), path.name
            assert result.source in SOURCES, path.name
            assert len(caplog.records) <= 1, path.name
            mutations += 1
    assert mutations >= 300


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    prefix=st.sampled_from([b"", b"II*\x00\x08\x00\x00\x00", b"MM\x00*\x00\x00\x00\x08"]),
    body=st.binary(max_size=600),
    length=st.one_of(st.none(), st.integers(min_value=0, max_value=0xFFFF)),
)
def test_arbitrary_exif_payload_never_raises(
    tmp_path: Path, prefix: bytes, body: bytes, length: int | None
) -> None:
    """Whatever follows a valid SOI and APP1 "Exif" header, capture_time returns a Capture."""
    payload = b"Exif\x00\x00" + prefix + body
    size = len(payload) + 2 if length is None else length
    path = tmp_path / "fuzz.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe1" + struct.pack(">H", size) + payload)
    result = capture_time(path, BERLIN, now=NOW)
    assert result.source in SOURCES
