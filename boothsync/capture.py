"""When a picture was taken (``takenAt``), and what type of content it is.

Owns: reading capture metadata, the order in which the time sources are trusted,
the camera clock correction and its warning, and the content type sent with an
upload. No other module reads image or video metadata.

Must not: know about HTTP, SQLite or the config file (options come in as
:class:`CaptureOptions`); decode image data or read whole files (only container
headers, the EXIF block and the XMP packet are read, with seeks past everything
else, and never a video's media data); raise for bad content. A damaged,
truncated or mislabelled file yields the next trusted source, down to the file's
mtime; only a file that is gone or cannot be opened raises
:class:`~boothsync.errors.SourceFileError`.

The time sources are an ordered tuple of small functions (``_SOURCES``), each
returning a :class:`Capture` or ``None``; the first plausible one wins:

1. ``exif:DateTimeOriginal`` (+ SubSecTimeOriginal, OffsetTimeOriginal)
2. ``exif:DateTimeDigitized`` (+ SubSecTimeDigitized, OffsetTimeDigitized)
3. ``exif:DateTime`` (IFD0, + SubSecTime, OffsetTime)
4. ``xmp:exif:DateTimeOriginal``, ``xmp:photoshop:DateCreated``, ``xmp:xmp:CreateDate``
5. ``filename``: a date in the file name (:data:`DEFAULT_FILENAME_DATES`)
6. ``video:mvhd``: an MP4/MOV's movie header creation time (UTC)
7. ``mtime``

Camera-written times (EXIF and XMP) carry no zone unless an offset says so, so the
booth's zone is passed in explicitly, and they are the ones
``CaptureOptions.camera_clock_offset`` corrects; file names, container times and
the mtime come from the booth computer's clock and are left alone.

The EXIF block is read by :class:`_Tiff`, which looks only at the nine text tags
below and checks every offset. piexif and Pillow are not used for reading because
neither is safe on hostile counts: piexif builds a format string as long as the
count (a count of 10**8 costs 10 s and 3.5 GB), and after one oversized count
Pillow skips every later tag of the directory (DateTimeOriginal included) and
reports through ``warnings.warn``. The XMP packet is searched with bounded regular
expressions, never parsed as XML: an XML parser expands entities (a few hundred
bytes can ask for gigabytes) and refuses a packet that is merely cut short.
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
import mimetypes
import os
import re
import stat
import struct
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import BinaryIO, Final

from boothsync.errors import SourceFileError

__all__ = [
    "DEFAULT_FILENAME_DATES",
    "Capture",
    "CaptureOptions",
    "capture_time",
    "compile_filename_date",
    "content_type",
    "looks_whole",
    "reset_clock_warning",
]

_log = logging.getLogger(__name__)

#: File name date patterns tried in this order, each searched anywhere in the file name.
DEFAULT_FILENAME_DATES: Final[tuple[str, ...]] = (
    "%Y-%m-%d-%H-%M-%S",  # pibooth: 2024-07-15-18-30-00_pibooth.jpg
    "IMG_%Y%m%d_%H%M%S",  # Android cameras and booth apps on phones and tablets
    "%Y%m%d_%H%M%S",  # Breeze: 20181105_113500_WZQ22521.jpg; Samsung, Pixel (PXL_..._123)
    "%Y%m%d-%H%M%S",
    "%Y-%m-%d_%H-%M-%S",
    "%Y-%m-%d %H.%M.%S",  # Dropbox camera uploads
    "WIN_%Y%m%d_%H_%M_%S",  # the Windows Camera app on webcam booths: WIN_20240715_18_30_00_Pro
)

# The EXIF block and the XMP packet sit in the first few segments; 256 KiB covers
# every camera we know of and bounds the work on a file that is not what its
# header claims.
_JPEG_SCAN_LIMIT: Final = 256 * 1024
# PNG, WebP and video containers are walked box by box with seeks; this bounds the
# syscalls on a file made of millions of empty boxes while still passing a large
# PNG's IDATs.
_CHUNK_LIMIT: Final = 10_000
# An EXIF block larger than this is not something a camera wrote.
_EXIF_SIZE_LIMIT: Final = 1024 * 1024
# How much of an XMP packet is searched (and at most inflated): the dates sit near
# its start, and Photoshop's document history can grow a packet to megabytes.
_XMP_SIZE_LIMIT: Final = 1024 * 1024
# How many namespace declarations of one packet are looked at.
_XMLNS_LIMIT: Final = 256

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
# Cameras with a flat clock battery restart at 1970, 1980 or 2000; a booth in
# operation is newer than 1990, and a clock more than a day ahead is wrong.
_EARLIEST_MS: Final = (datetime(1990, 1, 1, tzinfo=UTC) - _EPOCH) // _MS
_FUTURE_SLACK_MS: Final = 24 * 3600 * 1000
# QuickTime and ISO base media files count seconds from 1904-01-01 UTC.
_MOVIE_EPOCH_S: Final = (datetime(1904, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(seconds=1)
# A camera time this far from the file's own time usually means a wrong camera clock.
_CLOCK_WARNING_MS: Final = 3600 * 1000
# Beyond this it does not: a clock set to the wrong hour or day is off by hours, while years
# mean a picture taken long before and copied in (or a camera whose date was never set), which
# no clock offset corrects.
_CLOCK_OFF_LIMIT_MS: Final = 2 * 24 * 3600 * 1000

# EXIF writes "YYYY:MM:DD HH:MM:SS"; some software uses '-' in the date.
_STAMP_RE: Final = re.compile(
    r"([0-9]{4})[:-]([0-9]{2})[:-]([0-9]{2})[ T]([0-9]{2}):([0-9]{2}):([0-9]{2})"
)
# XMP writes ISO 8601: "2024-07-15T18:30:00.25+02:00", seconds and fraction optional.
# A date without a time is not accepted: midnight would sort a whole day's pictures
# before the first one, where the file name or the mtime is closer to the truth.
_XMP_DATE_RE: Final = re.compile(
    r"([0-9]{4})[:-]([0-9]{2})[:-]([0-9]{2})[T ]([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:[.,]([0-9]+))?)?"
    r"(Z|z|[+-][0-9]{2}:?[0-9]{2})?"
)
_OFFSET_RE: Final = re.compile(r"([+-])([0-9]{2}):?([0-9]{2})")
_DIGITS_RE: Final = re.compile(r"[0-9]+")
_XMLNS_RE: Final = re.compile(
    r"xmlns:([A-Za-z_][\w.-]{0,63})\s{0,32}=\s{0,32}(?:\"([^\"<>]{0,256})\"|'([^'<>]{0,256})')"
)

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
_JPEG_EOI: Final = b"\xff\xd9"
# A JPEG without its end marker at the end is searched for it only up to this size.
_JPEG_WHOLE_SCAN_LIMIT: Final = 64 * 1024 * 1024
_PNG_IEND: Final = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_EXIF_HEADER: Final = b"Exif\x00\x00"
_JPEG_XMP_HEADER: Final = b"http://ns.adobe.com/xap/1.0/\x00"
_PNG_XMP_KEYWORD: Final = b"XML:com.adobe.xmp\x00"
_PNG_TEXT_CHUNKS: Final = frozenset({b"iTXt", b"zTXt", b"tEXt"})
# The box types an ISO base media file (MP4, MOV, M4V, 3GP) or an old QuickTime
# file starts with.
_MOVIE_FIRST_BOXES: Final = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"})

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

    ``source`` is one of ``"exif:DateTimeOriginal"``, ``"exif:DateTimeDigitized"``,
    ``"exif:DateTime"``, ``"xmp:exif:DateTimeOriginal"``, ``"xmp:photoshop:DateCreated"``,
    ``"xmp:xmp:CreateDate"``, ``"filename"``, ``"video:mvhd"`` or ``"mtime"``.
    """

    taken_at_ms: int
    source: str


