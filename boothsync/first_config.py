"""``boothsync init``: the first config, written from a few answers, so it cannot be wrong.

Owns asking for the watched folder, the gallery type and its key (on the command line's flags,
or at prompts for what they leave out), listing the events and albums the key can reach to
pick from, and writing a minimal config with only what was chosen, readable by this account
only (0600 on Linux and macOS), through a temporary file renamed into place. A key the gallery
rejects at a prompt is one line and the question again; given as a flag it ends the command.
The key is read without echo on a terminal and never written anywhere but the config file.

Also prints the full reference config (``boothsync init --example``), which an installation
without the source folder has no other way to see. The dashboard's setup wizard writes its
first config through the same steps (:func:`gallery_events`, :func:`write_config`), so the two
cannot write different files. Must not run the check itself (the CLI does, on the file as
written) nor print anything but through ``say``.
"""

from __future__ import annotations

import difflib
import getpass
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final, TextIO

from boothsync.config import DESTINATION_TYPES, Config, Option, parse_config
from boothsync.destinations import REGISTRY, GalleryEvent, create
from boothsync.errors import BoothsyncError, ConfigError, Unauthorized, UnknownTarget
from boothsync.paths import write_private

__all__ = [
    "TYPED_EVENT",
    "Answers",
    "Prompter",
    "example_text",
    "first_options",
    "gallery_events",
    "gallery_label",
    "posix_path",
    "rejected",
    "render",
    "write_config",
    "write_first_config",
]

#: Wrong keys typed at a prompt before init gives up (an operator who needs more is better
#: served by finding the right one first).
MAX_TRIES = 5

#: The keys a first config may hold besides the required ones: the API's address (PicPeak has
#: no default one; the others are asked only when a flag names one) and EventPics' album.
_FIRST_OPTIONAL: Final = ("base_url", "album_id")

#: What wrote a first config, in its first line.
INIT: Final = "`boothsync init`"

#: The services whose event id is typed, not picked from a listing: their API has no list of
#: a key's events, only the one event it is asked about.
TYPED_EVENT: Final = frozenset({"picsui"})


def _key_name(kind: str) -> str:
    """The service's key option (its secret one): ``api_key``, ``api_token``."""
    return next(option.name for option in DESTINATION_TYPES[kind][0] if option.secret)


def gallery_label(kind: str) -> str:
    """The service's name in messages ("EventPics"), as its destination calls itself."""
    return str(getattr(REGISTRY[kind].factory, "label", "")) or kind


def first_options(kind: str) -> tuple[Option, ...]:
    """The keys of a first ``[destinations.NAME]`` table of this kind, in the order the
    reference config documents them: ``type``, the required ones, its address and its album
    where the service has them."""
    return tuple(
        option
        for option in DESTINATION_TYPES[kind][0]
        if option.required or option.name in _FIRST_OPTIONAL
    )


def rejected(kind: str, exc: Unauthorized) -> str:
    """What is said when the gallery refuses the key: "EventPics rejected this api key (401)"."""
    return f"{gallery_label(kind)} rejected this {_spoken(_key_name(kind))} ({exc.status or 'no'})"


def _spoken(name: str) -> str:
    return name.replace("_", " ")


def example_text() -> str:
    """The full reference config, every key explained (boothsync.toml.example)."""
    return resources.files("boothsync").joinpath("boothsync.toml.example").read_text("utf-8")


@dataclass
class Answers:
    """What the flags said; None where the operator is asked instead."""

    folder: str | None = None
    type: str | None = None
    api_key: str | None = None
    base_url: str | None = None
    link_id: str | None = None
    album_id: str | None = None
    event_id: str | None = None
    path: str | None = None


