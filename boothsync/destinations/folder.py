"""A folder as a destination: each picture copied into a local folder, a USB drive or a share.

Owns the safe copy: the bytes go to a hidden temporary file in the target folder
(``.NAME.boothsync-RANDOM.part``), are flushed to the disk, and only then appear under their
real name, in one step that never overwrites anything. A name already taken by other content
gets " (1)", " (2)"... before its extension; a name (or one of those variants) already holding
the same bytes counts as delivered, so a retry after a crash never leaves a second copy.
With ``album_folders``, a picture with an album goes into a subfolder named after it.

OSError is translated here: a folder that is not there (a drive not plugged in, a share not
mounted) is a :class:`~boothsync.errors.NetworkError`, so the uploader waits for it with its
probe; a folder boothsync may not write into pauses the destination; a full disk is tried
again later. Reads the picture only through :class:`~boothsync.destinations.base.UploadItem`.
Must not know about the queue.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from boothsync.destinations.base import (
    CheckItem,
    DestinationConfig,
    GalleryEvent,
    SentPicture,
    Service,
    UploadItem,
)
from boothsync.errors import (
    DestinationUnavailable,
    FileRejected,
    NetworkError,
    RetryableError,
    SourceFileError,
    UploadError,
)
from boothsync.options import max_edge_option, option, quality_option, type_option

if TYPE_CHECKING:
    from boothsync.destinations.base import DestinationContext

__all__ = ["SERVICE", "FolderConfig", "FolderDestination", "safe_name"]

log = logging.getLogger(__name__)

_HASH_CHUNK = 1024 * 1024
# "IMG_1.jpg" ... "IMG_1 (9999).jpg": far more than any booth makes of one name.
_MAX_VARIANTS = 10_000
# Keeps the temporary name (a dot, the name, ".boothsync-" and 8 hex digits, ".part")
# within the 255 bytes most filesystems allow for one name.
_TEMP_NAME_BYTES = 200
# A temporary file untouched for this long is left over from a copy that never finished
# (boothsync was stopped hard, the machine lost power): removed when the folder is next used.
_STALE_SECONDS = 3600.0
# Characters that Windows, FAT drives and SMB shares refuse in a name, and control characters.
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL"] + [f"{port}{n}" for port in ("COM", "LPT") for n in range(1, 10)]
)
_FULL = {errno.ENOSPC, errno.EDQUOT} if hasattr(errno, "EDQUOT") else {errno.ENOSPC}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
# What os.link says when the filesystem has no hard links (FAT, exFAT, many shares); on
# Windows also as ERROR_INVALID_FUNCTION and ERROR_NOT_SUPPORTED.
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EINVAL, errno.EXDEV}
_NO_LINKS_WINDOWS = {1, 50}


def safe_name(name: str) -> str:
    """``name`` as one file or folder name any filesystem takes: no separators, no characters
    Windows or a FAT drive refuse, no trailing dots or spaces, no device name such as "CON",
    never empty. No leading dot either: it would hide the file, and only boothsync's own
    temporary files start with one."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".").rstrip(". ")
    if not cleaned or cleaned.split(".", 1)[0].strip().upper() in _DEVICES:
        return f"_{cleaned}"
    return cleaned


@dataclass(frozen=True, kw_only=True)
class FolderConfig(DestinationConfig):
    """``[destinations.NAME]`` with ``type = "folder"``: a copy into a folder."""

    type: Literal["folder"] = type_option("folder")
    path: Path = option(
        "path",
        "The folder the pictures are copied into: a local folder, a USB drive or a network "
        "share. Required.",
        required=True,
    )
    album_folders: bool = option(
        "bool",
        "Put each album's pictures into a subfolder named after its album id.",
        default=False,
    )
    max_edge: int | None = max_edge_option()
    quality: int = quality_option()


