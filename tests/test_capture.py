"""Capture time and content type: generated pictures and videos, real camera files checked
against exiftool, and damaged input that must never stop an upload."""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import threading
import zlib
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

from boothsync import capture as capture_module
from boothsync.capture import (
    DEFAULT_FILENAME_DATES,
    Capture,
    CaptureOptions,
    capture_time,
    compile_filename_date,
    content_type,
    looks_whole,
    reset_clock_warning,
)
from boothsync.errors import SourceFileError

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "exif-samples"
BERLIN = ZoneInfo("Europe/Berlin")
# A fixed "now" keeps the verdict on future-dated files independent of the day the suite runs.
NOW = datetime(2025, 6, 1, tzinfo=UTC).timestamp()
SOURCES = {
    "exif:DateTimeOriginal",
    "exif:DateTimeDigitized",
    "exif:DateTime",
    "xmp:exif:DateTimeOriginal",
    "xmp:photoshop:DateCreated",
    "xmp:xmp:CreateDate",
    "filename",
    "video:mvhd",
    "mtime",
}

ORIGINAL = piexif.ExifIFD.DateTimeOriginal
DIGITIZED = piexif.ExifIFD.DateTimeDigitized
MODIFIED = piexif.ImageIFD.DateTime

XMP_NAMESPACES = {
    "exif": "http://ns.adobe.com/exif/1.0/",
    "photoshop": "http://ns.adobe.com/photoshop/1.0/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
}
XMP_KEYWORD = b"XML:com.adobe.xmp"
# QuickTime counts seconds from 1904-01-01 UTC.
MOVIE_EPOCH = datetime(1904, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fresh_clock_warning() -> Iterator[None]:
    """Each test starts as if the camera clock warning had not been given yet."""
    reset_clock_warning()
    yield
    reset_clock_warning()


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


def write_jpeg(path: Path, block: bytes | None = None, *, xmp: bytes | None = None) -> Path:
    image = Image.new("RGB", (8, 8), "white")
    extra: dict[str, bytes] = {}
    if block is not None:
        extra["exif"] = block
    if xmp is not None:
        extra["xmp"] = xmp
    image.save(path, "JPEG", **extra)
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


def xmp_packet(
    values: Mapping[str, str],
    *,
    form: str = "attribute",
    prefixes: Mapping[str, str] | None = None,
    bom: bool = True,
) -> bytes:
    """An XMP packet as Adobe lays it out, each property ("exif:DateTimeOriginal": value)
    written as an attribute of rdf:Description or as an element; ``prefixes`` renames the
    usual prefixes (``{"xmp": "xap"}``); ``bom`` puts the byte order mark into the header."""
    rename = dict(prefixes or {})

    def qname(name: str) -> str:
        prefix, local = name.split(":")
        return f"{rename.get(prefix, prefix)}:{local}"

    declarations = " ".join(
        f'xmlns:{rename.get(prefix, prefix)}="{uri}"' for prefix, uri in XMP_NAMESPACES.items()
    )
    if form == "attribute":
        attributes = "".join(f'\n    {qname(n)}="{v}"' for n, v in values.items())
        description = f'<rdf:Description rdf:about="" {declarations}{attributes}/>'
    else:
        elements = "".join(f"\n   <{qname(n)}>{v}</{qname(n)}>" for n, v in values.items())
        description = (
            f'<rdf:Description rdf:about="" {declarations}>{elements}\n  </rdf:Description>'
        )
    begin = "\ufeff" if bom else ""
    return (
        f'<?xpacket begin="{begin}" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
        f"  {description}\n"
        " </rdf:RDF>\n"
        "</x:xmpmeta>\n"
        '<?xpacket end="w"?>'
    ).encode()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">L", len(data)) + kind + data + struct.pack(">L", zlib.crc32(kind + data))


def xmp_chunk(packet: bytes, chunk: str = "iTXt") -> bytes:
    """A PNG chunk holding an XMP packet: "iTXt", "iTXt-z" (compressed), "zTXt" or "tEXt"."""
    if chunk == "iTXt":
        return png_chunk(b"iTXt", XMP_KEYWORD + b"\x00\x00\x00\x00\x00" + packet)
    if chunk == "iTXt-z":
        return png_chunk(b"iTXt", XMP_KEYWORD + b"\x00\x01\x00\x00\x00" + zlib.compress(packet))
    if chunk == "zTXt":
        return png_chunk(b"zTXt", XMP_KEYWORD + b"\x00\x00" + zlib.compress(packet))
    assert chunk == "tEXt"
    return png_chunk(b"tEXt", XMP_KEYWORD + b"\x00" + packet)


def write_png(
    path: Path, *chunks: bytes, after_image: bool = False, exif: bytes | None = None
) -> Path:
    """A small PNG with extra chunks before its image data (or after it)."""
    if exif is None:
        Image.new("RGB", (8, 8)).save(path, "PNG")
    else:
        Image.new("RGB", (8, 8)).save(path, "PNG", exif=exif)
    data = path.read_bytes()
    at = data.rindex(b"IEND") - 4 if after_image else data.index(b"IDAT") - 4
    path.write_bytes(data[:at] + b"".join(chunks) + data[at:])
    return path


def box(kind: bytes, body: bytes = b"") -> bytes:
    """An ISO base media box with a 32-bit size."""
    return struct.pack(">L", 8 + len(body)) + kind + body


def movie_seconds(when: datetime) -> int:
    """A moment as QuickTime seconds since 1904 (UTC)."""
    return int((when - MOVIE_EPOCH).total_seconds())


def mvhd(created: int, *, version: int = 0) -> bytes:
    """A movie header box with this creation (and modification) time."""
    if version == 0:
        times = struct.pack(">LLLL", created, created, 600, 0)
    else:
        times = struct.pack(">QQLQ", created, created, 600, 0)
    # rate, volume, reserved, matrix, pre-defined, next track id
    rest = struct.pack(">LH", 0x10000, 0x100) + bytes(10) + bytes(36) + bytes(24) + b"\0\0\0\2"
    return box(b"mvhd", bytes([version, 0, 0, 0]) + times + rest)


def movie(
    created: int, *, version: int = 0, brand: bytes = b"isom", before_moov: bytes = b""
) -> bytes:
    """ftyp, whatever comes before moov, then moov with user data and the movie header."""
    ftyp = box(b"ftyp", brand + b"\0\0\0\0" + brand + b"mp42")
    moov = box(b"moov", box(b"udta", box(b"free", bytes(6))) + mvhd(created, version=version))
    return ftyp + before_moov + moov


# A sparse 5 GiB mdat needs a 64-bit box size and is free on Linux and macOS; NTFS would
# write the zeros, so Windows gets a smaller one (still written with the 64-bit size).
BIG_MDAT = 5 * 2**30 if sys.platform != "win32" else 64 * 2**20


def write_movie_with_big_mdat(path: Path, created: int, *, decoy: int) -> Path:
    """ftyp, a huge mdat (64-bit size) that starts with a decoy moov, then the real moov.

    A reader that looked inside mdat would find the decoy's time; one that read it would
    take seconds and gigabytes."""
    with path.open("wb") as f:
        f.write(box(b"ftyp", b"isom\0\0\0\0isommp42"))
        f.write(struct.pack(">L", 1) + b"mdat" + struct.pack(">Q", 16 + BIG_MDAT))
        start = f.tell()
        f.write(box(b"moov", mvhd(decoy)))
        f.seek(start + BIG_MDAT)
        f.write(box(b"moov", mvhd(created)))
    return path


def damage_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "damaged metadata" in r.getMessage()]


def clock_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "camera_clock_offset" in r.getMessage()]


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


def test_mp4_without_movie_header_uses_mtime(tmp_path: Path) -> None:
    """A video container without a movie header gets its mtime."""
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
# XMP in JPEG, PNG and WebP


ALL_XMP = {
    "exif:DateTimeOriginal": "2024-07-15T12:00:00",
    "photoshop:DateCreated": "2024-07-16T12:00:00",
    "xmp:CreateDate": "2024-07-17T12:00:00",
}


