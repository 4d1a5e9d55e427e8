"""The config file: lookup, parsing, defaults, checks, and the example that documents it."""

from __future__ import annotations

import dataclasses
import re
import socket
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from boothsync.capture import DEFAULT_FILENAME_DATES, CaptureOptions
from boothsync.config import (
    API_KEY_ENV,
    CONFIG_ENV,
    DESTINATION_TYPES,
    SECTIONS,
    BoothConfig,
    Config,
    StateConfig,
    TriggersConfig,
    UploadConfig,
    WatchConfig,
    WebConfig,
    find_config,
    load_config,
    parse_config,
    secrets,
)
from boothsync.destinations.eventpics import EventPicsConfig
from boothsync.destinations.folder import FolderConfig
from boothsync.destinations.picpeak import PicPeakConfig
from boothsync.destinations.picsui import PicsuiConfig
from boothsync.errors import ConfigError
from boothsync.paths import user_config_file

EXAMPLE = Path(__file__).resolve().parent.parent / "boothsync.toml.example"
SECRET = "k-9f3b-do-not-print-me"


def config_text(*, head: str = "", watch: str = "", destination: str = "", tail: str = "") -> str:
    """A small valid config, with extra lines put into its top level, watch, destination or end."""
    return f"""{head}
[[watch]]
path = "prints"
{watch}

[destinations.eventpics]
type = "eventpics"
api_key = "{SECRET}"
link_id = "abcd1234"
{destination}

{tail}
"""


