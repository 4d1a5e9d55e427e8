"""boothsync as a service: the unit files verify, and install/uninstall do what they say."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import venv
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from boothsync import service
from boothsync.config import load_config
from boothsync.daemon import GRACE_SECONDS
from boothsync.errors import BoothsyncError
from boothsync.paths import log_dir, state_dir
from tests.test_cli import boothsync as run_boothsync
from tests.test_cli import write_config

ROOT = Path(__file__).resolve().parents[1]
SERVICE_DIR = ROOT / "service"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
BASE_URL = "http://127.0.0.1:9"
# About how long boothsync needs to stop its watchers after the uploads' grace time.
WATCHER_STOP_SECONDS = 2

needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (.ci/run installs Debian's systemd package)",
)


def verify(unit: Path, tmp_path: Path, *, user: bool) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze [--user] verify UNIT``; --user gets its own runtime folder."""
    assert SYSTEMD_ANALYZE is not None
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    environ = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    command = [SYSTEMD_ANALYZE, *(["--user"] if user else []), "verify", str(unit)]
    return subprocess.run(
        command, capture_output=True, text=True, env=environ, timeout=60, check=False
    )


def setting(text: str, key: str) -> list[str]:
    """The values of every ``KEY=`` line of a unit."""
    return [line[len(key) + 1 :] for line in text.splitlines() if line.startswith(f"{key}=")]


def winsw_seconds(duration: str) -> float:
    """A WinSW duration ("20 sec", "1 hour") in seconds."""
    match = re.fullmatch(
        r"\s*(\d+(?:\.\d+)?)\s*(sec|secs|min|mins|hour|hours|day|days)?\s*", duration
    )
    assert match, duration
    unit = (match.group(2) or "sec").rstrip("s") or "sec"
    factor = {"sec": 1, "min": 60, "hour": 3600, "day": 86400}[unit]
    return float(match.group(1)) * factor


# The Python the service commands run with. The system service refuses a program under /tmp
# (its unit has PrivateTmp=yes): where this checkout, and so its Python, lives there, the
# commands run through a small venv in the home folder that reaches the same packages.
PYTHON = sys.executable


@pytest.fixture(scope="module", autouse=True)
def _python_outside_tmp() -> Iterator[None]:
    global PYTHON
    if not service._in_private_tmp(Path(sys.executable)):
        yield
        return
    folder = Path(tempfile.mkdtemp(prefix=".boothsync-python-", dir=Path.home()))
    try:
        venv.create(folder, with_pip=False, symlinks=True)
        site = next(folder.glob("lib/python*/site-packages"))
        # This process's import path: the checkout and its venv's packages.
        reached = [entry for entry in sys.path if entry and Path(entry).is_dir()]
        (site / "checkout.pth").write_text("\n".join(reached) + "\n", encoding="utf-8")
        script = folder / "bin" / "boothsync"
        script.write_text(
            f"#!{folder / 'bin' / 'python'}\n"
            "import sys\nfrom boothsync.cli import main\nsys.exit(main())\n",
            encoding="utf-8",
        )
        script.chmod(0o755)
        PYTHON = str(folder / "bin" / "python")
        yield
    finally:
        PYTHON = sys.executable
        shutil.rmtree(folder, ignore_errors=True)


def boothsync(
    *args: str, cwd: Path | None = None, **environ: str
) -> subprocess.CompletedProcess[str]:
    """``boothsync ARGS`` with :data:`PYTHON`."""
    return run_boothsync(*args, cwd=cwd, python=PYTHON, **environ)


