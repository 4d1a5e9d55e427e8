"""Editing the operator's config file by program, keeping their comments and key order.

Owns reading an existing config into a tomlkit document, the edits the setup wizard makes (a
destination added or its values changed, a watched folder added or moved), a plain summary of
the file for a page, and saving it: the new text is checked as ``boothsync run`` will read it,
then written whole, readable by this account only. Also the wizard's first save, of a config
that does not exist yet (the same text ``boothsync init`` writes).

Must not edit the text as a string (every change goes through tomlkit's document, so the
lines an edit does not touch stay byte for byte), let the value of a key or token out (not
in a summary, a repr or a message), nor write a file that is not a valid config.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Final, NoReturn

import tomlkit
from tomlkit.exceptions import ParseError, TOMLKitError
from tomlkit.items import AbstractTable, AoT, Comment, Item, Null, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

from boothsync.config import (
    DESTINATION_TYPES,
    WATCH_OPTIONS,
    Config,
    Option,
    parse_config,
    read_config_file,
)
from boothsync.errors import ConfigError
from boothsync.first_config import gallery_label, posix_path, render, write_config
from boothsync.paths import write_private

__all__ = [
    "NOT_SET",
    "SET",
    "ConfigFile",
    "DestinationSummary",
    "Summary",
    "WatchSummary",
    "coerce_value",
    "create_config",
]

log = logging.getLogger(__name__)

#: How a summary shows a secret option: only whether it has a value.
SET: Final = "set"
NOT_SET: Final = "not set"

#: What the first line of a config written by the wizard says wrote it.
WIZARD: Final = "the dashboard's setup"

# A destination's name as a bare TOML key: what `[destinations.NAME]` takes without quotes,
# and what logs and `--destination` show as it is.
_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")
_LONE_LF: Final = re.compile(r"(?<!\r)\n")
_TRIVIA: Final = (Whitespace, Comment, Null)
_WATCH_PATH: Final = next(option for option in WATCH_OPTIONS if option.name == "path")


@dataclass(frozen=True)
class DestinationSummary:
    """One ``[destinations.NAME]`` table as a page shows it.

    ``values``: its non-secret keys as the file has them (plain Python values);
    ``secrets``: each secret option of its type, :data:`SET` or :data:`NOT_SET`;
    ``unknown``: keys its type does not know (their names only: one may be a misspelt key).
    """

    name: str
    type: str
    label: str  # "EventPics"; the type as written where it names no known service
    values: Mapping[str, Any]
    secrets: Mapping[str, str]
    unknown: tuple[str, ...]


@dataclass(frozen=True)
class WatchSummary:
    """One ``[[watch]]`` table: its place (from 0, as :meth:`ConfigFile.set_watch_path` takes
    it), its path as written, its other known keys, and the names of keys it does not know."""

    index: int
    path: str
    values: Mapping[str, Any]
    unknown: tuple[str, ...]


@dataclass(frozen=True)
class Summary:
    """What a config file says, for a page: its destinations and its watched folders."""

    destinations: tuple[DestinationSummary, ...]
    watches: tuple[WatchSummary, ...]


class ConfigFile:
    """An existing config file, read to be edited and saved.

    Reading needs only valid TOML (a config that ``run`` refuses can be mended here); saving
    needs the whole to be a config. ``environ`` is what the check at saving reads the
    environment overrides from (``$BOOTHSYNC_API_KEY``...): the process's when None.
    """

    def __init__(self, path: Path | str, *, environ: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self._environ = environ
        raw, text, _ = read_config_file(self.path)
        self._raw = raw
        # A file with Windows line ends keeps them, also on the lines an edit adds.
        self._crlf = "\r\n" in text
        try:
            self._doc: TOMLDocument = tomlkit.parse(text)
        except TOMLKitError as exc:
            # tomllib read it, so this is tomlkit's limit, not the operator's mistake; its
            # message may quote the line, which may hold a key: only where it is said.
            where = f" (line {exc.line})" if isinstance(exc, ParseError) else ""
            raise self._error(f"cannot be edited here{where}; edit it in a text editor") from None

    def __repr__(self) -> str:
        return f"ConfigFile({str(self.path)!r})"

    # -- destinations ----------------------------------------------------------------------

    def add_destination(self, name: str, type: str, values: Mapping[str, Any]) -> None:
        """Add a ``[destinations.NAME]`` table of ``type`` with ``values`` (its keys in the
        order the reference config documents them; None or "" leaves a key out), after the
        destinations there are."""
        if not _NAME.fullmatch(name):
            raise self._error(
                f"a destination's name is letters, digits, - and _ (got {json.dumps(name)})",
                "destinations",
            )
        where = f"destinations.{name}"
        destinations = self._doc.get("destinations")
        if destinations is not None and name in destinations:
            raise self._error("already exists; change its values instead", where)
        options = self._options(type, f"{where}.type")
        coerced = self._coerce_all(options, {k: v for k, v in values.items() if k != "type"}, where)
        table = tomlkit.table()
        table.add("type", type)
        for option in options:
            if coerced.get(option.name) is not None:
                table.add(option.name, coerced[option.name])
        if isinstance(destinations, Table):
            _place(table, _last_table(destinations))
            destinations.append(name, table)
        elif destinations is None:
            _place(table, _last_table(self._doc))
            # tomlkit puts the blank line before the [destinations] that is never written.
            table.trivia.indent = ""
            parent = tomlkit.table(is_super_table=True)
            parent.append(name, table)
            self._doc.append("destinations", parent)
        else:
            # Written some other way (split around other tables, or inline): tomlkit places it.
            destinations[name] = table
        log.info("%s: destination %s (%s) added", self.path, name, type)

    def set_destination_values(self, name: str, values: Mapping[str, Any]) -> None:
        """Change keys of ``[destinations.NAME]``: a value replaces the key's (its comment
        stays), a new key goes after the keys the reference config puts before it, and None or
        "" removes an optional key. A secret option given None or "" keeps its value: a page
        never has it to send back. The type cannot change; a required key cannot go."""
        where = f"destinations.{name}"
        table = self._destination(name)
        kind = table.get("type")
        if values.get("type") not in (None, "", kind):
            raise self._error(
                "cannot be changed; add a destination of the other type instead", f"{where}.type"
            )
        options = self._options(kind, f"{where}.type")
        changes = {k: v for k, v in values.items() if k != "type"}
        coerced = self._coerce_all(options, changes, where)
        by_name = {option.name: option for option in options}
        # Secrets given no value are kept; the rest is set, or removed where it is None.
        changed = [k for k in changes if coerced[k] is not None or not by_name[k].secret]
        for key in changed:
            if coerced[key] is None and by_name[key].required:
                raise self._error("is required: it can be changed, not removed", _join(where, key))
        for key in changed:
            if coerced[key] is not None:
                if key in table:
                    table[key] = coerced[key]
                else:
                    _insert(table, key, coerced[key], list(by_name))
            elif key in table:
                del table[key]
        log.info("%s: destination %s changed (%s)", self.path, name, ", ".join(changes))

    # -- watched folders -------------------------------------------------------------------

    def set_watch_path(self, index: int, path: str | PurePath) -> None:
        """Point the ``[[watch]]`` at ``index`` (from 0) at another folder."""
        watches = self._watches()
        if not 0 <= index < len(watches):
            raise self._error(f"there is no watch #{index + 1} (the file has {len(watches)})")
        where = f"watch #{index + 1}: path"
        value = coerce_value(_WATCH_PATH, path, where)
        if value is None:
            raise self._error("must not be empty", where)
        watches[index]["path"] = value
        log.info("%s: watch #%d now watches %s", self.path, index + 1, value)

    def add_watch(self, path: str | PurePath, **values: Any) -> None:
        """Add a ``[[watch]]`` of ``path`` with ``values`` (its other keys), after the
        watched folders there are."""
        where = f"watch #{len(self._watches()) + 1}"
        options = WATCH_OPTIONS
        coerced = self._coerce_all(options, {"path": path, **values}, where)
        if coerced["path"] is None:
            raise self._error("must not be empty", f"{where}: path")
        table = tomlkit.table()
        for option in options:
            if coerced.get(option.name) is not None:
                table.add(option.name, coerced[option.name])
        watches = self._doc.get("watch")
        if isinstance(watches, AoT):
            _place(table, watches[-1] if len(watches) else _last_table(self._doc))
            watches.append(table)
        else:
            _place(table, _last_table(self._doc))
            added = tomlkit.aot()
            added.append(table)
            self._doc.append("watch", added)
        log.info("%s: %s added for %s", self.path, where, coerced["path"])

    # -- reading and saving ----------------------------------------------------------------

    def summary(self) -> Summary:
        """The destinations and watched folders, for a page; no secret's value."""
        environ = os.environ if self._environ is None else self._environ
        destinations = self._doc.get("destinations")
        found = []
        if isinstance(destinations, Mapping):
            for name, table in destinations.items():
                if isinstance(table, Mapping):
                    found.append(_destination_summary(str(name), table, environ))
        watches = []
        raw = self._doc.get("watch")
        if isinstance(raw, list):
            for index, table in enumerate(raw):
                if isinstance(table, Mapping):
                    watches.append(_watch_summary(index, table))
        return Summary(tuple(found), tuple(watches))

    def save(self) -> Config:
        """Check the edited text as ``run`` will read it, then write it over the file (a
        temporary file renamed into place, 0600 on POSIX); return the config it holds.

        Raises ConfigError, and writes nothing, when the edits make it no config, or when the
        file changed on disk since it was read (an edit by hand is never overwritten).
        """
        text, config = self._checked()
        try:
            current = self.path.read_bytes()
        except OSError:
            current = None
        if current != self._raw:
            raise self._error(
                "changed on disk since it was read (by hand?); open it again and redo the change"
            )
        write_private(self.path, text)
        self._raw = text.encode("utf-8")
        log.info("%s: saved", self.path)
        return config

    def check(self) -> Config:
        """The config the edited text holds, as :meth:`save` would write it; nothing written.
        Raises ConfigError when the edits make it no config."""
        return self._checked()[1]

    def _checked(self) -> tuple[str, Config]:
        text = tomlkit.dumps(self._doc)
        if self._crlf:
            text = _LONE_LF.sub("\r\n", text)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib's message names the place only, never the text found there.
            raise self._error(f"the changes would not be valid TOML: {exc}") from None
        return text, parse_config(data, source=self.path, environ=self._environ)

    # -- helpers ---------------------------------------------------------------------------

    def _error(self, message: str, key: str | None = None) -> ConfigError:
        return ConfigError(message, file=str(self.path), key=key)

    def _destination(self, name: str) -> AbstractTable:
        destinations = self._doc.get("destinations")
        table = destinations.get(name) if isinstance(destinations, Mapping) else None
        if not isinstance(table, AbstractTable):
            known = ", ".join(destinations) if isinstance(destinations, Mapping) else ""
            raise self._error(
                f"no such destination (configured: {known or 'none'})", f"destinations.{name}"
            )
        return table

    def _watches(self) -> AoT:
        watches = self._doc.get("watch")
        if watches is None:
            return tomlkit.aot()
        if not isinstance(watches, AoT):
            raise self._error("must be an array of tables: write [[watch]], not [watch]", "watch")
        return watches

    def _options(self, kind: object, key: str) -> tuple[Option, ...]:
        if not isinstance(kind, str) or kind not in DESTINATION_TYPES:
            known = list(DESTINATION_TYPES)
            close = difflib.get_close_matches(str(kind), known, n=1)
            hint = f'; did you mean "{close[0]}"?' if close else f" (known: {', '.join(known)})"
            raise self._error(f"unknown destination type {json.dumps(str(kind))}{hint}", key)
        return DESTINATION_TYPES[kind][0]

    def _coerce_all(
        self, options: Sequence[Option], values: Mapping[str, Any], where: str
    ) -> dict[str, Any]:
        """Every value as its option's kind (None for one to leave out), all of them before
        any is written: a value that cannot be used changes nothing."""
        by_name = {option.name: option for option in options}
        coerced = {}
        for key, value in values.items():
            option = by_name.get(key)
            if option is None or key == "type":
                raise self._error(_unknown(key, list(by_name)), _join(where, key))
            try:
                coerced[key] = coerce_value(option, value, _join(where, key))
            except ConfigError as exc:
                raise self._error(exc.message, exc.key) from None
        return coerced


