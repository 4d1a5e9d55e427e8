"""``boothsync init``: the first config, written from a few answers, so it cannot be wrong.

Owns asking for the watched folder, the gallery type and its key (on the command line's flags,
or at prompts for what they leave out), listing the events and albums the key can reach to
pick from, and writing a minimal config with only what was chosen, readable by this account
only (0600 on Linux and macOS), through a temporary file renamed into place. A key the gallery
rejects at a prompt is one line and the question again; given as a flag it ends the command.
The key is read without echo on a terminal and never written anywhere but the config file.

Also prints the full reference config (``boothsync init --example``), which an installation
without the source folder has no other way to see. Must not run the check itself (the CLI
does, on the file as written) nor print anything but through ``say``.
"""

from __future__ import annotations

import difflib
import getpass
import json
import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from boothsync.config import DESTINATION_TYPES, parse_config
from boothsync.destinations import REGISTRY, GalleryEvent, create
from boothsync.errors import BoothsyncError, ConfigError, Unauthorized, UnknownTarget

__all__ = ["Answers", "Prompter", "example_text", "write_first_config"]

#: Wrong keys typed at a prompt before init gives up (an operator who needs more is better
#: served by finding the right one first).
MAX_TRIES = 5


def _key_name(kind: str) -> str:
    """The service's key option (its secret one): ``api_key``, ``api_token``."""
    return next(option.name for option in DESTINATION_TYPES[kind][0] if option.secret)


def _gallery(kind: str) -> str:
    """The service's name in messages ("EventPics"), as its destination calls itself."""
    return str(getattr(REGISTRY[kind].factory, "label", "")) or kind


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
    text = _render(folder, kind, table)
    # The file as written must read as a config: what `run` will read.
    parse_config(tomllib.loads(text), source=target, environ={})
    _write_private(target, text)
    return target


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
    gallery, key_name = _gallery(kind), _key_name(kind)
    base_url, key, event_id = ask.a.base_url, ask.a.api_key, ask.a.event_id
    tries = 0
    while True:
        table: dict[str, Any] = {}
        if kind == "picpeak" or base_url is not None:
            base_url = ask.text(
                base_url, "Your PicPeak server (https://..., or http://192.168...)", "--base-url"
            )
            table["base_url"] = base_url
        if key is None:
            key = ask.p.secret(f"{gallery} {key_name.replace('_', ' ')}", "--api-key")
        table[key_name] = key
        if kind == "picsui":
            event_id = ask.text(
                event_id, "Picsui event id (Picsui shows it with the event)", "--event-id"
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
            said = f"{gallery} rejected this {key_name.replace('_', ' ')} ({exc.status or 'no'})"
            if ask.a.api_key is not None:
                raise BoothsyncError(f"--api-key: {said}; check it in your account") from None
            tries += 1
            if tries >= MAX_TRIES:
                raise BoothsyncError(f"{said}, {tries} times; check it in your account") from None
            ask.p.say(f"  {said}: type it again")
            key = None
        except UnknownTarget as exc:
            if kind != "picsui" or ask.a.event_id is not None:
                raise
            ask.p.say(f"  {exc}")
            event_id = None
        else:
            break
    if kind == "picsui":
        ask.p.say(f"  event: {events[0].title or '(untitled)'}")
        return table
    return {**table, **_pick(kind, events, ask)}


def _events(kind: str, table: Mapping[str, Any]) -> list[GalleryEvent]:
    """The events the key reaches, through the destination itself (its checks of base_url
    and every message as ``run`` would give them)."""
    try:
        config = parse_config(
            {"destinations": {kind: {"type": kind, **table}}}, source=None, environ={}, listing=True
        )
    except ConfigError as exc:
        key = exc.key.rsplit(".", 1)[-1] if exc.key else ""
        raise ConfigError(exc.message, key=f"--{key.replace('_', '-')}" if key else None) from None
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
            f"this key reaches no event in {_gallery(kind)}: create one there first, then run "
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


def _render(folder: str, kind: str, table: Mapping[str, Any]) -> str:
    options = DESTINATION_TYPES[kind][0]
    lines = [
        "# boothsync configuration, written by `boothsync init`.",
        "# `boothsync init --example` prints every other key, each explained.",
        "",
        "[[watch]]",
        f"path = {_toml(_posix(folder))}",
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
            value = _posix(value)
        lines.append(f"{key} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _posix(path: str) -> str:
    # Forward slashes read the same on Windows and need no escaping in TOML.
    return Path(path).as_posix()


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # A JSON string is a TOML basic string (the same escapes).
    return json.dumps(str(value), ensure_ascii=False)


def _write_private(target: Path, text: str) -> None:
    """Write ``target`` whole or not at all, readable by this account only (it holds the
    key): a temporary file in the same folder, created 0600, then renamed over it."""
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".boothsync-init-", dir=folder)
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