@pytest.mark.parametrize("form", ["attribute", "element"])
def test_xmp_in_jpeg(tmp_path: Path, form: str) -> None:
    """A JPEG without EXIF times gets XMP exif:DateTimeOriginal, read in the booth zone."""
    path = write_jpeg(tmp_path / "a.jpg", xmp=xmp_packet(ALL_XMP, form=form))
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 15, 10, 0, 0), "xmp:exif:DateTimeOriginal"
    )


@pytest.mark.parametrize(
    ("present", "source", "day"),
    [
        (["photoshop:DateCreated", "xmp:CreateDate"], "xmp:photoshop:DateCreated", 16),
        (["xmp:CreateDate"], "xmp:xmp:CreateDate", 17),
    ],
)
def test_xmp_properties_in_order(tmp_path: Path, present: list[str], source: str, day: int) -> None:
    """Without exif:DateTimeOriginal, photoshop:DateCreated wins, then xmp:CreateDate."""
    packet = xmp_packet({name: ALL_XMP[name] for name in present})
    path = write_jpeg(tmp_path / "a.jpg", xmp=packet)
    assert capture_time(path, BERLIN, now=NOW) == Capture(ms(2024, 7, day, 10, 0, 0), source)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-07-15T12:00:00", ms(2024, 7, 15, 10, 0, 0)),
        ("2024-07-15T12:00:00.25", ms(2024, 7, 15, 10, 0, 0) + 250),
        ("2024-07-15T12:00:00.123456789", ms(2024, 7, 15, 10, 0, 0) + 123),
        ("2024-07-15T12:00:00Z", ms(2024, 7, 15, 12, 0, 0)),
        ("2024-07-15T12:00:00.5Z", ms(2024, 7, 15, 12, 0, 0) + 500),
        ("2024-07-15T12:00:00+05:30", ms(2024, 7, 15, 6, 30, 0)),
        ("2024-07-15T12:00:00-0800", ms(2024, 7, 15, 20, 0, 0)),
        ("2024-07-15T12:00:00.05-03:00", ms(2024, 7, 15, 15, 0, 0) + 50),
        ("2024-07-15T12:00", ms(2024, 7, 15, 10, 0, 0)),
        ("2024-07-15T12:00+01:00", ms(2024, 7, 15, 11, 0, 0)),
        ("2024:07:15 12:00:00", ms(2024, 7, 15, 10, 0, 0)),
        ("  2024-07-15T12:00:00  ", ms(2024, 7, 15, 10, 0, 0)),
        # An offset that is no offset is ignored, as for EXIF: the booth zone applies.
        ("2024-07-15T12:00:00+25:00", ms(2024, 7, 15, 10, 0, 0)),
    ],
)
def test_xmp_date_forms(tmp_path: Path, value: str, expected: int) -> None:
    """ISO 8601 with optional seconds, fraction and offset (Z, ±hh:mm, ±hhmm)."""
    path = write_jpeg(tmp_path / "a.jpg", xmp=xmp_packet({"exif:DateTimeOriginal": value}))
    assert capture_time(path, BERLIN, now=NOW) == Capture(expected, "xmp:exif:DateTimeOriginal")


@pytest.mark.parametrize(
    "bad",
    [
        "2024-07-15",  # a date alone: midnight would be a guess
        "2024-07",
        "",
        "0000-00-00T00:00:00",
        "1980-01-01T00:00:00",
        "2024-02-30T12:00:00",
        "2024-07-15T25:00:00",
        "2099-01-01T00:00:00",
        "2024-07-15T12:00:00 CEST",
        "&#50;024-07-15T12:00:00",
        "yesterday",
    ],
)
def test_untrustworthy_xmp_value_yields_to_the_next_property(tmp_path: Path, bad: str) -> None:
    """A date-only, zero, pre-1990, future or unparsable XMP date is skipped for the next one."""
    packet = xmp_packet({"exif:DateTimeOriginal": bad, "xmp:CreateDate": "2024-07-17T12:00:00"})
    path = write_jpeg(tmp_path / "a.jpg", xmp=packet)
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 17, 10, 0, 0), "xmp:xmp:CreateDate"
    )


def test_xmp_attribute_in_single_quotes_and_element_with_attributes(tmp_path: Path) -> None:
    """'...' around an attribute value and attributes on a property element are both read."""
    packet = (
        b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF><rdf:Description"
        b" xmlns:exif='http://ns.adobe.com/exif/1.0/' exif:DateTimeOriginal = '2024-07-15T12:00:00'"
        b" xmlns:xmp='http://ns.adobe.com/xap/1.0/'>"
        b"<xmp:CreateDate rdf:parseType='Literal'>\n  2024-07-17T12:00:00\n</xmp:CreateDate>"
        b"</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    path = write_jpeg(tmp_path / "a.jpg", xmp=packet)
    assert capture_time(path, BERLIN, now=NOW).source == "xmp:exif:DateTimeOriginal"
    path = write_jpeg(tmp_path / "b.jpg", xmp=packet.replace(b"exif:DateTime", b"exif:Other"))
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 17, 10, 0, 0), "xmp:xmp:CreateDate"
    )


def test_xmp_prefix_follows_the_namespace(tmp_path: Path) -> None:
    """Old Adobe files write xap:CreateDate: the namespace counts, not the prefix."""
    packet = xmp_packet({"xmp:CreateDate": "2024-07-17T12:00:00"}, prefixes={"xmp": "xap"})
    assert b"xap:CreateDate" in packet
    path = write_jpeg(tmp_path / "a.jpg", xmp=packet)
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 17, 10, 0, 0), "xmp:xmp:CreateDate"
    )


def test_xmp_lookalike_names_are_not_read(tmp_path: Path) -> None:
    """myexif:DateTimeOriginal and exif:DateTimeOriginalX are other properties."""
    packet = (
        b'<rdf:Description myexif:DateTimeOriginal="2024-07-15T12:00:00">'
        b"<exif:DateTimeOriginalX>2024-07-15T12:00:00</exif:DateTimeOriginalX>"
        b"</rdf:Description>"
    )
    path = write_jpeg(tmp_path / "a.jpg", xmp=packet)
    assert capture_time(path, BERLIN, now=NOW).source == "mtime"


def test_exif_beats_xmp(tmp_path: Path) -> None:
    """Even IFD0 DateTime, the weakest EXIF time, comes before any XMP time."""
    block = exif_block(ifd0={MODIFIED: "2024:07:20 12:00:00"})
    path = write_jpeg(tmp_path / "a.jpg", block, xmp=xmp_packet(ALL_XMP))
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 20, 10, 0, 0), "exif:DateTime"
    )


def test_xmp_segment_before_exif_segment(tmp_path: Path) -> None:
    """XMP and EXIF are both found whichever APP1 comes first."""
    jpeg = write_jpeg(tmp_path / "plain.jpg").read_bytes()
    xmp = b"http://ns.adobe.com/xap/1.0/\x00" + xmp_packet(ALL_XMP)
    block = exif_block(ifd0={MODIFIED: "bad"})
    segments = b"".join(
        b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body for body in (xmp, block)
    )
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg[:2] + segments + jpeg[2:])
    assert capture_time(path, BERLIN, now=NOW).source == "xmp:exif:DateTimeOriginal"


def test_extended_xmp_segment_is_not_the_packet(tmp_path: Path) -> None:
    """An APP1 of extended XMP (the overflow of a large packet) is not read as the packet."""
    jpeg = write_jpeg(tmp_path / "plain.jpg").read_bytes()
    body = b"http://ns.adobe.com/xmp/extension/\x00" + bytes(40) + xmp_packet(ALL_XMP)
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:])
    assert capture_time(path, BERLIN, now=NOW).source == "mtime"


@pytest.mark.parametrize("chunk", ["iTXt", "iTXt-z", "zTXt", "tEXt"])
@pytest.mark.parametrize("after_image", [False, True])
def test_xmp_in_png(tmp_path: Path, chunk: str, after_image: bool) -> None:
    """A PNG's XMP is read from iTXt (plain or compressed), zTXt or tEXt, before or after IDAT."""
    packet = xmp_packet(ALL_XMP, bom=chunk == "iTXt")
    path = write_png(tmp_path / "a.png", xmp_chunk(packet, chunk), after_image=after_image)
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 15, 10, 0, 0), "xmp:exif:DateTimeOriginal"
    )