def create_config(
    path: Path | str,
    folder: str | PurePath,
    type: str,
    values: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    write: bool = True,
) -> Config:
    """The wizard's first save: a config that watches ``folder`` (absolute) and uploads to one
    destination of ``type`` with ``values``, the same text ``boothsync init`` writes. Checked
    before it is written (``environ`` as for :class:`ConfigFile`); refused when ``path``
    exists already (it is edited with :class:`ConfigFile` then). ``write`` False only checks
    it: the config it would write, for the checks before it is saved."""
    target = Path(path)
    shown = str(target)
    if target.exists():
        raise ConfigError("already exists; change it instead of writing a new one", file=shown)
    if type not in DESTINATION_TYPES:
        known = ", ".join(DESTINATION_TYPES)
        raise ConfigError(
            f"unknown destination type {json.dumps(type)} (known: {known})", key="type"
        )
    where = f"destinations.{type}"
    options = {option.name: option for option in DESTINATION_TYPES[type][0]}
    table: dict[str, Any] = {"type": type}
    for key, value in values.items():
        if key == "type":
            continue
        if key not in options:
            raise ConfigError(_unknown(key, list(options)), file=shown, key=_join(where, key))
        coerced = coerce_value(options[key], value, _join(where, key))
        if coerced is not None:
            table[key] = coerced
    watched = coerce_value(_WATCH_PATH, folder, "watch #1: path")
    if watched is None:
        raise ConfigError("the folder to watch is needed", file=shown, key="watch #1: path")
    if not write:
        text = render(watched, type, table, by=WIZARD)
        return parse_config(tomllib.loads(text), source=target, environ=environ)
    config = write_config(target, watched, type, table, environ=environ, by=WIZARD)
    log.info("%s: written (watching %s, uploading to %s)", target, watched, gallery_label(type))
    return config