class FolderDestination:
    """Copies each picture into ``config.path`` (and an album's subfolder, if asked)."""

    type = "folder"
    label = "Folder"  # its name where the galleries are named by theirs (the setup page)

    def __init__(self, config: FolderConfig, *, context: DestinationContext | None = None) -> None:
        self.name = config.name
        self.section = f"[destinations.{config.name}]"
        self._config = config
        self._root = Path(config.path)
        # Learnt on the first copy: False once the filesystem refused a hard link.
        self._links = hasattr(os, "link")
        # Folders already cleared of temporary files left by an earlier run.
        self._swept: set[Path] = set()
        self._sweep_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FolderDestination(name={self.name!r}, path={str(self._root)!r})"

    def upload(self, item: UploadItem) -> None:
        folder = self._folder(item.album_id)
        self._sweep(folder)
        name = safe_name(item.file_name)
        short = name.encode()[:_TEMP_NAME_BYTES].decode(errors="ignore")
        temp = folder / f".{short}.boothsync-{secrets.token_hex(4)}.part"
        try:
            with self._writing(folder):
                digest = _write(temp, item)
                placed, copied = self._place(temp, folder, name, item.size, digest)
                if copied:
                    _sync_folder(folder)
        finally:
            _remove(temp)
        if copied:
            log.debug("%s copied to %s", item.file_name, placed)
        else:
            log.info("%s is already in %s as %s: not copied again", item.file_name, folder, placed)

    def events(self) -> list[GalleryEvent]:
        return []

    def list_pictures(self) -> list[str]:
        """The files in the folder (and, with ``album_folders``, in its album subfolders, as
        ``album/name``), boothsync's own temporary files left out; NetworkError when the folder
        is not there."""
        if not self._root.is_dir():
            raise NetworkError(self._missing_message())
        names: list[str] = []
        try:
            with os.scandir(self._root) as entries:
                listed = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
            for name, is_dir in listed:
                if name.startswith("."):
                    continue
                if not is_dir:
                    names.append(name)
                elif self._config.album_folders:
                    with os.scandir(self._root / name) as inner:
                        names.extend(
                            f"{name}/{e.name}"
                            for e in inner
                            if not e.name.startswith(".") and not e.is_dir(follow_symlinks=False)
                        )
        except OSError as exc:
            raise NetworkError(f"cannot list {self._root}: {exc.strerror or exc}") from exc
        return names

    def gallery_key(self, picture: SentPicture) -> str:
        """The name :meth:`upload` gives the copy (before a taken name gets " (1)")."""
        name = safe_name(picture.file_name)
        if self._config.album_folders and picture.album_id:
            return f"{safe_name(picture.album_id)}/{name}"
        return name

    def probe(self) -> None:
        """The configured folder exists and is a folder; NetworkError if not."""
        if not self._root.is_dir():
            raise NetworkError(self._missing_message())

    def check(self, album_ids: Collection[str] = ()) -> list[CheckItem]:
        """The folder is there and boothsync can create (and delete) a file in it."""
        where = str(self._root)
        if not self._root.is_dir():
            return [CheckItem(False, f"{self.name}: folder exists", self._missing_message())]
        items = [CheckItem(True, f"{self.name}: folder exists", where)]
        probe = self._root / f".boothsync-check-{secrets.token_hex(4)}"
        try:
            with self._writing(self._root):
                with open(probe, "xb") as handle:
                    handle.write(b"boothsync")
                probe.unlink()
        except UploadError as exc:
            items.append(CheckItem(False, f"{self.name}: folder writable", str(exc)))
        else:
            detail = "album subfolders are created as needed" if self._config.album_folders else ""
            items.append(CheckItem(True, f"{self.name}: folder writable", detail or where))
        finally:
            _remove(probe)
        return items

    def close(self) -> None:
        """Nothing to release: every copy closes its own files."""

    def _missing_message(self) -> str:
        return (
            f"the folder {self._root} is not there (a drive not plugged in, a share not "
            f"mounted): check path in {self.section}"
        )

    def _folder(self, album_id: str | None) -> Path:
        """Where this picture goes: the root, or its album's subfolder (created here)."""
        if not self._root.is_dir():
            raise NetworkError(self._missing_message())
        if not (self._config.album_folders and album_id):
            return self._root
        folder = self._root / safe_name(album_id)
        if folder.is_dir():
            return folder
        with self._writing(self._root):
            try:
                folder.mkdir()
            except FileExistsError as exc:
                if folder.is_dir():  # another worker made it just now
                    return folder
                raise FileRejected(
                    f"cannot make the album folder {folder}: a file of that name is in the way"
                ) from exc
        # The new folder's name must last as long as the pictures put into it.
        _sync_folder(self._root)
        return folder

    def _sweep(self, folder: Path) -> None:
        """Once per folder and run: remove temporary files an unfinished copy left behind."""
        with self._sweep_lock:
            if folder in self._swept:
                return
            self._swept.add(folder)
        cutoff = time.time() - _STALE_SECONDS
        try:
            for path in folder.glob(".*.boothsync-*.part"):
                if path.stat().st_mtime < cutoff:
                    log.info("removing %s, left by a copy that did not finish", path)
                    _remove(path)
        except OSError as exc:
            log.debug("cannot look for leftovers in %s: %s", folder, exc.strerror or exc)

    @contextmanager
    def _writing(self, folder: Path) -> Iterator[None]:
        """Turn an OSError met while writing into ``folder`` into what the uploader acts on."""
        try:
            yield
        except OSError as exc:
            raise self._error(folder, exc) from exc

    def _error(self, folder: Path, exc: OSError) -> UploadError:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENAMETOOLONG:
            return FileRejected(f"cannot write into {folder}: {reason}")
        if exc.errno in _FULL:
            return RetryableError(f"{folder} is full ({reason}): make room on it")
        if isinstance(exc, PermissionError) or exc.errno in _READ_ONLY:
            return DestinationUnavailable(
                f"cannot write into {folder}: permission denied ({reason}); let the user "
                f"boothsync runs as write there, or change path in {self.section}"
            )
        if not self._root.is_dir():
            # Unplugged or unmounted while the copy ran.
            return NetworkError(self._missing_message())
        return NetworkError(f"cannot write into {folder}: {reason}")

    def _place(
        self, temp: Path, folder: Path, name: str, size: int, digest: str
    ) -> tuple[Path, bool]:
        """Give the finished temporary file its name without overwriting anything.

        Returns the file that holds the picture and whether it was put there now (False: an
        earlier copy of the same bytes was found under the name or one of its variants).
        """
        stem, dot, suffix = name.rpartition(".")
        if not stem:  # no extension, or a name like ".jpg"
            stem, dot, suffix = name, "", ""
        for number in range(_MAX_VARIANTS):
            target = folder / (f"{stem} ({number}){dot}{suffix}" if number else name)
            if self._claim(temp, target):
                return target, True
            if _same(target, size, digest):
                return target, False
        raise FileRejected(f"{folder} already holds {_MAX_VARIANTS} files named like {name}")

    def _claim(self, temp: Path, target: Path) -> bool:
        """Put ``temp`` at ``target`` if that name is free, atomically; False if it is taken."""
        if self._links:
            try:
                os.link(temp, target)
            except FileExistsError:
                return False
            except OSError as exc:
                if not _no_links(exc):
                    raise
                log.debug("%s has no hard links (%s); naming by reservation", target.parent, exc)
                self._links = False
            else:
                return True
        # No hard links: reserve the name with an exclusive create (atomic on local disks and
        # shares alike), then move the finished file over the empty placeholder.
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        os.close(fd)
        try:
            os.replace(temp, target)
        except OSError:
            _remove(target)
            raise
        return True