def write(folder: Path, text: str, name: str = "boothsync.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={} if environ is None else environ)
    error = caught.value
    assert SECRET not in str(error)
    assert "\n" not in str(error)
    return error


def minimal(**destination: Any) -> dict[str, Any]:
    return {
        "watch": [{"path": "prints"}],
        "destinations": {
            "eventpics": {"type": "eventpics", "api_key": SECRET, "link_id": "l1", **destination}
        },
    }


# -- the example config ---------------------------------------------------------------------------

HEADER = re.compile(r"^\[\[?\s*([^\]]+?)\s*\]\]?\s*$")
KEY_LINE = re.compile(r"^(?:#\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def example_keys() -> dict[str, list[tuple[str, int]]]:
    """``{table header: [(key, line number)]}`` for every key line, set or commented out."""
    keys: dict[str, list[tuple[str, int]]] = {}
    section = ""
    for number, line in enumerate(EXAMPLE.read_text(encoding="utf-8").splitlines()):
        header = HEADER.match(line)
        if header:
            section = header.group(1)
            keys.setdefault(section, [])
            continue
        key = KEY_LINE.match(line)
        if key and section:
            keys[section].append((key.group(1), number))
    return keys


def test_example_parses_as_a_valid_config() -> None:
    """boothsync.toml.example, copied as it is, is a config boothsync accepts."""
    config = load_config(EXAMPLE, environ={})
    assert config.watches[0].path == Path.home() / "Pictures" / "booth"
    assert config.destinations["eventpics"].api_key == "your-eventpics-api-key"


def test_example_documents_every_key_in_table_order() -> None:
    """Every key of every option table is in the example, in the table's order, and no other."""
    found = example_keys()
    for section, options in SECTIONS.items():
        assert [name for name, _ in found[section]] == [o.name for o in options], section
    raw = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    for type_name, (options, _) in DESTINATION_TYPES.items():
        names = [n for n, table in raw["destinations"].items() if table.get("type") == type_name]
        assert names, f"the example has no destination of type {type_name}"
        section = f"destinations.{names[0]}"
        assert [name for name, _ in found[section]] == [o.name for o in options], section
    documented = {f"destinations.{name}" for name in raw["destinations"]} | set(SECTIONS)
    assert set(found) == documented


def test_example_explains_every_key_in_a_comment() -> None:
    """Each key in the example sits under a comment that says what it does."""
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for section, keys in example_keys().items():
        for name, number in keys:
            above = lines[number - 1]
            assert above.startswith("#") and not KEY_LINE.match(above), f"{section}.{name}"


def test_example_values_are_the_documented_defaults() -> None:
    """Where the example sets a key that has a default, it sets the default."""
    config = load_config(EXAMPLE, environ={})
    targets: dict[str, object] = {
        "booth": config.booth,
        "watch": config.watches[0],
        "upload": config.upload,
        "state": config.state,
        "triggers": config.triggers,
        "web": config.web,
    }
    for section, options in SECTIONS.items():
        for option in options:
            if option.default is not None:
                assert getattr(targets[section], option.name) == option.default, option.name
    for option in DESTINATION_TYPES["eventpics"][0]:
        if option.default is not None:
            value = getattr(config.destinations["eventpics"], option.name)
            assert value == option.default, option.name


def test_dataclass_defaults_match_the_option_tables() -> None:
    """A dataclass built in code gets the same defaults as a config file."""
    classes: dict[str, type[Any]] = {
        "booth": BoothConfig,
        "watch": WatchConfig,
        "upload": UploadConfig,
        "state": StateConfig,
        "triggers": TriggersConfig,
        "web": WebConfig,
    }
    tables = [(classes[s], options) for s, options in SECTIONS.items()]
    tables += [(cls, options) for options, cls in DESTINATION_TYPES.values()]
    for cls, options in tables:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for option in options:
            assert option.name in fields, f"{cls.__name__}.{option.name}"
            if option.required:
                continue
            default = fields[option.name].default
            factory = fields[option.name].default_factory
            if factory is not dataclasses.MISSING:
                default = factory()
            if default is not dataclasses.MISSING or option.default is not None:
                assert default == option.default, f"{cls.__name__}.{option.name}"


# -- defaults and values --------------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    """A config with only the required keys gets the documented defaults."""
    path = write(tmp_path, config_text())
    config = load_config(path, environ={})

    assert config.source == path
    assert config.booth.name == socket.gethostname()
    assert config.booth.timezone is None
    assert isinstance(config.booth.tz, ZoneInfo)
    assert config.booth.camera_clock_offset == timedelta(0)
    assert config.booth.filename_dates == DEFAULT_FILENAME_DATES
    assert config.booth.capture_options == CaptureOptions()
    (watch,) = config.watches
    assert watch == WatchConfig(path=tmp_path / "prints", destinations=("eventpics",))
    assert watch.patterns == ("*.jpg", "*.jpeg", "*.png", "*.gif")
    assert watch.ignore == ()
    assert watch.recursive is False
    assert watch.album_id is None
    assert watch.albums == {}
    assert watch.poll is False
    assert watch.poll_interval == 2.0
    assert watch.scan_interval == 300.0
    assert watch.settle_seconds == 2.0
    assert watch.after_upload == "keep"
    assert watch.move_to is None
    destination = config.destinations["eventpics"]
    assert destination == EventPicsConfig(
        name="eventpics", api_key=SECRET, link_id="abcd1234", album_id=None
    )
    assert destination.base_url == "https://api.eventpics.net"
    assert destination.timeout == 30.0
    assert config.upload.concurrency == 2
    assert config.state.dir is None
    assert config.triggers == TriggersConfig(dslrbooth=False, port=8787, sparkbooth_status=None)


def test_every_value_is_read(tmp_path: Path) -> None:
    """Each key in the file ends up in its dataclass field."""
    text = config_text(
        head='[booth]\nname = "booth-7"\ntimezone = "Europe/Berlin"\n'
        'camera_clock_offset = "+1h02m"\nfilename_dates = ["shot_%Y%m%d%H%M"]\n',
        watch='patterns = ["*.JPG"]\nignore = ["thumb_*"]\nrecursive = true\nalbum_id = "w1"\n'
        'albums = { Prints = "p1", "Original Photos" = "o1" }\npoll = true\n'
        'poll_interval = 5\nscan_interval = 60\nsettle_seconds = 0.5\nafter_upload = "delete"\n'
        'destinations = ["eventpics"]',
        destination='album_id = "a1"\nbase_url = "https://gallery.example.com/api/"\ntimeout = 12',
        tail='[upload]\nconcurrency = 4\n\n[state]\ndir = "state"\n\n'
        '[triggers]\ndslrbooth = true\nport = 9000\nsparkbooth_status = "spark/status.txt"\n',
    )
    config = load_config(write(tmp_path, text), environ={})

    assert config.booth.name == "booth-7"
    assert config.booth.tz == ZoneInfo("Europe/Berlin")
    assert config.booth.camera_clock_offset == timedelta(hours=1, minutes=2)
    assert config.booth.filename_dates == ("shot_%Y%m%d%H%M",)
    assert config.booth.capture_options == CaptureOptions(
        camera_clock_offset=timedelta(hours=1, minutes=2), filename_dates=("shot_%Y%m%d%H%M",)
    )
    (watch,) = config.watches
    assert watch.patterns == ("*.JPG",)
    assert watch.ignore == ("thumb_*",)
    assert watch.recursive is True
    assert watch.album_id == "w1"
    assert watch.albums == {"Prints": "p1", "Original Photos": "o1"}
    assert watch.poll is True
    assert watch.poll_interval == 5.0 and isinstance(watch.poll_interval, float)
    assert watch.scan_interval == 60.0 and isinstance(watch.scan_interval, float)
    assert watch.settle_seconds == 0.5
    assert watch.after_upload == "delete"
    destination = config.destinations["eventpics"]
    assert destination.album_id == "a1"
    assert destination.base_url == "https://gallery.example.com/api"
    assert destination.timeout == 12.0 and isinstance(destination.timeout, float)
    assert config.upload.concurrency == 4
    assert config.state.dir == tmp_path / "state"
    assert config.triggers == TriggersConfig(
        dslrbooth=True, port=9000, sparkbooth_status=tmp_path / "spark" / "status.txt"
    )


@pytest.mark.parametrize(
    ("written", "offset"),
    [
        ("+1h02m", timedelta(hours=1, minutes=2)),
        ("-30s", timedelta(seconds=-30)),
        ("+2h", timedelta(hours=2)),
        ("+1h02m05s", timedelta(hours=1, minutes=2, seconds=5)),
        ("-1h05s", -timedelta(hours=1, seconds=5)),
        ("+90m", timedelta(minutes=90)),
        ("+215000h", timedelta(hours=215000)),
        (" +1H02M ", timedelta(hours=1, minutes=2)),
        ("0", timedelta(0)),
        ("+0s", timedelta(0)),
    ],
)
def test_camera_clock_offset_forms(written: str, offset: timedelta) -> None:
    """camera_clock_offset is a sign and then hours, minutes, seconds in that order, or "0"."""
    config = parse_config(
        {**minimal(), "booth": {"camera_clock_offset": written}}, source=None, environ={}
    )
    assert config.booth.camera_clock_offset == offset


def test_filename_dates_can_be_turned_off() -> None:
    """filename_dates = [] leaves no pattern to try."""
    config = parse_config({**minimal(), "booth": {"filename_dates": []}}, source=None, environ={})
    assert config.booth.filename_dates == ()
    assert config.booth.capture_options.filename_dates == ()


def test_example_lists_the_default_filename_dates() -> None:
    """The commented-out filename_dates in the example is exactly the default list."""
    text = EXAMPLE.read_text(encoding="utf-8")
    block = re.search(r"^# filename_dates = \[\n(.*?)^# \]$", text, re.M | re.S)
    assert block is not None
    uncommented = "x = [\n" + re.sub(r"^#", "", block.group(1), flags=re.M) + "]"
    assert tuple(tomllib.loads(uncommented)["x"]) == DEFAULT_FILENAME_DATES


def test_system_time_zone_is_the_default() -> None:
    """Without [booth] timezone, EXIF times use the system zone ($TZ when it names one)."""
    config = parse_config(minimal(), source=None, environ={"TZ": "Asia/Tokyo"})
    assert config.booth.timezone is None
    assert config.booth.tz == ZoneInfo("Asia/Tokyo")


def test_relative_paths_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative watch path, move_to or state dir means a folder next to the config file."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = config_text(
        watch='after_upload = "move"\nmove_to = "../done"',
        tail='[state]\ndir = "./state"\n',
    )
    config = load_config(write(tmp_path / "conf", text), environ={})

    assert config.watches[0].path == tmp_path / "conf" / "prints"
    assert config.watches[0].move_to == tmp_path / "done"
    assert config.state.dir == tmp_path / "conf" / "state"


def test_relative_config_file_name_still_gives_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading "boothsync.toml" from the current folder resolves paths against that folder."""
    write(tmp_path, config_text())
    monkeypatch.chdir(tmp_path)
    config = load_config(Path("boothsync.toml"), environ={})
    assert config.source == tmp_path / "boothsync.toml"
    assert config.watches[0].path == tmp_path / "prints"


def test_home_folder_is_expanded(tmp_path: Path) -> None:
    """A watch path starting with ~ is in the user's home folder."""
    text = config_text().replace('"prints"', '"~/booth"')
    config = load_config(write(tmp_path, text), environ={})
    assert config.watches[0].path == Path.home() / "booth"


def test_config_built_in_code_resolves_against_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """parse_config without a source file resolves relative paths against the current folder."""
    monkeypatch.chdir(tmp_path)
    config = parse_config(minimal(), source=None, environ={})
    assert config.source is None
    assert config.watches[0].path == tmp_path / "prints"


def test_move_defaults_to_an_uploaded_folder_inside_the_watched_one(tmp_path: Path) -> None:
    """after_upload = "move" without move_to moves files into <path>/uploaded."""
    config = load_config(write(tmp_path, config_text(watch='after_upload = "move"')), environ={})
    assert config.watches[0].move_to == tmp_path / "prints" / "uploaded"


def test_watch_goes_to_named_destinations_only(tmp_path: Path) -> None:
    """A watch with destinations uploads to those (each once); without, to every destination."""
    text = config_text(
        watch='destinations = ["second", "second"]',
        tail='[destinations.second]\ntype = "eventpics"\napi_key = "x"\nlink_id = "l2"\n\n'
        '[[watch]]\npath = "more"\n',
    )
    config = load_config(write(tmp_path, text), environ={})
    assert config.watches[0].destinations == ("second",)
    assert config.watches[1].destinations == ("eventpics", "second")


def test_albums_cannot_be_changed_once_loaded(tmp_path: Path) -> None:
    """The albums map is read-only, whether it came from a file or a dict given in code."""
    text = config_text(watch='recursive = true\nalbums = { Prints = "p1" }')
    from_file = load_config(write(tmp_path, text), environ={}).watches[0]
    given = {"Prints": "p1"}
    in_code = WatchConfig(path=tmp_path, recursive=True, albums=given, destinations=("x",))
    given["Prints"] = "changed"
    for watch in (from_file, in_code):
        assert watch.albums == {"Prints": "p1"}
        with pytest.raises(TypeError):
            watch.albums["Prints"] = "x"  # type: ignore[index]
    assert hash(in_code) == hash(replace_albums(in_code))


def replace_albums(watch: WatchConfig) -> WatchConfig:
    return dataclasses.replace(watch, albums={"Other": "o"})


def test_empty_albums_table_needs_no_recursion(tmp_path: Path) -> None:
    """albums = {} is no map at all, so it is accepted without recursive = true."""
    config = load_config(write(tmp_path, config_text(watch="albums = {}")), environ={})
    assert config.watches[0].albums == {}


def test_int_is_accepted_where_a_number_is_expected(tmp_path: Path) -> None:
    """settle_seconds = 3 is 3.0 seconds."""
    config = load_config(write(tmp_path, config_text(watch="settle_seconds = 3")), environ={})
    assert config.watches[0].settle_seconds == 3.0


def test_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    """A config saved by a Windows editor with a UTF-8 byte order mark loads."""
    path = tmp_path / "boothsync.toml"
    path.write_bytes(b"\xef\xbb\xbf" + config_text().encode())
    assert load_config(path, environ={}).watches[0].path == tmp_path / "prints"


# -- the API key ----------------------------------------------------------------------------------


def test_environment_key_overrides_the_file(tmp_path: Path) -> None:
    """$BOOTHSYNC_API_KEY wins over api_key in the file, for every eventpics destination."""
    text = config_text(tail='[destinations.other]\ntype = "eventpics"\nlink_id = "l2"\n')
    config = load_config(write(tmp_path, text), environ={API_KEY_ENV: "from-env"})
    assert config.destinations["eventpics"].api_key == "from-env"
    assert config.destinations["other"].api_key == "from-env"


def test_empty_environment_key_is_ignored() -> None:
    """An empty $BOOTHSYNC_API_KEY leaves the file's key in place."""
    config = parse_config(minimal(), source=None, environ={API_KEY_ENV: ""})
    assert config.destinations["eventpics"].api_key == SECRET


def test_key_never_appears_in_repr_or_str() -> None:
    """Neither the config nor a destination shows its API key when printed or logged."""
    for environ in ({}, {API_KEY_ENV: SECRET}):
        config = parse_config(minimal(api_key="file-key"), source=None, environ=environ)
        for text in (repr(config), str(config), repr(config.destinations["eventpics"])):
            assert SECRET not in text
            assert "file-key" not in text
            assert "link_id='l1'" in text


@pytest.mark.parametrize(
    "value", ["12345", "true", '["k-9f3b-do-not-print-me"]', "{ key = 'x' }", '""']
)
def test_key_never_appears_in_errors(tmp_path: Path, value: str) -> None:
    """A wrong api_key value is refused without repeating it."""
    text = config_text().replace(f'api_key = "{SECRET}"', f"api_key = {value}")
    error = load_error(write(tmp_path, text))
    assert error.key == "destinations.eventpics.api_key"
    assert value.strip('"') not in error.message or value == '""'


def test_key_from_environment_never_appears_in_errors(tmp_path: Path) -> None:
    """An error in a destination whose key came from the environment does not show the key."""
    text = config_text(destination="timeout = -1").replace(f'api_key = "{SECRET}"\n', "")
    error = load_error(write(tmp_path, text), environ={API_KEY_ENV: SECRET})
    assert error.key == "destinations.eventpics.timeout"


# -- one line per problem, naming file and key ----------------------------------------------------

#: How messages name the first [[watch]] of config_text(): counted from 1, with its path.
W = 'watch #1 (path "prints"): '

ERRORS = [
    # unknown keys, with the closest known key where there is one
    ("watch", "pol = true", W + "pol", 'unknown key; did you mean "poll"?'),
    ("head", '[booth]\nnmae = "b"', "booth.nmae", 'unknown key; did you mean "name"?'),
    (
        "destination",
        'linkid = "x"',
        "destinations.eventpics.linkid",
        'unknown key; did you mean "link_id"?',
    ),
    (
        "tail",
        "[upload]\nconcurency = 2",
        "upload.concurency",
        'unknown key; did you mean "concurrency"?',
    ),
    ("tail", "[state]\nfolder = 'x'", "state.folder", "unknown key (known: dir)"),
    ("tail", "[uplaod]\nconcurrency = 2", "uplaod", 'unknown key; did you mean "upload"?'),
    (
        "head",
        "verbose = true",
        "verbose",
        "unknown key (known: booth, watch, upload, state, triggers, web, destinations)",
    ),
    (
        "watch",
        '"odd key" = 1',
        W + '"odd key"',
        "unknown key (known: path, patterns, ignore, recursive, album_id, albums, poll, "
        "poll_interval, scan_interval, settle_seconds, after_upload, move_to, destinations, "
        "allow_outside_links)",
    ),
    # wrong types
    ("watch", 'poll = "yes"', W + "poll", 'must be true or false (got "yes")'),
    (
        "tail",
        "[upload]\nconcurrency = true",
        "upload.concurrency",
        "must be a whole number (got true)",
    ),
    (
        "tail",
        "[upload]\nconcurrency = 2.5",
        "upload.concurrency",
        "must be a whole number (got 2.5)",
    ),
    ("watch", 'settle_seconds = "2"', W + "settle_seconds", 'must be a number (got "2")'),
    (
        "watch",
        "settle_seconds = inf",
        W + "settle_seconds",
        "must be a finite number (got inf)",
    ),
    ("watch", 'patterns = "*.jpg"', W + "patterns", 'must be a list of strings (got "*.jpg")'),
    ("watch", 'patterns = ["*.jpg", 3]', W + "patterns[1]", "must be a string (got 3)"),
    (
        "watch",
        "patterns = []",
        W + "patterns",
        "must name at least one entry (got an empty array)",
    ),
    ("watch", 'album_id = ""', W + "album_id", 'must not be empty (got "")'),
    ("watch", "album_id = 1979-05-27", W + "album_id", "must be a string (got a date)"),
    (
        "destination",
        'timeout = "30"',
        "destinations.eventpics.timeout",
        'must be a number (got "30")',
    ),
    ("head", 'booth = "b1"', "booth", 'must be a table (got "b1")'),
    (
        "tail",
        "[destinations.broken]",
        "destinations.broken.type",
        "required but missing (one of eventpics, picsui, picpeak, folder)",
    ),
    (
        "tail",
        "[destinations.broken]\ntype = 1",
        "destinations.broken.type",
        "must be a string (got 1)",
    ),
    # values outside their allowed set or range
    (
        "watch",
        'after_upload = "archive"',
        W + "after_upload",
        'must be one of keep, move, delete (got "archive")',
    ),
    ("tail", "[upload]\nconcurrency = 0", "upload.concurrency", "must be between 1 and 16 (got 0)"),
    (
        "tail",
        "[upload]\nconcurrency = 17",
        "upload.concurrency",
        "must be between 1 and 16 (got 17)",
    ),
    ("watch", "settle_seconds = 0", W + "settle_seconds", "must be greater than 0 (got 0)"),
    (
        "watch",
        "settle_seconds = -1.5",
        W + "settle_seconds",
        "must be greater than 0 (got -1.5)",
    ),
    ("watch", "poll_interval = 0", W + "poll_interval", "must be greater than 0 (got 0)"),
    (
        "destination",
        "timeout = 0",
        "destinations.eventpics.timeout",
        "must be greater than 0 (got 0)",
    ),
    (
        "head",
        '[booth]\ntimezone = "Europe/Berln"',
        "booth.timezone",
        'unknown time zone "Europe/Berln"; did you mean "Europe/Berlin"?',
    ),
    (
        "head",
        '[booth]\ntimezone = "Nowhere"',
        "booth.timezone",
        'unknown time zone "Nowhere" (an IANA name like "Europe/Berlin")',
    ),
    (
        "tail",
        '[destinations.other]\ntype = "smugmug"',
        "destinations.other.type",
        'unknown destination type "smugmug" (known: eventpics, picsui, picpeak, folder)',
    ),
    (
        "tail",
        '[destinations.other]\ntype = "eventpic"',
        "destinations.other.type",
        'unknown destination type "eventpic"; did you mean "eventpics"?',
    ),
    (
        "watch",
        'destinations = ["evntpics"]',
        W + "destinations[0]",
        'unknown destination "evntpics"; did you mean "eventpics"? (configured: eventpics)',
    ),
    (
        "watch",
        'destinations = ["eventpics", "cloud"]',
        W + "destinations[1]",
        'unknown destination "cloud" (configured: eventpics)',
    ),
    (
        "watch",
        "destinations = []",
        W + "destinations",
        "must name at least one entry (got an empty array)",
    ),
    (
        "watch",
        'move_to = "done"',
        W + "move_to",
        'only allowed with after_upload = "move"',
    ),
    (
        "watch",
        'after_upload = "move"\nmove_to = "prints"',
        W + "move_to",
        "must not be the watched folder itself",
    ),
    (
        "tail",
        '[[watch]]\npath = "./prints/"',
        "watch #2: path",
        'same folder as watch #1 (path "prints")',
    ),
    # recursion, albums, scans
    ("watch", 'recursive = "yes"', W + "recursive", 'must be true or false (got "yes")'),
    ("watch", 'albums = { Prints = "a1" }', W + "albums", "needs recursive = true"),
    (
        "watch",
        'recursive = true\nalbums = ["a1"]',
        W + "albums",
        "must be a table of names to strings (got an array)",
    ),
    (
        "watch",
        'recursive = true\nalbums = { "Prints/Big" = "a1" }',
        W + 'albums."Prints/Big"',
        "must be one folder name, without / or \\",
    ),
    (
        "watch",
        "recursive = true\nalbums = { 'Prints\\Big' = \"a1\" }",
        W + 'albums."Prints\\\\Big"',
        "must be one folder name, without / or \\",
    ),
    (
        "watch",
        'recursive = true\nalbums = { "" = "a1" }',
        W + 'albums.""',
        "must be a folder name",
    ),
    (
        "watch",
        'recursive = true\nalbums = { ".." = "a1" }',
        W + 'albums.".."',
        "must be a folder name",
    ),
    (
        "watch",
        'recursive = true\nalbums = { Prints = "" }',
        W + "albums.Prints",
        'must not be empty (got "")',
    ),
    (
        "watch",
        "recursive = true\nalbums = { Prints = 1 }",
        W + "albums.Prints",
        "must be a string (got 1)",
    ),
    (
        "watch",
        'recursive = true\nalbums = { Prints = "a1", PRINTS = "a2" }',
        W + "albums.PRINTS",
        'same folder as "Prints" (case does not matter)',
    ),
    (
        "watch",
        'recursive = true\nalbums = { RAW = "a1" }',
        W + "albums.RAW",
        "names a folder that watching always skips",
    ),
    (
        "watch",
        'recursive = true\nalbums = { ".thumbs" = "a1" }',
        W + 'albums.".thumbs"',
        "names a folder that watching always skips",
    ),
    (
        "watch",
        'recursive = true\nafter_upload = "move"\nalbums = { uploaded = "a1" }',
        W + "albums.uploaded",
        "names the move_to folder, which watching always skips",
    ),
    ("watch", "scan_interval = 0", W + "scan_interval", "must be greater than 0 (got 0)"),
    ("watch", 'scan_interval = "5"', W + "scan_interval", 'must be a number (got "5")'),
    # camera clock and file name dates
    (
        "head",
        '[booth]\ncamera_clock_offset = "1h02m"',
        "booth.camera_clock_offset",
        'must be a sign and then hours, minutes and/or seconds, like "+1h02m" or "-30s" '
        '(got "1h02m")',
    ),
    (
        "head",
        '[booth]\ncamera_clock_offset = "+2m1h"',
        "booth.camera_clock_offset",
        'must be a sign and then hours, minutes and/or seconds, like "+1h02m" or "-30s" '
        '(got "+2m1h")',
    ),
    (
        "head",
        '[booth]\ncamera_clock_offset = "+1d"',
        "booth.camera_clock_offset",
        'must be a sign and then hours, minutes and/or seconds, like "+1h02m" or "-30s" '
        '(got "+1d")',
    ),
    (
        "head",
        '[booth]\ncamera_clock_offset = "+"',
        "booth.camera_clock_offset",
        'must be a sign and then hours, minutes and/or seconds, like "+1h02m" or "-30s" (got "+")',
    ),
    (
        "head",
        "[booth]\ncamera_clock_offset = 3600",
        "booth.camera_clock_offset",
        "must be a string (got 3600)",
    ),
    (
        "head",
        '[booth]\nfilename_dates = ["%Y%m%d_%H%M%S", "%d-%b-%Y %H%M"]',
        "booth.filename_dates[1]",
        'unknown directive %b; only %Y %m %d %H %M %S and %% are allowed (got "%d-%b-%Y %H%M")',
    ),
    (
        "head",
        '[booth]\nfilename_dates = ["%Y%m%d"]',
        "booth.filename_dates[0]",
        'needs %H %M (only %S is optional) (got "%Y%m%d")',
    ),
    (
        "head",
        '[booth]\nfilename_dates = ["%Y%m%d_%H%M%S_%"]',
        "booth.filename_dates[0]",
        'ends in a lone %; write %% for a percent sign (got "%Y%m%d_%H%M%S_%")',
    ),
    (
        "head",
        '[booth]\nfilename_dates = ["%Y%m%d_%H%M_%H"]',
        "booth.filename_dates[0]",
        '%H appears twice (got "%Y%m%d_%H%M_%H")',
    ),
    (
        "head",
        '[booth]\nfilename_dates = "%Y%m%d_%H%M%S"',
        "booth.filename_dates",
        'must be a list of strings (got "%Y%m%d_%H%M%S")',
    ),
    (
        "head",
        '[booth]\nfilename_dates = [""]',
        "booth.filename_dates[0]",
        'must not be empty (got "")',
    ),
    # [triggers]
    ("tail", "[triggers]\ndslrbooth = 1", "triggers.dslrbooth", "must be true or false (got 1)"),
    ("tail", "[triggers]\nport = 0", "triggers.port", "must be between 1 and 65535 (got 0)"),
    (
        "tail",
        "[triggers]\nport = 65536",
        "triggers.port",
        "must be between 1 and 65535 (got 65536)",
    ),
    ("tail", '[triggers]\nport = "8787"', "triggers.port", 'must be a whole number (got "8787")'),
    (
        "tail",
        '[triggers]\nsparkbooth = "s.txt"',
        "triggers.sparkbooth",
        'unknown key; did you mean "sparkbooth_status"?',
    ),
    (
        "tail",
        '[triggers]\nsparkbooth_status = ""',
        "triggers.sparkbooth_status",
        'must not be empty (got "")',
    ),
    ("head", "triggers = true", "triggers", "must be a table (got true)"),
    # base_url
    (
        "destination",
        'base_url = "http://gallery.example.com"',
        "destinations.eventpics.base_url",
        "must use https:// (http:// only for localhost, 127.0.0.0/8 or ::1) "
        '(got "http://gallery.example.com")',
    ),
    (
        "destination",
        'base_url = "ftp://api.eventpics.net"',
        "destinations.eventpics.base_url",
        'must be an https:// address (got "ftp://api.eventpics.net")',
    ),
    (
        "destination",
        'base_url = "api.eventpics.net"',
        "destinations.eventpics.base_url",
        'must be an https:// address (got "api.eventpics.net")',
    ),
    (
        "destination",
        'base_url = "https://api.eventpics.net/?v=2"',
        "destinations.eventpics.base_url",
        'must not have a query (?) or fragment (#) (got "https://api.eventpics.net/?v=2")',
    ),
    (
        "destination",
        'base_url = "https://[::1"',
        "destinations.eventpics.base_url",
        'is not a valid URL (got "https://[::1")',
    ),
]


@pytest.mark.parametrize(("where", "lines", "key", "message"), ERRORS)
def test_invalid_config_is_one_line_naming_file_and_key(
    tmp_path: Path, where: str, lines: str, key: str, message: str
) -> None:
    """Every invalid key or value is refused with "FILE: KEY: problem" on one line."""
    path = write(tmp_path, config_text(**{where: lines}))
    error = load_error(path)
    assert str(error) == f"{path}: {key}: {message}"
    assert (error.file, error.key, error.message) == (str(path), key, message)


@pytest.mark.parametrize(
    ("remove", "key", "message"),
    [
        ('path = "prints"\n', "watch #1: path", "required but missing"),
        (
            'link_id = "abcd1234"\n',
            "destinations.eventpics.link_id",
            "required but missing; `boothsync events -c FILE` lists the events this key can "
            "upload to",
        ),
        (
            f'api_key = "{SECRET}"\n',
            "destinations.eventpics.api_key",
            f"required but missing (or set ${API_KEY_ENV})",
        ),
        (
            'type = "eventpics"\n',
            "destinations.eventpics.type",
            "required but missing (one of eventpics, picsui, picpeak, folder)",
        ),
    ],
)
def test_missing_required_value(tmp_path: Path, remove: str, key: str, message: str) -> None:
    """A required key that is absent is named in the error."""
    path = write(tmp_path, config_text().replace(remove, ""))
    assert str(load_error(path)) == f"{path}: {key}: {message}"


def test_a_misspelt_type_key_is_pointed_at(tmp_path: Path) -> None:
    """`typ = "eventpics"` in a destination: the missing type names the misspelt key."""
    path = write(tmp_path, config_text().replace('type = "eventpics"', 'typ = "eventpics"'))
    assert str(load_error(path)) == (
        f"{path}: destinations.eventpics.type: required but missing (one of eventpics, picsui,"
        ' picpeak, folder); is "typ" meant to be "type"?'
    )


def test_an_empty_link_id_says_where_to_find_one(tmp_path: Path) -> None:
    """An empty link_id is refused with the command that lists the key's events."""
    path = write(tmp_path, config_text().replace('link_id = "abcd1234"', 'link_id = ""'))
    assert str(load_error(path)).endswith(
        'link_id: must not be empty (got ""); `boothsync events -c FILE` lists the events this'
        " key can upload to"
    )


def test_api_key_may_come_from_the_environment_alone(tmp_path: Path) -> None:
    """Without api_key in the file, $BOOTHSYNC_API_KEY satisfies the requirement."""
    path = write(tmp_path, config_text().replace(f'api_key = "{SECRET}"\n', ""))
    config = load_config(path, environ={API_KEY_ENV: "env-key"})
    assert config.destinations["eventpics"].api_key == "env-key"


def test_no_watch_folder(tmp_path: Path) -> None:
    """A config without [[watch]] is refused."""
    text = config_text().replace('[[watch]]\npath = "prints"\n', "")
    path = write(tmp_path, text)
    assert str(load_error(path)) == (
        f"{path}: watch: no folder to watch; add at least one [[watch]] table with a path"
    )


def test_watch_written_as_a_single_table(tmp_path: Path) -> None:
    """[watch] instead of [[watch]] is refused with the fix in the message."""
    path = write(tmp_path, config_text().replace("[[watch]]", "[watch]"))
    assert str(load_error(path)) == (
        f"{path}: watch: must be an array of tables: write [[watch]], not [watch]"
    )


def test_no_destination(tmp_path: Path) -> None:
    """A config without any [destinations.NAME] is refused."""
    path = write(tmp_path, '[[watch]]\npath = "prints"\n')
    assert str(load_error(path)) == (
        f"{path}: destinations: no destination configured; "
        "add a [destinations.NAME] table with a type"
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.8.0.1/",
        "http://localhost:9000/api/",
        "http://LOCALHOST",
        "http://[::1]:8080",
        "https://gallery.example.com/",
        "https://203.0.113.7:8443/eventpics",
    ],
)
def test_loopback_http_and_any_https_are_allowed(url: str) -> None:
    """http:// works for this machine, https:// everywhere; a trailing slash is dropped."""
    config = parse_config(minimal(base_url=url), source=None, environ={})
    assert config.destinations["eventpics"].base_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    [
        "http://192.168.1.20",
        "http://gallery.example.com/api",
        "http://[::2]",
        "http://localhost.example.com",
        "http://0.0.0.0",
    ],
)
def test_remote_http_is_refused(url: str) -> None:
    """http:// to another machine would send the API key in clear text: refused."""
    with pytest.raises(ConfigError) as caught:
        parse_config(minimal(base_url=url), source=None, environ={})
    assert caught.value.key == "destinations.eventpics.base_url"
    assert caught.value.message.startswith("must use https://")
    assert caught.value.file is None


