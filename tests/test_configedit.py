"""Editing the operator's config file: comments, order and bytes kept, secrets kept in."""

from __future__ import annotations

import os
import shutil
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from boothsync.config import load_config
from boothsync.errors import ConfigError
from boothsync.first_config import render
from boothsync.web.configedit import NOT_SET, SET, ConfigFile, create_config

ROOT = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-key-that-must-never-show"
TOKEN = "pp_live_t0ken-that-must-never-show"

# An operator's file: comments above sections and keys, comments after values, a blank line
# and a comment between tables that belong to the next table.
HAND_WRITTEN = """\
# Booth at the Smith wedding.
[booth]
name = "booth-1"   # shown in status

[[watch]]
path = "{hot}"   # dslrBooth's prints
settle_seconds = 0.5

# Where the pictures go.
[destinations.eventpics]
type = "eventpics"
api_key = "{secret}"   # from the account page
link_id = "demo"  # the wedding
album_id = "a1"

[destinations.picpeak]
type = "picpeak"
api_token = "{token}"
event_id = 12
base_url = "https://photos.example.com"
quality = 80

# Keep the queue beside the config.
[state]
dir = "{state}"
"""


def write_config(tmp_path: Path, text: str = HAND_WRITTEN) -> Path:
    hot = tmp_path / "hot"
    hot.mkdir(exist_ok=True)
    config = tmp_path / "boothsync.toml"
    config.write_bytes(
        text.format(
            hot=hot.as_posix(), secret=SECRET, token=TOKEN, state=(tmp_path / "state").as_posix()
        ).encode()
    )
    return config


def kept_in_order(before: bytes, after: bytes, changed: set[bytes]) -> bool:
    """Every line of ``before`` but the ``changed`` ones is in ``after``, byte for byte and in
    the same order."""
    remaining = iter(after.split(b"\n"))
    return all(
        any(line == other for other in remaining)
        for line in before.split(b"\n")
        if line not in changed
    )


EDITS: list[tuple[str, Callable[[ConfigFile, Path], None], set[bytes], list[bytes]]] = [
    (
        "change a value",
        lambda c, _: c.set_destination_values("eventpics", {"album_id": "a2"}),
        {b'album_id = "a1"'},
        [b'album_id = "a2"'],
    ),
    (
        "change a value with a comment after it",
        lambda c, _: c.set_destination_values("eventpics", {"link_id": "other"}),
        {b'link_id = "demo"  # the wedding'},
        [b'link_id = "other"  # the wedding'],
    ),
    (
        "add a key where the reference config documents it",
        lambda c, _: c.set_destination_values("picpeak", {"max_edge": "2048"}),
        set(),
        [b'base_url = "https://photos.example.com"\nmax_edge = 2048\nquality = 80\n'],
    ),
    (
        "add a key after the last",
        lambda c, _: c.set_destination_values(
            "eventpics", {"base_url": "https://api.eventpics.net"}
        ),
        set(),
        [b'album_id = "a1"\nbase_url = "https://api.eventpics.net"\n\n[destinations.picpeak]'],
    ),
    (
        "remove an optional key",
        lambda c, _: c.set_destination_values("eventpics", {"album_id": ""}),
        {b'album_id = "a1"'},
        [b'link_id = "demo"  # the wedding\n\n[destinations.picpeak]'],
    ),
    (
        "add a destination",
        lambda c, tmp: c.add_destination("copy", "folder", {"path": str(tmp / "copy")}),
        set(),
        [
            b'quality = 80\n\n[destinations.copy]\ntype = "folder"\npath = "',
            b'/copy"\n\n# Keep the queue beside the config.\n[state]',
        ],
    ),
    (
        "move a watched folder",
        lambda c, tmp: c.set_watch_path(0, tmp / "prints"),
        {b"path = "},
        [b"/prints\"   # dslrBooth's prints"],
    ),
    (
        "add a watched folder",
        lambda c, tmp: c.add_watch(tmp / "originals", poll="true", after_upload="keep"),
        set(),
        [
            b'settle_seconds = 0.5\n\n[[watch]]\npath = "',
            b'/originals"\npoll = true\nafter_upload = "keep"\n\n# Where the pictures go.\n',
        ],
    ),
]


