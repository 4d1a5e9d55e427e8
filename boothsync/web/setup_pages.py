"""The dashboard's setup pages: the first config's wizard, and changes to an existing one.

The wizard: gallery type -> its key (and address) -> the event and album, from the list the
gallery gives -> the watched folder, from a folder picker -> the checks of ``boothsync check``,
line by line -> save. The answers wait in the browser's session on the server; a key typed in
is never sent back to the browser. An existing config is changed through
:class:`~boothsync.web.configedit.ConfigFile` (comments and order kept), then reloaded live.

Must not write a config that does not read as one, nor show a key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from boothsync.errors import BoothsyncError, ConfigError
from boothsync.web import configedit as configedit
from boothsync.web import wizard as wizard
from boothsync.web.forms import read_form

if TYPE_CHECKING:
    from boothsync.config import Config
    from boothsync.web.app import Dashboard

__all__ = ["FirstSetup", "SetupPages"]

log = logging.getLogger(__name__)

#: Where a browser's session keeps the wizard's answers between its steps.
_DRAFT: Final = "wizard"


@dataclass
class FirstSetup:
    """No config yet: where the wizard writes it, and who starts boothsync on it."""

    target: Path
    saved: Callable[[], None]


Render = Callable[..., HTMLResponse]


class SetupPages:
    def __init__(self, dashboard: Dashboard, render: Render) -> None:
        self.d = dashboard
        self.render = render

    def routes(self) -> list[Route]:
        return [
            Route("/setup", self.start, methods=["GET"]),
            Route("/setup/type", self.chose_type, methods=["POST"]),
            Route("/setup/key", self.gave_key, methods=["POST"]),
            Route("/setup/event", self.chose_event, methods=["POST"]),
            Route("/setup/folder", self.chose_folder, methods=["POST"]),
            Route("/setup/save", self.save, methods=["POST"]),
            Route("/setup/browse", self.browse, methods=["GET"]),
            Route("/settings", self.settings, methods=["GET"]),
            Route("/settings/event", self.change_event, methods=["POST"]),
            Route("/settings/folder", self.change_folder, methods=["POST"]),
        ]

    # -- helpers ----------------------------------------------------------------------------

    @property
    def first(self) -> FirstSetup | None:
        return self.d.setup

    def _draft(self, request: Request) -> dict[str, Any]:
        data: dict[str, Any] = request.state.session.data
        draft: dict[str, Any] = data.setdefault(_DRAFT, {})
        return draft

    def _step(self, request: Request, step: str, code: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("problem", "")
        context.setdefault("first", self.first is not None)
        return self.render(request, "setup_step.html", code, step=step, **context)

    def _config_file(self) -> Path | None:
        backend = self.d.backend
        return backend.config.source if backend is not None else None

    # -- the wizard -------------------------------------------------------------------------

    async def start(self, request: Request) -> Response:
        self._draft(request).clear()
        if self.first is None and self._config_file() is None:
            return RedirectResponse("/", status_code=303)
        return self.render(
            request,
            "setup.html",
            first=self.first is not None,
            target=str(self.first.target) if self.first is not None else "",
            step="type",
            types=wizard.gallery_types(),
            problem="",
        )

    async def chose_type(self, request: Request) -> Response:
        form = await read_form(request)
        kinds = {t.name: t for t in wizard.gallery_types()}
        kind = kinds.get(form.get("type", ""))
        if kind is None:
            return self._step(
                request,
                "type",
                400,
                types=list(kinds.values()),
                problem="Choose one of the galleries.",
            )
        draft = self._draft(request)
        draft.clear()
        draft["type"] = kind.name
        if self.first is None:
            # Another destination for the config there is: named after its type, made unique.
            taken = set(self.d.backend.config.destinations) if self.d.backend else set()
            draft["change"] = ("add", _free_name(kind.name, taken))
        return self._step(request, "key", kind=kind, values={})

    async def gave_key(self, request: Request) -> Response:
        draft = self._draft(request)
        kind = _kind(draft.get("type"))
        if kind is None:
            return self._restart(request)
        form = await read_form(request)
        values = {
            f.name: form[f.name].strip()
            for f in kind.fields
            if not f.listed and form.get(f.name, "").strip()
        }
        shown = {f.name: values.get(f.name, "") for f in kind.fields if not f.secret}
        if not any(f.listed for f in kind.fields):
            # Nothing to pick from a list (a folder, a typed Picsui event): on to the folder.
            draft["values"] = values
            if draft.get("change") is not None:
                return await self._check_change(request)
            return await self._folder_step(request)
        try:
            events = await asyncio.to_thread(wizard.list_events, kind.name, values)
        except ConfigError as exc:
            return self._step(
                request, "key", 400, kind=kind, values=shown, problem=_field_problem(exc, kind)
            )
        except BoothsyncError as exc:
            return self._step(request, "key", 400, kind=kind, values=shown, problem=str(exc))
        if not events:
            return self._step(
                request,
                "key",
                400,
                kind=kind,
                values=shown,
                problem="This key reaches no event: create one in the gallery "
                "first, then try again.",
            )
        draft["values"] = values
        draft["events"] = {e.link_id: e for e in events}
        return self._step(request, "event", kind=kind, events=events, action="/setup/event")

    async def chose_event(self, request: Request) -> Response:
        draft = self._draft(request)
        kind = _kind(draft.get("type"))
        if kind is None or "events" not in draft:
            return self._restart(request)
        form = await read_form(request)
        picked = _picked(form.get("choice", ""), draft["events"], kind.name)
        if picked is None:
            return self._step(
                request,
                "event",
                400,
                kind=kind,
                events=list(draft["events"].values()),
                action="/setup/event",
                problem="Choose an event.",
            )
        draft["values"] = {**draft["values"], **picked}
        if draft.get("change") is not None:
            return await self._check_change(request)
        return await self._folder_step(request)

    async def _folder_step(self, request: Request, problem: str = "", code: int = 200) -> Response:
        suggested = await asyncio.to_thread(wizard.booth_folders)
        return self._step(
            request,
            "folder",
            code,
            suggested=suggested,
            problem=problem,
            action="/setup/folder",
        )

    async def chose_folder(self, request: Request) -> Response:
        draft = self._draft(request)
        kind = _kind(draft.get("type"))
        form = await read_form(request)
        folder = form.get("folder", "").strip()
        if not folder or not Path(folder).is_absolute():
            return await self._folder_step(request, "Choose a folder (a full path).", 400)
        if draft.get("change") is not None:
            draft["folder"] = folder
            return await self._check_change(request)
        if kind is None:
            return self._restart(request)
        draft["folder"] = folder
        first = self.first
        if first is None:
            return self._restart(request)
        try:
            config = await asyncio.to_thread(
                lambda: configedit.create_config(
                    first.target, folder, kind.name, draft["values"], write=False
                )
            )
        except BoothsyncError as exc:
            return await self._folder_step(request, str(exc), 400)
        return await self._checks(request, config)

    async def _checks(self, request: Request, config: Config) -> Response:
        from boothsync.checks import run_checks

        lines = await asyncio.to_thread(run_checks, config)
        return self._step(request, "check", lines=lines, ok=all(line.ok for line in lines))

    async def save(self, request: Request) -> Response:
        draft = self._draft(request)
        if draft.get("change") is not None:
            return await self._save_change(request)
        first = self.first
        kind = _kind(draft.get("type"))
        if first is None or kind is None or "folder" not in draft:
            return self._restart(request)
        try:
            await asyncio.to_thread(
                configedit.create_config,
                first.target,
                draft["folder"],
                kind.name,
                draft["values"],
            )
        except BoothsyncError as exc:
            return self._step(request, "check", 400, lines=[], ok=False, problem=str(exc))
        draft.clear()
        log.info("setup: config written to %s", first.target)
        from boothsync.web.auth import make_login_token

        # boothsync starts again on the new config, with a new dashboard: this browser goes on
        # with a login of its own there.
        token = make_login_token(self.d.state)
        first.saved()
        return self._step(request, "started", target=str(first.target), token=token)

    def _restart(self, request: Request) -> Response:
        self._draft(request).clear()
        return self._step(
            request,
            "type",
            409,
            types=wizard.gallery_types(),
            problem="The setup was started again elsewhere: start over here.",
        )

    async def browse(self, request: Request) -> Response:
        listing = await asyncio.to_thread(wizard.browse, request.query_params.get("path"))
        return self.render(request, "browse.html", listing=listing)

    # -- changing an existing config --------------------------------------------------------

    async def settings(self, request: Request) -> Response:
        if self.first is not None:
            return RedirectResponse("/setup", status_code=303)
        source = self._config_file()
        summary = problem = None
        if source is None:
            problem = "This boothsync runs without a config file (the demo): nothing to change."
        else:
            try:
                summary = await asyncio.to_thread(lambda: configedit.ConfigFile(source).summary())
            except BoothsyncError as exc:
                problem = str(exc)
        self._draft(request).clear()
        return self.render(
            request,
            "settings.html",
            summary=summary,
            problem=problem or "",
            source=str(source or ""),
        )

    async def change_event(self, request: Request) -> Response:
        """Pick another event or album for one destination, listed with the key it has."""
        backend = self.d.backend
        form = await read_form(request)
        name = form.get("destination", "")
        if backend is None or name not in backend.config.destinations:
            return self._step(request, "message", 404, problem="No such destination.")
        cfg = backend.config.destinations[name]
        kind = _kind(cfg.type)
        if kind is None or not any(f.listed for f in kind.fields):
            return self._step(
                request, "message", 400, problem="This destination has no event to choose."
            )
        values = {
            f.name: getattr(cfg, f.name)
            for f in kind.fields
            if not f.listed and getattr(cfg, f.name, None) is not None
        }
        try:
            events = await asyncio.to_thread(wizard.list_events, kind.name, values)
        except BoothsyncError as exc:
            return self._step(request, "message", 400, problem=str(exc))
        draft = self._draft(request)
        draft.clear()
        draft.update(
            type=kind.name,
            change=("destination", name),
            values={},
            events={e.link_id: e for e in events},
        )
        return self._step(request, "event", kind=kind, events=events, action="/setup/event")

    async def change_folder(self, request: Request) -> Response:
        form = await read_form(request)
        draft = self._draft(request)
        draft.clear()
        try:
            index = int(form.get("watch", ""))
        except ValueError:
            return self._step(request, "message", 400, problem="No such watched folder.")
        draft["change"] = ("watch", index)
        return await self._folder_step(request)

    async def _check_change(self, request: Request) -> Response:
        source = self._config_file()
        if source is None:
            return self._restart(request)
        try:
            edited = await asyncio.to_thread(_edited, source, self._draft(request))
            config = await asyncio.to_thread(edited.check)
        except BoothsyncError as exc:
            return self._step(request, "message", 400, problem=str(exc))
        return await self._checks(request, config)

    async def _save_change(self, request: Request) -> Response:
        source = self._config_file()
        backend = self.d.backend
        if source is None or backend is None:
            return self._restart(request)
        draft = self._draft(request)
        try:
            edited = await asyncio.to_thread(_edited, source, draft)
            await asyncio.to_thread(edited.save)
        except BoothsyncError as exc:
            return self._step(request, "check", 400, lines=[], ok=False, problem=str(exc))
        draft.clear()
        backend.reload()
        return self._step(request, "changed", source=str(source))


def _edited(source: Path, draft: Mapping[str, Any]) -> configedit.ConfigFile:
    """The config file with the draft's change made (in memory)."""
    edited = configedit.ConfigFile(source)
    what, which = draft["change"]
    if what == "add":
        edited.add_destination(which, draft["type"], draft["values"])
    elif what == "destination":
        edited.set_destination_values(which, draft["values"])
    else:
        edited.set_watch_path(int(which), draft["folder"])
    return edited


def _kind(name: object) -> wizard.GalleryType | None:
    return next((t for t in wizard.gallery_types() if t.name == name), None)


def _free_name(kind: str, taken: set[str]) -> str:
    name, number = kind, 1
    while name in taken:
        number += 1
        name = f"{kind}-{number}"
    return name


def _picked(choice: str, events: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    """``"EVENT"`` or ``"EVENT/ALBUM"`` from the event list, as config values."""
    event_id, _, album = choice.partition("/")
    event = events.get(event_id)
    if event is None:
        return None
    id_key = "link_id" if kind == "eventpics" else "event_id"
    picked: dict[str, Any] = {id_key: event_id}
    if kind == "eventpics":
        known = {a.id for a in event.albums}
        if album and album not in known:
            return None
        picked["album_id"] = album
    return picked


def _field_problem(exc: ConfigError, kind: wizard.GalleryType) -> str:
    labels = {f.name: f.label for f in kind.fields}
    key = (exc.key or "").rsplit(".", 1)[-1]
    return f"{labels[key]}: {exc.message}" if key in labels else str(exc)