def test_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    """A TOML syntax error is reported with tomllib's line and column."""
    path = write(tmp_path, config_text(watch="poll = yes"))
    error = load_error(path)
    assert error.key is None
    assert str(error).startswith(f"{path}: not valid TOML: ")
    assert re.search(r"line 4, column \d+", str(error))


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        # \U starts a unicode escape: tomllib says "Invalid hex value", nothing about paths.
        (
            'path = "C:\\Users\\booth\\Pictures\\dslrBooth"',
            '; a backslash in "double quotes" starts an escape: write '
            "path = 'C:\\Users\\booth\\Pictures\\dslrBooth' or "
            'path = "C:/Users/booth/Pictures/dslrBooth"',
        ),
        (
            'path = "C:\\dslrBooth\\Prints"   # the "Prints" folder',
            '; a backslash in "double quotes" starts an escape: write '
            "path = 'C:\\dslrBooth\\Prints' or path = \"C:/dslrBooth/Prints\"",
        ),
        # The last backslash takes the closing quote with it.
        (
            'path = "C:\\booth\\"',
            '; a backslash in "double quotes" starts an escape: write '
            "path = 'C:\\booth\\' or path = \"C:/booth/\"",
        ),
        (
            'patterns = ["C:\\Users\\*.jpg"]',
            '; a backslash in "double quotes" starts an escape: write Windows paths with / or '
            "in 'single quotes'",
        ),
        ("settle_seconds = 2,5", "; a number takes a decimal point: settle_seconds = 2.5"),
        (
            "poll_interval = 0,25  # seconds",
            "; a number takes a decimal point: poll_interval = 0.25",
        ),
        ("album_id = a1", '; text goes in quotes: album_id = "a1"'),
        ("album_id = 2024-summer", '; text goes in quotes: album_id = "2024-summer"'),
        ("poll = yes", "; write poll = true (small letters, no quotes), or text in quotes"),
        (
            "recursive = False",
            "; write recursive = false (small letters, no quotes), or text in quotes",
        ),
    ],
)
def test_toml_mistakes_get_a_hint_with_the_fix(tmp_path: Path, line: str, hint: str) -> None:
    """The TOML mistakes people make (a Windows path in "double quotes", a decimal comma, text
    without quotes, yes for true) get one line: tomllib's words, then the line written right."""
    path = write(tmp_path, config_text(watch=line))
    error = load_error(path)
    assert error.key is None
    assert str(error).startswith(f"{path}: not valid TOML: ")
    assert re.search(r"\(at line 4, column [0-9]+\)" + re.escape(hint) + "$", str(error))