def booth_config(folder: Path, *, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(folder, BASE_URL, extra=extra)


def booth_account() -> str:
    """An account that exists here and is not root, as the booth's own account is."""
    import pwd

    me = pwd.getpwuid(os.geteuid()).pw_name
    if me != "root":
        return me
    return next(entry.pw_name for entry in pwd.getpwall() if entry.pw_uid != 0)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A fresh folder outside /tmp and /var/tmp, as a booth's /home/pi is.

    The system service does not see /tmp (PrivateTmp=yes), where pytest's tmp_path lives.
    """
    try:
        folder = Path(tempfile.mkdtemp(prefix=".boothsync-test-", dir=Path.home()))
    except OSError as exc:
        pytest.skip(f"no writable folder outside /tmp for the booth: {exc}")
    try:
        if any(p == folder or p in folder.parents for p in (Path("/tmp"), Path("/var/tmp"))):
            pytest.skip("the home folder is inside /tmp")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class FakeSystemctl:
    """A `systemctl` first on PATH that records its arguments, one call per line."""

    bin: Path
    log: Path

    def environ(self, *, fail: str = "") -> dict[str, str]:
        return {
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
            "FAKE_SYSTEMCTL_LOG": str(self.log),
            "FAKE_SYSTEMCTL_FAIL": fail,
        }

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def systemctl(tmp_path: Path) -> FakeSystemctl:
    # No systemd manager runs where the tests run: this fake stands in for it.
    folder = tmp_path / "fake-bin"
    folder.mkdir()
    script = folder / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$FAKE_SYSTEMCTL_LOG"\n'
        'if [ -n "$FAKE_SYSTEMCTL_FAIL" ]; then\n'
        '    case "$*" in *"$FAKE_SYSTEMCTL_FAIL"*)\n'
        '        echo "Job for boothsync.service failed." >&2\n'
        '        echo "Failed to connect to bus: No medium found" >&2\n'
        "        exit 1;;\n"
        "    esac\n"
        "fi\n"
        "exit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return FakeSystemctl(folder, tmp_path / "systemctl.log")


# -- the unit files ---------------------------------------------------------------------------


@needs_systemd_analyze
def test_static_system_unit_verifies(tmp_path: Path) -> None:
    """service/boothsync.service passes `systemd-analyze verify` without a word on stderr."""
    result = verify(SERVICE_DIR / "boothsync.service", tmp_path, user=False)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@needs_systemd_analyze
def test_static_user_unit_verifies_as_a_user_unit(tmp_path: Path) -> None:
    """service/boothsync-user.service passes `systemd-analyze --user verify` (own runtime dir)."""
    result = verify(SERVICE_DIR / "boothsync-user.service", tmp_path, user=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_service_files_are_the_default_renderings() -> None:
    """The files in service/ are exactly what boothsync.service renders with its defaults."""
    files = service.default_files()
    assert sorted(files) == sorted(service.DEFAULT_FILES)
    for name, text in files.items():
        on_disk = (SERVICE_DIR / name).read_text(encoding="utf-8")
        assert on_disk == text, f"service/{name} drifted: python -m boothsync.service " + (
            "--write-defaults service"
        )


def test_write_defaults_writes_every_file(tmp_path: Path) -> None:
    """`python -m boothsync.service --write-defaults DIR` writes the three definitions."""
    result = subprocess.run(
        [sys.executable, "-m", "boothsync.service", "--write-defaults", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for name, text in service.default_files().items():
        assert (tmp_path / "out" / name).read_text(encoding="utf-8") == text


def test_static_units_say_what_the_service_needs() -> None:
    """Both units: notify, direct ExecStart, reload by SIGHUP, restarts forever, the timeouts."""
    for name, user in (("boothsync.service", False), ("boothsync-user.service", True)):
        text = (SERVICE_DIR / name).read_text(encoding="utf-8")
        assert setting(text, "Type") == ["notify"]
        assert setting(text, "NotifyAccess") == ["main"]
        assert setting(text, "ExecReload") == ["/bin/kill -HUP $MAINPID"]
        assert setting(text, "Restart") == ["on-failure"]
        assert setting(text, "RestartSec") == ["5"]
        assert setting(text, "WatchdogSec") == ["30"]
        assert setting(text, "TimeoutStartSec") == ["120"]
        assert setting(text, "StartLimitIntervalSec") == ["0"]
        assert setting(text, "StateDirectory") == ["boothsync"]
        assert setting(text, "LogsDirectory") == ["boothsync"]
        assert setting(text, "NoNewPrivileges") == ["yes"]
        journal = "journalctl --user -u boothsync -f" if user else "journalctl -u boothsync -f"
        assert f"# Logs: {journal}" in text
        if user:
            assert setting(text, "ExecStart") == ["/usr/bin/env boothsync run"]
            assert setting(text, "WantedBy") == ["default.target"]
            assert "network-online" not in text
            assert setting(text, "ProtectSystem") == []
            assert setting(text, "User") == []
        else:
            expected = "/usr/bin/env boothsync run -c /etc/boothsync/boothsync.toml"
            assert setting(text, "ExecStart") == [expected]
            assert setting(text, "WantedBy") == ["multi-user.target"]
            assert setting(text, "After") == ["network-online.target"]
            assert setting(text, "Wants") == ["network-online.target"]
            assert setting(text, "User") == ["boothsync"]
            assert setting(text, "ProtectSystem") == ["strict"]
            assert setting(text, "ProtectHome") == ["read-only"]
            assert setting(text, "RestrictAddressFamilies") == [
                "AF_UNIX AF_INET AF_INET6 AF_NETLINK"
            ]


def test_stop_timeout_leaves_room_for_the_graceful_stop() -> None:
    """TimeoutStopSec (both units) and WinSW's stoptimeout exceed the grace time plus watchers."""
    needed = GRACE_SECONDS + WATCHER_STOP_SECONDS
    assert needed < service.STOP_TIMEOUT_SECONDS
    for name in ("boothsync.service", "boothsync-user.service"):
        text = (SERVICE_DIR / name).read_text(encoding="utf-8")
        (timeout,) = setting(text, "TimeoutStopSec")
        assert float(timeout) > needed, name
    xml = ET.parse(SERVICE_DIR / "windows" / "boothsync.xml").getroot()
    assert winsw_seconds(xml.findtext("stoptimeout") or "") > needed


@needs_systemd_analyze
def test_unit_for_this_installation_verifies(tmp_path: Path, home: Path) -> None:
    """A unit rendered for this venv's boothsync and an awkward config folder passes verify.

    The folder name has a space, a % and a $; the watch moves its uploads, so the watch folder
    and move_to are ReadWritePaths; --run-as gives User=.
    """
    folder = home / "booth 100% $dir"
    config = booth_config(folder, extra='after_upload = "move"')
    account = booth_account()
    result = boothsync("service", "install", "--print", "-c", str(config), "--run-as", account)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    unit = tmp_path / "units" / "boothsync.service"
    unit.parent.mkdir()
    unit.write_text(text, encoding="utf-8")
    checked = verify(unit, tmp_path, user=False)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""

    executable = Path(PYTHON).parent / "boothsync"
    assert executable.is_file()
    resolved = str(config.resolve()).replace("%", "%%").replace("$", "$$")
    assert setting(text, "ExecStart") == [f'{executable} run -c "{resolved}"']
    hot = str((folder / "hot").resolve()).replace("%", "%%")
    assert setting(text, "ReadWritePaths") == [f'"-{hot}"', f'"-{hot}/uploaded"']
    assert setting(text, "User") == [account]
    assert "Written by `boothsync service install`" in text


@needs_systemd_analyze
def test_user_unit_for_this_installation_verifies(tmp_path: Path) -> None:
    """The user unit rendered for this installation passes `systemd-analyze --user verify`."""
    config = booth_config(tmp_path / "kiosk booth")
    result = boothsync("service", "install", "--user", "--print", "-c", str(config))
    assert result.returncode == 0, result.stderr
    unit = tmp_path / "units" / "boothsync.service"
    unit.parent.mkdir()
    unit.write_text(result.stdout, encoding="utf-8")
    checked = verify(unit, tmp_path, user=True)
    assert checked.returncode == 0, checked.stderr
    assert checked.stderr == ""
    executable = Path(PYTHON).parent / "boothsync"
    assert setting(result.stdout, "ExecStart") == [f'{executable} run -c "{config.resolve()}"']
    assert setting(result.stdout, "User") == []
    assert setting(result.stdout, "ReadWritePaths") == []


def test_writable_paths_follow_after_upload(tmp_path: Path) -> None:
    """keep: nothing; delete: the watch folder; move: the folder and move_to; a folder
    destination: its path; no repeats."""
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    config_file = tmp_path / "boothsync.toml"
    config_file.write_text(
        f"""
[booth]
name = "b"
timezone = "Europe/Berlin"

[[watch]]
path = "{(tmp_path / "a").as_posix()}"

[[watch]]
path = "{(tmp_path / "b").as_posix()}"
after_upload = "delete"

[[watch]]
path = "{(tmp_path / "c").as_posix()}"
after_upload = "move"
move_to = "{(tmp_path / "b").as_posix()}"

[destinations.eventpics]
type = "eventpics"
api_key = "key-1234"
link_id = "demo"

[destinations.backup]
type = "folder"
path = "{(tmp_path / "backup").as_posix()}"
""",
        encoding="utf-8",
    )
    config = load_config(config_file)
    assert service.writable_paths(config) == [tmp_path / "b", tmp_path / "c", tmp_path / "backup"]


def test_user_line_comes_from_run_as_then_sudo_user(home: Path) -> None:
    """User= is --run-as, else $SUDO_USER; for root there is no User= line at all."""
    import pwd

    config = booth_config(home)
    account = booth_account()
    other = next(e.pw_name for e in pwd.getpwall() if e.pw_uid != 0 and e.pw_name != account)
    by_sudo = boothsync("service", "install", "--print", "-c", str(config), SUDO_USER=account)
    assert setting(by_sudo.stdout, "User") == [account]
    chosen = boothsync(
        "service", "install", "--print", "-c", str(config), "--run-as", other, SUDO_USER=account
    )
    assert setting(chosen.stdout, "User") == [other]
    root = boothsync("service", "install", "--print", "-c", str(config), "--run-as", "root")
    assert root.returncode == 0, root.stderr
    assert setting(root.stdout, "User") == []


def refusal(result: subprocess.CompletedProcess[str]) -> str:
    """The one stderr line of a refused install (exit 2, nothing on stdout)."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_an_account_that_does_not_exist_is_refused(home: Path) -> None:
    """--run-as (or $SUDO_USER) naming no account of this system: one line naming the
    account and where it came from, exit 2, no unit (systemd would fail at the first start)."""
    config = booth_config(home)
    line = refusal(
        boothsync("service", "install", "--print", "-c", str(config), "--run-as", "nosuchuser")
    )
    assert line.startswith("boothsync: --run-as: there is no account 'nosuchuser' on this")
    assert "name an existing one" in line
    line = refusal(boothsync("service", "install", "--print", "-c", str(config), SUDO_USER="x-"))
    assert line.startswith("boothsync: $SUDO_USER: there is no account 'x-' on this system")


def test_root_is_refused_unless_asked_for(home: Path, systemctl: FakeSystemctl) -> None:
    """A service that would run as root without `--run-as root` (root ran the install, not
    sudo from the booth's account) is refused in one line that names --run-as; no unit is
    written and no systemctl runs. Explicit `--run-as root` is accepted (no User= line)."""
    config = booth_config(home)
    units = home / "units"
    # sudo from a root shell: $SUDO_USER is root.
    line = refusal(install(config, units, SUDO_USER="root", **systemctl.environ()))
    assert "the service would run as root" in line
    assert "--run-as ACCOUNT" in line and "--run-as root" in line
    if os.geteuid() == 0:
        # Root itself, without sudo: the account is the current one, root.
        line = refusal(install(config, units, SUDO_USER="", **systemctl.environ()))
        assert "the service would run as root" in line
    assert not units.exists()
    assert systemctl.calls() == []
    chosen = install(config, units, "--run-as", "root", SUDO_USER="root", **systemctl.environ())
    assert chosen.returncode == 0, chosen.stderr
    assert setting((units / "boothsync.service").read_text(encoding="utf-8"), "User") == []


@pytest.mark.parametrize("place", ["config", "watch", "folder"])
def test_something_in_tmp_is_refused_for_the_system_service(
    tmp_path: Path, home: Path, place: str
) -> None:
    """The system unit has PrivateTmp=yes: a config, a watch folder or a folder destination
    under /tmp or /var/tmp would be invisible to the service. The install refuses in one line
    that names it and says to move it; the user unit (no PrivateTmp) takes the same config."""
    hidden_name = {"config": "the config", "watch": "the watch folder", "folder": "the folder"}
    config = booth_config(home)
    text = config.read_text(encoding="utf-8")
    if place == "config":
        config = tmp_path / "boothsync.toml"
        named = config.resolve()
    elif place == "watch":
        named = tmp_path / "hot"
        named.mkdir()
        text = text.replace((home / "hot").as_posix(), named.as_posix())
    else:
        named = Path("/var/tmp") / "booth-copies"
        text += f'\n[destinations.backup]\ntype = "folder"\npath = "{named.as_posix()}"\n'
    config.write_text(text, encoding="utf-8")
    args = ("service", "install", "--print", "-c", str(config), "--run-as", booth_account())
    line = refusal(boothsync(*args))
    assert f"{hidden_name[place]} {named}: the service cannot see /tmp or /var/tmp" in line
    assert "PrivateTmp=yes" in line
    assert "move it elsewhere" in line
    user = boothsync("service", "install", "--user", "--print", "-c", str(config))
    assert user.returncode == 0, user.stderr


def test_print_shows_the_state_note_on_stderr(home: Path) -> None:
    """--print says the same [state] dir note as a real install, on stderr, so the unit on
    stdout can still be redirected into a file on its own."""
    config = booth_config(home)
    result = boothsync(
        "service", "install", "--print", "-c", str(config), "--run-as", booth_account()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# boothsync as a system service")
    assert "note:" not in result.stdout
    assert result.stderr.startswith("note: the service keeps its queue in /var/lib/boothsync")
    assert f'set [state] dir = "/var/lib/boothsync" in {config.resolve()}' in result.stderr


# -- install and uninstall with systemd -------------------------------------------------------


def install(
    config: Path, units: Path, *flags: str, **environ: str
) -> subprocess.CompletedProcess[str]:
    """``boothsync service install [FLAGS] -c CONFIG --unit-dir UNITS`` with ``environ``,
    through sudo from the booth's account unless ``environ`` says otherwise."""
    environ.setdefault("SUDO_USER", booth_account())
    return boothsync(
        "service", "install", *flags, "-c", str(config), "--unit-dir", str(units), **environ
    )


def test_install_print_writes_nothing(tmp_path: Path, home: Path, systemctl: FakeSystemctl) -> None:
    """--print prints the unit, writes no file and calls no systemctl."""
    config = booth_config(home)
    units = tmp_path / "units"
    result = install(config, units, "--print", **systemctl.environ())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# boothsync as a system service")
    assert "[Service]" in result.stdout
    assert not units.exists()
    assert systemctl.calls() == []


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_install_writes_the_unit_and_enables_it(
    tmp_path: Path, home: Path, systemctl: FakeSystemctl, user: bool
) -> None:
    """install writes DIR/boothsync.service, then daemon-reload, enable and restart (so a
    service already running picks up the new unit)."""
    config = booth_config(home)
    units = tmp_path / "units"
    flags = ["--user"] if user else []
    result = install(config, units, *flags, **systemctl.environ())
    assert result.returncode == 0, result.stderr
    unit = units / "boothsync.service"
    printed = boothsync(
        "service", "install", *flags, "--print", "-c", str(config), SUDO_USER=booth_account()
    )
    assert unit.read_text(encoding="utf-8") == printed.stdout
    prefix = "--user " if user else ""
    assert systemctl.calls() == [
        f"{prefix}daemon-reload",
        f"{prefix}enable boothsync.service",
        f"{prefix}restart boothsync.service",
    ]
    assert f"wrote {unit}" in result.stdout
    journal = "journalctl --user -u boothsync -f" if user else "journalctl -u boothsync -f"
    assert journal in result.stdout
    # The test config keeps its queue elsewhere: the system service says where its queue is.
    note = '[state] dir = "/var/lib/boothsync"' if not user else "remove [state] dir from"
    assert note in result.stdout


def test_user_install_goes_to_the_user_unit_folder(
    tmp_path: Path, systemctl: FakeSystemctl
) -> None:
    """Without --unit-dir, --user writes into $XDG_CONFIG_HOME/systemd/user."""
    config = booth_config(tmp_path)
    xdg = tmp_path / "xdg-config"
    result = boothsync(
        "service",
        "install",
        "--user",
        "-c",
        str(config),
        XDG_CONFIG_HOME=str(xdg),
        **systemctl.environ(),
    )
    assert result.returncode == 0, result.stderr
    assert (xdg / "systemd" / "user" / "boothsync.service").is_file()


def test_no_note_when_the_state_is_the_services(
    tmp_path: Path, home: Path, systemctl: FakeSystemctl
) -> None:
    """With [state] dir = /var/lib/boothsync neither the install nor --print says anything
    about the queue."""
    folder = home / "booth"
    config = booth_config(folder)
    text = config.read_text(encoding="utf-8")
    state = (folder / "state").as_posix()
    config.write_text(text.replace(state, "/var/lib/boothsync"), encoding="utf-8")
    result = install(config, tmp_path / "units", **systemctl.environ())
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stdout
    printed = install(config, tmp_path / "units", "--print")
    assert printed.returncode == 0, printed.stderr
    assert printed.stderr == ""


def test_failing_systemctl_is_one_line(
    tmp_path: Path, home: Path, systemctl: FakeSystemctl
) -> None:
    """systemctl failing: exit 1, one stderr line with its last line, no traceback."""
    config = booth_config(home)
    result = install(config, tmp_path / "units", **systemctl.environ(fail="enable"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "systemctl enable boothsync.service failed" in lines[0]
    assert lines[0].endswith("Failed to connect to bus: No medium found")


def test_no_user_manager_is_said_in_words_and_leaves_no_unit(
    tmp_path: Path, home: Path, systemctl: FakeSystemctl
) -> None:
    """`install --user` where no systemd user manager runs for the account (systemctl --user:
    "Failed to connect to bus: No medium found"): one line saying so and what to do instead,
    exit 1, and no unit file left behind."""
    config = booth_config(home)
    units = tmp_path / "units"
    result = install(config, units, "--user", **systemctl.environ(fail="daemon-reload"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no systemd user manager runs for this account" in lines[0]
    assert "boothsync run -c" in lines[0] and "bus" not in lines[0]
    assert not (units / "boothsync.service").exists()
    assert "wrote" not in result.stdout


def test_missing_systemctl_is_one_line(tmp_path: Path, home: Path) -> None:
    """No systemctl on PATH: exit 1, one line saying so."""
    config = booth_config(home)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = install(config, tmp_path / "units", PATH=str(empty))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "systemctl not found" in lines[0]


@pytest.mark.skipif(
    shutil.which("systemctl") is None or Path("/run/systemd/system").exists(),
    reason="needs systemctl on a system that was not started with systemd",
)
@pytest.mark.parametrize("action", ["install", "uninstall"])
def test_without_systemd_running_says_so_in_words(tmp_path: Path, home: Path, action: str) -> None:
    """The real systemctl on a system not started with systemd (a container, WSL without
    systemd): one line saying that systemd is not running and to use `boothsync run`,
    instead of systemctl's "Failed to connect to bus: Host is down"."""
    units = tmp_path / "units"
    if action == "install":
        result = install(booth_config(home), units)
    else:
        units.mkdir()
        (units / "boothsync.service").write_text("[Service]\n", encoding="utf-8")
        result = boothsync("service", "uninstall", "--unit-dir", str(units))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "systemd is not running on this system" in lines[0]
    assert "boothsync run -c" in lines[0]
    assert "bus" not in lines[0]


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere"
)
def test_unwritable_unit_folder_asks_for_sudo(
    tmp_path: Path, home: Path, systemctl: FakeSystemctl
) -> None:
    """A unit folder boothsync may not write: one line suggesting sudo or --user."""
    config = booth_config(home)
    units = tmp_path / "units"
    units.mkdir(mode=0o555)
    result = install(config, units, **systemctl.environ())
    assert result.returncode == 1
    assert result.stderr.strip().endswith("permission denied (run it with sudo, or use --user)")
    assert systemctl.calls() == []


def test_refused_write_is_one_line_asking_for_sudo(
    tmp_path: Path, home: Path, systemctl: FakeSystemctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The system refusing the write (as for /etc/systemd/system without sudo): one line."""
    config = load_config(booth_config(home))

    def refuse(self: Path, *args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setenv("PATH", systemctl.environ()["PATH"])
    monkeypatch.setattr(sys, "executable", PYTHON)  # the program, outside /tmp
    monkeypatch.setattr(Path, "write_text", refuse)
    with pytest.raises(BoothsyncError) as caught:
        service.install(
            config, folder=tmp_path / "units", run_as=booth_account(), say=lambda line: None
        )
    unit = tmp_path / "units" / "boothsync.service"
    assert str(caught.value) == f"{unit}: permission denied (run it with sudo, or use --user)"
    assert systemctl.calls() == []


def test_broken_config_writes_nothing(tmp_path: Path, systemctl: FakeSystemctl) -> None:
    """A broken config: the usual one-line config error, exit 2, no unit, no systemctl."""
    config = booth_config(tmp_path, extra='after_upload = "archive"')
    units = tmp_path / "units"
    result = install(config, units, **systemctl.environ())
    assert result.returncode == 2
    assert "after_upload" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not units.exists()
    assert systemctl.calls() == []


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_uninstall_disables_and_removes(
    tmp_path: Path, systemctl: FakeSystemctl, user: bool
) -> None:
    """uninstall: disable --now, remove the file, daemon-reload."""
    units = tmp_path / "units"
    units.mkdir()
    unit = units / "boothsync.service"
    unit.write_text("[Service]\n", encoding="utf-8")
    flags = ["--user"] if user else []
    result = boothsync(
        "service", "uninstall", *flags, "--unit-dir", str(units), **systemctl.environ()
    )
    assert result.returncode == 0, result.stderr
    assert not unit.exists()
    prefix = "--user " if user else ""
    assert systemctl.calls() == [
        f"{prefix}disable --now boothsync.service",
        f"{prefix}daemon-reload",
    ]
    assert f"removed {unit}" in result.stdout


def test_uninstall_removes_the_file_when_disable_fails(
    tmp_path: Path, systemctl: FakeSystemctl
) -> None:
    """A failing disable is reported (exit 1, one line) and the file is still removed."""
    units = tmp_path / "units"
    units.mkdir()
    unit = units / "boothsync.service"
    unit.write_text("[Service]\n", encoding="utf-8")
    result = boothsync(
        "service", "uninstall", "--unit-dir", str(units), **systemctl.environ(fail="disable")
    )
    assert result.returncode == 1
    assert not unit.exists()
    assert len(result.stderr.strip().splitlines()) == 1
    assert "systemctl disable --now boothsync.service failed" in result.stderr
    assert systemctl.calls() == ["disable --now boothsync.service", "daemon-reload"]


def test_uninstall_with_nothing_installed(tmp_path: Path, systemctl: FakeSystemctl) -> None:
    """Nothing installed: exit 0 and "nothing to uninstall: FILE does not exist"."""
    units = tmp_path / "units"
    result = boothsync("service", "uninstall", "--unit-dir", str(units), **systemctl.environ())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"nothing to uninstall: {units / 'boothsync.service'} does not exist"
    )
    assert systemctl.calls() == []


# -- Windows (WinSW) ----------------------------------------------------------------------------


def check_winsw(root: ET.Element) -> None:
    assert root.tag == "service"
    assert root.findtext("id") == "boothsync"
    assert root.findtext("executable")
    assert root.findtext("arguments")
    assert root.findtext("startmode") == "Automatic"
    assert winsw_seconds(root.findtext("stoptimeout") or "") > GRACE_SECONDS
    failures = root.findall("onfailure")
    assert failures
    assert all(f.get("action") == "restart" for f in failures)
    assert winsw_seconds(root.findtext("resetfailure") or "") == 3600
    log = root.find("log")
    assert log is not None
    assert log.get("mode") == "roll-by-size"
    assert int(log.findtext("sizeThreshold") or "0") > 0
    assert int(log.findtext("keepFiles") or "0") > 0
    assert root.findtext("logpath")


def env_values(root: ET.Element) -> dict[str, str]:
    return {e.get("name", ""): e.get("value", "") for e in root.findall("env")}


def test_static_winsw_definition() -> None:
    """service/windows/boothsync.xml parses and runs python -m boothsync under %BASE%."""
    tree = ET.parse(SERVICE_DIR / "windows" / "boothsync.xml")
    root = tree.getroot()
    check_winsw(root)
    assert root.findtext("executable") == "python"
    assert root.findtext("arguments") == '-m boothsync run -c "%BASE%\\boothsync.toml"'
    assert env_values(root) == {
        "STATE_DIRECTORY": "%BASE%\\state",
        "LOGS_DIRECTORY": "%BASE%\\logs",
    }
    text = (SERVICE_DIR / "windows" / "boothsync.xml").read_text(encoding="utf-8")
    assert "boothsync service install writes a copy" in " ".join(text.split())


def test_rendered_winsw_definition_round_trips_awkward_paths(tmp_path: Path) -> None:
    """The rendered XML escapes a config path with & < and keeps it exact; state is the user's."""
    config = load_config(booth_config(tmp_path / "Fotos & <Booth>"))
    text = service.render(config, platform="win32")
    root = ET.fromstring(text)
    check_winsw(root)
    assert root.findtext("executable") == os.path.abspath(sys.executable)
    config_file = (tmp_path / "Fotos & <Booth>" / "boothsync.toml").resolve()
    assert root.findtext("arguments") == f'-m boothsync run -c "{config_file}"'
    assert env_values(root) == {
        "STATE_DIRECTORY": str(state_dir(config)),
        "LOGS_DIRECTORY": str(log_dir(config)),
    }
    assert root.findtext("logpath") == str(log_dir(config))


def test_windows_install_without_winsw_says_the_last_step(tmp_path: Path) -> None:
    """No boothsync.exe beside the XML: the XML is written and the remaining step is said."""
    config = load_config(booth_config(tmp_path / "booth"))
    folder = tmp_path / "winsw"
    said: list[str] = []
    service.install(config, folder=folder, platform="win32", say=said.append)
    xml = folder / "boothsync.xml"
    assert xml.read_text(encoding="utf-8") == service.render(config, platform="win32")
    step = said[-1]
    assert "https://github.com/winsw/winsw/releases" in step
    assert f"save it as {folder / 'boothsync.exe'}" in step
    assert f"{folder / 'boothsync.exe'} install" in step
    assert f"{folder / 'boothsync.exe'} start" in step


def fake_winsw(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "boothsync.exe"
    exe.write_text(f'#!/bin/sh\necho "$*" >> "{folder / "winsw.log"}"\nexit 0\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return folder / "winsw.log"


@pytest.mark.skipif(sys.platform == "win32", reason="the fake WinSW is a shell script")
def test_windows_install_and_uninstall_through_winsw(tmp_path: Path) -> None:
    """With boothsync.exe (WinSW) present: install then start; uninstall: stop, uninstall."""
    config = load_config(booth_config(tmp_path / "booth"))
    folder = tmp_path / "winsw"
    log = fake_winsw(folder)
    said: list[str] = []
    service.install(config, folder=folder, platform="win32", say=said.append)
    assert (folder / "boothsync.xml").is_file()
    assert log.read_text().splitlines() == ["install", "start"]

    service.uninstall(folder=folder, platform="win32", say=said.append)
    assert log.read_text().splitlines() == ["install", "start", "stop", "uninstall"]
    assert not (folder / "boothsync.xml").exists()
    assert (folder / "boothsync.exe").exists()


def test_windows_uninstall_with_nothing_installed(tmp_path: Path) -> None:
    """No boothsync.xml: nothing to uninstall, said in one line."""
    said: list[str] = []
    service.uninstall(folder=tmp_path, platform="win32", say=said.append)
    assert said == [f"nothing to uninstall: {tmp_path / 'boothsync.xml'} does not exist"]
