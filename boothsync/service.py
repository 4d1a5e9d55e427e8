"""boothsync as a service: systemd units (system and user) and a WinSW definition for Windows.

Renders the unit files and the WinSW XML, writes them where the service manager looks for
them, and asks that manager (systemctl, WinSW) to load, enable and start them. The files in
the repository's ``service/`` folder are the renderings with their defaults;
``python -m boothsync.service --write-defaults service`` writes them again. Must not start
boothsync itself nor open the queue.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import platformdirs

from boothsync.config import Config
from boothsync.destinations.folder import FolderConfig
from boothsync.errors import BoothsyncError, ConfigError
from boothsync.paths import log_dir, state_dir

__all__ = [
    "DEFAULT_FILES",
    "PRIVATE_TMP_DIRS",
    "SERVICE_STATE_DIR",
    "STOP_TIMEOUT_SECONDS",
    "SYSTEM_UNIT_DIR",
    "UNIT_NAME",
    "WINSW_STOP_TIMEOUT",
    "default_files",
    "executable_command",
    "install",
    "render",
    "render_unit",
    "render_winsw",
    "service_account",
    "state_note",
    "uninstall",
    "unit_dir",
    "writable_paths",
    "write_defaults",
]

UNIT_NAME = "boothsync.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
# Where systemd's StateDirectory=boothsync puts the state of the system service.
SERVICE_STATE_DIR = Path("/var/lib/boothsync")

# systemd's TimeoutStopSec= and WinSW's <stoptimeout>: above boothsync's own graceful stop
# (boothsync.daemon.GRACE_SECONDS for uploads in flight, plus about 2 s to stop the watchers).
STOP_TIMEOUT_SECONDS = 20
WINSW_STOP_TIMEOUT = f"{STOP_TIMEOUT_SECONDS} sec"

WINSW_XML = "boothsync.xml"
WINSW_EXE = "boothsync.exe"
WINSW_RELEASES = "https://github.com/winsw/winsw/releases"

DEFAULT_FILES = ("boothsync.service", "boothsync-user.service", "windows/boothsync.xml")
"""The files of the ``service/`` folder, relative to it."""

# PrivateTmp=yes gives the system service its own empty /tmp and /var/tmp: whatever the
# operator keeps there is out of its sight.
PRIVATE_TMP_DIRS = (Path("/tmp"), Path("/var/tmp"))

# The static units run boothsync through env: systemd needs an executable that exists.
_ENV_BOOTHSYNC = ("/usr/bin/env", "boothsync")
_DEFAULT_CONFIG = "/etc/boothsync/boothsync.toml"
_DEFAULT_ACCOUNT = "boothsync"

# How long systemctl or WinSW may take; `restart` waits for boothsync to report ready.
_COMMAND_TIMEOUT = 180.0

Say = Callable[[str], None]


# -- what the service may write -------------------------------------------------------------------


def writable_paths(config: Config) -> list[Path]:
    """The folders the service writes besides its state and logs, without repeats, in order.

    after_upload = "delete" removes files from the watch folder; "move" takes them out of
    it and into ``move_to``; a folder destination copies into its ``path``. The system unit
    makes every one of them writable.
    """
    found: dict[Path, None] = {}
    for watch in config.watches:
        if watch.after_upload == "delete":
            found[watch.path] = None
        elif watch.after_upload == "move":
            found[watch.path] = None
            if watch.move_to is not None:
                found[watch.move_to] = None
    # Destinations that write files themselves: a copy into a folder.
    for destination in config.destinations.values():
        if isinstance(destination, FolderConfig):
            found[destination.path] = None
    return list(found)


# -- systemd units ------------------------------------------------------------------------------


def render_unit(
    command: Sequence[str],
    *,
    user: bool = False,
    account: str | None = None,
    writable: Sequence[Path] = (),
    tailored: bool = True,
) -> str:
    """The text of a unit running ``command``: the system unit, or with ``user`` the user unit.

    ``account`` becomes ``User=`` (system unit only; None or root: no such line), ``writable``
    one ``ReadWritePaths=`` each. ``tailored`` is False for the static files of ``service/``.
    """
    lines = [*_unit_header(user=user, tailored=tailored), ""]
    lines += [
        "[Unit]",
        "Description=boothsync: uploads the photo booth's pictures to the online gallery",
    ]
    if not user:
        lines += ["After=network-online.target", "Wants=network-online.target"]
    lines += [
        "# Never give up restarting: a booth at 23:40 must keep trying.",
        "StartLimitIntervalSec=0",
        "",
        "[Service]",
        "# boothsync tells systemd itself: ready, its status, that it is alive, that it stops.",
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=" + " ".join(_exec_word(word) for word in command),
        "# On SIGHUP boothsync rereads its config.",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=5",
        "WatchdogSec=30",
        "TimeoutStartSec=120",
        "# Above boothsync's own graceful stop (uploads in flight, then the watchers).",
        f"TimeoutStopSec={STOP_TIMEOUT_SECONDS}",
    ]
    if not user and account and account != "root":
        lines.append(f"User={_path_word(account)}")
    lines += [
        # Without the modes, systemd sets 0755 again at every start.
        "# Its queue and logs are for its own account only.",
        "StateDirectory=boothsync",
        "StateDirectoryMode=0700",
        "LogsDirectory=boothsync",
        "LogsDirectoryMode=0700",
    ]
    if user:
        lines += [
            "# The other hardening options need user namespaces in user units.",
            "NoNewPrivileges=yes",
        ]
    else:
        lines += _hardening(writable)
    lines += [
        "",
        "[Install]",
        f"WantedBy={'default.target' if user else 'multi-user.target'}",
    ]
    return "\n".join(lines) + "\n"


def _unit_header(*, user: bool, tailored: bool) -> list[str]:
    if user:
        lines = [
            "# boothsync as a user service (systemd --user) for kiosk desktops: it runs while the",
            "# booth's account is logged in.",
        ]
    else:
        lines = [
            "# boothsync as a system service (systemd): it runs from boot on, also when nobody is",
            "# logged in.",
        ]
    if tailored:
        lines += [
            "# Written by `boothsync service install` for this installation and its config; run",
            "# that again after moving boothsync or the config, or changing the watch folders.",
        ]
    else:
        if user:
            lines += [
                "# `boothsync service install --user` writes a copy tailored to one installation",
                "# (the absolute paths of its boothsync and its config file).",
            ]
        else:
            lines += [
                "# `boothsync service install` writes a copy tailored to one installation (the",
                "# absolute paths of its boothsync and config, User=, the folders it writes).",
            ]
        lines += [
            "# ExecStart goes through /usr/bin/env here: systemd and `systemd-analyze verify` need",
            "# an executable that exists, and env execs boothsync in its own place, so signals",
            "# still reach Python directly.",
        ]
        if user:
            lines.append("# Without -c, boothsync finds its config in the user config folder.")
    journal = _journal(user)
    lines.append(f"# Logs: {journal}")
    return lines


def _hardening(writable: Sequence[Path]) -> list[str]:
    lines = [
        "# boothsync reads pictures, talks to the gallery and writes its queue and logs.",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "# Watch folders and configs often live in /home/pi: read-only keeps them readable.",
        "ProtectHome=read-only",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "RestrictRealtime=yes",
        "# AF_UNIX: the notify socket; AF_NETLINK: glibc's getaddrinfo.",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        '# Folders boothsync writes (after_upload = "delete" or "move"), one line each; the "-"',
        "# lets the service start while one is missing (a USB stick not plugged in).",
    ]
    if not writable:
        lines.append("#ReadWritePaths=-/home/pi/photobooth")
    lines += [f"ReadWritePaths={_path_word('-' + str(path))}" for path in writable]
    return lines


def _exec_word(word: str) -> str:
    """One ExecStart= argument: specifiers (%) and variables ($) kept literal, quoted if needed."""
    return _quote(_no_line_break(word).replace("%", "%%").replace("$", "$$"))


def _path_word(word: str) -> str:
    """One path (or name) in a setting that expands specifiers but not variables."""
    return _quote(_no_line_break(word).replace("%", "%%"))


def _quote(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace('"', '\\"')
    if word and not any(c.isspace() or c in "\"';\\" for c in word):
        return escaped
    return f'"{escaped}"'


def _no_line_break(word: str) -> str:
    if "\n" in word or "\r" in word:
        raise BoothsyncError(f"{word!r}: a line break cannot go into a service definition")
    return word


# -- the WinSW definition -----------------------------------------------------------------------


def render_winsw(
    executable: str,
    arguments: str,
    *,
    state: str,
    logs: str,
    working: str,
    tailored: bool = True,
) -> str:
    """The WinSW XML running ``executable arguments`` with boothsync's state and log folders."""
    if tailored:
        note = (
            " Written by boothsync service install for this installation and its config;"
            " run that again after moving Python or the config file. "
        )
    else:
        note = (
            " boothsync as a Windows service through WinSW (save WinSW as boothsync.exe beside"
            " this file; %BASE% is that folder). boothsync service install writes a copy"
            " tailored to an installation: its python.exe, its config file, its state and"
            " log folders. WinSW stops the service with Ctrl+C, which boothsync takes as a"
            " graceful stop. "
        )
    root = ET.Element("service")
    root.append(
        ET.Comment(
            "\n"
            + textwrap.fill(note.strip(), 90, initial_indent="    ", subsequent_indent="    ")
            + "\n  "
        )
    )

    def add(tag: str, text: str | None = None, **attributes: str) -> ET.Element:
        element = ET.SubElement(root, tag, attributes)
        element.text = text
        return element

    add("id", "boothsync")
    add("name", "boothsync")
    add("description", "Uploads the photo booth's pictures to the online gallery, offline-safe.")
    add("executable", executable)
    add("arguments", arguments)
    add("workingdirectory", working)
    add("env", name="STATE_DIRECTORY", value=state)
    add("env", name="LOGS_DIRECTORY", value=logs)
    add("startmode", "Automatic")
    add("delayedAutoStart", "true")
    add("stoptimeout", WINSW_STOP_TIMEOUT)
    for _ in range(3):
        add("onfailure", action="restart", delay="10 sec")
    add("resetfailure", "1 hour")
    add("logpath", logs)
    log = add("log", mode="roll-by-size")
    ET.SubElement(log, "sizeThreshold").text = "10240"  # KB
    ET.SubElement(log, "keepFiles").text = "8"
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


