"""Thumbnails of the pictures for the dashboard: small JPEGs, each made once and kept.

Owns the thumbnail folder (this account's only) and what is in it: ``<file id>.jpg`` for every
picture asked for (a file id names one version of a picture, so a thumbnail never goes stale),
made with Pillow (the JPEG decoder's draft mode, the EXIF orientation applied, RGB), written
whole or not at all, the oldest deleted once there are more than the bound.

Must never raise for what a picture is or where it went (gone, a video, damaged, cut short, a
decompression bomb): that is None and one warning per picture. Must never follow a symbolic
link at a picture's own name: a thumbnail would show whatever the link points to, which may be
no picture of the booth at all. Never writes, moves or locks a picture.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps, UnidentifiedImageError

from boothsync.paths import private_folder

__all__ = ["Thumbnails"]

log = logging.getLogger(__name__)

# Enough for a sharp small picture; a 320-pixel thumbnail comes out at about 20 KB.
_QUALITY = 80

# Never through a link at the picture's own name (as the uploader reads it), and never stuck
# on a named pipe that sits where a picture was.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_BINARY", 0)
)

# Thumbnails made at once for the same picture wait for each other; different pictures rarely
# share a lock. A fixed set, so nothing grows with the number of pictures.
_STRIPES = 16

# A temporary file this old was left by a process that stopped while writing it.
_STALE_SECONDS = 3600.0

_THUMBNAIL_NAME = re.compile(r"[0-9]+\.jpg")
_TEMP_PREFIX = "."
_TEMP_SUFFIX = ".tmp"


class _Unusable(Exception):
    """The picture's content gives no thumbnail (not a picture, damaged, too many pixels);
    the same version of it never will."""


class Thumbnails:
    """The thumbnails kept in ``folder`` (created on first use, mode 0700): ``edge`` pixels
    on the longer side, at most ``max_files`` of them.

    Safe to share between threads: two asking for the same picture at once make it once.
    """

    def __init__(self, folder: Path, *, edge: int = 320, max_files: int = 500) -> None:
        if edge < 1 or max_files < 1:
            raise ValueError(f"edge and max_files must be positive, not {edge} and {max_files}")
        self._folder = Path(folder)
        self._edge = edge
        self._max_files = max_files
        self._stripes = tuple(threading.Lock() for _ in range(_STRIPES))
        # Guards the bookkeeping below, the folder's creation and the pruning.
        self._lock = threading.Lock()
        self._warned: set[int] = set()
        # The file ids whose content gives no thumbnail: not decoded again.
        self._unusable: set[int] = set()
        self._ready = False

    @property
    def folder(self) -> Path:
        """Where the thumbnails are kept."""
        return self._folder

    def made(self, file_id: int) -> Path | None:
        """The thumbnail of picture ``file_id`` if it was made already; never makes one."""
        path = self._folder / f"{int(file_id)}.jpg"
        return path if path.is_file() else None

    def get(self, file_id: int, source: Path) -> Path | None:
        """The thumbnail of picture ``file_id``, whose file is ``source``, made now if it was not
        made before; None when none can be made (a warning says why, once per picture).

        The path returned may be gone by the time it is read, if it was the oldest one and
        other pictures pushed it out meanwhile: read it as a thumbnail that is not there.
        """
        file_id = int(file_id)
        done = self.made(file_id)
        if done is not None:
            return done
        with self._stripes[file_id % _STRIPES]:
            # Made by another thread while this one waited?
            done = self.made(file_id)
            if done is not None:
                return done
            with self._lock:
                if file_id in self._unusable:
                    return None
            return self._make(file_id, Path(source))

    def _make(self, file_id: int, source: Path) -> Path | None:
        try:
            with _open_source(source) as handle:
                small = _render(handle, self._edge)
        except _Unusable as exc:
            with self._lock:
                self._unusable.add(file_id)
            self._warn(file_id, source, str(exc))
            return None
        except OSError as exc:
            # Gone, a link, unreadable: perhaps not for good (a share mounted again, a lock
            # released), so asking again tries again.
            self._warn(file_id, source, _os_reason(exc))
            return None
        target = self._folder / f"{file_id}.jpg"
        try:
            self._prepare_folder()
            _store(small, target)
        except OSError as exc:
            self._warn(file_id, source, f"cannot write {target}: {exc.strerror or exc}")
            return None
        self._prune(keep=target)
        return target

    def _warn(self, file_id: int, source: Path, reason: str) -> None:
        with self._lock:
            if file_id in self._warned:
                return
            self._warned.add(file_id)
        log.warning("no thumbnail of %s: %s", source, reason)

    def _prepare_folder(self) -> None:
        """Create the folder private, and clear what an interrupted writer left there (once)."""
        with self._lock:
            if self._ready:
                return
            private_folder(self._folder)
            cutoff = time.time() - _STALE_SECONDS
            with os.scandir(self._folder) as entries:
                for entry in entries:
                    if entry.name.startswith(_TEMP_PREFIX) and entry.name.endswith(_TEMP_SUFFIX):
                        with contextlib.suppress(OSError):
                            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                                os.unlink(entry.path)
            self._ready = True

    def _prune(self, *, keep: Path) -> None:
        """Delete the oldest thumbnails (by modification time) beyond ``max_files``, never
        ``keep``, the one just made."""
        with self._lock:
            found: list[tuple[int, str]] = []
            try:
                with os.scandir(self._folder) as entries:
                    for entry in entries:
                        if not _THUMBNAIL_NAME.fullmatch(entry.name) or entry.name == keep.name:
                            continue
                        with contextlib.suppress(OSError):  # deleted meanwhile
                            found.append(
                                (entry.stat(follow_symlinks=False).st_mtime_ns, entry.path)
                            )
            except OSError as exc:
                log.warning("cannot look through the thumbnails in %s: %s", self._folder, exc)
                return
            excess = len(found) + 1 - self._max_files
            for _, path in sorted(found)[: max(0, excess)]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)


def _open_source(source: Path) -> BinaryIO:
    """The picture's file, opened for reading only if it is a regular file at its own name."""
    if not hasattr(os, "O_NOFOLLOW") and source.is_symlink():
        raise OSError(errno.ELOOP, "a symbolic link", str(source))
    fd = os.open(source, _OPEN_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(source))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "it is gone"
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link, which a thumbnail never follows"
    return exc.strerror or str(exc)