def test_toml_hints_never_repeat_a_key_and_come_only_where_they_fit(tmp_path: Path) -> None:
    """A key written without quotes gets the hint with "..." in its place (the message may
    reach a log), one with a backslash the general hint; a mistake no hint fits (a doubled
    bracket) keeps tomllib's words alone."""
    without_key = config_text().replace(f'api_key = "{SECRET}"\n', "")
    bare = load_error(write(tmp_path, without_key + f"api_key = {SECRET}\n"))
    assert str(bare).endswith('; text goes in quotes: api_key = "..."')  # and not the key
    backslash = load_error(write(tmp_path, without_key + f'api_key = "C:\\{SECRET}"\n'))
    assert str(backslash).endswith("write Windows paths with / or in 'single quotes'")
    other = load_error(write(tmp_path, config_text(tail="[upload]]")))
    assert re.fullmatch(r".*: not valid TOML: [^;]*\(at line [0-9]+, column [0-9]+\)", str(other))


# -- control characters where a path or a name belongs -------------------------------------------


@pytest.mark.parametrize(
    ("where", "line", "key", "message"),
    [
        (
            "watch",
            'move_to = "D:\\booth\\taken"\nafter_upload = "move"',
            W + "move_to",
            'TOML turned \\b, \\t in "double quotes" into control characters; '
            "write 'D:\\booth\\taken' (single quotes) or \"D:/booth/taken\"",
        ),
        (
            "watch",
            'patterns = ["*.jpg", "\\new*.png"]',
            W + "patterns[1]",
            'TOML turned \\n in "double quotes" into a control character; '
            "write '\\new*.png' (single quotes) or \"\\\\new*.png\"",
        ),
        (
            "destination",
            'album_id = "\\b1"',
            "destinations.eventpics.album_id",
            'TOML turned \\b in "double quotes" into a control character; '
            "write '\\b1' (single quotes) or \"\\\\b1\"",
        ),
        (
            "tail",
            '[state]\ndir = "E:\\fotos\\raw"',
            "state.dir",
            'TOML turned \\f, \\r in "double quotes" into control characters; '
            "write 'E:\\fotos\\raw' (single quotes) or \"E:/fotos/raw\"",
        ),
        (
            "head",
            '[booth]\nname = "booth\\u0007"',
            "booth.name",
            "holds a control character (\\x07); remove it",
        ),
    ],
)
def test_control_characters_in_paths_and_names_are_refused_with_the_fix(
    tmp_path: Path, where: str, line: str, key: str, message: str
) -> None:
    """A backslash and a letter that TOML turned into a control character (C:\\booth\\new) is
    refused where it is written, with the value as typed in 'single quotes' and the other way
    to write it; any other control character is refused too."""
    path = write(tmp_path, config_text(**{where: line}))
    error = load_error(path)
    assert (error.key, error.message) == (key, message)


