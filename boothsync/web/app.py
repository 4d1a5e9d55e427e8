"""The dashboard's web app: its routes, and the rules every request passes first.

Every request: its ``Host`` must name this dashboard (DNS rebinding), and every answer carries
a strict Content-Security-Policy (scripts only from here, no inline code, no frames). Every
page and API call but the login needs a session; every request that changes something needs
the session's CSRF token in the ``X-CSRF-Token`` header, which a page of another site cannot
read. No CORS headers are ever sent. File names and the galleries' messages reach the page
only through autoescaping templates. No key or password is ever put into a page or an answer.

Must not read the queue or call the engine but through its backend
(:class:`~boothsync.web.backend.EngineBackend`), nor hold state beyond the sessions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from boothsync.config import WebConfig
from boothsync.web import auth, view
from boothsync.web.backend import EngineBackend, NotRunning
from boothsync.web.forms import BadForm, read_form
from boothsync.web.setup_pages import FirstSetup, SetupPages

__all__ = ["Dashboard", "create_app"]

log = logging.getLogger(__name__)

HERE: Final = Path(__file__).resolve().parent
HTMX: Final = "htmx-2.0.11.min.js"
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
OPEN_PATHS: Final = ("/login", "/static/", "/favicon.ico", "/mode")
SAFE_METHODS: Final = frozenset({"GET", "HEAD"})
#: Where a login link may lead (never an address of another site).
LANDING_PAGES: Final = frozenset({"/", "/settings", "/setup"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass
class Dashboard:
    """What the app serves: a running boothsync's ``backend`` (None before the first setup,
    ``setup`` then says where its config goes), its ``[web]`` table and the state folder its
    login links are left in."""

    backend: EngineBackend | None
    web: WebConfig
    state: Path
    setup: FirstSetup | None = None
    sessions: auth.Sessions = field(default_factory=auth.Sessions)
    throttle: auth.LoginThrottle = field(default_factory=auth.LoginThrottle)

    @property
    def cookie(self) -> str:
        # Cookies are shared by every port of a host: one name per dashboard.
        return f"boothsync-{self.web.port}"


def create_app(dashboard: Dashboard) -> ASGIApp:
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    templates.filters.update(
        duration=view.duration,
        size=view.size,
        taken=view.taken,
    )
    pages = _Pages(dashboard, templates)
    setup = SetupPages(dashboard, pages.render)
    routes = [
        *setup.routes(),
        Route("/mode", pages.mode),
        Route("/", pages.home),
        Route("/live", pages.live),
        Route("/login", pages.login_link, methods=["GET"]),
        Route("/login", pages.login_password, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/thumbs/{file_id:int}.jpg", pages.thumbnail),
        Route("/api/status", pages.api_status),
        Route("/api/pause", pages.api_pause, methods=["POST"]),
        Route("/api/resume", pages.api_resume, methods=["POST"]),
        Route("/api/retry", pages.api_retry, methods=["POST"]),
        Route("/api/reload", pages.api_reload, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={BadForm: _bad_form})
    return _Guard(app, dashboard)


class _Guard:
    """The rules every request passes before a route sees it (see the module docstring)."""

    def __init__(self, app: ASGIApp, dashboard: Dashboard) -> None:
        self.app = app
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = _headers(scope)
        web = self.dashboard.web
        send = _secured(send, str(scope["path"]))
        if not auth.allowed_host(headers.get("host"), web.host, web.port):
            await _plain(403, "this dashboard answers only to its own address")(
                scope, receive, send
            )
            return
        method = scope["method"]
        path: str = scope["path"]
        if method not in SAFE_METHODS and method != "POST":
            # No CORS: a preflight (OPTIONS) gets nothing that would allow a foreign page in.
            await _plain(405, "method not allowed")(scope, receive, send)
            return
        session = self.dashboard.sessions.get(_cookie(headers, self.dashboard.cookie))
        scope.setdefault("state", {})["session"] = session
        if not path.startswith(OPEN_PATHS) or path == "/logout":
            if session is None:
                await _unauthenticated(path)(scope, receive, send)
                return
            if method not in SAFE_METHODS and not auth.csrf_matches(
                session, headers.get("x-csrf-token")
            ):
                refusal = _plain(403, "missing or wrong CSRF token: reload the page")
                await refusal(scope, receive, send)
                return
        elif method == "POST" and not _same_origin(headers, web):
            await _plain(403, "a login from another site is refused")(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _cookie(headers: dict[str, str], name: str) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header is no session
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _same_origin(headers: dict[str, str], web: WebConfig) -> bool:
    """A login form posted from a page of this dashboard (or by a tool that says nothing)."""
    if headers.get("sec-fetch-site", "same-origin") not in {"same-origin", "none"}:
        return False
    origin = headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    netloc = urlsplit(origin).netloc
    return auth.allowed_host(netloc, web.host, web.port) and netloc == headers.get("host")


def _secured(send: Send, path: str) -> Send:
    cacheable = path.startswith(("/static/", "/thumbs/"))

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            extra = [
                (b"content-security-policy", CSP.encode()),
                (b"x-content-type-options", b"nosniff"),
                (b"x-frame-options", b"DENY"),
                (b"referrer-policy", b"no-referrer"),
                (b"cross-origin-resource-policy", b"same-origin"),
            ]
            if not cacheable:
                extra.append((b"cache-control", b"no-store"))
            message["headers"] = [*message.get("headers", []), *extra]
        await send(message)

    return wrapped


async def _bad_form(request: Request, exc: Exception) -> Response:
    return _plain(400, f"bad request: {exc}")


def _plain(code: int, text: str) -> Response:
    return PlainTextResponse(text, status_code=code)


def _unauthenticated(path: str) -> Response:
    if path.startswith(("/api/", "/live", "/thumbs/")):
        return JSONResponse({"error": "log in first"}, status_code=401)
    return RedirectResponse("/login", status_code=303)


class _Pages:
    def __init__(self, dashboard: Dashboard, templates: jinja2.Environment) -> None:
        self.d = dashboard
        self.templates = templates
        self._failed_logins: asyncio.Lock | None = None

    def render(self, request: Request, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        session: auth.Session | None = request.state.session
        context.setdefault("csrf", session.csrf if session is not None else "")
        context.setdefault("htmx", HTMX)
        text = self.templates.get_template(name).render(**context)
        return HTMLResponse(text, status_code=code)

    # -- logging in -------------------------------------------------------------------------

    async def login_link(self, request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None:
            if auth.take_login_token(self.d.state, token):
                page = request.query_params.get("next", "/")
                return self._logged_in(page if page in LANDING_PAGES else "/")
            return self.render(
                request,
                "login.html",
                401,
                problem="This login link was used already or is too old: ask for a new one.",
                password=bool(self.d.web.password),
            )
        if request.state.session is not None:
            return RedirectResponse("/", status_code=303)
        return self.render(request, "login.html", password=bool(self.d.web.password), problem="")

    async def login_password(self, request: Request) -> Response:
        expected = self.d.web.password
        if not expected:
            return _plain(403, "no password is set: use a login link from `boothsync dashboard`")
        wait = self.d.throttle.locked_for()
        if wait > 0:
            return self.render(
                request,
                "login.html",
                429,
                problem=f"Too many wrong passwords: try again in {wait:.0f} s.",
                password=True,
            )
        try:
            given = (await read_form(request)).get("password", "")
        except BadForm:
            return _plain(400, "bad login form")
        if auth.password_matches(expected, given):
            self.d.throttle.succeeded()
            return self._logged_in()
        self.d.throttle.failed()
        log.warning("dashboard: a wrong password from %s", _client(request))
        # One at a time and slowly: guesses cannot be sped up by asking in parallel.
        if self._failed_logins is None:
            self._failed_logins = asyncio.Lock()
        async with self._failed_logins:
            await asyncio.sleep(self.d.throttle.delay)
        return self.render(
            request, "login.html", 401, problem="That password is not right.", password=True
        )

    def _logged_in(self, page: str = "/") -> Response:
        session = self.d.sessions.create()
        response = RedirectResponse(page, status_code=303)
        response.set_cookie(
            self.d.cookie,
            session.id,
            httponly=True,
            samesite="strict",
            path="/",
            max_age=int(auth.SESSION_IDLE_SECONDS),
        )
        return response

    async def logout(self, request: Request) -> Response:
        session: auth.Session = request.state.session
        self.d.sessions.end(session.id)
        response = Response(status_code=204, headers={"HX-Redirect": "/login"})
        response.delete_cookie(self.d.cookie, path="/")
        return response

    # -- the dashboard ----------------------------------------------------------------------

    async def mode(self, request: Request) -> Response:
        """Whether this boothsync runs or waits for its first setup (nothing more)."""
        return _plain(200, "setup" if self.d.backend is None else "running")

    async def home(self, request: Request) -> Response:
        if self.d.backend is None:
            return RedirectResponse("/setup", status_code=303)
        context = await asyncio.to_thread(self._live_context)
        return self.render(request, "dashboard.html", **context)

    async def live(self, request: Request) -> Response:
        context = await asyncio.to_thread(self._live_context)
        return self.render(request, "live.html", **context)

    def _live_context(self) -> dict[str, Any]:
        backend = self.d.backend
        if backend is None:
            return {"starting": True, "booth": ""}
        config = backend.config
        try:
            current = backend.status()
            pictures = backend.pictures(current)
            thumbs = backend.thumbnails(pictures.recent)
        except NotRunning:
            return {"starting": True, "booth": config.booth.name}
        rates = {
            name: (rate.per_minute, rate.bytes_per_second, rate.eta_seconds)
            for name, rate in pictures.rates.items()
        }
        return {
            "starting": False,
            "booth": config.booth.name,
            "tz": config.booth.tz,
            "o": view.overview(current, config, rates),
            # A boothsync without a config file of its own (the demo) has nothing to reload.
            "can_reload": backend.reload_request is not None,
            "pictures": pictures,
            "thumbs": thumbs,
            "now": time.time(),
        }

    async def thumbnail(self, request: Request) -> Response:
        file_id = int(request.path_params["file_id"])
        backend = self.d.backend
        try:
            path = None if backend is None else await asyncio.to_thread(backend.thumbnail, file_id)
        except NotRunning:
            path = None
        if path is None:
            return _plain(404, "no thumbnail")
        return FileResponse(
            path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"}
        )

    # -- the API ----------------------------------------------------------------------------

    async def api_status(self, request: Request) -> Response:
        backend = self.d.backend
        if backend is None:
            return JSONResponse({"error": "boothsync has no config yet: set it up first"}, 409)
        try:
            data = await asyncio.to_thread(backend.status_json)
        except Exception as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)
        return JSONResponse(data)

    async def api_pause(self, request: Request) -> Response:
        return self._command(lambda backend: backend.pause(), "paused")

    async def api_resume(self, request: Request) -> Response:
        return self._command(lambda backend: backend.resume(), "resumed")

    async def api_reload(self, request: Request) -> Response:
        if self.d.backend is None or not self.d.backend.reload():
            return JSONResponse({"error": "this boothsync has no config file to read"}, 409)
        return _done({"reload": "requested"})

    async def api_retry(self, request: Request) -> Response:
        try:
            form = await read_form(request)
            raw = form.get("id", "")
            job_id = int(raw) if raw and raw != "null" else None
        except (BadForm, ValueError):
            return JSONResponse({"error": 'the body is {"id": N} or nothing'}, status_code=400)
        backend = self.d.backend
        if backend is None:
            return JSONResponse({"error": "boothsync has no config yet: set it up first"}, 409)
        try:
            count = await asyncio.to_thread(backend.retry, job_id)
        except NotRunning:
            return JSONResponse({"error": "boothsync is restarting; try again"}, 503)
        return _done({"retried": count})

    def _command(self, command: Callable[[EngineBackend], None], word: str) -> Response:
        backend = self.d.backend
        if backend is None:
            return JSONResponse({"error": "boothsync has no config yet: set it up first"}, 409)
        try:
            command(backend)
        except NotRunning:
            return JSONResponse({"error": "boothsync is restarting; try again"}, 503)
        return _done({"state": word})


def _done(data: dict[str, Any]) -> Response:
    # An htmx button asks the live part to refresh at once.
    return JSONResponse(data, headers={"HX-Trigger": "refresh"})


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "?"