# -- the files in service/ ----------------------------------------------------------------------


def default_files() -> dict[str, str]:
    """``{path relative to service/: text}``: the definitions with their defaults."""
    return {
        "boothsync.service": render_unit(
            [*_ENV_BOOTHSYNC, "run", "-c", _DEFAULT_CONFIG],
            account=_DEFAULT_ACCOUNT,
            tailored=False,
        ),
        "boothsync-user.service": render_unit([*_ENV_BOOTHSYNC, "run"], user=True, tailored=False),
        "windows/boothsync.xml": render_winsw(
            "python",
            '-m boothsync run -c "%BASE%\\boothsync.toml"',
            state="%BASE%\\state",
            logs="%BASE%\\logs",
            working="%BASE%",
            tailored=False,
        ),
    }


def write_defaults(folder: Path) -> list[Path]:
    """Write :func:`default_files` into ``folder``; the files written."""
    written = []
    for name, text in default_files().items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written


# -- rendering for this installation -----------------------------------------------------------


def executable_command(*, platform: str = sys.platform) -> list[str]:
    """How to start this installation's boothsync, absolute: its console script, else ``-m``."""
    name = "boothsync.exe" if platform == "win32" else "boothsync"
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return [os.path.abspath(beside)]
    found = shutil.which("boothsync")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "boothsync"]


