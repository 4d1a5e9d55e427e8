"""Where boothsync keeps its config, its queue database and its logs.

Owns the precedence: the folders systemd hands a service (``$STATE_DIRECTORY``,
``$LOGS_DIRECTORY``) win, because under a hardened unit they are the only ones it may write;
then an explicit ``[state] dir`` in the config; then the per-user folders of platformdirs. The
Windows service definition sets the same two variables. Must not create folders or open files:
callers do that when they need them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

if TYPE_CHECKING:
    from boothsync.config import Config

__all__ = ["log_dir", "log_file", "outbox_path", "state_dir", "user_config_file"]

APP_NAME = "boothsync"
CONFIG_FILE_NAME = "boothsync.toml"
OUTBOX_FILE_NAME = "outbox.sqlite3"
LOG_FILE_NAME = "boothsync.log"


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