def test_a_control_character_in_a_key_is_refused_without_showing_it(tmp_path: Path) -> None:
    """An API key with a \\b in it is refused, and the message does not repeat the key."""
    text = config_text().replace(f'api_key = "{SECRET}"', f'api_key = "\\b{SECRET}"')
    error = load_error(write(tmp_path, text))
    assert error.key == "destinations.eventpics.api_key"
    assert error.message == (
        "TOML turned \\b in \"double quotes\" into a control character; write it in 'single quotes'"
    )


def test_a_caption_may_span_lines_a_name_may_not(tmp_path: Path) -> None:
    """A Picsui caption is text: a line break in it is meant and kept. The event id beside it
    is a name, where a line break is refused."""
    text = (
        '[[watch]]\npath = "prints"\n[destinations.picsui]\ntype = "picsui"\n'
        'api_key = "k"\nevent_id = "e"\ncaption = "{booth}\\n{taken:%H:%M}"\n'
    )
    config = load_config(write(tmp_path, text), environ={})
    destination = config.destinations["picsui"]
    assert isinstance(destination, PicsuiConfig)
    assert destination.caption == "{booth}\n{taken:%H:%M}"
    error = load_error(write(tmp_path, text.replace('"e"', '"e\\n"')))
    assert error.key == "destinations.picsui.event_id"