class Prompter:
    """Questions on ``output``, answers from ``input``; a secret without echo on a terminal.

    An input that ends before an answer is a ConfigError naming the flag that gives it.
    """

    def __init__(self, input: TextIO, output: TextIO) -> None:
        self._input = input
        self._output = output

    def say(self, line: str) -> None:
        print(line, file=self._output, flush=True)

    def ask(self, question: str, flag: str, default: str | None = None) -> str:
        shown = f" [{default}]" if default else ""
        print(f"{question}{shown}: ", end="", file=self._output, flush=True)
        answer = self._line(flag).strip()
        return answer or (default or "")

    def secret(self, question: str, flag: str) -> str:
        if self._input.isatty():
            try:
                return getpass.getpass(f"{question} (not shown): ", stream=self._output).strip()
            except EOFError:
                raise _no_answer(flag) from None
        print(f"{question}: ", end="", file=self._output, flush=True)
        answer = self._line(flag).strip()
        # Nothing echoed it, but the next output must not start on the prompt's line.
        print(file=self._output, flush=True)
        return answer

    def _line(self, flag: str) -> str:
        line = self._input.readline()
        if not line:
            raise _no_answer(flag)
        return line.rstrip("\r\n")


def _no_answer(flag: str) -> ConfigError:
    return ConfigError(f"no answer (the input ended); give it with {flag}", key="init")


def write_first_config(target: Path, answers: Answers, prompter: Prompter) -> Path:
    """Ask for what ``answers`` leaves out, confirm it with the gallery, write ``target``.

    Raises ConfigError for a value that cannot be used, UploadError (or another
    BoothsyncError) when the gallery refuses what a flag gave, and leaves ``target`` untouched
    then.
    """
    interactive = _Ask(prompter, answers)
    if answers.type is not None:
        # A wrong --type is said at once, not after the questions that come before it.
        kind = interactive.type()
        folder = interactive.folder()
    else:
        folder = interactive.folder()
        kind = interactive.type()
    table = {"type": kind, **_destination(kind, interactive)}
    write_config(target, folder, kind, table, environ={})
    return target


def write_config(
    target: Path,
    folder: str,
    kind: str,
    table: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    by: str = INIT,
) -> Config:
    """Write a first config (:func:`render`) to ``target``, readable by this account only,
    and return it as read. The text is checked first, as ``run`` will read it (with
    ``environ``, the process's environment when None): ConfigError, and nothing written, if it
    is not a config."""
    text = render(folder, kind, table, by=by)
    config = parse_config(tomllib.loads(text), source=target, environ=environ)
    write_private(target, text)
    return config


class _Ask:
    """Each value from its flag, or a prompt until the answer can be used."""

    def __init__(self, prompter: Prompter, answers: Answers) -> None:
        self.p = prompter
        self.a = answers

    def folder(self) -> str:
        given = self.a.folder
        while True:
            text = (
                given
                if given is not None
                else self.p.ask("Folder the booth software saves the pictures into", "--folder")
            )
            path = Path(text).expanduser()
            problem = (
                "is needed"
                if not text
                else None
                if path.is_dir()
                else "is not a folder"
                if path.exists()
                else "does not exist (create it, or check the spelling)"
            )
            if problem is None:
                return str(path.absolute())
            message = f"the folder {text!r} {problem}" if text else "the folder is needed"
            if given is not None:
                raise ConfigError(message, key="--folder")
            self.p.say(f"  {message}")

    def type(self) -> str:
        known = list(DESTINATION_TYPES)
        given = self.a.type
        if given is None and (self.a.api_key or self.a.link_id):
            # A script that names a key or a link means the first kind, as the prompt would.
            given = known[0]
        elif given is None and self.a.path:
            given = "folder"
        while True:
            text = (
                (
                    given
                    if given is not None
                    else self.p.ask(f"Gallery type ({', '.join(known)})", "--type", known[0])
                )
                .strip()
                .lower()
            )
            if text in known:
                return text
            close = difflib.get_close_matches(text, known, n=1)
            hint = f'; did you mean "{close[0]}"?' if close else f" (known: {', '.join(known)})"
            message = f"unknown gallery type {text!r}{hint}"
            if given is not None:
                raise ConfigError(message, key="--type")
            self.p.say(f"  {message}")

    def text(self, value: str | None, question: str, flag: str, default: str | None = None) -> str:
        while value is None or not value.strip():
            if value is not None:
                raise ConfigError("must not be empty", key=flag)
            answer = self.p.ask(question, flag, default)
            if answer:
                return answer
            self.p.say(f"  an answer is needed ({flag})")
        return value.strip()


