"""Where the config, the queue database and the logs live."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs
import pytest

from boothsync.config import Config, parse_config
from boothsync.paths import log_dir, outbox_path, state_dir, user_config_file


def make_config(tmp_path: Path, state: str | None = None) -> Config:
    data: dict[str, object] = {
        "watch": [{"path": str(tmp_path / "prints")}],
        "destinations": {"e": {"type": "eventpics", "api_key": "k", "link_id": "l"}},
    }
    if state is not None:
        data["state"] = {"dir": state}
    return parse_config(data, source=tmp_path / "boothsync.toml", environ={})


SYSTEMD = {"STATE_DIRECTORY": "/var/lib/boothsync", "LOGS_DIRECTORY": "/var/log/boothsync"}


def test_explicit_state_dir_holds_database_and_logs(tmp_path: Path) -> None:
    """Outside a service, [state] dir holds the database and the logs."""
    config = make_config(tmp_path, state="state")
    assert state_dir(config, environ={}) == tmp_path / "state"
    assert log_dir(config, environ={}) == tmp_path / "state" / "logs"
    assert outbox_path(config, environ={}) == tmp_path / "state" / "outbox.sqlite3"


@pytest.mark.parametrize("state", [None, "state"])
def test_service_directories_win(tmp_path: Path, state: str | None) -> None:
    """Under a service, $STATE_DIRECTORY and $LOGS_DIRECTORY win, even over [state] dir:
    a hardened unit may write nowhere else."""
    config = make_config(tmp_path, state=state)
    assert state_dir(config, environ=SYSTEMD) == Path("/var/lib/boothsync")
    assert log_dir(config, environ=SYSTEMD) == Path("/var/log/boothsync")
    assert outbox_path(config, environ=SYSTEMD) == Path("/var/lib/boothsync/outbox.sqlite3")


def test_first_of_several_systemd_directories(tmp_path: Path) -> None:
    """When systemd passes several directories, the first one is used."""
    config = make_config(tmp_path)
    environ = {
        "STATE_DIRECTORY": os.pathsep.join(["/var/lib/boothsync", "/var/lib/other"]),
        "LOGS_DIRECTORY": os.pathsep.join(["/var/log/boothsync", "/var/log/other"]),
    }
    assert state_dir(config, environ=environ) == Path("/var/lib/boothsync")
    assert log_dir(config, environ=environ) == Path("/var/log/boothsync")


@pytest.mark.parametrize("environ", [{}, {"STATE_DIRECTORY": "", "LOGS_DIRECTORY": ""}])
def test_user_folders_come_last(tmp_path: Path, environ: dict[str, str]) -> None:
    """Without [state] dir or systemd, the user's state and log folders are used."""
    config = make_config(tmp_path)
    state = Path(platformdirs.user_state_dir("boothsync", appauthor=False))
    assert state_dir(config, environ=environ) == state
    assert log_dir(config, environ=environ) == Path(
        platformdirs.user_log_dir("boothsync", appauthor=False)
    )
    assert outbox_path(config, environ=environ) == state / "outbox.sqlite3"


def test_paths_are_only_computed(tmp_path: Path) -> None:
    """Asking where things live creates nothing."""
    config = make_config(tmp_path, state="state")
    outbox_path(config)
    log_dir(config)
    assert not (tmp_path / "state").exists()


def test_user_config_file() -> None:
    """The per-user config file is boothsync.toml in the platform's config folder."""
    expected = Path(platformdirs.user_config_dir("boothsync", appauthor=False)) / "boothsync.toml"
    assert user_config_file() == expected