# -- text encodings ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_a_config_saved_as_unicode_by_notepad_loads(tmp_path: Path, encoding: str) -> None:
    """A config that Windows Notepad saved as "Unicode" (UTF-16 with a byte order mark, CRLF line
    ends) loads like a UTF-8 one: the byte order mark says what it is."""
    text = config_text(head='[booth]\nname = "Fotobox Gäste"').replace("\n", "\r\n")
    raw = text.encode(encoding)
    if encoding.endswith(("-le", "-be")):
        raw = ("\ufeff" + text).encode(encoding)  # these codecs write no mark of their own
    path = tmp_path / "boothsync.toml"
    path.write_bytes(raw)
    config = load_config(path, environ={})
    assert config.booth.name == "Fotobox Gäste"
    assert config.watches[0].path == tmp_path / "prints"


def test_utf16_without_a_byte_order_mark_is_named(tmp_path: Path) -> None:
    """UTF-16 without a byte order mark cannot be told for sure: it is refused, naming it."""
    path = tmp_path / "boothsync.toml"
    path.write_bytes(config_text().lstrip().encode("utf-16-le"))
    assert str(load_error(path)) == (
        f"{path}: looks like UTF-16 text without a byte order mark; save it as UTF-8"
    )


def test_a_byte_order_mark_that_lies_is_refused(tmp_path: Path) -> None:
    """A UTF-16 byte order mark before bytes that are no UTF-16 is one line, not a traceback."""
    path = tmp_path / "boothsync.toml"
    path.write_bytes(b"\xff\xfe" + "[[watch]]".encode("utf-16-le") + b"\x00\xdc")
    assert str(load_error(path)) == (
        f"{path}: its byte order mark says UTF-16, but it is not; save it as UTF-8"
    )


