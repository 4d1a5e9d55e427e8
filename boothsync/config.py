"""The config file: its TOML schema, defaults, validation and environment overrides.

Owns turning ``boothsync.toml`` (or a mapping built in code) into frozen dataclasses, every check
on the values, and ``$BOOTHSYNC_API_KEY``. Each section is one declarative option table (name,
kind, default, allowed values, help; see :mod:`boothsync.options`); the tables drive validation,
and ``boothsync.toml.example`` documents every entry (a test keeps the two in step). A new
section is one table plus its dataclass. The ``[destinations.NAME]`` tables are the gallery
services' own: each declares its options on its config dataclass and registers in
:data:`boothsync.destinations.REGISTRY`, which ``DESTINATION_TYPES`` is read from; the service
config classes are re-exported here for the code that builds a config by hand.

Must not read any file but the config (and the system's time zone), create folders, or put an
API key into a message, a log line or a repr. Every problem is one ``ConfigError`` line:
``boothsync.toml: watch #1 (path "prints"): after_upload: must be one of keep, move, delete (got
"archive")``. Watch tables are counted from 1, as a person counts them, and named by their path.
"""

from __future__ import annotations

import codecs
import difflib
import functools
import ipaddress
import json
import logging
import math
import os
import re
import socket
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path, PurePath
from types import MappingProxyType
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from boothsync.bandwidth import parse_rate
from boothsync.capture import DEFAULT_FILENAME_DATES, CaptureOptions, compile_filename_date
from boothsync.destinations import REGISTRY
from boothsync.destinations.base import DestinationConfig
from boothsync.errors import ConfigError, NoConfigFile
from boothsync.options import API_KEY_ENV, MISSING, Invalid, Kind, Option, positive
from boothsync.paths import CONFIG_FILE_NAME, user_config_file

__all__ = [
    "API_KEY_ENV",
    "CONFIG_ENV",
    "DESTINATION_TYPES",
    "EVENT_KEYS",
    "SECTIONS",
    "SKIPPED_FOLDERS",
    "BoothConfig",
    "Config",
    "DestinationConfig",
    "Option",
    "StateConfig",
    "TriggersConfig",
    "UploadConfig",
    "WatchConfig",
    "WebConfig",
    "find_config",
    "load_config",
    "loopback_listen",
    "parse_config",
    "read_config_file",
    "secrets",
    "setup_web",
]

log = logging.getLogger(__name__)

CONFIG_ENV: Final = "BOOTHSYNC_CONFIG"

DEFAULT_PATTERNS: Final = ("*.jpg", "*.jpeg", "*.png", "*.gif")
MAX_CONCURRENCY: Final = 16
DEFAULT_TRIGGER_PORT: Final = 8787
#: ``[web] listen``: the dashboard, on this machine only.
DEFAULT_WEB_LISTEN: Final = "127.0.0.1:8700"
WEB_PASSWORD_ENV: Final = "BOOTHSYNC_WEB_PASSWORD"
WEB_LISTEN_ENV: Final = "BOOTHSYNC_WEB_LISTEN"
#: ``[booth] language``: the tray's texts; "auto" follows the system locale.
LANGUAGES: Final = ("auto", "en", "de")

#: Subfolders a recursive watch never looks into (compared case-insensitively), besides hidden
#: ones (".*") and its move_to folder: Synology thumbnails, pibooth's raw and discarded shots,
#: NAS and Windows recycle bins, Windows' own.
SKIPPED_FOLDERS: Final = (
    "@eaDir",
    "raw",
    "forget",
    "#recycle",
    "$RECYCLE.BIN",
    "System Volume Information",
)

_NO_NAMES: Final[Mapping[str, str]] = MappingProxyType({})
_MISSING: Final = MISSING


# -- value checks the option tables refer to ----------------------------------------------------


def _concurrency(value: int) -> int:
    if not 1 <= value <= MAX_CONCURRENCY:
        raise Invalid(f"must be between 1 and {MAX_CONCURRENCY}", value)
    return value