def service_account(run_as: str | None, *, environ: Mapping[str, str] | None = None) -> str:
    """The account of the system service: ``--run-as``, else ``$SUDO_USER``, else the current."""
    env = os.environ if environ is None else environ
    return run_as or env.get("SUDO_USER") or _current_account()


def _current_account() -> str:
    """The account this command runs as, by its user id: a shell from `su` keeps the $USER of
    the account before, which would hide that the service is about to run as root."""
    if sys.platform != "win32":
        import pwd

        try:
            return pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:  # a user id without an entry (some containers)
            pass
    return getpass.getuser()


def _check_account(account: str, *, run_as: str | None, environ: Mapping[str, str]) -> None:
    """Refuse an account that does not exist, and root unless ``--run-as root`` asked for it.

    systemd would only find out at the service's first start (status=217/USER), long after
    the install said all was well.
    """
    if account == "root" and run_as != "root":
        raise ConfigError(
            "the service would run as root, the account that ran this install: add "
            "--run-as ACCOUNT with the booth's account (the one that owns the pictures), or "
            "--run-as root if it really must run as root"
        )
    if sys.platform == "win32":
        return
    import pwd

    try:
        pwd.getpwnam(account)
    except KeyError:
        source = "--run-as" if run_as else "$SUDO_USER" if environ.get("SUDO_USER") else None
        raise ConfigError(
            f"there is no account {account!r} on this system: name an existing one "
            "(the booth's login; `id -un` in its terminal shows it)",
            key=source,
        ) from None