# -- watch tables as a person counts them ---------------------------------------------------------


def test_watch_tables_are_counted_from_one_and_named_by_their_path(tmp_path: Path) -> None:
    """A mistake in the second [[watch]] names it "watch #2" with its path, as a person
    counts the tables in the file."""
    extra = '[[watch]]\npath = "D:/Prints"\nafter_uplaod = "move"'
    error = load_error(write(tmp_path, config_text(tail=extra)))
    assert error.key == 'watch #2 (path "D:/Prints"): after_uplaod'
    assert error.message == 'unknown key; did you mean "after_upload"?'


def test_missing_file(tmp_path: Path) -> None:
    """Loading a file that does not exist names it."""
    path = tmp_path / "nope.toml"
    assert str(load_error(path)) == f"{path}: config file not found"


def test_unreadable_file(tmp_path: Path) -> None:
    """A path that cannot be read is refused with the system's reason."""
    error = load_error(tmp_path)
    assert str(error).startswith(f"{tmp_path}: cannot read the file: ")


def test_file_that_is_not_text(tmp_path: Path) -> None:
    """A file that is not UTF-8 is refused, naming the file."""
    path = tmp_path / "boothsync.toml"
    path.write_bytes(b'[booth]\nname = "\xff"\n')
    assert str(load_error(path)) == f"{path}: not UTF-8 text (line 2); save it as UTF-8"


# -- finding the file -----------------------------------------------------------------------------


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the per-user config folder into tmp_path (where platformdirs honours XDG)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    file = user_config_file()
    if not file.is_relative_to(tmp_path):
        pytest.skip("the per-user config folder cannot be redirected on this platform")
    return file.parent


def test_explicit_file_wins(tmp_path: Path, user_dir: Path) -> None:
    """-c FILE is used even when $BOOTHSYNC_CONFIG, ./boothsync.toml and the user file exist."""
    explicit = write(tmp_path / "a", "", "mine.toml")
    named = write(tmp_path / "b", "")
    cwd_file = write(tmp_path / "c", "")
    write(user_dir, "")
    environ = {CONFIG_ENV: str(named)}
    assert find_config(explicit, environ=environ, cwd=cwd_file.parent) == explicit


def test_explicit_file_must_exist(tmp_path: Path) -> None:
    """-c naming a missing file is an error, not a reason to look elsewhere."""
    write(tmp_path, "")
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as caught:
        find_config(missing, environ={}, cwd=tmp_path)
    assert str(caught.value) == f"{missing}: config file not found"


def test_environment_variable_comes_second(tmp_path: Path, user_dir: Path) -> None:
    """Without -c, $BOOTHSYNC_CONFIG wins over ./boothsync.toml and the user file."""
    named = write(tmp_path / "b", "", "named.toml")
    cwd_file = write(tmp_path / "c", "")
    write(user_dir, "")
    assert find_config(None, environ={CONFIG_ENV: str(named)}, cwd=cwd_file.parent) == named


def test_environment_variable_must_name_a_file(tmp_path: Path) -> None:
    """$BOOTHSYNC_CONFIG naming a missing file is an error."""
    write(tmp_path, "")
    missing = tmp_path / "gone.toml"
    with pytest.raises(ConfigError) as caught:
        find_config(None, environ={CONFIG_ENV: str(missing)}, cwd=tmp_path)
    assert caught.value.file == str(missing)
    assert CONFIG_ENV in caught.value.message


def test_current_folder_comes_third(tmp_path: Path, user_dir: Path) -> None:
    """Without -c or $BOOTHSYNC_CONFIG, ./boothsync.toml wins over the user file."""
    cwd_file = write(tmp_path / "c", "")
    write(user_dir, "")
    assert find_config(None, environ={}, cwd=cwd_file.parent) == cwd_file


def test_user_config_folder_comes_last(tmp_path: Path, user_dir: Path) -> None:
    """With nothing else, the file in the per-user config folder is used."""
    user_file = write(user_dir, "")
    assert find_config(None, environ={}, cwd=tmp_path) == user_file