@dataclass(frozen=True)
class CaptureOptions:
    """How to read capture times beyond the booth's zone (``[booth]`` in the config).

    ``camera_clock_offset`` is added to every time the camera wrote (EXIF and XMP),
    to correct a camera clock that is wrong. ``filename_dates`` are the patterns
    tried on the file name (see :func:`compile_filename_date`); ``()`` turns that
    source off. A pattern that does not compile raises ``ValueError`` here.
    """

    camera_clock_offset: timedelta = timedelta(0)
    filename_dates: tuple[str, ...] = DEFAULT_FILENAME_DATES

    def __post_init__(self) -> None:
        # A list given in code becomes a tuple: the compiled patterns are cached by it.
        object.__setattr__(self, "filename_dates", tuple(self.filename_dates))
        _filename_regexes(self.filename_dates)


def capture_time(
    path: Path, tz: tzinfo, *, now: float | None = None, options: CaptureOptions | None = None
) -> Capture:
    """Return when the picture (or video) at ``path`` was taken.

    Times without an offset are read in ``tz`` (for a local time that does not
    exist or exists twice, the earlier offset, as :mod:`datetime` does with
    ``fold=0``). A time that is blank, unparsable, before 1990 or more than a day
    after ``now`` (default: the current time) is not trusted and the next source
    is tried; the file's mtime is the last resort. EXIF and XMP times get
    ``options.camera_clock_offset`` added before they are judged.

    When an EXIF or XMP time wins and lies more than an hour from the file's mtime,
    a warning is logged, once per process: the camera clock is probably wrong.

    Raises :class:`SourceFileError` if the file is gone or cannot be opened; never
    for what is inside it.
    """
    now_ms = round((time.time() if now is None else now) * 1000)
    probe = _Probe(path, tz, _DEFAULT_OPTIONS if options is None else options)
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
        if candidate.source.startswith(("exif:", "xmp:")):
            _check_camera_clock(probe, candidate)
        return candidate
    # The mtime is what the filesystem knows; there is nothing left to prefer.
    return Capture(probe.mtime_ms, "mtime")