def _not_empty(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        raise Invalid("must name at least one entry", [])
    return value


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise Invalid("must be between 1 and 65535", value)
    return value


_SKIPPED: Final = frozenset(name.casefold() for name in SKIPPED_FOLDERS)


def _folder_names(value: Mapping[str, str]) -> Mapping[str, str]:
    """The keys of ``albums``: one folder name each, unique whatever their case."""
    seen: dict[str, str] = {}
    for name in value:
        at = "." + _join("", name)
        if not name.strip() or name in (".", ".."):
            raise Invalid("must be a folder name", at=at)
        if "/" in name or "\\" in name:
            raise Invalid("must be one folder name, without / or \\", at=at)
        if name.startswith(".") or name.casefold() in _SKIPPED:
            raise Invalid("names a folder that watching always skips", at=at)
        # Folder names match case-insensitively, so two spellings would be one folder.
        folded = name.casefold()
        if folded in seen:
            raise Invalid(f"same folder as {_show(seen[folded])} (case does not matter)", at=at)
        seen[folded] = name
    return value


_CLOCK_OFFSET: Final = re.compile(
    r"([+-])(?=[0-9])(?:([0-9]{1,6})h)?(?:([0-9]{1,6})m)?(?:([0-9]{1,6})s)?", re.IGNORECASE
)


def _clock_offset(value: str) -> timedelta:
    """A sign, then hours, minutes and seconds in that order ("+1h02m", "-30s"), or "0"."""
    text = value.strip()
    if text == "0":
        return timedelta(0)
    match = _CLOCK_OFFSET.fullmatch(text)
    if match is None:
        raise Invalid(
            'must be a sign and then hours, minutes and/or seconds, like "+1h02m" or "-30s"',
            value,
        )
    sign, hours, minutes, seconds = match.groups()
    offset = timedelta(hours=int(hours or 0), minutes=int(minutes or 0), seconds=int(seconds or 0))
    return -offset if sign == "-" else offset


def _filename_dates(value: tuple[str, ...]) -> tuple[str, ...]:
    for index, pattern in enumerate(value):
        try:
            compile_filename_date(pattern)
        except ValueError as exc:
            raise Invalid(str(exc), pattern, at=f"[{index}]") from None
    return value


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        # Listing the zones walks the tz database: only worth it when something is wrong.
        close = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
        hint = f'; did you mean "{close[0]}"?' if close else ' (an IANA name like "Europe/Berlin")'
        raise Invalid(f"unknown time zone {_show(value)}{hint}") from None
    return value


def _listen(value: str) -> str:
    """``host:port`` with an IP address (IPv6 in brackets) or ``localhost``; normalised."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise Invalid('must be an address and a port, e.g. "127.0.0.1:8700"', value)
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if bare.lower() == "localhost":
        bare = "127.0.0.1"
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        raise Invalid(
            'must be an IP address of this computer (or "localhost") and a port, e.g. '
            '"127.0.0.1:8700" or "0.0.0.0:8700"',
            value,
        ) from None
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"{shown}:{int(port)}"


def loopback_listen(listen: str) -> bool:
    """Whether a normalised ``[web] listen`` is reachable from this computer only."""
    host = listen.rpartition(":")[0].strip("[]")
    return ipaddress.ip_address(host).is_loopback


def _rate(value: str) -> int:
    try:
        return parse_rate(value)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


# -- the option tables, one per section, in the order boothsync.toml.example documents them -----

BOOTH_OPTIONS: Final[tuple[Option, ...]] = (
    Option("name", "str", "The booth's name in logs and status. Default: the host name."),
    Option(
        "timezone",
        "str",
        "IANA time zone for EXIF and XMP capture times that carry no offset, and for dates in "
        "file names. Default: the system zone.",
        check=_time_zone,
    ),
    Option(
        "camera_clock_offset",
        "str",
        'Added to the times the camera wrote (EXIF, XMP) to correct its clock: "+1h02m", "-30s". '
        "Not applied to file name dates, video container times or file times.",
        default=timedelta(0),
        check=_clock_offset,
    ),
    Option(
        "filename_dates",
        "strings",
        "Date patterns searched in file names (%Y %m %d %H %M %S, other characters literal); "
        "[] turns them off.",
        default=DEFAULT_FILENAME_DATES,
        check=_filename_dates,
    ),
    Option(
        "language",
        "str",
        'The tray\'s language: "en", "de", or "auto" (from the system locale).',
        default="auto",
        choices=LANGUAGES,
    ),
)

WATCH_OPTIONS: Final[tuple[Option, ...]] = (
    Option(
        "path",
        "path",
        "The folder the booth software writes pictures into. Required. ~ is expanded; a "
        "relative path is relative to the config file's folder.",
        required=True,
    ),
    Option(
        "patterns",
        "strings",
        "Which files to upload: case-insensitive globs on the file name.",
        default=DEFAULT_PATTERNS,
        check=_not_empty,
    ),
    Option(
        "ignore",
        "strings",
        "Globs on the file name to skip, on top of the built-in temporary and hidden files.",
        default=(),
    ),
    Option(
        "recursive",
        "bool",
        "Also watch the subfolders (never @eaDir, raw, forget, #recycle, $RECYCLE.BIN, "
        "System Volume Information, hidden folders, nor the move_to folder).",
        default=False,
    ),
    Option(
        "album_id",
        "str",
        "The album for this folder's pictures, instead of the destination's album_id. "
        "Default: none.",
    ),
    Option(
        "albums",
        "names",
        "Subfolder name (first level, case-insensitive) to the album for the pictures in it and "
        "below; needs recursive = true. Wins over album_id. Default: none.",
        default=_NO_NAMES,
        check=_folder_names,
    ),
    Option(
        "poll",
        "bool",
        "Scan the folder instead of waiting for file system events; true for network shares.",
        default=False,
    ),
    Option(
        "poll_interval",
        "float",
        "Seconds between scans when poll = true. Greater than 0.",
        default=2.0,
        check=positive,
    ),
    Option(
        "scan_interval",
        "float",
        "Seconds between full scans of the folder; events only make things faster. Greater than 0.",
        default=300.0,
        check=positive,
    ),
    Option(
        "settle_seconds",
        "float",
        "A file counts as complete once its size and time stamp stayed unchanged this many "
        "seconds. Greater than 0.",
        default=2.0,
        check=positive,
    ),
    Option(
        "after_upload",
        "str",
        "What to do with a file once every destination has it: keep, move or delete.",
        default="keep",
        choices=("keep", "move", "delete"),
    ),
    Option(
        "move_to",
        "path",
        'Where after_upload = "move" puts uploaded files; only allowed with "move". '
        'Default: the "uploaded" folder inside path.',
    ),
    Option(
        "destinations",
        "strings",
        "Names of the destinations this folder's pictures go to. Default: every destination.",
        check=_not_empty,
    ),
    Option(
        "allow_outside_links",
        "bool",
        "Upload a file that is a symbolic link to a file outside the watched folders. Off, "
        "such a link is skipped with a warning: anyone who can write into a shared hot folder "
        "could otherwise publish any file of this computer.",
        default=False,
    ),
)


UPLOAD_OPTIONS: Final[tuple[Option, ...]] = (
    Option(
        "concurrency",
        "int",
        f"How many files upload at the same time, 1 to {MAX_CONCURRENCY}; while every upload "
        "in flight stands still, as many more may start on the next pictures.",
        default=2,
        check=_concurrency,
    ),
    Option(
        "bandwidth_limit",
        "str",
        'The most all uploads together may send per second, e.g. "2MB/s" or "500kB/s", so the '
        "booth's own traffic keeps its share. Default: no limit.",
        check=_rate,
    ),
    Option(
        "order",
        "str",
        '"live": pictures queued in the last live_window seconds go first, newest first, the '
        "backlog oldest first behind them (every second upload is the backlog's while both "
        'wait; none starts beside a live one while no other waits); "oldest": strictly in '
        "the order they were queued.",
        default="live",
        choices=("live", "oldest"),
    ),
    Option(
        "live_window",
        "float",
        'Seconds a newly queued picture counts as live for order = "live". Greater than 0.',
        default=120.0,
        check=positive,
    ),
)

STATE_OPTIONS: Final[tuple[Option, ...]] = (
    Option(
        "dir",
        "path",
        "The folder for the queue database and the logs; under a service $STATE_DIRECTORY "
        "and $LOGS_DIRECTORY win. Default: the user's state folder.",
    ),
)

TRIGGERS_OPTIONS: Final[tuple[Option, ...]] = (
    Option(
        "dslrbooth",
        "bool",
        "Listen on 127.0.0.1:port for dslrBooth's trigger URLs, which name finished files.",
        default=False,
    ),
    Option(
        "port",
        "int",
        "The port for dslrbooth = true, 1 to 65535.",
        default=DEFAULT_TRIGGER_PORT,
        check=_port,
    ),
    Option(
        "sparkbooth_status",
        "path",
        "Sparkbooth's status file; each layout it names is taken at once. Default: none.",
    ),
)

WEB_OPTIONS: Final[tuple[Option, ...]] = (
    Option(
        "enabled",
        "bool",
        "Serve the dashboard (`boothsync dashboard` opens it) while boothsync runs.",
        default=True,
    ),
    Option(
        "listen",
        "str",
        'The address and port the dashboard listens on. "127.0.0.1:8700" is this computer '
        'only; "0.0.0.0:8700" lets a phone on the venue network in, and then needs password. '
        "Port 0: a free one, chosen at each start (`boothsync dashboard` finds it).",
        default=DEFAULT_WEB_LISTEN,
        env=WEB_LISTEN_ENV,
        check=_listen,
    ),
    Option(
        "password",
        "str",
        "The dashboard's login password for other devices; required when listen is not "
        "127.0.0.1. Never logged. Default: none (only the login link from `boothsync "
        "dashboard` or the tray gets in).",
        env=WEB_PASSWORD_ENV,
        secret=True,
    ),
)


# -- the dataclasses -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BoothConfig:
    """``[booth]``: who this booth is, and how to read its capture times."""

    name: str
    timezone: str | None = None
    tz: ZoneInfo = field(compare=False)  # ``timezone`` resolved; the system zone when None
    camera_clock_offset: timedelta = timedelta(0)
    filename_dates: tuple[str, ...] = DEFAULT_FILENAME_DATES
    language: str = "auto"

    @property
    def capture_options(self) -> CaptureOptions:
        """``camera_clock_offset`` and ``filename_dates`` as :func:`capture_time` takes them."""
        return CaptureOptions(
            camera_clock_offset=self.camera_clock_offset, filename_dates=self.filename_dates
        )


@dataclass(frozen=True, kw_only=True)
class WatchConfig:
    """One ``[[watch]]`` folder and what happens to its files."""

    path: Path
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    ignore: tuple[str, ...] = ()
    recursive: bool = False
    album_id: str | None = None
    # Read-only. A factory because dataclasses refuse an unhashable default; left out of the
    # hash for the same reason (it still takes part in ==).
    albums: Mapping[str, str] = field(default_factory=lambda: _NO_NAMES, hash=False)
    poll: bool = False
    poll_interval: float = 2.0
    scan_interval: float = 300.0
    settle_seconds: float = 2.0
    after_upload: Literal["keep", "move", "delete"] = "keep"
    move_to: Path | None = None  # set exactly when after_upload == "move"
    destinations: tuple[str, ...]  # names; parse_config fills in every destination by default
    allow_outside_links: bool = False

    def __post_init__(self) -> None:
        # A dict given in code must not be changed behind the watcher's back.
        if not isinstance(self.albums, MappingProxyType):
            object.__setattr__(self, "albums", MappingProxyType(dict(self.albums)))


@dataclass(frozen=True, kw_only=True)
class UploadConfig:
    """``[upload]``: how hard to push."""

    concurrency: int = 2
    bandwidth_limit: int | None = None  # bytes per second
    order: str = "live"
    live_window: float = 120.0

    @property
    def live(self) -> float | None:
        """The live window the claim order uses, None when it is oldest first."""
        return self.live_window if self.order == "live" else None


@dataclass(frozen=True, kw_only=True)
class StateConfig:
    """``[state]``: where the queue and the logs live (see boothsync.paths for the defaults)."""

    dir: Path | None = None


@dataclass(frozen=True, kw_only=True)
class TriggersConfig:
    """``[triggers]``: the booth software's own "this file is done" signals, all optional."""

    dslrbooth: bool = False
    port: int = DEFAULT_TRIGGER_PORT
    sparkbooth_status: Path | None = None


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    """``[web]``: the dashboard. ``listen`` is normalised (``"127.0.0.1:8700"``)."""

    enabled: bool = True
    listen: str = DEFAULT_WEB_LISTEN
    password: str | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole configuration; ``source`` is the file it came from, None when built in code."""

    source: Path | None
    booth: BoothConfig
    watches: tuple[WatchConfig, ...]
    destinations: Mapping[str, DestinationConfig]
    upload: UploadConfig = field(default_factory=UploadConfig)
    state: StateConfig = field(default_factory=StateConfig)
    triggers: TriggersConfig = field(default_factory=TriggersConfig)
    web: WebConfig = field(default_factory=WebConfig)


SECTIONS: Final[Mapping[str, tuple[Option, ...]]] = MappingProxyType(
    {
        "booth": BOOTH_OPTIONS,
        "watch": WATCH_OPTIONS,
        "upload": UPLOAD_OPTIONS,
        "state": STATE_OPTIONS,
        "triggers": TRIGGERS_OPTIONS,
        "web": WEB_OPTIONS,
    }
)
"""The option table of every top-level section except ``destinations`` (see below)."""


class _DestinationTypes(Mapping[str, tuple[tuple[Option, ...], type[DestinationConfig]]]):
    """``{type: (option table, dataclass)}`` read from the registry as each type is asked for
    (so only the services a config names are imported)."""

    def __getitem__(self, type_name: str) -> tuple[tuple[Option, ...], type[DestinationConfig]]:
        service = REGISTRY[type_name]
        return service.options, service.config

    def __contains__(self, type_name: object) -> bool:
        return type_name in REGISTRY

    def __iter__(self) -> Iterator[str]:
        return iter(REGISTRY)

    def __len__(self) -> int:
        return len(REGISTRY)


DESTINATION_TYPES: Final[Mapping[str, tuple[tuple[Option, ...], type[DestinationConfig]]]] = (
    _DestinationTypes()
)
"""``{type: (option table, dataclass)}`` for the tables under ``[destinations]``, as the
gallery services in :data:`boothsync.destinations.REGISTRY` declare them."""

_TOP_LEVEL: Final = (*SECTIONS, "destinations")


@functools.cache
def _secret_names() -> frozenset[str]:
    """The keys whose values never appear in a message, in any section."""
    return frozenset(
        option.name
        for options, _ in DESTINATION_TYPES.values()
        for option in options
        if option.secret
    )


def secrets(config: Config) -> list[str]:
    """Every key and token in the config (``secret`` options), for the log to blank out."""
    found = []
    for destination in config.destinations.values():
        options, _ = DESTINATION_TYPES[destination.type]
        for option in options:
            value = getattr(destination, option.name, None) if option.secret else None
            if isinstance(value, str) and value:
                found.append(value)
    if config.web.password:
        found.append(config.web.password)
    return found


# -- finding and loading --------------------------------------------------------------------------


def find_config(
    explicit: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Path:
    """The config file to use: ``-c FILE``, ``$BOOTHSYNC_CONFIG``, ./boothsync.toml, the user's.

    A file named by ``-c`` or the environment must exist; otherwise the first that exists wins.
    """
    env = _env(environ)
    if explicit is not None:
        return _existing(Path(explicit).expanduser(), "config file not found")
    named = env.get(CONFIG_ENV, "")
    if named:
        # Named on purpose: falling back to another file would run with the wrong settings.
        return _existing(
            Path(named).expanduser(), f"config file not found (named by ${CONFIG_ENV})"
        )
    candidates = [(Path.cwd() if cwd is None else cwd) / CONFIG_FILE_NAME, user_config_file()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise NoConfigFile(
        f"no config file found (looked for ${CONFIG_ENV}, {looked}); run `boothsync setup` "
        "or `boothsync init` to write one, or pass -c FILE"
    )


def _existing(path: Path, problem: str) -> Path:
    if path.is_file():
        return path
    raise ConfigError(problem if not path.exists() else "not a file", file=str(path))


def load_config(
    path: Path | str, *, environ: Mapping[str, str] | None = None, listing: bool = False
) -> Config:
    """Read, parse and check one config file. Raises ConfigError naming the file and the key.

    ``listing``: read it for ``boothsync events``, which is how the event ids are found, so a
    destination's event (``link_id``, ``event_id``) may be missing or empty ("" or 0 then),
    and so may the ``[[watch]]`` tables: only the key is needed to list what it can reach.
    """
    _, _, data = read_config_file(path)
    source = Path(os.path.abspath(path))
    ctx = _Context(file=str(path), base=source.parent, environ=_env(environ), listing=listing)
    return _parse(data, ctx, source)


def read_config_file(path: Path | str) -> tuple[bytes, str, dict[str, Any]]:
    """A config file as :func:`load_config` reads it: its bytes, its text (decoded as its byte
    order mark says) and what TOML makes of that, not yet checked as a config.

    Raises ConfigError naming the file when it is missing, cannot be read, is not text or not
    TOML (with a hint for the usual mistakes, which never repeats a key's value).
    """
    shown = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError("config file not found", file=shown) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror or exc}", file=shown) from exc
    text = _decode(raw, shown)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"not valid TOML: {exc}{_toml_hint(text, str(exc))}", file=shown
        ) from None
    return raw, text, data


# UTF-32's little-endian mark starts with UTF-16's, so it is looked for first.
_BOMS: Final = (
    ((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE), "utf-32"),
    ((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE), "utf-16"),
)


def _decode(raw: bytes, shown: str) -> str:
    """The file's text. A byte order mark says how it is encoded: Windows Notepad saves
    "Unicode" as UTF-16 with one, and other Windows editors start UTF-8 with one."""
    for boms, encoding in _BOMS:
        if raw.startswith(boms):
            try:
                return raw.decode(encoding)
            except UnicodeDecodeError:
                raise ConfigError(
                    f"its byte order mark says {encoding.upper()}, but it is not; save it as UTF-8",
                    file=shown,
                ) from None
    if raw[:2].count(0) == 1:
        # "[[" or "# " in UTF-16: every other byte is zero.
        raise ConfigError(
            "looks like UTF-16 text without a byte order mark; save it as UTF-8", file=shown
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text (line {line}); save it as UTF-8", file=shown) from None


_AT_LINE: Final = re.compile(r"\(at line ([0-9]+), column [0-9]+\)")
# A line "key = value  # comment" as a person writes it; the value as far as the line goes.
_ASSIGNMENT: Final = re.compile(r'\s*((?:[A-Za-z0-9_.-]|"[^"]*"|\s)+?)\s*=\s*(.*?)\s*')
_COMMENT: Final = re.compile(r"\s+#.*$")
_DECIMAL_COMMA: Final = re.compile(r"[+-]?[0-9]+,[0-9]+")
_BOOLEAN_WORDS: Final = {
    **dict.fromkeys(("true", "yes", "on"), "true"),
    **dict.fromkeys(("false", "no", "off"), "false"),
}
_BACKSLASH_IN_QUOTES: Final = '; a backslash in "double quotes" starts an escape: write'


def _toml_hint(text: str, error: str) -> str:
    """A hint for the TOML mistakes people make, read from the line the error is on: a Windows
    path in "double quotes", a decimal comma, text without quotes. Empty when none fits.

    The value of a key or token is never repeated: the hint shows "..." in its place.
    """
    found = _AT_LINE.search(error)
    lines = text.split("\n")  # as TOML counts lines: splitlines() would also split at \f
    if found is None or not 0 < int(found.group(1)) <= len(lines):
        return ""
    line = lines[int(found.group(1)) - 1]
    assignment = _ASSIGNMENT.fullmatch(line)
    key, value = assignment.groups() if assignment else ("", "")
    secret = key.rpartition(".")[2].strip() in _secret_names()
    if value.startswith('"') and "\\" in value and not secret:
        # As the writer meant it: every backslash is one, the string ends at the next quote.
        path = value[1:].partition('"')[0]
        slashed = path.replace("\\", "/")
        return f"""{_BACKSLASH_IN_QUOTES} {key} = '{path}' or {key} = "{slashed}\""""
    if re.search(r'"[^"]*\\', line):
        return f"{_BACKSLASH_IN_QUOTES} Windows paths with / or in 'single quotes'"
    value = _COMMENT.sub("", value)
    if not key or not value or value[0] in "\"'[{":
        return ""
    shown = '"..."' if secret else value
    if _DECIMAL_COMMA.fullmatch(value):
        return f"; a number takes a decimal point: {key} = {value.replace(',', '.')}"
    if value.lower() in _BOOLEAN_WORDS:
        word = _BOOLEAN_WORDS[value.lower()]
        return f"; write {key} = {word} (small letters, no quotes), or text in quotes"
    if re.search(r"[^0-9.+_-]", value):
        # Not a number gone wrong: text, which TOML wants in quotes.
        if not secret:
            shown = f"'{value}'" if "\\" in value or '"' in value else f'"{value}"'
        return f"; text goes in quotes: {key} = {shown}"
    return ""


def parse_config(
    data: Mapping[str, Any],
    *,
    source: Path | None,
    environ: Mapping[str, str] | None = None,
    listing: bool = False,
) -> Config:
    """Check a config given as a mapping (what tomllib returns, or one built in code).

    Relative paths are resolved against ``source``'s folder, or the current folder when None.
    ``listing`` as for :func:`load_config`.
    """
    base = Path(os.path.abspath(source)).parent if source is not None else Path.cwd()
    ctx = _Context(
        file=str(source) if source is not None else None,
        base=base,
        environ=_env(environ),
        listing=listing,
    )
    return _parse(data, ctx, source)


def setup_web(environ: Mapping[str, str] | None = None) -> WebConfig:
    """The ``[web]`` table before any config file exists (the first setup): the defaults, and
    what the environment says."""
    ctx = _Context(file=None, base=Path.cwd(), environ=_env(environ))
    return _web({}, ctx)


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


@dataclass(frozen=True)
class _Context:
    file: str | None
    base: Path  # the folder relative paths are resolved against
    environ: Mapping[str, str]
    listing: bool = False  # for `boothsync events`: the event ids and watches may be missing

    def error(self, message: str, key: str | None) -> ConfigError:
        return ConfigError(message, file=self.file, key=key or None)


# -- the sections --------------------------------------------------------------------------------


def _parse(data: Mapping[str, Any], ctx: _Context, source: Path | None) -> Config:
    top = _table(data, "", ctx)
    for name in top:
        if name not in _TOP_LEVEL:
            raise ctx.error(_unknown_key(name, _TOP_LEVEL), _join("", name))
    booth = _booth(top.get("booth", {}), ctx)
    destinations = _destinations(top.get("destinations", {}), ctx)
    if ctx.listing and not top.get("watch"):
        watches: tuple[WatchConfig, ...] = ()
    else:
        watches = _watches(top.get("watch", _MISSING), destinations, ctx)
    upload = UploadConfig(**_read_table(top.get("upload", {}), UPLOAD_OPTIONS, "upload", ctx))
    state = StateConfig(**_read_table(top.get("state", {}), STATE_OPTIONS, "state", ctx))
    triggers = TriggersConfig(
        **_read_table(top.get("triggers", {}), TRIGGERS_OPTIONS, "triggers", ctx)
    )
    web = _web(top.get("web", {}), ctx)
    return Config(
        source=source,
        booth=booth,
        watches=watches,
        destinations=MappingProxyType(destinations),
        upload=upload,
        state=state,
        triggers=triggers,
        web=web,
    )


def _web(raw: object, ctx: _Context) -> WebConfig:
    web = WebConfig(**_read_table(raw, WEB_OPTIONS, "web", ctx))
    if web.enabled and not web.password and not loopback_listen(web.listen):
        raise ctx.error(
            f"{web.listen} lets other devices reach the dashboard: set web.password (or "
            f"${WEB_PASSWORD_ENV}) too, or listen on 127.0.0.1",
            "web.listen",
        )
    return web


def _booth(raw: object, ctx: _Context) -> BoothConfig:
    values = _read_table(raw, BOOTH_OPTIONS, "booth", ctx)
    timezone: str | None = values["timezone"]
    return BoothConfig(
        name=values["name"] or socket.gethostname() or "booth",
        timezone=timezone,
        tz=ZoneInfo(timezone) if timezone else _system_zone(ctx.environ),
        camera_clock_offset=values["camera_clock_offset"],
        filename_dates=values["filename_dates"],
        language=values["language"],
    )


def _destinations(raw: object, ctx: _Context) -> dict[str, DestinationConfig]:
    result: dict[str, DestinationConfig] = {}
    for name, body in _table(raw, "destinations", ctx).items():
        key = _join("destinations", name)
        table = _table(body, key, ctx)
        type_name = table.get("type", _MISSING)
        known = ", ".join(DESTINATION_TYPES)
        if type_name is _MISSING:
            close = difflib.get_close_matches("type", [str(k) for k in table], n=1)
            hint = f'; is "{close[0]}" meant to be "type"?' if close else ""
            raise ctx.error(f"required but missing (one of {known}){hint}", f"{key}.type")
        if not isinstance(type_name, str):
            raise ctx.error(f"must be a string (got {_show(type_name)})", f"{key}.type")
        if type_name not in DESTINATION_TYPES:
            close = difflib.get_close_matches(type_name, list(DESTINATION_TYPES), n=1)
            hint = f'; did you mean "{close[0]}"?' if close else f" (known: {known})"
            raise ctx.error(f"unknown destination type {_show(type_name)}{hint}", f"{key}.type")
        options, cls = DESTINATION_TYPES[type_name]
        if ctx.listing:
            table, options = _without_event(table, options)
        result[name] = cls(name=name, **_read_table(table, options, key, ctx))
    if not result:
        raise ctx.error(
            "no destination configured; add a [destinations.NAME] table with a type", "destinations"
        )
    return result


#: The keys that name a destination's event: what ``boothsync events`` lists.
EVENT_KEYS: Final = ("link_id", "event_id")


def _without_event(
    table: Mapping[str, Any], options: Sequence[Option]
) -> tuple[Mapping[str, Any], tuple[Option, ...]]:
    """A destination's table and options as ``boothsync events`` reads them: the event key
    may be missing or empty (its value is then "" or 0, which no gallery has)."""
    relaxed = tuple(
        replace(o, required=False, default=0 if o.kind == "int" else "", check=None)
        if o.name in EVENT_KEYS
        else o
        for o in options
    )
    kept = {k: v for k, v in table.items() if not (k in EVENT_KEYS and _unset(v))}
    return kept, relaxed


def _unset(value: object) -> bool:
    """An event key left empty: "" (or blanks), or the number 0."""
    if isinstance(value, str):
        return not value.strip()
    return type(value) is int and value == 0


def _watches(
    raw: object, destinations: Mapping[str, DestinationConfig], ctx: _Context
) -> tuple[WatchConfig, ...]:
    if raw is _MISSING or (isinstance(raw, list | tuple) and not raw):
        raise ctx.error("no folder to watch; add at least one [[watch]] table with a path", "watch")
    if isinstance(raw, Mapping):
        raise ctx.error("must be an array of tables: write [[watch]], not [watch]", "watch")
    if not isinstance(raw, list | tuple):
        raise ctx.error(f"must be an array of tables (got {_show(raw)})", "watch")
    watches: list[WatchConfig] = []
    for index, body in enumerate(raw):
        watch = _watch(body, _watch_name(index, body), destinations, ctx)
        for other_index, other in enumerate(watches):
            if other.path == watch.path:
                raise ctx.error(
                    f"same folder as {_watch_name(other_index, raw[other_index])}",
                    _join(_watch_name(index, None), "path"),
                )
        watches.append(watch)
    return tuple(watches)


def _watch_name(index: int, body: object) -> str:
    """A ``[[watch]]`` table as a person finds it in the file: counted from 1, with its path.

    ``watch #2 (path "D:/Prints")``; just ``watch #2`` where the path is missing or is what is
    wrong, so a message never shows a path it is complaining about twice.
    """
    name = f"{_WATCH_PREFIX}{index + 1}"
    path = body.get("path") if isinstance(body, Mapping) else None
    if isinstance(path, str) and path.strip() and _CONTROL.search(path) is None:
        name += f" (path {_show(path)})"
    return name


def _watch(
    raw: object, key: str, destinations: Mapping[str, DestinationConfig], ctx: _Context
) -> WatchConfig:
    values = _read_table(raw, WATCH_OPTIONS, key, ctx)
    path: Path = values["path"]
    move_to: Path | None = values["move_to"]
    if values["after_upload"] == "move":
        move_to = move_to or path / "uploaded"
        if move_to == path:
            raise ctx.error("must not be the watched folder itself", _join(key, "move_to"))
    elif move_to is not None:
        raise ctx.error('only allowed with after_upload = "move"', _join(key, "move_to"))
    albums: Mapping[str, str] = values["albums"]
    if albums and not values["recursive"]:
        raise ctx.error("needs recursive = true", _join(key, "albums"))
    for name in albums:
        if move_to is not None and move_to == path / name:
            raise ctx.error(
                "names the move_to folder, which watching always skips",
                f"{_join(key, 'albums')}.{_join('', name)}",
            )
    names: tuple[str, ...] | None = values["destinations"]
    if names is None:
        names = tuple(destinations)
    for index, name in enumerate(names):
        if name not in destinations:
            close = difflib.get_close_matches(name, list(destinations), n=1)
            hint = f'; did you mean "{close[0]}"?' if close else ""
            configured = ", ".join(destinations)
            raise ctx.error(
                f"unknown destination {_show(name)}{hint} (configured: {configured})",
                _join(key, "destinations") + f"[{index}]",
            )
    return WatchConfig(
        **{**values, "move_to": move_to, "destinations": tuple(dict.fromkeys(names))}
    )


def _system_zone(environ: Mapping[str, str]) -> ZoneInfo:
    """The machine's time zone as a ZoneInfo, for EXIF times when [booth] timezone is unset."""
    name = environ.get("TZ", "").removeprefix(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            log.debug("TZ=%s is not an IANA zone name, asking the system", name)
    # /etc/localtime is the system's zone on Linux and macOS, usually a link into the tz database.
    localtime = "/etc/localtime"
    target = os.path.realpath(localtime)
    if "/zoneinfo/" in target:
        try:
            return ZoneInfo(target.rsplit("/zoneinfo/", 1)[1])
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open(localtime, "rb") as file:
            return ZoneInfo.from_file(file, key="localtime")
    except (OSError, ValueError):
        pass
    log.warning(
        "cannot tell the system time zone; EXIF times without an offset are read as UTC. "
        'Set [booth] timezone, e.g. "Europe/Berlin"'
    )
    return ZoneInfo("UTC")


# -- reading one table against its options -------------------------------------------------------


def _read_table(raw: object, options: Sequence[Option], key: str, ctx: _Context) -> dict[str, Any]:
    """Check ``raw`` against an option table: ``{option name: checked value or default}``."""
    table = _table(raw, key, ctx)
    names = [option.name for option in options]
    for name in table:
        if name not in names:
            raise ctx.error(_unknown_key(name, names), _join(key, name))
    return {option.name: _value(option, table, _join(key, option.name), ctx) for option in options}


def _value(option: Option, table: Mapping[str, Any], key: str, ctx: _Context) -> Any:
    value = table.get(option.name, _MISSING)
    if option.env and ctx.environ.get(option.env):
        value = ctx.environ[option.env]
        key = f"${option.env}"
    if value is _MISSING:
        if option.required:
            alternative = f" (or set ${option.env})" if option.env else ""
            raise ctx.error(f"required but missing{alternative}{_event_hint(option)}", key)
        return option.default
    written = value
    try:
        _no_control_characters(option, value)
        value = _KINDS[option.kind](value, ctx)
        if option.choices and value not in option.choices:
            raise Invalid(f"must be one of {', '.join(option.choices)}", value)
        if option.check is not None:
            value = option.check(value)
    except Invalid as exc:
        message = exc.problem
        if exc.got is not _MISSING and not option.secret:
            # Show what the file says (0), not the converted value (0.0), except for one
            # element of a list.
            message += f" (got {_show(exc.got if exc.at else written)})"
        raise ctx.error(message + _event_hint(option), key + exc.at) from None
    return value


def _event_hint(option: Option) -> str:
    """For a destination's event key: where to find its value."""
    if option.name not in EVENT_KEYS:
        return ""
    return "; `boothsync events -c FILE` lists the events this key can upload to"


# What TOML makes of a backslash and a letter inside "double quotes", without complaint: a
# Windows path's \b, \t, \n, \f and \r become control characters, and C:\booth\new becomes a
# folder nobody can find.
_ESCAPES: Final = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_LINE_BREAKS: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # all but \t and \n


def _no_control_characters(option: Option, value: object) -> None:
    """Refuse a control character in a text, a path or a name, with the way to write it."""
    if isinstance(value, str):
        texts: list[tuple[str, str]] = [("", value)]
    elif isinstance(value, list | tuple):
        texts = [(f"[{index}]", item) for index, item in enumerate(value)]
    elif isinstance(value, Mapping):
        texts = [("." + _join("", str(name)), item) for name, item in value.items()]
    else:
        return
    control = _LINE_BREAKS if option.line_breaks else _CONTROL
    for at, text in texts:
        if not isinstance(text, str) or control.search(text) is None:
            continue
        found = list(dict.fromkeys(char for char in text if control.match(char)))
        named = ", ".join(_ESCAPES.get(char, f"\\x{ord(char):02x}") for char in found)
        if not all(char in _ESCAPES for char in found):
            raise Invalid(f"holds a control character ({named}); remove it", at=at)
        if option.secret:
            fix = "write it in 'single quotes'"
        else:
            # The text as it was typed, before TOML read the escapes.
            typed = "".join(_ESCAPES.get(char, char) for char in text)
            doubled = "/" if option.kind == "path" else "\\\\"
            fix = f"write '{typed}' (single quotes) or \"{typed.replace(chr(92), doubled)}\""
        into = "a control character" if len(found) == 1 else "control characters"
        raise Invalid(f'TOML turned {named} in "double quotes" into {into}; {fix}', at=at)


def _table(raw: object, key: str, ctx: _Context) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ctx.error(f"must be a table (got {_show(raw)})", key)
    return raw


def _as_str(value: object, ctx: _Context) -> str:
    if not isinstance(value, str):
        raise Invalid("must be a string", value)
    if not value.strip():
        raise Invalid("must not be empty", value)
    return value


def _as_bool(value: object, ctx: _Context) -> bool:
    if not isinstance(value, bool):
        raise Invalid("must be true or false", value)
    return value


def _as_int(value: object, ctx: _Context) -> int:
    # bool is an int subclass in Python, but `concurrency = true` is a mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("must be a whole number", value)
    return value


def _as_float(value: object, ctx: _Context) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Invalid("must be a number", value)
    if not math.isfinite(value):
        raise Invalid("must be a finite number", value)
    return float(value)


def _as_path(value: object, ctx: _Context) -> Path:
    if isinstance(value, str):
        _as_str(value, ctx)
        raw: str | PurePath = value
    elif isinstance(value, PurePath):
        raw = value
    else:
        raise Invalid("must be a path string", value)
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = ctx.base / path
    # normpath, not resolve(): resolving would turn a mapped network drive into its UNC path.
    return Path(os.path.normpath(path))


def _as_strings(value: object, ctx: _Context) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise Invalid("must be a list of strings", value)
    for index, item in enumerate(value):
        try:
            _as_str(item, ctx)
        except Invalid as exc:
            raise Invalid(exc.problem, exc.got, at=f"[{index}]") from None
    return tuple(value)


def _as_names(value: object, ctx: _Context) -> Mapping[str, str]:
    if not isinstance(value, Mapping):
        raise Invalid("must be a table of names to strings", value)
    for name, item in value.items():
        try:
            _as_str(item, ctx)
        except Invalid as exc:
            raise Invalid(exc.problem, exc.got, at="." + _join("", name)) from None
    return MappingProxyType(dict(value))


_KINDS: Final[Mapping[Kind, Callable[[object, _Context], Any]]] = MappingProxyType(
    {
        "str": _as_str,
        "bool": _as_bool,
        "int": _as_int,
        "float": _as_float,
        "path": _as_path,
        "strings": _as_strings,
        "names": _as_names,
    }
)


# -- messages ------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


#: How a ``[[watch]]`` table is named in messages; the keys inside it follow after ": ".
_WATCH_PREFIX: Final = "watch #"


def _join(prefix: str, name: str) -> str:
    """``prefix.name``, quoting a name TOML would; a key right inside a watch table follows its
    name after ": "."""
    part = name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)
    if prefix.startswith(_WATCH_PREFIX):
        # "watch #1 (path "prints"): after_upload" reads as a place in the file;
        # "watch #1 (path "prints").after_upload" would not.
        return f"{prefix}: {part}"
    return f"{prefix}.{part}" if prefix else part


def _unknown_key(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f'unknown key; did you mean "{close[0]}"?'
    return f"unknown key (known: {', '.join(known)})"


def _show(value: object) -> str:
    """A short, one-line rendering of a value as it would look in the TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | PurePath):
        text = json.dumps(str(value), ensure_ascii=False)
        return text if len(text) <= 80 else text[:76] + '..."'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an empty array" if not value else "an array"
    # datetime, date, time: TOML has them, no option takes them.
    return f"a {type(value).__name__}"