def test_png_text_chunks_with_other_keywords_are_skipped(tmp_path: Path) -> None:
    """Other text chunks (a comment holding a date-like text) are not XMP."""
    fake = b"Comment\x00" + xmp_packet(ALL_XMP)
    path = write_png(
        tmp_path / "a.png",
        png_chunk(b"tEXt", fake),
        png_chunk(b"iTXt", b"XML:com.adobe.xmpX\x00\x00\x00\x00\x00" + xmp_packet(ALL_XMP)),
        xmp_chunk(xmp_packet({"xmp:CreateDate": "2024-07-17T12:00:00"})),
    )
    assert capture_time(path, BERLIN, now=NOW).source == "xmp:xmp:CreateDate"


def test_png_exif_beats_png_xmp(tmp_path: Path) -> None:
    """A PNG with both eXIf and XMP gets its EXIF time."""
    block = exif_block({ORIGINAL: "2024:07:20 12:00:00"})
    path = write_png(tmp_path / "a.png", xmp_chunk(xmp_packet(ALL_XMP)), exif=block)
    assert capture_time(path, BERLIN, now=NOW).source == "exif:DateTimeOriginal"


def test_compressed_xmp_is_inflated_at_most_one_mebibyte(tmp_path: Path) -> None:
    """A zTXt that inflates to 16 MiB costs 1 MiB: a date at its start is read, one later is not."""
    padding = b" " * (16 * 2**20)
    early = xmp_packet(ALL_XMP) + padding
    path = write_png(
        tmp_path / "a.png", png_chunk(b"zTXt", XMP_KEYWORD + b"\0\0" + zlib.compress(early))
    )
    assert capture_time(path, BERLIN, now=NOW).source == "xmp:exif:DateTimeOriginal"
    late = padding + xmp_packet(ALL_XMP)
    path = write_png(
        tmp_path / "b.png", png_chunk(b"zTXt", XMP_KEYWORD + b"\0\0" + zlib.compress(late))
    )
    assert capture_time(path, BERLIN, now=NOW).source == "mtime"


def test_xml_entities_are_not_expanded(tmp_path: Path) -> None:
    """A packet with an entity bomb is searched as text: nothing expands, the date is read."""
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
        + b"".join(
            b'<!ENTITY %c "%s">' % (98 + i, b"".join(b"&%c;" % (97 + i) for _ in range(10)))
            for i in range(9)
        )
        + b"]><x>&j;</x>"
    )
    path = write_jpeg(tmp_path / "a.jpg", xmp=bomb + xmp_packet(ALL_XMP))
    assert capture_time(path, BERLIN, now=NOW).source == "xmp:exif:DateTimeOriginal"


@pytest.mark.parametrize(
    "hostile",
    [
        b'exif:DateTimeOriginal="' * 40000,
        b"<exif:DateTimeOriginal " * 40000,
        b"<exif:DateTimeOriginal>" + b"9" * 900000,
        b'xmlns:exif="' * 80000,
    ],
)
def test_hostile_xmp_packet_is_searched_in_linear_time(tmp_path: Path, hostile: bytes) -> None:
    """Half-open attributes and elements over a whole packet neither hang nor crash."""
    path = write_png(tmp_path / "a.png", xmp_chunk(hostile))
    assert capture_time(path, BERLIN, now=NOW).source == "mtime"


def test_damaged_compressed_xmp_warns_once_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A zTXt XMP that does not inflate is one warning naming the file; the file name is next."""
    broken = png_chunk(b"zTXt", XMP_KEYWORD + b"\0\0" + b"\x78\x9c this is not deflate")
    path = write_png(tmp_path / "2024-07-15-12-00-00_pibooth.png", broken)
    caplog.set_level(logging.WARNING, logger="boothsync.capture")
    assert capture_time(path, BERLIN, now=NOW) == Capture(ms(2024, 7, 15, 10, 0, 0), "filename")
    assert len(caplog.records) == 1
    assert str(path) in caplog.records[0].getMessage()


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_xmp_in_webp(tmp_path: Path) -> None:
    """A WebP's XMP chunk is read too."""
    path = tmp_path / "a.webp"
    Image.new("RGB", (8, 8)).save(path, xmp=xmp_packet(ALL_XMP))
    assert capture_time(path, BERLIN, now=NOW).source == "xmp:exif:DateTimeOriginal"


# ---------------------------------------------------------------------------
# A date in the file name


@pytest.mark.parametrize(
    "name",
    [
        "2024-07-15-18-30-05_pibooth.jpg",
        "IMG_20240715_183005.jpg",
        "img_20240715_183005.JPG",
        "20240715_183005_WZQ22521.jpg",
        "PXL_20240715_183005123.jpg",
        "20240715-183005.jpg",
        "booth 2024-07-15_18-30-05.png",
        "2024-07-15 18.30.05.jpg",
        "WIN_20240715_18_30_05_Pro.jpg",
        "VID_20240715_183005.mp4",
    ],
)
def test_default_file_name_dates(tmp_path: Path, name: str) -> None:
    """pibooth, Breeze, phone and Windows camera names give their time, read in the booth zone."""
    path = tmp_path / name
    path.write_bytes(b"")
    assert capture_time(path, BERLIN, now=NOW) == Capture(
        ms(2024, 7, 15, 18, 30, 5, tz=BERLIN), "filename"
    )


@pytest.mark.parametrize(
    "name",
    [
        "booth_0001.jpg",
        "120240715_183005.jpg",  # a digit before the year: a counter, not a date
        "20241315_183005.jpg",  # month 13
        "20240715_253005.jpg",  # hour 25
        "2024-07-15.jpg",  # a date alone
        "19800101_000000.jpg",  # a camera that lost its clock
    ],
)
def test_names_without_a_usable_date_give_mtime(tmp_path: Path, name: str) -> None:
    """A name without a date, with digits that are no date, or an implausible one, is skipped."""
    path = tmp_path / name
    path.write_bytes(b"")
    set_mtime(path, ms(2024, 7, 15, 10, 0, 0))
    assert capture_time(path, BERLIN, now=NOW) == Capture(ms(2024, 7, 15, 10, 0, 0), "mtime")


def test_later_match_of_a_pattern_is_used(tmp_path: Path) -> None:
    """When the first date-like digits are not a date, a later match of the same pattern counts."""
    path = tmp_path / "20249999_999999-copy-20240715_183005.jpg"
    path.write_bytes(b"")
    assert capture_time(path, BERLIN, now=NOW).taken_at_ms == ms(2024, 7, 15, 18, 30, 5, tz=BERLIN)


def test_metadata_beats_the_file_name(tmp_path: Path) -> None:
    """XMP (and so EXIF) comes before the file name."""
    path = write_jpeg(tmp_path / "IMG_20240101_000000.jpg", xmp=xmp_packet(ALL_XMP))
    assert capture_time(path, BERLIN, now=NOW).source == "xmp:exif:DateTimeOriginal"


def test_custom_file_name_patterns(tmp_path: Path) -> None:
    """Configured patterns replace the defaults: literals match in any case, %S may be absent."""
    options = CaptureOptions(filename_dates=("Party_%d.%m.%Y_%Hh%M",))
    path = tmp_path / "party_15.07.2024_18H30.jpg"
    path.write_bytes(b"")
    assert capture_time(path, BERLIN, now=NOW, options=options) == Capture(
        ms(2024, 7, 15, 18, 30, 0, tz=BERLIN), "filename"
    )
    pibooth = tmp_path / "2024-07-15-18-30-05_pibooth.jpg"
    pibooth.write_bytes(b"")
    assert capture_time(pibooth, BERLIN, now=NOW, options=options).source == "mtime"


def test_file_name_dates_can_be_turned_off(tmp_path: Path) -> None:
    """No patterns, no file name dates."""
    path = tmp_path / "2024-07-15-18-30-05_pibooth.jpg"
    path.write_bytes(b"")
    options = CaptureOptions(filename_dates=())
    assert capture_time(path, BERLIN, now=NOW, options=options).source == "mtime"