@pytest.mark.parametrize(
    ("edit", "changed", "expected"),
    [pytest.param(e, c, x, id=name) for name, e, c, x in EDITS],
)
def test_each_kind_of_edit_keeps_every_other_line_byte_for_byte(
    tmp_path: Path,
    edit: Callable[[ConfigFile, Path], None],
    changed: set[bytes],
    expected: list[bytes],
) -> None:
    """After each kind of edit the lines it does not touch are there byte for byte, in their
    order, with their comments; what is added goes where a person would put it; the file
    still reads as a config."""
    config = write_config(tmp_path)
    before = config.read_bytes()
    changed = {line for line in before.split(b"\n") if any(line.startswith(c) for c in changed)}
    edited = ConfigFile(config, environ={})
    edit(edited, tmp_path)
    edited.save()
    after = config.read_bytes()
    assert kept_in_order(before, after, changed), after.decode()
    for piece in expected:
        assert piece in after, after.decode()
    load_config(config, environ={})


def test_edits_of_the_reference_config_keep_its_explanations(tmp_path: Path) -> None:
    """The reference config (every key explained above it) edited several ways at once keeps
    every explanation, and each section's comments stay above that section."""
    config = tmp_path / "boothsync.toml"
    shutil.copy(ROOT / "boothsync.toml.example", config)
    before = config.read_bytes()
    edited = ConfigFile(config, environ={})
    edited.set_destination_values("eventpics", {"album_id": "a9", "api_key": None})
    edited.add_destination("usb", "folder", {"path": "E:/booth"})
    edited.add_watch("D:/Originals")
    edited.save()
    after = config.read_bytes()
    assert kept_in_order(before, after, {b'album_id = "a1"'})
    text = after.decode()
    # The explanation of [destinations.*] still comes right before the first destination,
    # not after the watch that was added.
    intro = text.index("# One [destinations.NAME] table per gallery")
    assert text.index('path = "D:/Originals"') < intro < text.index("[destinations.eventpics]")
    assert text.count("[destinations.usb]") == 1 and 'album_id = "a9"' in text
    load_config(config, environ={})


def test_windows_line_ends_stay_windows_line_ends(tmp_path: Path) -> None:
    """A file saved with CRLF (Notepad) keeps CRLF on every line, also the added ones."""
    config = write_config(tmp_path, HAND_WRITTEN.replace("\n", "\r\n"))
    edited = ConfigFile(config, environ={})
    edited.set_destination_values("picpeak", {"max_edge": 1600})
    edited.save()
    after = config.read_bytes()
    assert b"max_edge = 1600\r\n" in after
    assert after.count(b"\n") == after.count(b"\r\n")


def test_an_edit_that_makes_the_config_invalid_writes_nothing(tmp_path: Path) -> None:
    """An edit the config check refuses raises that one-line ConfigError naming the file and
    the key, and the file's bytes stay exactly as they were."""
    config = write_config(tmp_path)
    os.chmod(config, 0o644)
    before = config.read_bytes()
    edited = ConfigFile(config, environ={})
    edited.set_destination_values("eventpics", {"base_url": "ftp://example.com"})
    with pytest.raises(ConfigError) as caught:
        edited.save()
    message = str(caught.value)
    assert str(config) in message and "destinations.eventpics.base_url" in message
    assert "\n" not in message
    assert config.read_bytes() == before
    assert stat.S_IMODE(config.stat().st_mode) == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_folder_watched_twice_is_refused_and_nothing_written(tmp_path: Path) -> None:
    """Adding a watch of a folder already watched is refused at saving, file untouched."""
    config = write_config(tmp_path)
    before = config.read_bytes()
    edited = ConfigFile(config, environ={})
    edited.add_watch(tmp_path / "hot")
    with pytest.raises(ConfigError, match="same folder as watch #1"):
        edited.save()
    assert config.read_bytes() == before


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_the_saved_file_is_readable_by_this_account_only(tmp_path: Path) -> None:
    """A config that was readable by everyone is 0600 once saved: it holds the key."""
    config = write_config(tmp_path)
    os.chmod(config, 0o644)
    edited = ConfigFile(config, environ={})
    edited.set_destination_values("eventpics", {"album_id": "a2"})
    edited.save()
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_a_none_or_empty_secret_keeps_the_key_it_has(tmp_path: Path) -> None:
    """A page never has the key to send back: None or "" for a secret option keeps the
    value in the file, while the other values change."""
    config = write_config(tmp_path)
    edited = ConfigFile(config, environ={})
    edited.set_destination_values("eventpics", {"api_key": None, "album_id": "a2"})
    edited.set_destination_values("picpeak", {"api_token": "", "event_id": "7"})
    edited.save()
    data = tomllib.loads(config.read_text(encoding="utf-8"))
    assert data["destinations"]["eventpics"]["api_key"] == SECRET
    assert data["destinations"]["eventpics"]["album_id"] == "a2"
    assert data["destinations"]["picpeak"]["api_token"] == TOKEN
    assert data["destinations"]["picpeak"]["event_id"] == 7