def _check_private_tmp(
    config: Config, command: Sequence[str], config_file: Path, writable: Sequence[Path]
) -> None:
    """Refuse a system service that would need something kept in /tmp or /var/tmp.

    Its unit has PrivateTmp=yes, so it would not find its program or config there (it would
    fail at every start) nor a watch folder (it would wait for it forever); those folders are
    also emptied at boot.
    """
    places: list[tuple[str, Path]] = [
        ("the program", Path(command[0])),
        ("the config", config_file),
    ]
    places += [("the watch folder", watch.path) for watch in config.watches]
    places += [("the folder", path) for path in writable]
    if config.triggers.sparkbooth_status is not None:
        places.append(("the Sparkbooth status file", config.triggers.sparkbooth_status))
    hidden: dict[Path, str] = {}
    for what, path in places:
        if _in_private_tmp(path):
            hidden.setdefault(path, what)
    if not hidden:
        return
    listed = ", ".join(f"{what} {path}" for path, what in hidden.items())
    them = "it" if len(hidden) == 1 else "them"
    raise ConfigError(
        f"{listed}: the service cannot see /tmp or /var/tmp (its unit has PrivateTmp=yes, "
        f"and both are emptied at boot): move {them} elsewhere (such as /home/pi or "
        f"/opt/boothsync) and install again"
    )


def _in_private_tmp(path: Path) -> bool:
    """Whether ``path``, as written or with its links followed, lies in /tmp or /var/tmp."""
    spelled = Path(os.path.abspath(path))
    for candidate in (spelled, spelled.resolve()):
        for private in PRIVATE_TMP_DIRS:
            if candidate == private or private in candidate.parents:
                return True
    return False


