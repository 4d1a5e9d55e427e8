"""When a picture was taken (``takenAt``), and what type of content it is.

Owns: reading capture metadata, the order in which the time sources are trusted,
and the content type sent with an upload. No other module reads image metadata.

Must not: know about HTTP or SQLite; decode image data or read whole files (only
container headers and the EXIF block are read, with seeks past everything else);
raise for bad content. A damaged, truncated or mislabelled file yields the next
trusted source, down to the file's mtime; only a file that is gone or cannot be
opened raises :class:`~boothsync.errors.SourceFileError`.

The time sources are an ordered tuple of small functions (``_SOURCES``), each
returning a :class:`Capture` or ``None``; the first plausible one wins. EXIF times
carry no zone unless an ``OffsetTime*`` tag says so, so the booth's zone is passed
in explicitly.

The EXIF block is read by :class:`_Tiff`, which looks only at the nine text tags
below and checks every offset. piexif and Pillow are not used for reading because
neither is safe on hostile counts: piexif builds a format string as long as the
count (a count of 10**8 costs 10 s and 3.5 GB), and after one oversized count
Pillow skips every later tag of the directory (DateTimeOriginal included) and
reports through ``warnings.warn``.
"""

from __future__ import annotations

import io
import logging
import mimetypes
import os
import re
import stat
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import BinaryIO, Final

from boothsync.errors import SourceFileError

__all__ = ["Capture", "capture_time", "content_type"]

_log = logging.getLogger(__name__)

# The EXIF block sits in the first few segments; 256 KiB covers every camera we
# know of and bounds the work on a file that is not what its header claims.
_JPEG_SCAN_LIMIT: Final = 256 * 1024
# PNG and WebP are walked chunk by chunk with seeks; this bounds the syscalls on a
# file made of millions of empty chunks while still passing a large PNG's IDATs.
_CHUNK_LIMIT: Final = 10_000
# An EXIF block larger than this is not something a camera wrote.
_EXIF_SIZE_LIMIT: Final = 1024 * 1024

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
# Cameras with a flat clock battery restart at 1970, 1980 or 2000; a booth in
# operation is newer than 1990, and a clock more than a day ahead is wrong.
_EARLIEST_MS: Final = (datetime(1990, 1, 1, tzinfo=UTC) - _EPOCH) // _MS
_FUTURE_SLACK_MS: Final = 24 * 3600 * 1000

# EXIF writes "YYYY:MM:DD HH:MM:SS"; some software uses '-' in the date.
_STAMP_RE: Final = re.compile(
    r"([0-9]{4})[:-]([0-9]{2})[:-]([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})"
)
_OFFSET_RE: Final = re.compile(r"([+-])([0-9]{2}):?([0-9]{2})")
_DIGITS_RE: Final = re.compile(r"[0-9]+")

# EXIF tags (CIPA DC-008); the time, its fraction and its offset come in three sets.
_DATE_TIME: Final = 0x0132  # IFD0
_EXIF_IFD_POINTER: Final = 0x8769  # IFD0
_DATE_TIME_ORIGINAL: Final = 0x9003
_DATE_TIME_DIGITIZED: Final = 0x9004
_OFFSET_TIME: Final = 0x9010
_OFFSET_TIME_ORIGINAL: Final = 0x9011
_OFFSET_TIME_DIGITIZED: Final = 0x9012
_SUBSEC_TIME: Final = 0x9290
_SUBSEC_TIME_ORIGINAL: Final = 0x9291
_SUBSEC_TIME_DIGITIZED: Final = 0x9292
_WANTED_TAGS: Final = frozenset(
    {
        _DATE_TIME,
        _EXIF_IFD_POINTER,
        _DATE_TIME_ORIGINAL,
        _DATE_TIME_DIGITIZED,
        _OFFSET_TIME,
        _OFFSET_TIME_ORIGINAL,
        _OFFSET_TIME_DIGITIZED,
        _SUBSEC_TIME,
        _SUBSEC_TIME_ORIGINAL,
        _SUBSEC_TIME_DIGITIZED,
    }
)
# TIFF field types: text may be ASCII or, from sloppy writers, UNDEFINED bytes;
# a sub-directory pointer is a LONG or an IFD.
_TEXT_TYPES: Final = frozenset({2, 7})
_POINTER_TYPES: Final = frozenset({4, 13})