def test_a_new_secret_replaces_the_old_one(tmp_path: Path) -> None:
    """A secret option given a value replaces the key (its comment stays)."""
    config = write_config(tmp_path)
    edited = ConfigFile(config, environ={})
    edited.set_destination_values("eventpics", {"api_key": "  new-key-from-the-form  "})
    edited.save()
    assert b'api_key = "new-key-from-the-form"   # from the account page' in config.read_bytes()


def test_the_summary_shows_values_but_only_whether_a_secret_is_set(tmp_path: Path) -> None:
    """The summary has each destination's type, label and non-secret values and each secret
    only as "set" or "not set" (the environment's key counts); the key is nowhere in it."""
    config = write_config(tmp_path)
    edited = ConfigFile(config, environ={"BOOTHSYNC_API_KEY": "from-the-environment"})
    edited.add_destination("other", "picsui", {"event_id": "ev-1"})
    summary = edited.summary()
    by_name = {d.name: d for d in summary.destinations}
    assert list(by_name) == ["eventpics", "picpeak", "other"]
    eventpics = by_name["eventpics"]
    assert (eventpics.type, eventpics.label) == ("eventpics", "EventPics")
    assert eventpics.values == {"type": "eventpics", "link_id": "demo", "album_id": "a1"}
    assert eventpics.secrets == {"api_key": SET}
    assert by_name["picpeak"].values["event_id"] == 12
    assert by_name["picpeak"].secrets == {"api_token": SET}
    assert by_name["other"].secrets == {"api_key": NOT_SET}
    [watch] = summary.watches
    assert (watch.index, watch.path) == (0, (tmp_path / "hot").as_posix())
    assert watch.values == {"settle_seconds": 0.5}
    shown = repr(summary) + str(summary) + repr(edited)
    assert SECRET not in shown and TOKEN not in shown


def test_a_misspelt_key_shows_by_name_only(tmp_path: Path) -> None:
    """A key its type does not know (perhaps a misspelt api_key holding the key) is listed
    by name, without its value."""
    config = write_config(tmp_path, HAND_WRITTEN.replace("api_key =", "apikey ="))
    summary = ConfigFile(config, environ={}).summary()
    eventpics = summary.destinations[0]
    assert eventpics.unknown == ("apikey",)
    assert eventpics.secrets == {"api_key": NOT_SET}
    assert SECRET not in repr(summary)


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (
            lambda c: c.set_destination_values("picpeak", {"api_token": ["not", "text"]}),
            "api_token",
        ),
        (lambda c: c.set_destination_values("eventpics", {"api_kee": SECRET}), "api_kee"),
        (lambda c: c.set_destination_values("eventpics", {"type": "picsui"}), "type"),
        (
            lambda c: c.set_destination_values("eventpics", {"album_id": "a2", "link_id": None}),
            "eventpics.link_id",
        ),
        (lambda c: c.set_destination_values("nope", {"api_key": SECRET}), "destinations.nope"),
        (lambda c: c.add_destination("eventpics", "eventpics", {"api_key": SECRET}), "eventpics"),
        (lambda c: c.add_destination("bad name", "folder", {"path": SECRET}), "destinations"),
        (lambda c: c.add_destination("x", "eventpix", {"api_key": SECRET}), "x.type"),
        (lambda c: c.set_watch_path(3, SECRET), "watch"),
        (lambda c: c.add_watch("x", poll="sometimes"), "poll"),
    ],
)
def test_a_refused_edit_is_one_line_naming_the_key_never_the_secret(
    tmp_path: Path, edit: Callable[[ConfigFile], None], key: str
) -> None:
    """Each edit that cannot be made is one ConfigError line naming the file and the key,
    which never holds a key's value (not even a mistyped one)."""
    config = write_config(tmp_path)
    before = config.read_bytes()
    edited = ConfigFile(config, environ={})
    with pytest.raises(ConfigError) as caught:
        edit(edited)
    message = str(caught.value)
    assert str(config) in message and key in message, message
    assert "\n" not in message
    assert SECRET not in message and TOKEN not in message
    edited.save()  # the refused edit changed nothing in the document
    assert config.read_bytes() == before