def looks_whole(path: Path) -> bool | None:
    """Whether the file's content looks completely written, by its own structure.

    True when its format says where it ends and it ends there: a JPEG has its end-of-image
    marker after its image data, a PNG its ``IEND`` chunk, a GIF its trailer, a WebP the
    length its RIFF header gives, an MP4/MOV/HEIC boxes that add up to the file with its
    index (``moov``, or ``meta`` for a still image). False when the format is known and the
    end is not there yet (a file still being written, or one cut short for good). None when
    the format is not one of these, or the file cannot be read: only time can tell then.

    Only the head and the tail are read, plus box or chunk headers; a JPEG whose last bytes
    are not its end marker (data appended after it, as motion photos do) is the one case
    where its image data is searched for the marker.
    """
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(12)
            if head.startswith(_JPEG_SOI):
                return _jpeg_whole(f, size)
            if head.startswith(_PNG_SIGNATURE):
                return _png_whole(f, size)
            if head[:6] in (b"GIF87a", b"GIF89a"):
                f.seek(max(0, size - 2))
                # The trailer follows the last block's terminator.
                return f.read(2) == b"\x00;"
            if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
                return int.from_bytes(head[4:8], "little") + 8 <= size
            if head[4:8] in _MOVIE_FIRST_BOXES:
                return _boxes_whole(f, size)
    except OSError:
        return None
    except ValueError:
        # A box or chunk that claims an impossible size: cut short, or damaged.
        return False
    return None


def _jpeg_whole(f: BinaryIO, size: int) -> bool:
    scan = _jpeg_scan_start(f, size)
    if scan is None:
        return False  # no image data yet
    start = max(scan, size - 4096)
    f.seek(start)
    tail = f.read()
    # Some writers pad a file with zeros after the end marker.
    ending = tail.rstrip(b"\x00")
    if ending.endswith(_JPEG_EOI) and start + len(ending) - 2 > scan:
        return True
    if size - scan > _JPEG_WHOLE_SCAN_LIMIT:
        return False
    f.seek(scan)
    return _jpeg_ends_after(f.read(size - scan))


def _jpeg_scan_start(f: BinaryIO, size: int) -> int | None:
    """Where the first start-of-scan marker is, by walking the segment headers; None if
    the file ends (or breaks off) before one."""
    at = len(_JPEG_SOI)
    for _ in range(_CHUNK_LIMIT):
        f.seek(at)
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        if marker[1] == 0xFF:  # a fill byte before the marker
            at += 1
            continue
        if marker[1] == 0xDA:
            return at
        if marker[1] == 0xD9:
            return None
        if 0xD0 <= marker[1] <= 0xD7 or marker[1] == 0x01:
            at += 2
            continue
        header = f.read(2)
        if len(header) < 2:
            return None
        length = int.from_bytes(header, "big")
        if length < 2:
            return None
        at += 2 + length
        if at > size:
            return None
    return None


def _jpeg_ends_after(data: bytes) -> bool:
    """Whether the image data (``data`` starts at the first scan) reaches an end marker:
    segments are skipped by their length, entropy-coded data to the next real marker (in
    it, 0xFF is always followed by a stuffed 0x00 or a restart marker)."""
    n = len(data)
    at = 0
    while at + 1 < n:
        if data[at] != 0xFF:
            return False
        marker = data[at + 1]
        if marker == 0xFF:
            at += 1
            continue
        if marker == 0xD9:
            return True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            at += 2
            continue
        if at + 4 > n:
            return False
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if length < 2:
            return False
        at += 2 + length
        if marker == 0xDA:
            found = _next_marker(data, at)
            if found is None:
                return False
            at = found
    return False