# A prompt loop: each branch is an answer the gallery can give and what is asked again.
def _destination(kind: str, ask: _Ask) -> dict[str, Any]:  # noqa: C901
    if kind == "folder":
        path = ask.text(ask.a.path, "Folder to copy every picture into", "--path")
        return {"path": str(Path(path).expanduser().absolute())}
    gallery, key = gallery_label(kind), _key_name(kind)
    # A self-hosted gallery (PicPeak) has no default address: it is asked for.
    server = any(o.name == "base_url" and o.required for o in first_options(kind))
    base_url, secret, event_id = ask.a.base_url, ask.a.api_key, ask.a.event_id
    tries = 0
    while True:
        table: dict[str, Any] = {}
        if server or base_url is not None:
            base_url = ask.text(
                base_url, f"Your {gallery} server (https://..., or http://192.168...)", "--base-url"
            )
            table["base_url"] = base_url
        if secret is None:
            secret = ask.p.secret(f"{gallery} {_spoken(key)}", "--api-key")
        table[key] = secret
        if kind in TYPED_EVENT:
            event_id = ask.text(
                event_id, f"{gallery} event id ({gallery} shows it with the event)", "--event-id"
            )
            table["event_id"] = event_id
        try:
            events = _events(kind, table)
        except ConfigError as exc:
            if exc.key != "--base-url" or ask.a.base_url is not None:
                raise
            ask.p.say(f"  {exc.message}")
            base_url = None
        except Unauthorized as exc:
            said = rejected(kind, exc)
            if ask.a.api_key is not None:
                raise BoothsyncError(f"--api-key: {said}; check it in your account") from None
            tries += 1
            if tries >= MAX_TRIES:
                raise BoothsyncError(f"{said}, {tries} times; check it in your account") from None
            ask.p.say(f"  {said}: type it again")
            secret = None
        except UnknownTarget as exc:
            if kind not in TYPED_EVENT or ask.a.event_id is not None:
                raise
            ask.p.say(f"  {exc}")
            event_id = None
        else:
            break
    if kind in TYPED_EVENT:
        ask.p.say(f"  event: {events[0].title or '(untitled)'}")
        return table
    return {**table, **_pick(kind, events, ask)}


def _events(kind: str, table: Mapping[str, Any]) -> list[GalleryEvent]:
    """:func:`gallery_events`, a value that cannot be used named by its flag (``--base-url``)."""
    try:
        return gallery_events(kind, table)
    except ConfigError as exc:
        flag = f"--{exc.key.replace('_', '-')}" if exc.key else None
        raise ConfigError(exc.message, key=flag) from None


def gallery_events(kind: str, table: Mapping[str, Any]) -> list[GalleryEvent]:
    """The events the key in ``table`` (a ``[destinations.NAME]`` table of ``kind``, its event
    id optional) reaches, through the destination itself: its checks of base_url and every
    message as ``run`` would give them.

    Raises ConfigError keyed by the option's name (``base_url``) for a value that cannot be
    used, UploadError (Unauthorized, UnknownTarget, NetworkError...) for what the gallery said.
    """
    try:
        config = parse_config(
            {"destinations": {kind: {"type": kind, **table}}}, source=None, environ={}, listing=True
        )
    except ConfigError as exc:
        key = exc.key.rsplit(".", 1)[-1] if exc.key else None
        raise ConfigError(exc.message, key=key) from None
    destination = create(config.destinations[kind])
    try:
        return destination.events()
    finally:
        destination.close()