def _render(handle: BinaryIO, edge: int) -> Image.Image:
    """The thumbnail of the picture ``handle`` reads, upright, in RGB; raises _Unusable."""
    try:
        with Image.open(handle) as image:
            width, height = image.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and width * height > limit:
                raise _Unusable(f"{width}x{height} is more pixels than boothsync decodes ({limit})")
            # The JPEG decoder skips the detail the thumbnail would throw away (it decodes at
            # 1/2, 1/4 or 1/8 scale, never below the size asked for): a fraction of the time
            # and memory a whole booth picture takes.
            image.draft("RGB", (edge, edge))
            # (None only with in_place=True, which older Pillow's types do not tell apart.)
            upright = ImageOps.exif_transpose(image) or image
            upright.thumbnail((edge, edge))
            return _rgb(upright)
    except _Unusable:
        raise
    except Image.DecompressionBombError as exc:
        raise _Unusable(f"too many pixels to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise _Unusable("not a picture boothsync can read (a video, or damaged)") from exc
    except Exception as exc:
        # Pillow raises many types for a damaged or truncated file (OSError, SyntaxError,
        # ValueError, struct.error...).
        raise _Unusable(f"cannot be decoded ({type(exc).__name__}: {exc})") from exc


def _rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB, what is transparent in it on white (JPEG has no transparency)."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, "white")
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _store(image: Image.Image, target: Path) -> None:
    """Write ``image`` as ``target`` whole or not at all: a temporary file in the same folder,
    on the disk before it takes the name (a thumbnail cut short by a power cut would be kept
    for good)."""
    fd, name = tempfile.mkstemp(
        prefix=f"{_TEMP_PREFIX}{target.stem}-", suffix=_TEMP_SUFFIX, dir=target.parent
    )
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            image.save(out, "JPEG", quality=_QUALITY)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