def _next_marker(data: bytes, at: int) -> int | None:
    """Where the entropy-coded data from ``at`` ends: its next real marker (0xFF not followed
    by a stuffed 0x00 or a restart marker), or None when the data ends first."""
    n = len(data)
    while True:
        at = data.find(b"\xff", at)
        if at < 0 or at + 1 >= n:
            return None
        following = data[at + 1]
        if following != 0x00 and not 0xD0 <= following <= 0xD7:
            return at
        at += 2


def _png_whole(f: BinaryIO, size: int) -> bool:
    f.seek(max(0, size - len(_PNG_IEND)))
    if f.read(len(_PNG_IEND)) == _PNG_IEND:
        return True
    # Something after IEND, or a file still being written: walk the chunks to IEND.
    at = len(_PNG_SIGNATURE)
    for _ in range(_CHUNK_LIMIT):
        f.seek(at)
        header = f.read(8)
        if len(header) < 8:
            return False
        at += 12 + int.from_bytes(header[:4], "big")
        if header[4:] == b"IEND":
            return at <= size
        if at > size:
            return False
    return False


def _boxes_whole(f: BinaryIO, size: int) -> bool:
    """The top-level boxes of an ISO base media file tile it exactly, index included."""
    at = 0
    kinds: set[bytes] = set()
    for _ in range(_CHUNK_LIMIT):
        if at == size:
            return b"moov" in kinds or b"meta" in kinds
        box = _box(f, at, size)
        if box is None:
            return False
        kind, _body, end = box
        if end > size:
            return False  # the box runs past the end: still being written
        kinds.add(kind)
        at = end
    return False


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


# -- file name dates -----------------------------------------------------------------------------

_DIRECTIVES: Final[Mapping[str, str]] = {
    "Y": "(?P<Y>[0-9]{4})",
    "m": "(?P<m>[0-9]{2})",
    "d": "(?P<d>[0-9]{2})",
    "H": "(?P<H>[0-9]{2})",
    "M": "(?P<M>[0-9]{2})",
    "S": "(?P<S>[0-9]{2})",
}


def compile_filename_date(pattern: str) -> re.Pattern[str]:
    """The regular expression for one file name date pattern.

    ``%Y`` is four digits, ``%m %d %H %M %S`` two digits each, ``%%`` a percent
    sign, anything else itself (case-insensitive). ``%Y %m %d %H %M`` are required
    and ``%S`` is optional (seconds 0), each at most once. The match may start
    anywhere in the name, but a pattern that starts with a directive does not
    match right after a digit: a counter in front of a date is not part of its year.

    Raises ``ValueError`` with a one-line reason for any other directive.
    """
    parts = ["(?<![0-9])"] if pattern[:1] == "%" and pattern[1:2] != "%" else []
    seen: set[str] = set()
    chars = iter(pattern)
    for char in chars:
        if char != "%":
            parts.append(re.escape(char))
            continue
        directive = next(chars, "")
        if directive == "%":
            parts.append("%")
        elif directive in _DIRECTIVES:
            if directive in seen:
                raise ValueError(f"%{directive} appears twice")
            seen.add(directive)
            parts.append(_DIRECTIVES[directive])
        elif not directive:
            raise ValueError("ends in a lone %; write %% for a percent sign")
        else:
            raise ValueError(
                f"unknown directive %{directive}; only %Y %m %d %H %M %S and %% are allowed"
            )
    missing = [f"%{name}" for name in "YmdHM" if name not in seen]
    if missing:
        raise ValueError(f"needs {' '.join(missing)} (only %S is optional)")
    return re.compile("".join(parts), re.IGNORECASE)