def _no_links(exc: OSError) -> bool:
    """Whether ``os.link`` failed because the filesystem has no hard links at all."""
    return exc.errno in _NO_LINKS or getattr(exc, "winerror", None) in _NO_LINKS_WINDOWS


def _write(temp: Path, item: UploadItem) -> str:
    """Copy the item's bytes into a new ``temp``, on disk before this returns; their SHA-256."""
    digest = hashlib.sha256()
    written = 0
    with open(temp, "xb") as handle:
        for chunk in item.chunks():
            handle.write(chunk)
            digest.update(chunk)
            written += len(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    if written != item.size:  # chunks() promises this; a short copy must never be named
        raise SourceFileError(f"{item.path}: only {written} of {item.size} bytes could be read")
    return digest.hexdigest()


def _same(path: Path, size: int, digest: str) -> bool:
    """Whether the file at ``path`` holds exactly these bytes (size first, then SHA-256)."""
    try:
        if not path.is_file() or path.stat().st_size != size:
            return False
        found = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                found.update(chunk)
    except OSError:
        return False
    return found.hexdigest() == digest


def _sync_folder(folder: Path) -> None:
    """Make the new name durable. Windows cannot open a folder for this; some shares refuse."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc.strerror or exc)


SERVICE: Final = Service("folder", FolderConfig, FolderDestination)