# -- values ------------------------------------------------------------------------------------


class _Wrong(Exception):
    """A value is not of its option's kind; the message says what it must be."""


def coerce_value(option: Option, value: Any, key: str) -> Any:
    """``value`` (often a form's text) as ``option``'s kind, for TOML; None for None or blank
    text. ConfigError naming ``key`` when it is not of that kind (never showing a secret
    option's value). Its checks proper are parse_config's, when the file is saved."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return _KINDS[option.kind](value.strip() if isinstance(value, str) else value)
    except (_Wrong, ValueError) as exc:
        problem = str(exc) if isinstance(exc, _Wrong) else f"must be {_KIND_WORDS[option.kind]}"
        # A key's value never goes into a message, not even a mistyped one.
        got = "" if option.secret else f" (got {_shown(value)})"
        raise ConfigError(problem + got, key=key) from None


def _fail(kind: str) -> NoReturn:
    raise _Wrong(f"must be {_KIND_WORDS[kind]}")


def _as_str(value: Any) -> str:
    return value if isinstance(value, str) else _fail("str")


def _as_path(value: Any) -> str:
    if not isinstance(value, str | PurePath):
        _fail("path")
    return posix_path(str(value))


def _as_int(value: Any) -> int:
    # bool is an int in Python, but `true` is no number.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value):
        return int(value)
    _fail("int")


def _as_float(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return float(value.replace(",", ".", 1) if value.count(",") == 1 else value)
    _fail("float")


_BOOLEAN_WORDS: Final = {
    **dict.fromkeys(("true", "yes", "on", "1"), True),
    **dict.fromkeys(("false", "no", "off", "0"), False),
}


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _BOOLEAN_WORDS:
        return _BOOLEAN_WORDS[value.lower()]
    _fail("bool")


def _as_strings(value: Any) -> list[str]:
    # A form's one line: "*.jpg, *.png".
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        _fail("strings")
    return [item.strip() for item in items if item.strip()]


def _as_names(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        _fail("names")
    return {str(name): _as_str(item) for name, item in value.items()}


_KINDS: Final[Mapping[str, Callable[[Any], Any]]] = {
    "str": _as_str,
    "path": _as_path,
    "int": _as_int,
    "float": _as_float,
    "bool": _as_bool,
    "strings": _as_strings,
    "names": _as_names,
}

_KIND_WORDS: Final = {
    "str": "text",
    "path": "a folder's path",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "strings": "a list of texts",
    "names": "a table of names to texts",
}


def _shown(value: Any) -> str:
    text = json.dumps(str(value), ensure_ascii=False)
    return text if len(text) <= 80 else text[:76] + '..."'


def _join(where: str, key: str) -> str:
    # A watch's keys follow its name after ": ", as parse_config names them.
    return f"{where}: {key}" if where.startswith("watch #") else f"{where}.{key}"


def _unknown(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f'unknown key; did you mean "{close[0]}"?'
    return f"unknown key (known: {', '.join(k for k in known if k != 'type')})"


# -- the summary -------------------------------------------------------------------------------


def _destination_summary(
    name: str, table: Mapping[str, Any], environ: Mapping[str, str]
) -> DestinationSummary:
    kind = table.get("type")
    if not isinstance(kind, str) or kind not in DESTINATION_TYPES:
        # Which of its keys is secret is unknown: names only.
        shown = str(kind) if isinstance(kind, str) else ""
        return DestinationSummary(name, shown, shown, {}, {}, tuple(str(k) for k in table))
    options = DESTINATION_TYPES[kind][0]
    by_name = {option.name: option for option in options}
    values = {
        option.name: _plain(table[option.name])
        for option in options
        if option.name in table and not option.secret
    }
    secrets = {
        option.name: SET
        if _has_value(table.get(option.name)) or (option.env and environ.get(option.env))
        else NOT_SET
        for option in options
        if option.secret
    }
    unknown = tuple(str(k) for k in table if k not in by_name)
    return DestinationSummary(name, kind, gallery_label(kind), values, secrets, unknown)


def _watch_summary(index: int, table: Mapping[str, Any]) -> WatchSummary:
    known = {option.name for option in WATCH_OPTIONS}
    path = table.get("path")
    values = {str(k): _plain(v) for k, v in table.items() if k in known and k != "path"}
    unknown = tuple(str(k) for k in table if k not in known)
    return WatchSummary(index, str(_plain(path)) if path is not None else "", values, unknown)


def _plain(value: Any) -> Any:
    """A tomlkit item as the Python value it stands for."""
    unwrap = getattr(value, "unwrap", None)
    return unwrap() if callable(unwrap) else value


def _has_value(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


# -- where tomlkit puts what is added ------------------------------------------------------------


def _insert(table: AbstractTable, key: str, value: Any, order: Sequence[str]) -> None:
    """Add ``key`` to ``table`` after the last key the reference config documents before it
    (after the table's last key if none), not after the comments that close the table."""
    container = table.value
    body = container.body
    rank = order.index(key)
    after: int | None = None
    last = -1
    for index, (name, _) in enumerate(body):
        if name is None:
            continue
        last = index
        if name.key in order and order.index(name.key) < rank:
            after = index
    position = (last if after is None else after) + 1
    if position >= len(body):
        table.add(key, value)
        return
    # tomlkit's public API only appends; this is how its own insertions place an item.
    container._insert_at(position, key, value)
    # The table also keeps a dict of its keys, which only its own methods update.
    dict.__setitem__(table, key, container[key])


def _last_table(parent: Mapping[str, Any]) -> Table | None:
    """The table rendered last inside ``parent`` (the last of an array of tables)."""
    container = parent.value if isinstance(parent, Table) else parent
    body = container.body if hasattr(container, "body") else []
    for _, item in reversed(body):
        if isinstance(item, Table):
            # [destinations] is never written when only its [destinations.NAME] are.
            inner = _last_table(item) if item.is_super_table() else None
            return inner or item
        if isinstance(item, AoT) and len(item):
            last = item[-1]
            return last if isinstance(last, Table) else None
    return None


def _place(table: Table, previous: Table | None) -> None:
    """Make ``table`` read as a section of its own after ``previous``: a blank line before its
    header, and the comments and blank lines that closed ``previous`` moved after it.

    tomlkit keeps what stands between a table's last key and the next header (the comments
    that introduce the next section) inside the table before it: a table added behind that
    one would take those comments away from the section they belong to.
    """
    if previous is None:
        return
    table.trivia.indent = "\n"
    body = previous.value.body
    start = len(body)
    while start > 0 and body[start - 1][0] is None and isinstance(body[start - 1][1], _TRIVIA):
        start -= 1
    moved: list[Item] = [item for _, item in body[start:] if not isinstance(item, Null)]
    # Removed as tomlkit removes an item: a Null in its place renders as nothing.
    for index in range(start, len(body)):
        body[index] = (None, Null())
    for item in moved:
        table.add(item)  # type: ignore[call-overload]