def test_percent_sign_in_a_pattern(tmp_path: Path) -> None:
    """%% stands for one percent sign."""
    path = tmp_path / "100%_20240715183005.jpg"
    path.write_bytes(b"")
    options = CaptureOptions(filename_dates=("%%_%Y%m%d%H%M%S",))
    assert capture_time(path, BERLIN, now=NOW, options=options).source == "filename"


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("%Y-%b-%d %H%M", "unknown directive %b; only %Y %m %d %H %M %S and %% are allowed"),
        ("%y%m%d_%H%M%S", "unknown directive %y"),
        ("%Y%m%d_%H%M%S%", "ends in a lone %"),
        ("%Y%m%d_%H%M%S_%S", "%S appears twice"),
        ("%Y%m%d", "needs %H %M (only %S is optional)"),
        ("IMG_%H%M%S", "needs %Y %m %d"),
    ],
)
def test_invalid_file_name_patterns(pattern: str, problem: str) -> None:
    """Directives other than %Y %m %d %H %M %S and %% are refused, as are incomplete patterns."""
    with pytest.raises(ValueError, match=re.escape(problem)):
        compile_filename_date(pattern)
    with pytest.raises(ValueError, match=re.escape(problem)):
        CaptureOptions(filename_dates=(pattern,))


def test_patterns_are_compiled_once_per_list(tmp_path: Path) -> None:
    """Matching many files against one list compiles its patterns once, not once per file."""
    patterns = ("once_%Y%m%d_%H%M%S",)
    before = capture_module._filename_regexes.cache_info()
    for index in range(20):
        path = tmp_path / f"once_20240715_1830{index:02d}.jpg"
        path.write_bytes(b"")
        capture_time(path, BERLIN, now=NOW, options=CaptureOptions(filename_dates=patterns))
    after = capture_module._filename_regexes.cache_info()
    assert after.misses - before.misses == 1


# ---------------------------------------------------------------------------
# MP4 and MOV


@pytest.mark.parametrize("version", [0, 1])
def test_mp4_movie_header_time(tmp_path: Path, version: int) -> None:
    """The mvhd creation time (32-bit in version 0, 64-bit in version 1) is UTC."""
    created = movie_seconds(datetime(2024, 7, 15, 16, 30, 5, tzinfo=UTC))
    path = tmp_path / "clip.mp4"
    path.write_bytes(movie(created, version=version))
    assert capture_time(path, BERLIN, now=NOW) == Capture(ms(2024, 7, 15, 16, 30, 5), "video:mvhd")


def test_mdat_before_moov_is_seeked_over(tmp_path: Path) -> None:
    """A 5 GiB mdat with a 64-bit size before moov is skipped unread, decoy and all."""
    created = movie_seconds(datetime(2024, 7, 15, 16, 30, 5, tzinfo=UTC))
    decoy = movie_seconds(datetime(2020, 1, 1, tzinfo=UTC))
    path = write_movie_with_big_mdat(tmp_path / "clip.mp4", created, decoy=decoy)
    assert capture_time(path, BERLIN, now=NOW) == Capture(ms(2024, 7, 15, 16, 30, 5), "video:mvhd")


def test_mov_and_old_quicktime_layouts(tmp_path: Path) -> None:
    """A QuickTime .mov ("qt  " brand) and a file that starts with a wide box are read too."""
    created = movie_seconds(datetime(2024, 7, 15, 16, 30, 5, tzinfo=UTC))
    mov = tmp_path / "clip.mov"
    mov.write_bytes(movie(created, brand=b"qt  "))
    assert capture_time(mov, BERLIN, now=NOW).source == "video:mvhd"
    old = tmp_path / "old.mov"
    old.write_bytes(box(b"wide") + box(b"mdat", bytes(100)) + box(b"moov", mvhd(created)))
    assert capture_time(old, BERLIN, now=NOW).source == "video:mvhd"
    for name in ("clip.m4v", "clip.3gp", "no-extension"):
        path = tmp_path / name
        path.write_bytes(movie(created))
        assert capture_time(path, BERLIN, now=NOW).source == "video:mvhd"


def test_mdat_to_the_end_of_the_file(tmp_path: Path) -> None:
    """A last box of size 0 runs to the end of the file; moov before it is found."""
    created = movie_seconds(datetime(2024, 7, 15, 16, 30, 5, tzinfo=UTC))
    path = tmp_path / "clip.mp4"
    path.write_bytes(movie(created) + struct.pack(">L", 0) + b"mdat" + bytes(1000))
    assert capture_time(path, BERLIN, now=NOW).source == "video:mvhd"


def test_unset_movie_time_falls_back(tmp_path: Path) -> None:
    """A creation time of 0 (1904) means unset: the mtime is used, without a warning."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(movie(0))
    set_mtime(path, ms(2024, 7, 15, 10, 0, 0))
    assert capture_time(path, BERLIN, now=NOW) == Capture(ms(2024, 7, 15, 10, 0, 0), "mtime")


def test_file_name_beats_the_movie_header(tmp_path: Path) -> None:
    """The rule puts the file name before the container time."""
    created = movie_seconds(datetime(2024, 7, 15, 16, 30, 5, tzinfo=UTC))
    path = tmp_path / "VID_20240101_120000.mp4"
    path.write_bytes(movie(created))
    assert capture_time(path, BERLIN, now=NOW).source == "filename"


@pytest.mark.parametrize(
    "data",
    [
        movie(3_800_000_000)[:40],  # cut in moov
        movie(3_800_000_000)[:-90],  # cut in mvhd
        box(b"ftyp", b"isom") + struct.pack(">L", 4) + b"moov",  # smaller than its header
        box(b"ftyp", b"isom") + box(b"moov", struct.pack(">L", 999) + b"mvhd" + bytes(20)),
        box(b"ftyp", b"isom") + box(b"moov", box(b"mvhd", b"\x07\0\0\0" + bytes(16))),
    ],
)
def test_damaged_movie_boxes_warn_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, data: bytes
) -> None:
    """Truncated or inconsistent boxes give the mtime and at most one warning naming the file."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    caplog.set_level(logging.WARNING, logger="boothsync.capture")
    assert capture_time(path, BERLIN, now=NOW) == Capture(mtime_ms(path), "mtime")
    assert len(caplog.records) <= 1
    assert all(str(path) in r.getMessage() for r in caplog.records)


def test_many_empty_boxes_are_bounded(tmp_path: Path) -> None:
    """A file of a million empty boxes is given up on after a bounded number of them."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(box(b"ftyp", b"isom") + box(b"free") * 1_000_000 + movie(3_800_000_000))
    assert capture_time(path, BERLIN, now=NOW).source == "mtime"


# ---------------------------------------------------------------------------
# The camera clock offset


OFFSET = CaptureOptions(camera_clock_offset=timedelta(hours=1, minutes=2))
OFFSET_MS = (60 + 2) * 60 * 1000


@pytest.mark.parametrize(
    ("block", "source"),
    [
        (exif_block({ORIGINAL: "2024:07:15 12:00:00"}), "exif:DateTimeOriginal"),
        (exif_block({DIGITIZED: "2024:07:15 12:00:00"}), "exif:DateTimeDigitized"),
        (exif_block(ifd0={MODIFIED: "2024:07:15 12:00:00"}), "exif:DateTime"),
    ],
)
def test_offset_corrects_exif_times(tmp_path: Path, block: bytes, source: str) -> None:
    """camera_clock_offset is added to each EXIF time."""
    path = write_jpeg(tmp_path / "a.jpg", block)
    assert capture_time(path, BERLIN, now=NOW, options=OFFSET) == Capture(
        ms(2024, 7, 15, 10, 0, 0) + OFFSET_MS, source
    )


@pytest.mark.parametrize(
    "name", ["exif:DateTimeOriginal", "photoshop:DateCreated", "xmp:CreateDate"]
)
def test_offset_corrects_xmp_times(tmp_path: Path, name: str) -> None:
    """camera_clock_offset is added to each XMP time, offset or not."""
    path = write_jpeg(tmp_path / "a.jpg", xmp=xmp_packet({name: "2024-07-15T12:00:00Z"}))
    assert capture_time(path, BERLIN, now=NOW, options=OFFSET) == Capture(
        ms(2024, 7, 15, 12, 0, 0) + OFFSET_MS, f"xmp:{name}"
    )


def test_negative_offset(tmp_path: Path) -> None:
    """A camera running fast is corrected with a negative offset."""
    path = write_jpeg(tmp_path / "a.jpg", exif_block({ORIGINAL: "2024:07:15 12:00:00"}))
    options = CaptureOptions(camera_clock_offset=timedelta(seconds=-30))
    assert capture_time(path, BERLIN, now=NOW, options=options).taken_at_ms == (
        ms(2024, 7, 15, 10, 0, 0) - 30_000
    )


def test_offset_leaves_file_name_video_and_mtime_alone(tmp_path: Path) -> None:
    """The booth computer's clock needs no camera correction."""
    named = tmp_path / "IMG_20240715_183005.jpg"
    named.write_bytes(b"")
    assert capture_time(named, BERLIN, now=NOW, options=OFFSET).taken_at_ms == ms(
        2024, 7, 15, 18, 30, 5, tz=BERLIN
    )
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(movie(movie_seconds(datetime(2024, 7, 15, 16, 30, 5, tzinfo=UTC))))
    assert capture_time(clip, BERLIN, now=NOW, options=OFFSET).taken_at_ms == ms(
        2024, 7, 15, 16, 30, 5
    )
    plain = tmp_path / "plain.gif"
    Image.new("P", (8, 8)).save(plain)
    set_mtime(plain, ms(2024, 7, 15, 10, 0, 0))
    assert capture_time(plain, BERLIN, now=NOW, options=OFFSET) == Capture(
        ms(2024, 7, 15, 10, 0, 0), "mtime"
    )