def _pick(kind: str, events: list[GalleryEvent], ask: _Ask) -> dict[str, Any]:
    """The event (and for EventPics the album) to upload to, from the listing."""
    id_key = "link_id" if kind == "eventpics" else "event_id"
    flag = f"--{id_key.replace('_', '-')}"
    if not events:
        raise BoothsyncError(
            f"this key reaches no event in {gallery_label(kind)}: create one there first, then run "
            "`boothsync init` again"
        )
    wanted = ask.a.link_id if kind == "eventpics" else ask.a.event_id
    event = _choose(
        ask,
        [(e.link_id, e.title or "(untitled)") for e in events],
        wanted,
        what=f"Event ({id_key})",
        flag=flag,
        among="this key's events",
    )
    chosen = next(e for e in events if e.link_id == event)
    table: dict[str, Any] = {id_key: int(event) if kind == "picpeak" else event}
    # An event given as a flag is a script: its album comes from --album-id or is none.
    asked = wanted is None
    if kind == "eventpics" and (ask.a.album_id or (asked and chosen.albums)):
        options = [("", "no album (the gallery itself)")]
        options += [(a.id, a.title or "(untitled)") for a in chosen.albums]
        album = _choose(
            ask, options, ask.a.album_id, what="Album", flag="--album-id", among="its albums"
        )
        if album:
            table["album_id"] = album
    return table


def _choose(
    ask: _Ask,
    options: list[tuple[str, str]],
    given: str | None,
    *,
    what: str,
    flag: str,
    among: str,
) -> str:
    """One of ``options`` (id, title): the flag's, or picked by number or id at a prompt."""
    ids = [option_id for option_id, _ in options]
    known = ", ".join(repr(i) for i in ids if i) or "none"
    if given is not None:
        if given in ids:
            return given
        raise BoothsyncError(f"{flag}: {given!r} is not among {among} (known: {known})")
    ask.p.say(f"{what}:")
    for number, (option_id, title) in enumerate(options, start=1):
        ask.p.say(f"  {number}. {title}" + (f"  ({option_id})" if option_id else ""))
    while True:
        answer = ask.p.ask(f"{what}: number", flag, "1")
        if answer.isdigit() and 1 <= int(answer) <= len(options):
            return options[int(answer) - 1][0]
        if answer in ids:
            return answer
        ask.p.say(f"  {answer!r} is not one of them: a number from 1 to {len(options)}")


def render(folder: str, kind: str, table: Mapping[str, Any], *, by: str = INIT) -> str:
    """A first config's text: a ``[[watch]]`` of ``folder`` and ``table`` (with its ``type``)
    as ``[destinations.KIND]``, its keys in the reference config's order, paths with forward
    slashes, ``base_url`` left out where it is the service's default. Its first line says it
    was written ``by`` what."""
    options = DESTINATION_TYPES[kind][0]
    lines = [
        f"# boothsync configuration, written by {by}.",
        "# `boothsync init --example` prints every other key, each explained.",
        "",
        "[[watch]]",
        f"path = {_toml(posix_path(folder))}",
        "",
        f"[destinations.{kind}]",
    ]
    # In the order the reference config documents them.
    order = [option.name for option in options]
    for key in sorted(table, key=order.index):
        value = table[key]
        if key == "base_url" and value == options[order.index(key)].default:
            continue
        if key == "path":
            value = posix_path(value)
        lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def posix_path(path: str) -> str:
    """``path`` with forward slashes, as boothsync writes paths into a config."""
    # Forward slashes read the same on Windows and need no escaping in TOML.
    return Path(path).as_posix()


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        # repr: a float keeps its point ("30.0"), which TOML needs to read it as one.
        return repr(value)
    # A JSON string is a TOML basic string (the same escapes).
    return json.dumps(str(value), ensure_ascii=False)