_JPEG_SOI: Final = b"\xff\xd8"
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_EXIF_HEADER: Final = b"Exif\x00\x00"

_CONTENT_TYPES: Final[Mapping[str, str]] = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
}


@dataclass(frozen=True)
class Capture:
    """The moment a picture was taken, in Unix milliseconds, and where that came from.

    ``source`` is ``"exif:DateTimeOriginal"``, ``"exif:DateTimeDigitized"``,
    ``"exif:DateTime"`` or ``"mtime"``.
    """

    taken_at_ms: int
    source: str


def capture_time(path: Path, tz: tzinfo, *, now: float | None = None) -> Capture:
    """Return when the picture at ``path`` was taken.

    EXIF times without an offset are read in ``tz`` (for a local time that does not
    exist or exists twice, the earlier offset, as :mod:`datetime` does with
    ``fold=0``). A time that is blank, unparsable, before 1990 or more than a day
    after ``now`` (default: the current time) is not trusted and the next source
    is tried; the file's mtime is the last resort.

    Raises :class:`SourceFileError` if the file is gone or cannot be opened; never
    for what is inside it.
    """
    now_ms = round((time.time() if now is None else now) * 1000)
    probe = _Probe(path, tz)
    warned = False
    for source in _SOURCES:
        try:
            candidate = source(probe)
        except SourceFileError:
            raise
        except Exception as exc:
            # One line per file is enough for an operator; later sources of the
            # same file meet the same damage and are quietly skipped.
            if not warned:
                _log.warning(
                    "%s: damaged metadata, trying the next time source (%s: %s)",
                    path,
                    type(exc).__name__,
                    exc,
                )
                warned = True
            continue
        if candidate is None:
            continue
        if not _EARLIEST_MS <= candidate.taken_at_ms <= now_ms + _FUTURE_SLACK_MS:
            _log.debug(
                "%s: %s is implausible (%s ms), not trusted",
                path,
                candidate.source,
                candidate.taken_at_ms,
            )
            continue
        return candidate
    # The mtime is what the filesystem knows; there is nothing left to prefer.
    return Capture(probe.stat.st_mtime_ns // 1_000_000, "mtime")


def content_type(path: Path) -> str:
    """Return the MIME type for ``path``, by its extension (case-insensitive)."""
    known = _CONTENT_TYPES.get(path.suffix.lower())
    if known is not None:
        return known
    guessed, encoding = mimetypes.guess_type(path.name)
    # "x.tar.gz" guesses application/x-tar with gzip encoding: not what the bytes are.
    if guessed is None or encoding is not None:
        return "application/octet-stream"
    return guessed


class _Probe:
    """One file as the sources see it: stat once, EXIF read and parsed at most once."""

    def __init__(self, path: Path, tz: tzinfo) -> None:
        self.path = path
        self.tz = tz
        self.stat = _stat(path)
        self._tiff: _Tiff | None = None
        self._ifd0: Mapping[int, str | int] | None = None
        self._exif_ifd: Mapping[int, str | int] | None = None

    def ifd0(self) -> Mapping[int, str | int]:
        """The main image directory (IFD0) of the EXIF block; empty when there is none."""
        if self._ifd0 is None:
            # Set before reading so that a failure is raised (and reported) once;
            # the sources after it see a file without EXIF.
            self._ifd0 = {}
            block = _read_exif_block(self.path, self.stat)
            if block is not None:
                self._tiff = _Tiff(block)
                self._ifd0 = self._tiff.directory(self._tiff.first_directory)
        return self._ifd0

    def exif_ifd(self) -> Mapping[int, str | int]:
        """The Exif sub-directory (DateTimeOriginal and friends); empty when there is none."""
        if self._exif_ifd is None:
            pointer = self.ifd0().get(_EXIF_IFD_POINTER)
            self._exif_ifd = {}
            if self._tiff is not None and isinstance(pointer, int):
                self._exif_ifd = self._tiff.directory(pointer)
        return self._exif_ifd


class _Tiff:
    """The tags in ``_WANTED_TAGS`` from an EXIF block (a TIFF structure), offsets checked.

    Only two directories are read (IFD0 and the Exif IFD it points to) and no
    chains are followed, so there is no loop to fall into; a value that points
    outside the block skips that one tag, as exiftool does.
    """

    def __init__(self, data: bytes) -> None:
        if data.startswith(b"II*\x00"):
            self._order = "<"
        elif data.startswith(b"MM\x00*"):
            self._order = ">"
        else:
            raise ValueError(f"EXIF block without a TIFF header ({data[:8]!r})")
        if len(data) < 8:
            raise ValueError("EXIF block cut off in its header")
        self._data = data
        (self.first_directory,) = struct.unpack_from(self._order + "L", data, 4)

    def directory(self, offset: int) -> dict[int, str | int]:
        """Text values (as str) and sub-directory pointers (as int) of the IFD at ``offset``."""
        data, order = self._data, self._order
        if not 8 <= offset <= len(data) - 2:
            raise ValueError(f"EXIF directory at {offset} is outside the {len(data)}-byte block")
        (count,) = struct.unpack_from(order + "H", data, offset)
        # A directory cut short (a truncated file) still yields its complete entries.
        count = min(count, (len(data) - offset - 2) // 12)
        values: dict[int, str | int] = {}
        for index in range(count):
            tag, kind, length, field = struct.unpack_from(
                order + "HHL4s", data, offset + 2 + 12 * index
            )
            if tag not in _WANTED_TAGS or tag in values:
                continue
            if kind in _TEXT_TYPES:
                if length <= 4:
                    raw = field[:length]
                else:
                    (start,) = struct.unpack(order + "L", field)
                    if start + length > len(data):
                        continue
                    raw = data[start : start + length]
                values[tag] = raw.decode("latin-1")
            elif kind in _POINTER_TYPES and length == 1:
                (values[tag],) = struct.unpack(order + "L", field)
        return values


_Source = Callable[[_Probe], Capture | None]


def _exif_original(probe: _Probe) -> Capture | None:
    """DateTimeOriginal: when the shutter fired."""
    ifd = probe.exif_ifd()
    return _exif_capture(
        probe,
        "exif:DateTimeOriginal",
        ifd.get(_DATE_TIME_ORIGINAL),
        ifd.get(_SUBSEC_TIME_ORIGINAL),
        ifd.get(_OFFSET_TIME_ORIGINAL),
    )


def _exif_digitized(probe: _Probe) -> Capture | None:
    """DateTimeDigitized: when the image was stored; the shutter time for most cameras."""
    ifd = probe.exif_ifd()
    return _exif_capture(
        probe,
        "exif:DateTimeDigitized",
        ifd.get(_DATE_TIME_DIGITIZED),
        ifd.get(_SUBSEC_TIME_DIGITIZED),
        ifd.get(_OFFSET_TIME_DIGITIZED),
    )


def _exif_modified(probe: _Probe) -> Capture | None:
    """DateTime (IFD0): when the file was last changed; booth software often sets only this."""
    stamp = probe.ifd0().get(_DATE_TIME)
    if stamp is None:
        return None
    ifd = probe.exif_ifd()
    return _exif_capture(
        probe,
        "exif:DateTime",
        stamp,
        ifd.get(_SUBSEC_TIME),
        ifd.get(_OFFSET_TIME),
    )


# Most trusted first. The mtime is not listed: it is the floor under all of them.
_SOURCES: Final[tuple[_Source, ...]] = (_exif_original, _exif_digitized, _exif_modified)


def _exif_capture(
    probe: _Probe, source: str, stamp: object, subsec: object, offset: object
) -> Capture | None:
    text = _text(stamp)
    if not text:
        return None
    match = _STAMP_RE.fullmatch(text)
    if match is None:
        _log.debug("%s: %s %r is not a date, not trusted", probe.path, source, text)
        return None
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        local = datetime(year, month, day, hour, minute, second)
    except ValueError:
        # "0000:00:00 00:00:00", month 13, February 30: a clock that was never set.
        _log.debug("%s: %s %r is not a date, not trusted", probe.path, source, text)
        return None
    zone = _offset(offset) or probe.tz
    moment = local.replace(microsecond=_millis(subsec) * 1000, tzinfo=zone)
    # Aware subtraction applies the zone's rules with fold=0 for gaps and overlaps.
    return Capture((moment - _EPOCH) // _MS, source)


def _text(value: object) -> str | None:
    """An EXIF ASCII value as text up to its first NUL, trimmed; None for other types."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    return value.split("\x00", 1)[0].strip()


def _millis(value: object) -> int:
    """SubSecTime digits are a decimal fraction: "5" is 500 ms, "05" 50 ms, "123456" 123 ms."""
    text = _text(value)
    if not text or _DIGITS_RE.fullmatch(text) is None:
        return 0
    return int((text + "00")[:3])


def _offset(value: object) -> tzinfo | None:
    """An OffsetTime value ("+02:00", "-05:30", "Z") as a fixed zone; None when absent or bad."""
    text = _text(value)
    if not text:
        return None
    if text in ("Z", "z"):
        return UTC
    match = _OFFSET_RE.fullmatch(text)
    if match is None:
        return None
    sign, hours, minutes = match.group(1), int(match.group(2)), int(match.group(3))
    if hours > 14 or minutes > 59:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if sign == "-" else delta)


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError as exc:
        raise SourceFileError(f"{path}: vanished before upload") from exc
    except OSError as exc:
        raise SourceFileError(f"{path}: cannot be read: {exc.strerror or exc}") from exc


def _read_exif_block(path: Path, st: os.stat_result) -> bytes | None:
    """The TIFF bytes of the file's EXIF block, found by its content, not its name."""
    # A directory, FIFO or device has no EXIF, and opening a FIFO would block.
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        with path.open("rb") as f:
            head = f.read(12)
            if head.startswith(_JPEG_SOI):
                return _jpeg_exif(f)
            if head.startswith(_PNG_SIGNATURE):
                return _png_exif(f)
            if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
                return _webp_exif(f)
            # GIF has no EXIF; HEIC and video containers are read by later sources.
            return None
    except FileNotFoundError as exc:
        raise SourceFileError(f"{path}: vanished before upload") from exc
    except OSError as exc:
        # The file is there but cannot be read (locked by the booth software,
        # permissions, I/O error): the upload would fail the same way.
        raise SourceFileError(f"{path}: cannot be read: {exc.strerror or exc}") from exc


def _jpeg_exif(f: BinaryIO) -> bytes | None:
    """Walk the segment headers after SOI to the APP1 "Exif" segment; stop at SOS."""
    f.seek(len(_JPEG_SOI))
    while f.tell() < _JPEG_SCAN_LIMIT:
        if f.read(1) != b"\xff":
            return None  # not at a marker: damaged, or the end of the file
        marker = f.read(1)
        while marker == b"\xff" and f.tell() < _JPEG_SCAN_LIMIT:  # fill bytes
            marker = f.read(1)
        if not marker or marker in (b"\xd9", b"\xda", b"\xff"):
            return None  # EOF, EOI, start of scan (image data follows) or endless fill
        if b"\xd0" <= marker <= b"\xd7" or marker == b"\x01":
            continue  # RSTn and TEM have no length
        header = f.read(2)
        if len(header) < 2:
            return None
        length = int.from_bytes(header, "big")
        if length < 2:
            return None
        if marker == b"\xe1":
            payload = f.read(length - 2)
            if payload.startswith(_EXIF_HEADER):
                return payload[len(_EXIF_HEADER) :]
            continue  # XMP or another APP1
        f.seek(length - 2, io.SEEK_CUR)
    return None


def _png_exif(f: BinaryIO) -> bytes | None:
    """Walk the chunks to eXIf (before or after IDAT), seeking past the others."""
    f.seek(len(_PNG_SIGNATURE))
    for _ in range(_CHUNK_LIMIT):
        header = f.read(8)
        if len(header) < 8:
            return None
        length = int.from_bytes(header[:4], "big")
        kind = header[4:]
        if kind == b"eXIf":
            if length > _EXIF_SIZE_LIMIT:
                return None
            return f.read(length).removeprefix(_EXIF_HEADER)
        if kind == b"IEND":
            return None
        f.seek(length + 4, io.SEEK_CUR)  # data and CRC
    return None


def _webp_exif(f: BinaryIO) -> bytes | None:
    """Walk the RIFF chunks after the "WEBP" form type to the EXIF chunk."""
    f.seek(12)
    for _ in range(_CHUNK_LIMIT):
        header = f.read(8)
        if len(header) < 8:
            return None
        size = int.from_bytes(header[4:], "little")
        if header[:4] == b"EXIF":
            if size > _EXIF_SIZE_LIMIT:
                return None
            payload = f.read(size)
            # Some writers keep the JPEG "Exif\0\0" prefix in the chunk.
            return payload.removeprefix(_EXIF_HEADER)
        f.seek(size + (size & 1), io.SEEK_CUR)  # chunks are padded to even sizes
    return None