def test_corrected_time_is_what_must_be_plausible(tmp_path: Path) -> None:
    """A camera reset to 1980 with the offset that fixes it is trusted; too far ahead is not."""
    path = write_jpeg(tmp_path / "a.jpg", exif_block({ORIGINAL: "1980:01:01 00:00:00"}))
    fix = datetime(2024, 7, 15, 12, 0, 0) - datetime(1980, 1, 1)
    options = CaptureOptions(camera_clock_offset=fix)
    assert capture_time(path, BERLIN, now=NOW, options=options) == Capture(
        ms(2024, 7, 15, 11, 0, 0), "exif:DateTimeOriginal"
    )
    recent = write_jpeg(tmp_path / "b.jpg", exif_block({ORIGINAL: "2025:05:31 12:00:00"}))
    options = CaptureOptions(camera_clock_offset=timedelta(days=3))
    assert capture_time(recent, BERLIN, now=NOW, options=options).source == "mtime"


# ---------------------------------------------------------------------------
# The camera clock warning


def test_clock_warning_when_camera_and_file_disagree(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An EXIF time more than an hour from the mtime logs a warning with the fix in it."""
    path = write_jpeg(tmp_path / "a.jpg", exif_block({ORIGINAL: "2024:07:15 12:00:00"}))
    set_mtime(path, ms(2024, 7, 15, 10, 0, 0) + (3 * 60 + 2) * 60_000 + 5_000)
    caplog.set_level(logging.WARNING, logger="boothsync.capture")
    assert capture_time(path, BERLIN, now=NOW).source == "exif:DateTimeOriginal"
    [record] = caplog.records
    message = record.getMessage()
    assert str(path) in message
    assert "3h02m05s behind the file's time" in message
    assert "camera clock" in message
    assert '[booth] camera_clock_offset = "+3h02m05s"' in message


def test_clock_warning_suggests_the_total_offset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With an offset already set, the time is compared after it, and the total is suggested."""
    path = write_jpeg(
        tmp_path / "a.jpg", xmp=xmp_packet({"xmp:CreateDate": "2024-07-15T12:00:00Z"})
    )
    set_mtime(path, ms(2024, 7, 15, 9, 0, 0))
    caplog.set_level(logging.WARNING, logger="boothsync.capture")
    options = CaptureOptions(camera_clock_offset=timedelta(hours=-1))
    assert capture_time(path, BERLIN, now=NOW, options=options).taken_at_ms == ms(
        2024, 7, 15, 11, 0, 0
    )
    [record] = caplog.records
    assert "2h ahead of the file's time" in record.getMessage()
    assert 'camera_clock_offset = "-3h"' in record.getMessage()


def test_no_clock_warning_within_an_hour_or_once_corrected(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Up to an hour apart is normal (copies, slow cards); a correcting offset silences it."""
    path = write_jpeg(tmp_path / "a.jpg", exif_block({ORIGINAL: "2024:07:15 12:00:00"}))
    caplog.set_level(logging.WARNING, logger="boothsync.capture")
    set_mtime(path, ms(2024, 7, 15, 11, 0, 0))
    capture_time(path, BERLIN, now=NOW)
    set_mtime(path, ms(2024, 7, 15, 11, 2, 0))
    capture_time(path, BERLIN, now=NOW, options=OFFSET)
    assert caplog.records == []


def test_no_clock_warning_for_times_from_the_booth_computer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """File name and container times far from the mtime are no camera clock problem."""
    named = tmp_path / "IMG_20240715_183005.jpg"
    named.write_bytes(b"")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(movie(movie_seconds(datetime(2024, 7, 15, 16, 30, 5, tzinfo=UTC))))
    caplog.set_level(logging.WARNING, logger="boothsync.capture")
    assert capture_time(named, BERLIN, now=NOW).source == "filename"
    assert capture_time(clip, BERLIN, now=NOW).source == "video:mvhd"
    assert caplog.records == []


def test_no_offset_is_suggested_for_an_old_picture_copied_in(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A camera time years before the file's time is no clock that is off: the warning says
    what it likely is and suggests no camera_clock_offset; a camera set to the wrong day (up to
    two days off) still gets its offset, in a warning of its own."""
    old = write_jpeg(tmp_path / "old.jpg", exif_block({ORIGINAL: "2008:03:01 12:00:00"}))
    set_mtime(old, ms(2025, 5, 30, 10, 0, 0))
    caplog.set_level(logging.WARNING, logger="boothsync.capture")
    assert capture_time(old, BERLIN, now=NOW).taken_at_ms == ms(2008, 3, 1, 11, 0, 0)
    [record] = caplog.records
    message = record.getMessage()
    assert "camera_clock_offset" not in message
    assert f"{old}: the camera's time (exif:DateTimeOriginal) is 6298 days behind" in message
    assert "copied in" in message

    off = write_jpeg(tmp_path / "off.jpg", exif_block({ORIGINAL: "2025:05:29 12:00:00"}))
    set_mtime(off, ms(2025, 5, 31, 9, 0, 0))
    capture_time(off, BERLIN, now=NOW)
    [suggestion] = clock_warnings(caplog)
    assert 'camera_clock_offset = "+47h"' in suggestion.getMessage()


def test_clock_warning_is_logged_once_per_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Many files from a wrong camera, read by several workers at once, give one warning."""
    paths = [
        write_jpeg(tmp_path / f"a{index}.jpg", exif_block({ORIGINAL: "2024:07:15 12:00:00"}))
        for index in range(16)
    ]
    for path in paths:
        set_mtime(path, ms(2024, 7, 15, 15, 0, 0))
    caplog.set_level(logging.WARNING, logger="boothsync.capture")
    start = threading.Barrier(8)
    results: list[Capture] = []

    def work(mine: list[Path]) -> None:
        start.wait()
        results.extend(capture_time(path, BERLIN, now=NOW) for path in mine)

    workers = [threading.Thread(target=work, args=(paths[i::8],)) for i in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(results) == 16
    assert len(clock_warnings(caplog)) == 1
    reset_clock_warning()
    capture_time(paths[0], BERLIN, now=NOW)
    assert len(clock_warnings(caplog)) == 2


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
# exiftool as the reference: generated files and real camera files

SAMPLE_FILES = sorted(SAMPLES.glob("*.jpg")) if SAMPLES.is_dir() else []

# (source, exiftool tags of the time, its fraction and its offset), most trusted first.
# exiftool calls DateTimeDigitized "CreateDate" and DateTime "ModifyDate".
EXIF_RULES = (
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
XMP_RULES = (
    ("xmp:exif:DateTimeOriginal", "XMP-exif:DateTimeOriginal"),
    ("xmp:photoshop:DateCreated", "XMP-photoshop:DateCreated"),
    ("xmp:xmp:CreateDate", "XMP-xmp:CreateDate"),
)
EXIFTOOL_TAGS = (
    *(f"-EXIF:{name}" for _, *names in EXIF_RULES for name in names),
    *(f"-{key}" for _, key in XMP_RULES),
    "-QuickTime:CreateDate",
    "-System:FileName",
)


def run_exiftool(files: list[Path]) -> dict[str, dict[str, Any]]:
    """exiftool's raw values (-n) of the tags the rule uses, by file name."""
    exiftool = shutil.which("exiftool")
    if exiftool is None:
        pytest.skip("exiftool is not on PATH (Debian: apt-get install libimage-exiftool-perl)")
    options = ["-j", "-n", "-G1", "-a", "-q", "-q", "-api", "LargeFileSupport=1"]
    run = subprocess.run(
        [exiftool, *options, *EXIFTOOL_TAGS, *map(str, files)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return {Path(entry["SourceFile"]).name: entry for entry in json.loads(run.stdout)}


def fixed_zone(sign: str, hours: str, minutes: str) -> tzinfo:
    total = int(hours) * 60 + int(minutes)
    return timezone(timedelta(minutes=-total if sign == "-" else total))


def exif_reference(tags: Mapping[str, Any], keys: tuple[str, str, str], tz: tzinfo) -> int | None:
    stamp_key, subsec_key, offset_key = keys
    stamp = str(tags.get(stamp_key, "")).split("\x00")[0].strip()
    try:
        naive = datetime.strptime(stamp.replace("-", ":"), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    subsec = str(tags.get(subsec_key, "")).strip()
    millis = int((subsec + "000")[:3]) if subsec.isdigit() else 0
    offset = str(tags.get(offset_key, "")).strip()
    zone: tzinfo = tz
    if offset == "Z":
        zone = UTC
    elif len(offset) == 6 and offset[0] in "+-" and offset[3] == ":":
        zone = fixed_zone(offset[0], offset[1:3], offset[4:6])
    return round(naive.replace(tzinfo=zone).timestamp() * 1000) + millis


def xmp_reference(value: object, tz: tzinfo) -> int | None:
    """exiftool shows XMP dates as "2024:07:15 12:00:00.25+02:00"; seconds may be missing."""
    if value is None:
        return None
    text, zone = str(value).strip(), tz
    if text.endswith("Z"):
        text, zone = text[:-1], UTC
    elif (found := re.search(r"([+-])(\d\d):?(\d\d)$", text)) is not None:
        text, zone = text[: found.start()], fixed_zone(*found.groups())
    text, _, fraction = text.partition(".")
    if fraction and not fraction.isdigit():
        return None
    for layout in ("%Y:%m:%d %H:%M:%S", "%Y:%m:%d %H:%M"):
        try:
            naive = datetime.strptime(text, layout)
        except ValueError:
            continue
        millis = int((fraction + "000")[:3])
        return round(naive.replace(tzinfo=zone).timestamp() * 1000) + millis
    return None  # a date alone is not a capture time


def filename_reference(name: str, tz: tzinfo, patterns: tuple[str, ...]) -> int | None:
    """The first window of the name that strptime reads with a pattern and writes back the same."""
    for pattern in patterns:
        width = len(re.sub(r"%[mdHMS]", "00", pattern.replace("%Y", "0000")).replace("%%", "%"))
        for start in range(len(name) - width + 1):
            if pattern[:1] == "%" and pattern[1:2] != "%" and name[start - 1 : start].isdigit():
                continue
            window = name[start : start + width]
            try:
                naive = datetime.strptime(window, pattern)
            except ValueError:
                continue
            if naive.strftime(pattern).lower() == window.lower():
                return round(naive.replace(tzinfo=tz).timestamp() * 1000)
    return None


def quicktime_reference(value: object) -> int | None:
    """exiftool shows the mvhd time as a UTC "YYYY:MM:DD HH:MM:SS" ("0000:00:00 ..." unset)."""
    try:
        naive = datetime.strptime(str(value), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    return round(naive.replace(tzinfo=UTC).timestamp() * 1000)


def reference_time(
    tags: Mapping[str, Any],
    tz: tzinfo,
    now: float,
    *,
    offset: timedelta = timedelta(0),
    patterns: tuple[str, ...] = DEFAULT_FILENAME_DATES,
) -> tuple[int, str] | None:
    """The documented rule, applied independently to exiftool's raw values."""
    shift = offset // timedelta(milliseconds=1)

    def plausible(taken: int | None) -> bool:
        return (
            taken is not None and ms(1990, 1, 1, 0, 0, 0) <= taken <= round(now * 1000) + 86_400_000
        )

    for source, *keys in EXIF_RULES:
        taken = exif_reference(tags, (keys[0], keys[1], keys[2]), tz)
        if taken is not None and plausible(taken + shift):
            return taken + shift, source
    for source, key in XMP_RULES:
        taken = xmp_reference(tags.get(key), tz)
        if taken is not None and plausible(taken + shift):
            return taken + shift, source
    taken = filename_reference(str(tags["System:FileName"]), tz, patterns)
    if taken is not None and plausible(taken):
        return taken, "filename"
    taken = quicktime_reference(tags.get("QuickTime:CreateDate"))
    if taken is not None and plausible(taken):
        return taken, "video:mvhd"
    return None


# The generated set: every tag combination of the rule, one file each.
GENERATED_MTIME = ms(2024, 8, 1, 12, 0, 0)
EXIF_SETS = (
    ("original", ORIGINAL, piexif.ExifIFD.SubSecTimeOriginal, piexif.ExifIFD.OffsetTimeOriginal),
    (
        "digitized",
        DIGITIZED,
        piexif.ExifIFD.SubSecTimeDigitized,
        piexif.ExifIFD.OffsetTimeDigitized,
    ),
    ("datetime", MODIFIED, piexif.ExifIFD.SubSecTime, piexif.ExifIFD.OffsetTime),
)
XMP_PROPERTIES = ("exif:DateTimeOriginal", "photoshop:DateCreated", "xmp:CreateDate")
XMP_FRACTIONS = ("", ".25")
XMP_OFFSETS = ("", "Z", "+02:00", "-0530")
PNG_CHUNKS = ("iTXt", "iTXt-z", "zTXt", "tEXt")


# One branch per kind of sample file the corpus holds.
def generate(folder: Path) -> list[Path]:  # noqa: C901
    """Write one file per combination of time source, fraction, offset, form and container."""
    paths: list[Path] = []
    for (label, tag, subsec_tag, offset_tag), subsec, offset in itertools.product(
        EXIF_SETS, (None, "25"), (None, "+05:30")
    ):
        exif: dict[int, object] = {}
        ifd0: dict[int, object] = {}
        (ifd0 if tag == MODIFIED else exif)[tag] = "2024:07:15 12:00:00"
        if subsec is not None:
            exif[subsec_tag] = subsec
        if offset is not None:
            exif[offset_tag] = offset
        name = f"exif-{label}-{subsec or 'nosub'}-{'off' if offset else 'nooff'}.jpg"
        paths.append(write_jpeg(folder / name, exif_block(exif, ifd0)))
    for name, exif, ifd0 in (
        (
            "stacked",
            {ORIGINAL: "2024:07:15 12:00:00", DIGITIZED: "2024:07:16 12:00:00"},
            {MODIFIED: "2024:07:17 12:00:00"},
        ),
        (
            "blank-original",
            {ORIGINAL: "", DIGITIZED: "2024:07:16 12:00:00"},
            {MODIFIED: "2024:07:17 12:00:00"},
        ),
        (
            "zero-exif",
            {ORIGINAL: "0000:00:00 00:00:00", DIGITIZED: "1980:01:01 00:00:00"},
            {MODIFIED: "2024:07:17 12:00:00"},
        ),
    ):
        paths.append(write_jpeg(folder / f"exif-{name}.jpg", exif_block(exif, ifd0)))
    paths.append(
        write_png(
            folder / "exif-in-png.png",
            exif=exif_block(
                {
                    ORIGINAL: "2024:07:15 12:00:00",
                    piexif.ExifIFD.SubSecTimeOriginal: "5",
                    piexif.ExifIFD.OffsetTimeOriginal: "-03:00",
                }
            ),
        )
    )
    png_count = 0
    for index, (prop, fraction, offset, form, container) in enumerate(
        itertools.product(
            XMP_PROPERTIES, XMP_FRACTIONS, XMP_OFFSETS, ("attribute", "element"), ("jpeg", "png")
        )
    ):
        packet = xmp_packet({prop: f"2024-07-15T12:00:00{fraction}{offset}"}, form=form)
        if container == "jpeg":
            paths.append(write_jpeg(folder / f"xmp-{index:03d}.jpg", xmp=packet))
        else:
            chunk = xmp_chunk(packet, PNG_CHUNKS[png_count % len(PNG_CHUNKS)])
            paths.append(
                write_png(folder / f"xmp-{index:03d}.png", chunk, after_image=png_count % 3 == 0)
            )
            png_count += 1
    for name, values, prefixes in (
        ("all-three", ALL_XMP, None),
        (
            "date-only",
            {"photoshop:DateCreated": "2024-07-16", "xmp:CreateDate": "2024-07-17T12:00:00"},
            None,
        ),
        ("minutes", {"photoshop:DateCreated": "2024-07-16T12:30+01:00"}, None),
        ("xap-prefix", {"xmp:CreateDate": "2024-07-17T12:00:00.125"}, {"xmp": "xap"}),
    ):
        packet = xmp_packet(values, prefixes=prefixes)
        paths.append(write_jpeg(folder / f"xmp-{name}.jpg", xmp=packet))
        paths.append(write_png(folder / f"xmp-{name}.png", xmp_chunk(packet, "iTXt-z")))
    paths.append(
        write_jpeg(
            folder / "exif-and-xmp.jpg",
            exif_block(ifd0={MODIFIED: "2024:07:20 12:00:00"}),
            xmp=xmp_packet(ALL_XMP),
        )
    )
    if features.check("webp"):
        webp = folder / "xmp.webp"
        Image.new("RGB", (8, 8)).save(webp, xmp=xmp_packet(ALL_XMP, form="element"))
        paths.append(webp)
    taken = datetime(2024, 7, 15, 18, 30, 5)
    names = [f"{taken.strftime(pattern)}_booth.jpg" for pattern in DEFAULT_FILENAME_DATES]
    names += ["PXL_20240715_183005123.jpg", "img_20240715_183005.jpg", "20241315_183005.jpg"]
    paths += [write_jpeg(folder / name) for name in names]
    paths.append(write_jpeg(folder / "IMG_20240101_000000.jpg", xmp=xmp_packet(ALL_XMP)))
    created = movie_seconds(datetime(2024, 7, 15, 16, 30, 5, tzinfo=UTC))
    for name, data in (
        ("clip-v0.mp4", movie(created)),
        ("clip-v1.mp4", movie(created + 1, version=1)),
        ("clip-unset.mp4", movie(0)),
        ("clip.mov", movie(created + 2, brand=b"qt  ")),
        ("VID_20240715_183005.mp4", movie(created + 3)),
    ):
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    decoy = movie_seconds(datetime(2020, 1, 1, tzinfo=UTC))
    paths.append(write_movie_with_big_mdat(folder / "clip-big.mp4", created + 4, decoy=decoy))
    for path in paths:
        set_mtime(path, GENERATED_MTIME)
    return paths


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("generated")
    paths = generate(folder)
    tags = run_exiftool(paths)
    assert set(tags) == {path.name for path in paths}
    return folder, tags


@pytest.mark.parametrize(
    ("zone", "offset"),
    [
        ("Europe/Berlin", timedelta(0)),
        ("America/Los_Angeles", timedelta(hours=1, minutes=2, seconds=5)),
        ("Asia/Kolkata", timedelta(seconds=-30)),
    ],
)
def test_generated_files_match_exiftool(
    generated: tuple[Path, dict[str, dict[str, Any]]], zone: str, offset: timedelta
) -> None:
    """Every generated combination gets exactly the time and source exiftool's values imply."""
    folder, tags = generated
    tz = ZoneInfo(zone)
    options = CaptureOptions(camera_clock_offset=offset)
    seen: set[str] = set()
    for name, values in sorted(tags.items()):
        path = folder / name
        expected = reference_time(values, tz, NOW, offset=offset)
        result = capture_time(path, tz, now=NOW, options=options)
        if expected is None:
            assert result == Capture(GENERATED_MTIME, "mtime"), name
        else:
            assert (result.taken_at_ms, result.source) == expected, name
        seen.add(result.source)
    # The set is only proof if every source of the rule won somewhere.
    assert seen == SOURCES


def test_generated_movies_agree_with_exiftool(
    generated: tuple[Path, dict[str, dict[str, Any]]],
) -> None:
    """exiftool reads the same mvhd creation times, the one behind a 5 GiB mdat included."""
    _, tags = generated
    assert tags["clip-big.mp4"]["QuickTime:CreateDate"] == "2024:07:15 16:30:09"
    assert tags["clip-v1.mp4"]["QuickTime:CreateDate"] == "2024:07:15 16:30:06"
    assert tags["clip.mov"]["QuickTime:CreateDate"] == "2024:07:15 16:30:07"


@pytest.fixture(scope="module")
def exiftool_tags() -> dict[str, dict[str, Any]]:
    if not SAMPLE_FILES:
        pytest.skip(f"no sample pictures at {SAMPLES}")
    return run_exiftool(SAMPLE_FILES)


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


def test_sample_xmp_matches_exiftool(
    exiftool_tags: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """With their EXIF times removed, the samples that carry XMP dates get exiftool's XMP time."""
    checked = 0
    for path in SAMPLE_FILES:
        values = exiftool_tags[path.name]
        if not any(key in values for _, key in XMP_RULES):
            continue
        data = bytearray(path.read_bytes())
        start, _ = app1_span(bytes(data))
        data[start + 4 : start + 10] = b"Gone\x00\x00"  # the EXIF segment is no longer EXIF
        copy = tmp_path / path.name
        copy.write_bytes(data)
        no_exif = {k: v for k, v in values.items() if not k.startswith(("ExifIFD:", "IFD0:"))}
        expected = reference_time(no_exif, BERLIN, NOW)
        assert expected is not None and expected[1].startswith("xmp:"), path.name
        result = capture_time(copy, BERLIN, now=NOW)
        assert (result.taken_at_ms, result.source) == expected, path.name
        checked += 1
    assert checked >= 3


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
    """Random damage in the EXIF segment of real files yields a Capture and at most one warning
    about it (besides, once per process, the camera clock warning)."""
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
            assert len(damage_warnings(caplog)) <= 1, path.name
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


def mutate(rng: random.Random, data: bytes, *, hot: tuple[int, int] | None = None) -> bytes:
    """Flip, cut, insert or duplicate: the damage a bad writer or a bad disk does."""
    mutated = bytearray(data)
    low, high = hot or (0, len(data))
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(low, high)] = rng.randrange(256)
    elif kind == 1:
        del mutated[rng.randrange(low, high) :]
    elif kind == 2:
        at = rng.randrange(low, high)
        mutated[at:at] = bytes(
            rng.choice(b'<>"=:/ 0123456789TZ+-') for _ in range(rng.randint(1, 12))
        )
    else:
        at = rng.randrange(low, high)
        mutated[at:at] = mutated[rng.randrange(low, high) : rng.randrange(low, high)]
    return bytes(mutated)


def test_mutated_xmp_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Damaged XMP in JPEG and in every PNG text chunk gives a Capture and one warning at most."""
    rng = random.Random(20240716)
    jpeg = write_jpeg(tmp_path / "plain.jpg").read_bytes()
    png = write_png(tmp_path / "plain.png").read_bytes()
    idat = png.index(b"IDAT") - 4
    packets = [
        xmp_packet(ALL_XMP),
        xmp_packet(ALL_XMP, form="element"),
        xmp_packet({"xmp:CreateDate": "2024-07-17T12:00:00.5+02:00"}, prefixes={"xmp": "xap"}),
    ]
    caplog.set_level(logging.WARNING, logger="boothsync.capture")
    sources: set[str] = set()
    for round_ in range(400):
        packet = mutate(rng, rng.choice(packets))
        carrier = ("jpeg", *PNG_CHUNKS)[round_ % 5]
        if carrier == "jpeg":
            body = b"http://ns.adobe.com/xap/1.0/\x00" + packet
            data = jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]
            if rng.random() < 0.3:  # the segment header itself
                data = mutate(rng, data, hot=(2, 40))
            path = tmp_path / "mutated.jpg"
        else:
            chunk = xmp_chunk(packet, carrier)
            if rng.random() < 0.3:  # the chunk header, flags or the deflate stream
                chunk = mutate(rng, chunk, hot=(0, min(len(chunk), 48)))
            data = png[:idat] + chunk + png[idat:]
            path = tmp_path / "mutated.png"
        path.write_bytes(data)
        caplog.clear()
        result = capture_time(path, BERLIN, now=NOW)
        assert result.source in SOURCES, round_
        assert len(damage_warnings(caplog)) <= 1, round_
        sources.add(result.source)
    # The damage was not so heavy that nothing was ever read.
    assert {"xmp:exif:DateTimeOriginal", "xmp:xmp:CreateDate", "mtime"} <= sources
    assert len(clock_warnings(caplog)) <= 1


def test_mutated_movie_boxes_never_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Damaged box headers (sizes, types, versions, cuts) give a Capture and one warning at most."""
    rng = random.Random(20240717)
    created = movie_seconds(datetime(2024, 7, 15, 16, 30, 5, tzinfo=UTC))
    bases = [
        movie(created, before_moov=box(b"free", bytes(20)) + box(b"mdat", bytes(64))),
        movie(created, version=1, brand=b"qt  "),
        box(b"wide")
        + struct.pack(">L", 1)
        + b"mdat"
        + struct.pack(">Q", 48)
        + bytes(32)
        + box(b"moov", mvhd(created)),
    ]
    caplog.set_level(logging.WARNING, logger="boothsync.capture")
    path = tmp_path / "mutated.mp4"
    sources: set[str] = set()
    for round_ in range(400):
        path.write_bytes(mutate(rng, rng.choice(bases)))
        caplog.clear()
        result = capture_time(path, BERLIN, now=NOW)
        assert result.source in {"video:mvhd", "mtime"}, round_
        assert len(damage_warnings(caplog)) <= 1, round_
        sources.add(result.source)
    assert sources == {"video:mvhd", "mtime"}


BOX_TYPES = [b"ftyp", b"moov", b"mvhd", b"mdat", b"free", b"udta", b"trak", b"wide", bytes(4)]


@st.composite
def iso_boxes(draw: st.DrawFn, depth: int = 0) -> bytes:
    """One box, often well formed, sometimes with any size, 0 (to the end) or a 64-bit size."""
    kind = draw(st.sampled_from(BOX_TYPES))
    if kind == b"moov" and depth < 2:
        body = b"".join(draw(st.lists(iso_boxes(depth + 1), max_size=4)))
    elif kind == b"mvhd":
        body = bytes([draw(st.integers(0, 3)), 0, 0, 0]) + draw(st.binary(max_size=24))
    else:
        body = draw(st.binary(max_size=24))
    size = draw(st.sampled_from(["exact", "exact", "exact", "zero", "large", "any"]))
    if size == "exact":
        return struct.pack(">L", 8 + len(body)) + kind + body
    if size == "zero":
        return struct.pack(">L", 0) + kind + body
    if size == "large":
        large = draw(st.one_of(st.just(16 + len(body)), st.integers(0, 2**64 - 1)))
        return struct.pack(">L", 1) + kind + struct.pack(">Q", large) + body
    return struct.pack(">L", draw(st.integers(0, 2**32 - 1))) + kind + body


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(boxes=st.lists(iso_boxes(), max_size=6))
def test_arbitrary_movie_boxes_never_raise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, boxes: list[bytes]
) -> None:
    """Whatever boxes follow an ftyp, the walk ends with a Capture and one warning at most."""
    path = tmp_path / "fuzz.mp4"
    path.write_bytes(box(b"ftyp", b"isom\0\0\0\0") + b"".join(boxes))
    caplog.set_level(logging.WARNING, logger="boothsync.capture")
    caplog.clear()
    result = capture_time(path, BERLIN, now=NOW)
    assert result.source in {"video:mvhd", "mtime"}
    assert len(damage_warnings(caplog)) <= 1


# -- looks_whole: does the content say it is completely written? ------------------------------


def encoded(fmt: str, **options: Any) -> bytes:
    image = Image.frombytes("RGB", (64, 48), bytes(range(256)) * 36)
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def whole_at(tmp_path: Path, data: bytes, name: str = "x.bin") -> bool | None:
    path = tmp_path / name
    path.write_bytes(data)
    return looks_whole(path)


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("JPEG", {}),
        ("JPEG", {"progressive": True}),
        ("PNG", {}),
        ("GIF", {}),
        ("WEBP", {}),
    ],
    ids=["jpeg", "progressive-jpeg", "png", "gif", "webp"],
)
def test_a_whole_picture_looks_whole_and_any_cut_of_it_does_not(
    tmp_path: Path, fmt: str, options: dict[str, Any]
) -> None:
    """Every format with an end of its own: the whole file looks whole; the file cut at any
    point past its signature (before that, nothing says what it is) does not."""
    data = encoded(fmt, **options)
    assert whole_at(tmp_path, data) is True
    for end in range(12, len(data) - 1, max(1, len(data) // 300)):
        assert whole_at(tmp_path, data[:end]) is False, end


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="the camera samples are not beside the project")
def test_every_camera_sample_looks_whole_and_no_cut_of_it_does(tmp_path: Path) -> None:
    """The sample camera JPEGs (EXIF thumbnails and all) look whole; cut anywhere, including
    right after the embedded thumbnail's own end marker, they do not."""
    for sample in sorted(SAMPLES.glob("*.jpg")):
        data = sample.read_bytes()
        assert whole_at(tmp_path, data, sample.name) is True, sample.name
        thumbnail_end = data.find(b"\xff\xd9") + 2
        for end in (thumbnail_end, len(data) // 3, len(data) // 2, len(data) - 2):
            if end < len(data):  # a file without a thumbnail has its own end marker first
                assert whole_at(tmp_path, data[:end], sample.name) is False, (sample.name, end)


def test_a_jpeg_with_data_after_its_end_marker_or_zero_padding_looks_whole(
    tmp_path: Path,
) -> None:
    """Data appended after the end marker (a motion photo's video) or zero padding does not
    make a whole JPEG look cut short."""
    data = encoded("JPEG")
    assert whole_at(tmp_path, data + bytes(300)) is True
    assert whole_at(tmp_path, data + box(b"ftyp", b"mp42") + os.urandom(5000)) is True


def test_an_mp4_looks_whole_only_once_its_boxes_add_up_with_the_index(tmp_path: Path) -> None:
    """An MP4 is whole when its top-level boxes tile the file and the index (moov) is there: not
    while the media box still runs to the end (size 0), not before the index is written, not
    with a box running past the end."""
    head = box(b"ftyp", b"isom\0\0\2\0isom")
    media = os.urandom(3000)
    index = box(b"moov", box(b"mvhd", bytes(100)))
    assert whole_at(tmp_path, head + box(b"mdat", media) + index) is True
    assert whole_at(tmp_path, head + index + box(b"mdat", media)) is True
    running = struct.pack(">L", 0) + b"mdat" + media
    assert whole_at(tmp_path, head + running) is False
    assert whole_at(tmp_path, head + running + index) is False
    assert whole_at(tmp_path, head + box(b"mdat", media)) is False
    assert whole_at(tmp_path, head + box(b"mdat", media) + index[:-10]) is False


def test_formats_without_an_end_of_their_own_cannot_tell(tmp_path: Path) -> None:
    """Unknown content, an empty file, or a file that cannot be read: only time can tell."""
    assert whole_at(tmp_path, b"plain text, no picture") is None
    assert whole_at(tmp_path, b"") is None
    assert looks_whole(tmp_path / "missing.jpg") is None
