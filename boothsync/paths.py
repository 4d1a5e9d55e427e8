"""Where boothsync keeps its config, its queue database and its logs.

Owns the precedence: the folders systemd hands a service (``$STATE_DIRECTORY``,
``$LOGS_DIRECTORY``) win, because under a hardened unit they are the only ones it may write;
then an explicit ``[state] dir`` in the config; then the per-user folders of platformdirs. The
Windows service definition sets the same two variables.

Also owns how private those folders are: the queue may hold what servers answered and the logs
what happened at the event, and nobody else on the machine needs either. On POSIX the state and
log folders are made 0700 and boothsync's own files in them 0600 (``private_folder``,
``private_file``, ``open_private``), without touching the process's umask: boothsync also writes
pictures into the operator's folders, and those keep their usual permissions. The config file
holds the gallery's key: ``write_private`` writes it whole or not at all, 0600 on POSIX (for
``boothsync init`` and the dashboard's setup).

And :func:`free_name`, the one rule for naming a file in a folder where its name is taken
(``name (1).ext``, ``name (2).ext``...): the after-upload move and the local receiver keep
every picture under it. Must not create folders or open files of its own accord: callers do
that, through these, when they need them.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import platformdirs

from boothsync.errors import BoothsyncError

if TYPE_CHECKING:
    from boothsync.config import Config

__all__ = [
    "PRIVATE_FILE",
    "PRIVATE_FOLDER",
    "default_state_dir",
    "free_name",
    "log_dir",
    "log_file",
    "open_private",
    "outbox_path",
    "private_file",
    "private_folder",
    "state_dir",
    "user_config_file",
    "write_private",
]

APP_NAME = "boothsync"
CONFIG_FILE_NAME = "boothsync.toml"
OUTBOX_FILE_NAME = "outbox.sqlite3"
LOG_FILE_NAME = "boothsync.log"

#: The mode of the state and log folders on POSIX: this account only.
PRIVATE_FOLDER = 0o700
#: The mode of boothsync's own files in them (queue, lock, logs) on POSIX.
PRIVATE_FILE = 0o600

# Bits that let another account read, write or enter.
_OTHERS = 0o077


def user_config_file() -> Path:
    """The per-user config file, the last place the config lookup tries."""
    # appauthor=False: on Windows AppData\Local\boothsync, not AppData\Local\boothsync\boothsync.
    folder = platformdirs.user_config_dir(APP_NAME, appauthor=False)
    return Path(folder) / CONFIG_FILE_NAME


def state_dir(config: Config, *, environ: Mapping[str, str] | None = None) -> Path:
    """The folder for the queue database: ``$STATE_DIRECTORY``, ``[state] dir``, or the user's."""
    from_service = _first_directory(environ, "STATE_DIRECTORY")
    if from_service is not None:
        return from_service
    if config.state.dir is not None:
        return config.state.dir
    return default_state_dir(environ=environ)


def default_state_dir(*, environ: Mapping[str, str] | None = None) -> Path:
    """The state folder of a boothsync without a config yet (the first setup)."""
    from_service = _first_directory(environ, "STATE_DIRECTORY")
    if from_service is not None:
        return from_service
    return Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))


def log_dir(config: Config, *, environ: Mapping[str, str] | None = None) -> Path:
    """The folder for log files: ``$LOGS_DIRECTORY``, ``[state] dir``/logs, or the user's."""
    from_service = _first_directory(environ, "LOGS_DIRECTORY")
    if from_service is not None:
        return from_service
    if config.state.dir is not None:
        return config.state.dir / "logs"
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


def log_file(config: Config, *, environ: Mapping[str, str] | None = None) -> Path:
    """The log file (rotated beside itself) that ``boothsync run`` and the tray write."""
    return log_dir(config, environ=environ) / LOG_FILE_NAME


def outbox_path(config: Config, *, environ: Mapping[str, str] | None = None) -> Path:
    """The queue database file inside the state folder."""
    return state_dir(config, environ=environ) / OUTBOX_FILE_NAME


def _first_directory(environ: Mapping[str, str] | None, name: str) -> Path | None:
    # systemd joins several StateDirectory=/LogsDirectory= entries with ':' (os.pathsep on
    # Linux); the first one is the unit's own.
    env = os.environ if environ is None else environ
    for entry in env.get(name, "").split(os.pathsep):
        if entry:
            return Path(entry)
    return None


def free_name(folder: Path, name: str, *, sidecar: str = "") -> Path:
    """``folder / name``, or ``stem (n).ext`` with the first n that is free.

    With a ``sidecar`` suffix a name is also taken when ``<name><sidecar>`` exists (a record
    kept beside each file, so a new file never meets an old file's record).
    """
    pure = PurePath(name)
    candidate, n = name, 0
    while (folder / candidate).exists() or (
        sidecar and (folder / f"{candidate}{sidecar}").exists()
    ):
        n += 1
        candidate = f"{pure.stem} ({n}){pure.suffix}"
    return folder / candidate


def private_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) if it is missing, and make it this account's only.

    Raises OSError when it cannot be created. A folder boothsync may not change (another
    account's, a share that ignores modes) keeps its mode: that is the operator's choice.
    """
    folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_FOLDER)
    with contextlib.suppress(OSError):
        _restrict(os.stat(folder), lambda mode: os.chmod(folder, mode))


def private_file(path: Path) -> None:
    """Make an existing file of boothsync's this account's only; anything else (missing, a
    link, a device, another account's file) is left alone."""
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            _restrict(st, lambda mode: os.chmod(path, mode))


def open_private(path: Path | str, flags: int) -> int:
    """``os.open(path, flags | O_CREAT)``: a file created here is 0600 from its first byte (POSIX),
    and one that was there already is made so if it is this account's regular file.

    The caller closes the descriptor. Never use it on a database SQLite has open in this
    process: closing any descriptor of a file drops every POSIX lock the process holds on it.
    """
    fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_BINARY", 0), PRIVATE_FILE)
    with contextlib.suppress(OSError):
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            _restrict(st, lambda mode: os.fchmod(fd, mode))
    return fd


def write_private(target: Path, text: str) -> None:
    """Write ``target`` whole or not at all, readable by this account only (it holds the
    key): a temporary file in the same folder, created 0600, flushed to disk, then renamed over
    it. A reader never sees half a file, and a crash leaves the old one. Raises BoothsyncError
    naming ``target`` when it cannot be written."""
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}-", dir=folder)
    except OSError as exc:
        raise BoothsyncError(f"{target}: cannot be written: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise BoothsyncError(f"{target}: cannot be written: {exc.strerror or exc}") from exc


def _restrict(st: os.stat_result, chmod: Callable[[int], None]) -> None:
    """Take the others' bits off a folder or file of this account (POSIX only)."""
    if os.name != "posix" or st.st_uid != os.geteuid():
        return
    mode = stat.S_IMODE(st.st_mode)
    if mode & _OTHERS:
        chmod(mode & ~_OTHERS)