def test_a_secret_the_check_refuses_is_not_repeated(tmp_path: Path) -> None:
    """A key the config check refuses at saving (a control character in it) is named by its
    key, its value not shown."""
    config = write_config(tmp_path)
    edited = ConfigFile(config, environ={})
    edited.set_destination_values("eventpics", {"api_key": f"{SECRET}\x07"})
    with pytest.raises(ConfigError) as caught:
        edited.save()
    assert "destinations.eventpics.api_key" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_file_that_cannot_be_read_is_one_line_naming_it(tmp_path: Path) -> None:
    """A missing file, one that is not TOML (with the usual hint, the key left out) and one
    that is not UTF-8 are each one ConfigError line naming the file."""
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match="config file not found") as caught:
        ConfigFile(missing)
    assert str(missing) in str(caught.value)
    broken = tmp_path / "broken.toml"
    broken.write_text(f"[destinations.eventpics]\napi_key = {SECRET}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        ConfigFile(broken)
    message = str(caught.value)
    assert message.startswith(f"{broken}: not valid TOML") and "\n" not in message
    assert 'api_key = "..."' in message and SECRET not in message
    latin = tmp_path / "latin.toml"
    latin.write_bytes('[booth]\nname = "Café"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        ConfigFile(latin)


def test_a_file_changed_by_hand_meanwhile_is_not_overwritten(tmp_path: Path) -> None:
    """If the file changed on disk after it was read, saving refuses (one line) and the
    hand edit stays."""
    config = write_config(tmp_path)
    edited = ConfigFile(config, environ={})
    edited.set_destination_values("eventpics", {"album_id": "a2"})
    by_hand = config.read_bytes().replace(b'album_id = "a1"', b'album_id = "a3"')
    config.write_bytes(by_hand)
    with pytest.raises(ConfigError, match="changed on disk since it was read"):
        edited.save()
    assert config.read_bytes() == by_hand


def test_saving_twice_saves_both_edits(tmp_path: Path) -> None:
    """A second save after a first one goes through (what is on disk is what was written)."""
    config = write_config(tmp_path)
    edited = ConfigFile(config, environ={})
    edited.set_destination_values("eventpics", {"album_id": "a2"})
    edited.save()
    edited.set_watch_path(0, tmp_path)
    saved = edited.save()
    assert saved.destinations["eventpics"].album_id == "a2"  # type: ignore[attr-defined]
    assert saved.watches[0].path == tmp_path


def test_the_first_config_is_the_one_init_writes(tmp_path: Path) -> None:
    """create_config writes what `boothsync init` writes for the same answers (but for the
    line naming what wrote it), checked, private, and never over an existing file."""
    hot = tmp_path / "hot"
    hot.mkdir()
    config = tmp_path / "new" / "boothsync.toml"
    values = {"api_token": f" {TOKEN} ", "event_id": "12", "base_url": "http://192.168.1.5"}
    written = create_config(config, hot, "picpeak", values, environ={})
    assert written.destinations["picpeak"].event_id == 12  # type: ignore[attr-defined]
    table = {
        "type": "picpeak",
        "api_token": TOKEN,
        "event_id": 12,
        "base_url": "http://192.168.1.5",
    }
    init = render(str(hot), "picpeak", table)
    text = config.read_text(encoding="utf-8")
    assert text.splitlines()[1:] == init.splitlines()[1:]
    assert "written by the dashboard's setup" in text.splitlines()[0]
    if os.name == "posix":
        assert stat.S_IMODE(config.stat().st_mode) == 0o600
    with pytest.raises(ConfigError, match="already exists"):
        create_config(config, hot, "folder", {"path": str(tmp_path)})
    assert config.read_text(encoding="utf-8") == text


def test_a_first_config_that_would_not_check_is_not_written(tmp_path: Path) -> None:
    """A first config the check refuses (here: no key) is one line and no file."""
    config = tmp_path / "boothsync.toml"
    with pytest.raises(ConfigError) as caught:
        create_config(config, tmp_path, "eventpics", {"link_id": "demo"}, environ={})
    assert "api_key" in str(caught.value) and "required" in str(caught.value)
    assert not config.exists()


def test_a_file_without_destinations_or_watches_gets_its_first_ones(tmp_path: Path) -> None:
    """A file with neither gets a [destinations.NAME] and a [[watch]] as sections of their
    own, its closing comment still last, and reads as a config."""
    config = tmp_path / "boothsync.toml"
    config.write_text('# mine\n[booth]\nname = "x"  # me\n\n# the end\n', encoding="utf-8")
    edited = ConfigFile(config, environ={})
    edited.add_destination("eventpics", "eventpics", {"api_key": SECRET, "link_id": "demo"})
    edited.add_watch(tmp_path)
    edited.save()
    assert config.read_text(encoding="utf-8") == (
        '# mine\n[booth]\nname = "x"  # me\n\n'
        f'[destinations.eventpics]\ntype = "eventpics"\napi_key = "{SECRET}"\nlink_id = "demo"\n\n'
        f'[[watch]]\npath = "{tmp_path.as_posix()}"\n\n# the end\n'
    )
    load_config(config, environ={})