@functools.lru_cache(maxsize=16)
def _filename_regexes(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    # Compiled once per distinct list: every file of a booth is matched against the same one.
    return tuple(compile_filename_date(pattern) for pattern in patterns)


_DEFAULT_OPTIONS: Final = CaptureOptions()


# -- the camera clock warning --------------------------------------------------------------------

_clock_lock = threading.Lock()
_clock_warned = False
_far_warned = False


def reset_clock_warning() -> None:
    """Let the next camera clock disagreement be logged again (for tests)."""
    global _clock_warned, _far_warned
    with _clock_lock:
        _clock_warned = _far_warned = False


def _check_camera_clock(probe: _Probe, capture: Capture) -> None:
    """Warn once per process when a camera time is more than an hour from the file's time.

    Only a difference of up to two days gets an offset to set; a larger one has its own warning
    (also once), so an old picture copied in first does not hide a camera clock that is off.
    """
    global _clock_warned, _far_warned
    difference = capture.taken_at_ms - probe.mtime_ms
    if abs(difference) <= _CLOCK_WARNING_MS:
        return
    if abs(difference) > _CLOCK_OFF_LIMIT_MS:
        with _clock_lock:
            if _far_warned:
                return
            _far_warned = True
        _log.warning(
            "%s: the camera's time (%s) is %d days %s the file's time: a picture taken long "
            "before and copied in, or a camera whose date is wrong (check it); its camera time "
            "is used (this warning is logged once)",
            probe.path,
            capture.source,
            abs(difference) // (24 * 3600 * 1000),
            "behind" if difference < 0 else "ahead of",
        )
        return
    with _clock_lock:
        if _clock_warned:
            return
        _clock_warned = True
    # The offset that would make the two agree, including any offset already set.
    suggested = probe.options.camera_clock_offset // _MS - difference
    _log.warning(
        "%s: the camera's time (%s) is %s %s the file's time, which usually means the camera "
        'clock is off: check the camera clock, or set [booth] camera_clock_offset = "%s" '
        "(this warning is logged once)",
        probe.path,
        capture.source,
        _format_duration(abs(difference)).lstrip("+"),
        "behind" if difference < 0 else "ahead of",
        _format_duration(suggested),
    )


def _format_duration(millis: int) -> str:
    """Milliseconds as the config writes an offset, to the second: "+1h02m", "-30s"."""
    sign = "-" if millis < 0 else "+"
    seconds = round(abs(millis) / 1000)
    units = [("h", seconds // 3600), ("m", seconds // 60 % 60), ("s", seconds % 60)]
    used = [index for index, (_, amount) in enumerate(units) if amount]
    if not used:
        return "+0s"
    text = ""
    for index in range(used[0], used[-1] + 1):
        unit, amount = units[index]
        text += f"{amount:02d}{unit}" if text else f"{amount}{unit}"
    return sign + text


# -- one file, read once -------------------------------------------------------------------------


@dataclass
class _Meta:
    """What the container walk found: raw bytes, parsed later by the sources that need them."""

    exif: bytes | None = None  # the TIFF structure
    xmp: bytes | None = None  # the packet, or a PNG text chunk's body after its keyword
    xmp_chunk: bytes = b""  # the PNG chunk type the XMP came in; b"" for a plain packet
    movie_created: int | None = None  # mvhd creation time, seconds since 1904


class _Probe:
    """One file as the sources see it: stat once, read once, each part parsed at most once."""

    def __init__(self, path: Path, tz: tzinfo, options: CaptureOptions) -> None:
        self.path = path
        self.tz = tz
        self.options = options
        self.stat = _stat(path)
        self.mtime_ms = self.stat.st_mtime_ns // 1_000_000
        self._meta: _Meta | None = None
        self._tiff: _Tiff | None = None
        self._ifd0: Mapping[int, str | int] | None = None
        self._exif_ifd: Mapping[int, str | int] | None = None
        self._xmp: str | None = None
        self._xmlns: Mapping[str, tuple[str, ...]] | None = None

    def meta(self) -> _Meta:
        """The metadata blocks of the file, found by its content, not its name."""
        if self._meta is None:
            # Set before reading so that a failure is raised (and reported) once;
            # the sources after it see a file without metadata.
            self._meta = _Meta()
            self._meta = _read_meta(self.path, self.stat)
        return self._meta

    def ifd0(self) -> Mapping[int, str | int]:
        """The main image directory (IFD0) of the EXIF block; empty when there is none."""
        if self._ifd0 is None:
            self._ifd0 = {}
            block = self.meta().exif
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

    def xmp(self) -> str:
        """The XMP packet as text (at most its first MiB); empty when there is none."""
        if self._xmp is None:
            self._xmp = ""
            meta = self.meta()
            if meta.xmp is not None:
                self._xmp = _xmp_text(meta.xmp, meta.xmp_chunk)
        return self._xmp

    def xmlns(self) -> Mapping[str, tuple[str, ...]]:
        """``{namespace URI: prefixes}`` as the packet declares them."""
        if self._xmlns is None:
            found: dict[str, tuple[str, ...]] = {}
            for match in itertools.islice(_XMLNS_RE.finditer(self.xmp()), _XMLNS_LIMIT):
                uri = match.group(2) if match.group(2) is not None else match.group(3)
                found[uri] = (*found.get(uri, ()), match.group(1))
            self._xmlns = found
        return self._xmlns


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


# -- the sources, most trusted first -------------------------------------------------------------

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


def _xmp_source(source: str, namespace: str, prefix: str, name: str) -> _Source:
    """A source for one XMP date property, found under its usual prefix or a declared one."""

    def read(probe: _Probe) -> Capture | None:
        text = probe.xmp()
        if not text:
            return None
        # The prefix is only a name for the namespace: old Adobe files write
        # xap:CreateDate for what is now xmp:CreateDate.
        for each in dict.fromkeys((prefix, *probe.xmlns().get(namespace, ()))):
            match = _xmp_property_re(each, name).search(text)
            if match is not None:
                value = next(group for group in match.groups() if group is not None)
                return _xmp_capture(probe, source, value)
        return None

    read.__doc__ = f"XMP {prefix}:{name} ({namespace})."
    return read


_xmp_original: Final = _xmp_source(
    "xmp:exif:DateTimeOriginal", "http://ns.adobe.com/exif/1.0/", "exif", "DateTimeOriginal"
)
_xmp_date_created: Final = _xmp_source(
    "xmp:photoshop:DateCreated", "http://ns.adobe.com/photoshop/1.0/", "photoshop", "DateCreated"
)
_xmp_create_date: Final = _xmp_source(
    "xmp:xmp:CreateDate", "http://ns.adobe.com/xap/1.0/", "xmp", "CreateDate"
)


def _filename(probe: _Probe) -> Capture | None:
    """A date and time in the file name, read in the booth's zone."""
    name = probe.path.name
    for regex in _filename_regexes(probe.options.filename_dates):
        for match in regex.finditer(name):
            fields = match.groupdict()
            try:
                local = datetime(
                    int(fields["Y"]),
                    int(fields["m"]),
                    int(fields["d"]),
                    int(fields["H"]),
                    int(fields["M"]),
                    int(fields.get("S") or 0),
                )
            except ValueError:
                continue  # digits that only look like a date, e.g. a counter
            moment = local.replace(tzinfo=probe.tz)
            return Capture((moment - _EPOCH) // _MS, "filename")
    return None


def _video(probe: _Probe) -> Capture | None:
    """The movie header's creation time: seconds since 1904 in UTC; 0 means unset."""
    created = probe.meta().movie_created
    if not created:
        return None
    return Capture((created + _MOVIE_EPOCH_S) * 1000, "video:mvhd")


# Most trusted first. The mtime is not listed: it is the floor under all of them.
_SOURCES: Final[tuple[_Source, ...]] = (
    _exif_original,
    _exif_digitized,
    _exif_modified,
    _xmp_original,
    _xmp_date_created,
    _xmp_create_date,
    _filename,
    _video,
)


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
    return _camera_capture(probe, source, local, _millis(subsec), _offset(offset))


def _xmp_capture(probe: _Probe, source: str, value: str) -> Capture | None:
    text = value.strip()
    if not text:
        return None
    match = _XMP_DATE_RE.fullmatch(text)
    if match is None:
        _log.debug("%s: %s %r is not a date and time, not trusted", probe.path, source, text)
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
    except ValueError:
        _log.debug("%s: %s %r is not a date, not trusted", probe.path, source, text)
        return None
    return _camera_capture(probe, source, local, _millis(fraction), _offset(offset))


def _camera_capture(
    probe: _Probe, source: str, local: datetime, millis: int, zone: tzinfo | None
) -> Capture:
    """A time the camera wrote, in its own offset or else the booth's zone, clock corrected."""
    moment = local.replace(microsecond=millis * 1000, tzinfo=zone or probe.tz)
    # Aware subtraction applies the zone's rules with fold=0 for gaps and overlaps.
    taken = (moment - _EPOCH) // _MS + probe.options.camera_clock_offset // _MS
    return Capture(taken, source)


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
    """An offset ("+02:00", "-05:30", "+0900", "Z") as a fixed zone; None when absent or bad."""
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


@functools.lru_cache(maxsize=32)
def _xmp_property_re(prefix: str, name: str) -> re.Pattern[str]:
    """One simple XMP property as an attribute (p:Name="...") or an element (<p:Name>...</p:Name>).

    Every repetition is bounded, so a search over a hostile packet stays linear.
    """
    qname = re.escape(f"{prefix}:{name}")
    return re.compile(
        rf"(?<![\w.:-]){qname}\s{{0,32}}=\s{{0,32}}(?:\"([^\"<]{{0,100}})\"|'([^'<]{{0,100}})')"
        rf"|<{qname}(?:\s[^<>]{{0,400}})?>([^<]{{0,100}})</{qname}\s{{0,32}}>"
    )


def _xmp_text(data: bytes, chunk: bytes) -> str:
    """The packet as text; a PNG text chunk's body is unpacked first (inflating at most 1 MiB)."""
    if chunk == b"iTXt":
        # compression flag, compression method, language tag NUL, translated keyword NUL, text
        if len(data) < 2:
            raise ValueError("XMP iTXt chunk cut off")
        compressed, method = data[0], data[1]
        _, found_language, rest = data[2:].partition(b"\x00")
        _, found_keyword, rest = rest.partition(b"\x00")
        if not (found_language and found_keyword):
            raise ValueError("XMP iTXt chunk without its language and keyword fields")
        data = _inflate(rest, method) if compressed else rest
    elif chunk == b"zTXt":
        if not data:
            raise ValueError("XMP zTXt chunk cut off")
        data = _inflate(data[1:], data[0])
    # XMP is UTF-8 in JPEG, PNG and WebP; a stray bad byte must not hide the dates.
    return data[:_XMP_SIZE_LIMIT].decode("utf-8", "replace")


def _inflate(data: bytes, method: int) -> bytes:
    if method != 0:
        raise ValueError(f"XMP compressed with unknown method {method}")
    # max_length bounds the output: a 1 KiB deflate stream can expand to a gigabyte.
    return zlib.decompressobj().decompress(data, _XMP_SIZE_LIMIT)


# -- reading the containers ----------------------------------------------------------------------


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except FileNotFoundError as exc:
        raise SourceFileError(f"{path}: vanished before upload") from exc
    except OSError as exc:
        raise SourceFileError(f"{path}: cannot be read: {exc.strerror or exc}") from exc


def _read_meta(path: Path, st: os.stat_result) -> _Meta:
    """The EXIF block, XMP packet and movie time of the file, found by its content."""
    meta = _Meta()
    # A directory, FIFO or device has no metadata, and opening a FIFO would block.
    if not stat.S_ISREG(st.st_mode):
        return meta
    try:
        with path.open("rb") as f:
            head = f.read(12)
            if head.startswith(_JPEG_SOI):
                _jpeg_meta(f, meta)
            elif head.startswith(_PNG_SIGNATURE):
                _png_meta(f, meta)
            elif head.startswith(b"RIFF") and head[8:12] == b"WEBP":
                _webp_meta(f, meta)
            elif head[4:8] in _MOVIE_FIRST_BOXES:
                meta.movie_created = _movie_created(f, st.st_size)
            # GIF has no EXIF; HEIC has no movie header and falls through to the mtime.
    except FileNotFoundError as exc:
        raise SourceFileError(f"{path}: vanished before upload") from exc
    except OSError as exc:
        # The file is there but cannot be read (locked by the booth software,
        # permissions, I/O error): the upload would fail the same way.
        raise SourceFileError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    return meta


def _jpeg_meta(f: BinaryIO, meta: _Meta) -> None:
    """Walk the segment headers after SOI to the APP1 "Exif" and XMP segments; stop at SOS."""
    f.seek(len(_JPEG_SOI))
    while f.tell() < _JPEG_SCAN_LIMIT:
        if f.read(1) != b"\xff":
            return  # not at a marker: damaged, or the end of the file
        marker = f.read(1)
        while marker == b"\xff" and f.tell() < _JPEG_SCAN_LIMIT:  # fill bytes
            marker = f.read(1)
        if not marker or marker in (b"\xd9", b"\xda", b"\xff"):
            return  # EOF, EOI, start of scan (image data follows) or endless fill
        if b"\xd0" <= marker <= b"\xd7" or marker == b"\x01":
            continue  # RSTn and TEM have no length
        header = f.read(2)
        if len(header) < 2:
            return
        length = int.from_bytes(header, "big")
        if length < 2:
            return
        if marker != b"\xe1":
            f.seek(length - 2, io.SEEK_CUR)
            continue
        _jpeg_app1(f, length - 2, meta)
        if meta.exif is not None and meta.xmp is not None:
            return


def _jpeg_app1(f: BinaryIO, length: int, meta: _Meta) -> None:
    """Read an APP1 segment's ``length`` bytes of body into ``meta`` if it is the EXIF or the
    XMP one (APP1 also holds extended XMP or a vendor's data: the header tells which)."""
    head = f.read(min(length, len(_JPEG_XMP_HEADER)))
    rest = length - len(head)
    if head.startswith(_EXIF_HEADER) and meta.exif is None:
        meta.exif = (head + f.read(rest))[len(_EXIF_HEADER) :]
    elif head == _JPEG_XMP_HEADER and meta.xmp is None:
        meta.xmp = f.read(rest)
    else:
        f.seek(rest, io.SEEK_CUR)


def _png_meta(f: BinaryIO, meta: _Meta) -> None:
    """Walk the chunks to eXIf and the XMP text chunk (before or after IDAT), seeking the rest."""
    at = len(_PNG_SIGNATURE)
    for _ in range(_CHUNK_LIMIT):
        f.seek(at)
        header = f.read(8)
        if len(header) < 8:
            return
        length = int.from_bytes(header[:4], "big")
        kind = header[4:]
        if kind == b"IEND":
            return
        if kind == b"eXIf" and meta.exif is None and length <= _EXIF_SIZE_LIMIT:
            meta.exif = f.read(length).removeprefix(_EXIF_HEADER)
        elif kind in _PNG_TEXT_CHUNKS and meta.xmp is None:
            keyword = f.read(min(length, len(_PNG_XMP_KEYWORD)))
            if keyword == _PNG_XMP_KEYWORD:
                meta.xmp = f.read(min(length - len(keyword), _XMP_SIZE_LIMIT))
                meta.xmp_chunk = kind
        if meta.exif is not None and meta.xmp is not None:
            return
        at += 12 + length  # length, type, data and CRC


def _webp_meta(f: BinaryIO, meta: _Meta) -> None:
    """Walk the RIFF chunks after the "WEBP" form type to the EXIF and XMP chunks."""
    at = 12
    for _ in range(_CHUNK_LIMIT):
        f.seek(at)
        header = f.read(8)
        if len(header) < 8:
            return
        size = int.from_bytes(header[4:], "little")
        kind = header[:4]
        if kind == b"EXIF" and meta.exif is None and size <= _EXIF_SIZE_LIMIT:
            # Some writers keep the JPEG "Exif\0\0" prefix in the chunk.
            meta.exif = f.read(size).removeprefix(_EXIF_HEADER)
        elif kind == b"XMP " and meta.xmp is None:
            meta.xmp = f.read(min(size, _XMP_SIZE_LIMIT))
        if meta.exif is not None and meta.xmp is not None:
            return
        at += 8 + size + (size & 1)  # chunks are padded to even sizes


def _movie_created(f: BinaryIO, file_size: int) -> int | None:
    """The mvhd creation time of an ISO base media / QuickTime file, or None.

    Only box headers are read: the top level is walked (over mdat, whatever its
    size, with a seek) to moov, and moov's children to mvhd.
    """
    at = 0
    for _ in range(_CHUNK_LIMIT):
        box = _box(f, at, file_size)
        if box is None:
            return None
        kind, body, end = box
        if kind == b"moov":
            return _mvhd_created(f, body, min(end, file_size))
        at = end
    return None


def _mvhd_created(f: BinaryIO, start: int, end: int) -> int | None:
    at = start
    for _ in range(_CHUNK_LIMIT):
        box = _box(f, at, end)
        if box is None:
            return None
        kind, body, box_end = box
        if box_end > end:
            raise ValueError(f"{kind!r} box at {at} runs past the end of its moov box")
        if kind == b"mvhd":
            f.seek(body)
            data = f.read(min(box_end - body, 12))
            # version (1 byte), flags (3), then the creation time: 32 bits in
            # version 0, 64 bits in version 1.
            if len(data) >= 8 and data[0] == 0:
                return int.from_bytes(data[4:8], "big")
            if len(data) >= 12 and data[0] == 1:
                return int.from_bytes(data[4:12], "big")
            raise ValueError(f"mvhd box of version {data[:1].hex() or 'none'}, {len(data)} bytes")
        at = box_end
    return None


def _box(f: BinaryIO, at: int, end: int) -> tuple[bytes, int, int] | None:
    """The box at ``at``: (type, where its body starts, where it ends); None past ``end``."""
    if at + 8 > end:
        return None
    f.seek(at)
    header = f.read(8)
    if len(header) < 8:
        return None
    size, kind = int.from_bytes(header[:4], "big"), header[4:]
    body = at + 8
    if size == 1:  # the real size follows as 64 bits (an mdat over 4 GiB)
        large = f.read(8)
        if len(large) < 8:
            return None
        size, body = int.from_bytes(large, "big"), at + 16
    elif size == 0:  # the box runs to the end of the file (or of its parent)
        size = end - at
    if size < body - at:
        raise ValueError(f"{kind!r} box at {at} claims {size} bytes, less than its header")
    return kind, body, at + size