def render(
    config: Config,
    *,
    user: bool = False,
    run_as: str | None = None,
    platform: str = sys.platform,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The unit (or, on Windows, the WinSW XML) for this installation running ``config``."""
    if user and run_as:
        raise ConfigError("only for the system service, not with --user", key="--run-as")
    config_file = _config_file(config)
    if platform == "win32":
        return render_winsw(
            os.path.abspath(sys.executable),
            f'-m boothsync run -c "{config_file}"',
            state=str(state_dir(config, environ=environ)),
            logs=str(log_dir(config, environ=environ)),
            working=str(config_file.parent),
        )
    command = [*executable_command(platform=platform), "run", "-c", str(config_file)]
    if user:
        return render_unit(command, user=True)
    env = os.environ if environ is None else environ
    account = service_account(run_as, environ=env)
    _check_account(account, run_as=run_as, environ=env)
    writable = writable_paths(config)
    _check_private_tmp(config, command, config_file, writable)
    return render_unit(command, account=account, writable=writable)


def _config_file(config: Config) -> Path:
    if config.source is None:
        raise ConfigError("the service needs a config file")
    return Path(config.source).resolve()


def unit_dir(
    *,
    user: bool = False,
    platform: str = sys.platform,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Where the definition goes by default (systemd's system or user folder, or WinSW's)."""
    if platform == "win32":
        return Path(platformdirs.user_data_dir("boothsync", appauthor=False)) / "service"
    if not user:
        return SYSTEM_UNIT_DIR
    env = os.environ if environ is None else environ
    config_home = env.get("XDG_CONFIG_HOME", "")
    base = Path(config_home) if os.path.isabs(config_home) else Path.home() / ".config"
    return base / "systemd" / "user"


# -- installing and removing --------------------------------------------------------------------


def install(
    config: Config,
    *,
    user: bool = False,
    folder: Path | None = None,
    run_as: str | None = None,
    platform: str = sys.platform,
    environ: Mapping[str, str] | None = None,
    say: Say = print,
) -> None:
    """Write the definition for ``config`` into ``folder`` (default :func:`unit_dir`), start it.

    systemd: ``daemon-reload``, ``enable``, then ``restart`` (a running service picks up the
    new unit). Windows: WinSW's ``install`` and
    ``start`` when ``boothsync.exe`` is beside the XML, else the step that remains is said.
    """
    text = render(config, user=user, run_as=run_as, platform=platform, environ=environ)
    target = folder or unit_dir(user=user, platform=platform, environ=environ)
    if platform == "win32":
        _install_winsw(target, text, say)
        return
    path = target / UNIT_NAME
    _write(path, text, hint=" (run it with sudo, or use --user)")
    try:
        _systemctl(user, "daemon-reload")
    except _NoManager:
        # No systemd to run it: a unit left behind would only mislead the next reader.
        _attempt(lambda: _remove(path))
        raise
    say(f"wrote {path}")
    _systemctl(user, "enable", UNIT_NAME)
    # restart, not start: installing again (another config, a new version) takes effect now.
    _systemctl(user, "restart", UNIT_NAME)
    when = "at every login" if user else "at every boot"
    say(f"enabled and started {UNIT_NAME}; it starts {when}")
    say(f"follow the logs: {_journal(user)}")
    note = state_note(config, user=user, platform=platform)
    if note is not None:
        say(note)


def state_note(config: Config, *, user: bool = False, platform: str = sys.platform) -> str | None:
    """The line to say when `boothsync status` and the tray would look at another queue than
    the systemd service's (StateDirectory= wins over ``[state] dir``); None when they agree."""
    if platform == "win32":
        return None
    if user:
        if config.state.dir is None:
            return None
        queue = Path(platformdirs.user_state_dir("boothsync", appauthor=False))
        if config.state.dir == queue:
            return None
        return (
            f"note: the user service keeps its queue in {queue} (systemd's StateDirectory= "
            f"wins over [state] dir under the service); remove [state] dir from "
            f"{_config_file(config)} so `boothsync status` and the tray see the service's queue"
        )
    if config.state.dir == SERVICE_STATE_DIR:
        return None
    return (
        f"note: the service keeps its queue in {SERVICE_STATE_DIR} (systemd's "
        f"StateDirectory= wins over [state] dir under the service); set "
        f'[state] dir = "{SERVICE_STATE_DIR}" in '
        f"{_config_file(config)} so `boothsync status` and the tray see the service's queue"
    )


def uninstall(
    *,
    user: bool = False,
    folder: Path | None = None,
    platform: str = sys.platform,
    environ: Mapping[str, str] | None = None,
    say: Say = print,
) -> None:
    """Stop and disable the service, remove its definition. Nothing installed: says so."""
    target = folder or unit_dir(user=user, platform=platform, environ=environ)
    if platform == "win32":
        _uninstall_winsw(target, say)
        return
    path = target / UNIT_NAME
    if not path.exists():
        say(f"nothing to uninstall: {path} does not exist")
        return
    # A failing disable is reported once the file is gone: a unit left behind helps nobody.
    problem = _attempt(lambda: _systemctl(user, "disable", "--now", UNIT_NAME))
    _remove(path)
    say(f"removed {path}")
    reloaded = _attempt(lambda: _systemctl(user, "daemon-reload"))
    for failure in (problem, reloaded):
        if failure is not None:
            raise failure
    say(f"stopped and disabled {UNIT_NAME}")


def _journal(user: bool) -> str:
    return "journalctl --user -u boothsync -f" if user else "journalctl -u boothsync -f"


def _install_winsw(folder: Path, text: str, say: Say) -> None:
    path = folder / WINSW_XML
    _write(path, text, hint=" (run it as administrator, or choose another --unit-dir)")
    say(f"wrote {path}")
    winsw = folder / WINSW_EXE
    if not winsw.is_file():
        say(
            f"one step remains: download WinSW (x64, from {WINSW_RELEASES}), save it as "
            f"{winsw}, then as administrator run `{winsw} install` and `{winsw} start`"
        )
        return
    _run([str(winsw), "install"], shown=f"{winsw} install")
    _run([str(winsw), "start"], shown=f"{winsw} start")
    say("installed and started the boothsync service; it starts at every boot")


def _uninstall_winsw(folder: Path, say: Say) -> None:
    path = folder / WINSW_XML
    if not path.exists():
        say(f"nothing to uninstall: {path} does not exist")
        return
    winsw = folder / WINSW_EXE
    problem = None
    if winsw.is_file():
        # stop fails when the service is not running, which is fine: uninstall still runs.
        _attempt(lambda: _run([str(winsw), "stop"], shown=f"{winsw} stop"))
        problem = _attempt(lambda: _run([str(winsw), "uninstall"], shown=f"{winsw} uninstall"))
    _remove(path)
    say(f"removed {path}")
    if problem is not None:
        raise problem


def _write(path: Path, text: str, *, hint: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
    except PermissionError:
        raise BoothsyncError(f"{path}: permission denied{hint}") from None
    except OSError as exc:
        raise BoothsyncError(f"{path}: cannot write it: {exc.strerror or exc}") from None


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except PermissionError:
        raise BoothsyncError(f"{path}: permission denied (run it with sudo)") from None
    except OSError as exc:
        raise BoothsyncError(f"{path}: cannot remove it: {exc.strerror or exc}") from None


def _attempt(step: Callable[[], None]) -> BoothsyncError | None:
    try:
        step()
    except BoothsyncError as exc:
        return exc
    return None


def _systemctl(user: bool, *arguments: str) -> None:
    program = shutil.which("systemctl")
    if program is None:
        raise BoothsyncError(
            "systemctl not found: this system does not run systemd "
            "(`boothsync service install --print` shows the unit)"
        )
    options = ["--user"] if user else []
    shown = " ".join(["systemctl", *options, *arguments])
    try:
        _run([program, *options, *arguments], shown=shown)
    except _Failed as exc:
        if _NOT_BOOTED in exc.output:
            # systemctl's own words end in "Failed to connect to bus: Host is down".
            raise _NoManager(
                f"{shown}: systemd is not running on this system (it was not started with "
                "systemd), so it cannot run boothsync as a service: start it with "
                "`boothsync run -c CONFIG` (or `boothsync tray`) instead"
            ) from None
        if user and _NO_BUS in exc.output:
            # "Failed to connect to bus: No medium found": no systemd runs for this account
            # (no login session started one: su, ssh without a session, a container).
            raise _NoManager(
                f"{shown}: no systemd user manager runs for this account (it starts with a "
                "login session), so it cannot run boothsync as a user service: install the "
                "system service (`sudo boothsync service install -c CONFIG --run-as "
                "ACCOUNT`) or start it with `boothsync run -c CONFIG` instead"
            ) from None
        raise


# What systemctl says when the system was not booted with systemd (no manager to talk to).
_NOT_BOOTED = "not been booted with systemd"
# What systemctl --user says when no user manager runs for the account.
_NO_BUS = "Failed to connect to bus"


class _NoManager(BoothsyncError):
    """No systemd manager to talk to: the service cannot be installed here at all."""


class _Failed(BoothsyncError):
    """A command exited with an error; ``output`` is everything it wrote."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


def _run(command: list[str], *, shown: str) -> None:
    try:
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BoothsyncError(f"{shown}: no answer after {_COMMAND_TIMEOUT:.0f} s") from None
    except OSError as exc:
        raise BoothsyncError(f"{shown}: cannot run it: {exc.strerror or exc}") from None
    if result.returncode != 0:
        last = _last_line(result.stderr) or _last_line(result.stdout)
        raise _Failed(
            f"{shown} failed (exit {result.returncode})" + (f": {last}" if last else ""),
            f"{result.stdout or ''}\n{result.stderr or ''}",
        )


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m boothsync.service",
        description="Write the service definitions with their defaults (the service/ folder).",
    )
    parser.add_argument("--write-defaults", type=Path, metavar="DIR", required=True)
    args = parser.parse_args(argv)
    for path in write_defaults(args.write_defaults):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