def test_no_config_anywhere(tmp_path: Path, user_dir: Path) -> None:
    """When no file is found, the error lists every place that was tried."""
    with pytest.raises(ConfigError) as caught:
        find_config(None, environ={}, cwd=tmp_path)
    message = str(caught.value)
    assert CONFIG_ENV in message
    assert str(tmp_path / "boothsync.toml") in message
    assert str(user_dir / "boothsync.toml") in message


def test_config_is_frozen() -> None:
    """A loaded config cannot be changed by the code that reads it."""
    config = parse_config(minimal(), source=None, environ={})
    assert isinstance(config, Config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.upload.concurrency = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.destinations["x"] = config.destinations["eventpics"]  # type: ignore[index]


# -- more galleries --------------------------------------------------------------------------------

FOUR = """
[destinations.picsui]
type = "picsui"
api_key = "picsui-secret-key"
event_id = "ev-1"
caption = "{booth} {taken:%H:%M} {file}"

[destinations.picpeak]
type = "picpeak"
api_token = "pp_live_secret_token"
event_id = 7
base_url = "http://192.168.1.20:3001/"
max_edge = 1600
quality = 80

[destinations.backup]
type = "folder"
path = "backup"
album_folders = true

[upload]
bandwidth_limit = "2MB/s"
"""


def test_four_kinds_of_destination_in_one_config(tmp_path: Path) -> None:
    """EventPics, Picsui, PicPeak and a folder load side by side, each with its own options,
    and the secrets of all of them are known to the log's redaction."""
    config = load_config(write(tmp_path, config_text(tail=FOUR)), environ={})
    picsui = config.destinations["picsui"]
    picpeak = config.destinations["picpeak"]
    backup = config.destinations["backup"]
    assert isinstance(picsui, PicsuiConfig) and picsui.base_url == "https://api.picsui.com/v1"
    assert picsui.caption == "{booth} {taken:%H:%M} {file}"
    assert isinstance(picpeak, PicPeakConfig) and picpeak.event_id == 7
    assert picpeak.base_url == "http://192.168.1.20:3001"
    assert (picpeak.max_edge, picpeak.quality) == (1600, 80)
    assert isinstance(backup, FolderConfig) and backup.path == tmp_path / "backup"
    assert backup.album_folders
    assert config.upload.bandwidth_limit == 2_000_000
    assert set(secrets(config)) == {SECRET, "picsui-secret-key", "pp_live_secret_token"}
    assert "pp_live_secret_token" not in repr(picpeak)
    assert "picsui-secret-key" not in repr(picsui)


@pytest.mark.parametrize(
    ("tail", "key", "problem"),
    [
        (
            '[destinations.p]\ntype = "picsui"\napi_key = "k1234"\nevent_id = "e"\n'
            'caption = "{booth} {when}"',
            "destinations.p.caption",
            "unknown field {when}",
        ),
        (
            '[destinations.p]\ntype = "picpeak"\napi_token = "t1234"\nevent_id = "seven"\n'
            'base_url = "https://photos.example.com"',
            "destinations.p.event_id",
            "must be a whole number",
        ),
        (
            '[destinations.p]\ntype = "picpeak"\napi_token = "t1234"\nevent_id = 1\n'
            'base_url = "http://photos.example.com"',
            "destinations.p.base_url",
            "http:// only for this machine or the local network",
        ),
        (
            '[destinations.p]\ntype = "folder"\n',
            "destinations.p.path",
            "required but missing",
        ),
        (
            '[destinations.p]\ntype = "folder"\npath = "x"\nmax_edge = 10',
            "destinations.p.max_edge",
            "must be at least 64",
        ),
        ('[upload]\nbandwidth_limit = "fast"', "upload.bandwidth_limit", "must be a rate"),
        ('[upload]\nbandwidth_limit = "10B/s"', "upload.bandwidth_limit", "at least 1kB/s"),
    ],
)
def test_new_destination_options_are_checked(
    tmp_path: Path, tail: str, key: str, problem: str
) -> None:
    """A wrong value in the new tables is one line naming the key and the problem."""
    error = load_error(write(tmp_path, config_text(tail=tail)))
    assert error.key == key
    assert problem in str(error)


def test_eventpics_still_refuses_plain_http_on_the_lan(tmp_path: Path) -> None:
    """Only a self-hosted gallery may use http:// on the local network; a hosted service's key
    never travels unencrypted beyond this machine."""
    error = load_error(write(tmp_path, config_text(destination='base_url = "http://192.168.1.20"')))
    assert error.key == "destinations.eventpics.base_url"


# -- [web] ---------------------------------------------------------------------------------------


def test_web_defaults_to_this_computer_only() -> None:
    """Without a [web] table the dashboard is on, on 127.0.0.1:8700, with no password."""
    config = parse_config(minimal(), source=None, environ={})
    assert (config.web.enabled, config.web.listen, config.web.password) == (
        True,
        "127.0.0.1:8700",
        None,
    )
    assert (config.web.host, config.web.port) == ("127.0.0.1", 8700)


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("localhost:8701", "127.0.0.1:8701"),
        ("[::1]:9000", "[::1]:9000"),
        ("127.0.0.1:80", "127.0.0.1:80"),
    ],
)
def test_web_listen_is_normalised(written: str, normalised: str) -> None:
    """`listen` takes an IP address or localhost and a port, and is kept in one spelling."""
    config = parse_config({**minimal(), "web": {"listen": written}}, source=None, environ={})
    assert config.web.listen == normalised


@pytest.mark.parametrize("written", ["8700", "example.com:8700", "127.0.0.1:65536", "127.0.0.1:x"])
def test_a_bad_web_listen_is_one_line_naming_the_key(written: str) -> None:
    """A listen that is no address and port is refused naming web.listen."""
    with pytest.raises(ConfigError) as caught:
        parse_config({**minimal(), "web": {"listen": written}}, source=None, environ={})
    assert caught.value.key == "web.listen"
    assert "\n" not in str(caught.value)


def test_listening_beyond_this_computer_needs_a_password() -> None:
    """`listen = "0.0.0.0:8700"` without a password is refused in one line naming the key;
    with one (in the file or the environment) it is taken, and the password is a secret."""
    with pytest.raises(ConfigError) as caught:
        parse_config({**minimal(), "web": {"listen": "0.0.0.0:8700"}}, source=None, environ={})
    assert caught.value.key == "web.listen"
    assert "web.password" in str(caught.value)
    config = parse_config(
        {**minimal(), "web": {"listen": "0.0.0.0:8700"}},
        source=None,
        environ={"BOOTHSYNC_WEB_PASSWORD": "open sesame"},
    )
    assert config.web.password == "open sesame"
    assert "open sesame" in secrets(config)
    assert "open sesame" not in repr(config)
    # A dashboard that is switched off listens nowhere, so it needs none.
    off = {**minimal(), "web": {"listen": "0.0.0.0:8700", "enabled": False}}
    parse_config(off, source=None, environ={})
