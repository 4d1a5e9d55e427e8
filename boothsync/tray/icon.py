"""The pystray glue behind ``boothsync tray``: the icon, its menu as pystray items, the
refresher, and the run loop; the X11 fixes (a square icon in a slot that is not square,
clicks on the icon, asking the tray again when the icon is not docked) and a headless icon
for pystray's dummy backend (``PYSTRAY_BACKEND=dummy``: the whole tray without a display).

``icon.run(setup=...)`` owns the main thread (some platforms only deliver tray events
there); the engine, the refresher and the stop watcher run from the setup callback.
pystray is imported only inside :func:`run_tray`, so importing this module needs no display.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from PIL import Image

from boothsync.config import Config
from boothsync.daemon import GRACE_SECONDS, instance_lock, log_to_file, stop_signals
from boothsync.desktop import platform_autostart
from boothsync.engine import Snapshot
from boothsync.errors import AlreadyRunning, BoothsyncError
from boothsync.paths import log_file, state_dir
from boothsync.status import empty_stats
from boothsync.tray.actions import TrayActions
from boothsync.tray.controllers import AttachedController, Controller, EngineController
from boothsync.tray.texts import language
from boothsync.tray.view import (
    MenuEntry,
    Notifier,
    icon_image,
    menu_model,
    square_icon,
    tooltip,
    tray_state,
)

if TYPE_CHECKING:
    import pystray

__all__ = ["run_tray"]

log = logging.getLogger(__name__)

REFRESH_SECONDS: Final = 1.0


def _check_display(environ: Mapping[str, str], platform: str) -> None:
    if platform in ("win32", "darwin") or environ.get("PYSTRAY_BACKEND"):
        return
    if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
        raise BoothsyncError(
            "no display for a tray icon (neither DISPLAY nor WAYLAND_DISPLAY is set); "
            "`boothsync run` works without one"
        )


# A class of one-line overrides, each counted as a branch of this function.
def _headless(base: type[pystray.Icon]) -> type[pystray.Icon]:  # noqa: C901
    """pystray's dummy backend made runnable: no window, a loop that waits to be stopped.

    PYSTRAY_BACKEND=dummy then runs the whole tray without a display, for tests and CI.
    """

    class HeadlessIcon(base):  # type: ignore[misc]
        HAS_NOTIFICATION = False
        HAS_MENU = False

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._stopped = threading.Event()

        def _show(self) -> None:
            pass

        def _hide(self) -> None:
            pass

        def _update_icon(self) -> None:
            self._icon_valid = True

        def _update_title(self) -> None:
            pass

        def _update_menu(self) -> None:
            pass

        def _run(self) -> None:
            self._mark_ready()
            # Short waits: the main thread must get to run the signal handlers.
            while not self._stopped.wait(0.2):
                pass

        def _stop(self) -> None:
            self._stopped.set()

        def _notify(self, message: str, title: str | None = None) -> None:
            log.info("%s", message)

        def _remove_notification(self) -> None:
            pass

    return HeadlessIcon


def _menu_callback(actions: TrayActions, action: str | None) -> Callable[[Any, Any], None]:
    # pystray counts the callback's parameters: exactly (icon, item), no defaults.
    def call(icon: Any, item: Any) -> None:
        if action is not None:
            actions.run(action)

    return call


def _checked(value: bool | None) -> Callable[[Any], bool] | None:
    if value is None:
        return None

    def checked(item: Any) -> bool:
        return value

    return checked


def _pystray_menu(
    pystray_module: Any, entries: Sequence[MenuEntry], actions: TrayActions
) -> pystray.Menu:
    items = []
    for entry in entries:
        if entry.separator:
            items.append(pystray_module.Menu.SEPARATOR)
            continue
        items.append(
            pystray_module.MenuItem(
                entry.label,
                _menu_callback(actions, entry.action),
                checked=_checked(entry.checked),
                radio=entry.radio,
                enabled=entry.enabled,
                default=entry.default,
            )
        )
    menu: pystray.Menu = pystray_module.Menu(*items)
    return menu


# After the engine stopped and the icon was told to stop, the icon's event loop
# gets this long to return before the process ends on its own.
_LOOP_EXIT_SECONDS = 3.0


def _end_if_stuck(returned: threading.Event, code: int) -> None:
    """End the process if the icon's event loop does not return after stop().

    pystray's X11 loop now and then keeps waiting for an event after the icon
    was stopped. By then the engine has stopped cleanly and the queue is
    closed, so nothing is lost by ending here; the operator gets the exit code
    a clean stop gives instead of a tray that never quits.
    """

    def watch() -> None:
        if returned.wait(_LOOP_EXIT_SECONDS):
            return
        log.info("stopped")
        logging.shutdown()
        os._exit(code)

    threading.Thread(target=watch, name="tray-exit", daemon=True).start()


# Refreshes without the icon embedded in a tray before it asks the tray again.
_REDOCK_AFTER = 2


def _square_on_x11(base: type[pystray.Icon]) -> type[pystray.Icon]:
    """pystray's X11 icon, drawn square in whatever slot the tray gives it."""

    class SquareIcon(base):  # type: ignore[misc]
        # pystray's xorg backend calls this before every draw with the window's size.
        def _assert_icon_data(self, width: int, height: int) -> None:
            drawn: Image.Image | None = getattr(self, "_icon_data", None)
            if drawn is not None and drawn.size == (width, height):
                return
            data = square_icon(self._icon, width, height)
            # What pystray does too: older python-xlib asks the image for tostring().
            data.tostring = data.tobytes  # type: ignore[attr-defined]
            self._icon_data = data

    return SquareIcon


def _docked(icon: Any) -> bool | None:
    """Whether the X11 icon sits in a tray (its window was reparented); None elsewhere."""
    window = getattr(icon, "_window", None)
    if window is None or not getattr(icon, "visible", False):
        return None
    try:
        tree = window.query_tree()
        return bool(tree.parent.id != tree.root.id)
    except Exception:
        return None


def _listen_for_clicks(icon: Any) -> None:
    """Make a left click on the X11 icon reach it.

    pystray's X11 window does not ask for button presses, so clicks go to the
    tray host instead (a known pystray limitation); asking for them here lets
    a click run the default menu item. Other backends have no such window.
    """
    window = getattr(icon, "_window", None)
    display = getattr(icon, "_display", None)
    if window is None or display is None:
        return
    try:
        from Xlib import X

        window.change_attributes(
            event_mask=X.ExposureMask | X.StructureNotifyMask | X.ButtonPressMask
        )
        display.flush()
    except Exception:  # an odd X server: the icon still works, clicks just do not
        log.debug("cannot listen for clicks on the tray icon", exc_info=True)


def run_tray(
    config: Config,
    *,
    attach: bool,
    stop: threading.Event | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Show the tray icon until Quit or a stop signal; 0 after a clean stop.

    Raises BoothsyncError (one line) when there is no display or no usable tray backend.
    """
    env = os.environ if environ is None else environ
    _check_display(env, sys.platform)
    try:
        import pystray
    except Exception as exc:  # any backend's import failure means no tray
        raise BoothsyncError(f"cannot show a tray icon: {exc}") from exc
    icon_class: type[pystray.Icon] = pystray.Icon
    if icon_class.__module__ == "pystray._base":
        icon_class = _headless(icon_class)
    elif icon_class.__module__ == "pystray._xorg" and hasattr(icon_class, "_assert_icon_data"):
        # A pystray that draws otherwise keeps its own drawing (stretched, not broken).
        icon_class = _square_on_x11(icon_class)

    with contextlib.ExitStack() as held:
        if not attach:
            try:
                held.enter_context(instance_lock(state_dir(config)))
            except AlreadyRunning:
                # A service already uploads from this queue: show it rather than refuse.
                log.info("boothsync already runs as a service here; the tray shows that one")
                attach = True
        return _run_icon(pystray, icon_class, config, attach=attach, stop=stop, environ=environ)


def _run_icon(
    pystray: Any,
    icon_class: Any,
    config: Config,
    *,
    attach: bool,
    stop: threading.Event | None,
    environ: Mapping[str, str] | None,
) -> int:
    lang = language(config.booth.language, environ)
    stop = stop if stop is not None else threading.Event()
    controller: Controller = AttachedController(config) if attach else EngineController(config)
    actions = TrayActions(
        config, controller, quit=stop.set, autostart=platform_autostart(), attach=attach
    )
    empty = Snapshot(stats=empty_stats(), health={})
    try:
        icon = icon_class(
            "boothsync",
            icon=icon_image(tray_state(empty)),
            title=tooltip(empty, lang),
            menu=_pystray_menu(pystray, menu_model(empty, lang), actions),
        )
    except Exception as exc:  # Xlib and friends raise their own types
        raise BoothsyncError(f"cannot show a tray icon: {exc}") from exc

    handler = None
    try:
        handler = log_to_file(log_file(config))
    except OSError as exc:
        log.warning("cannot write the log file: %s", exc)

    run = _TrayRun(pystray, icon, config, controller, actions, lang, stop)
    try:
        with stop_signals(stop):
            icon.run(setup=run.setup)
    finally:
        run.returned.set()
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
    if run.failure:
        raise run.failure[0]
    log.info("stopped")
    return 0


class _TrayRun:
    """One run of the icon: what pystray's loop calls (``setup``), the refresher thread that
    keeps the icon, its tooltip and its menu up to date, and the end of both."""

    def __init__(
        self,
        pystray: Any,
        icon: Any,
        config: Config,
        controller: Controller,
        actions: TrayActions,
        lang: str,
        stop: threading.Event,
    ) -> None:
        self._pystray = pystray
        self._icon = icon
        self._config = config
        self._controller = controller
        self._actions = actions
        self._lang = lang
        self._stop = stop
        self._notifier = Notifier(lang)
        self._last: dict[str, Any] = {}
        self.failure: list[BoothsyncError] = []
        self.returned = threading.Event()

    def refresh(self) -> None:
        try:
            snapshot = self._controller.snapshot()
        except (BoothsyncError, RuntimeError) as exc:
            log.debug("no snapshot: %s", exc)
            return
        icon, last = self._icon, self._last
        state = tray_state(snapshot)
        if state != last.get("state"):
            icon.icon = icon_image(state)
            last["state"] = state
        icon.title = tooltip(snapshot, self._lang)
        entries = menu_model(
            snapshot,
            self._lang,
            autostart=self._actions.autostart_enabled(),
            has_config=self._config.source is not None,
            dashboard=self._config.web.enabled,
        )
        if entries != last.get("entries"):
            last["entries"] = entries
            icon.menu = _pystray_menu(self._pystray, entries, self._actions)
        for message in self._notifier.feed(snapshot):
            if icon.HAS_NOTIFICATION:
                icon.notify(message, "boothsync")
            log.warning("%s", message)

    def refresher(self, icon: pystray.Icon) -> None:
        undocked = 0
        while not self._stop.wait(REFRESH_SECONDS):
            try:
                self.refresh()
                undocked = 0 if _docked(icon) is not False else undocked + 1
                if undocked >= _REDOCK_AFTER:
                    # The tray host missed the request, or started after us: ask again.
                    log.info("the tray icon is not in the tray yet; asking the tray again")
                    icon.visible = False
                    icon.visible = True
                    _listen_for_clicks(icon)
                    undocked = 0
            except Exception:  # a dead refresher would freeze the icon silently
                log.exception("updating the tray icon failed")

    def setup(self, icon: pystray.Icon) -> None:
        # The stop watcher: everything after the loop started happens here, and ends here.
        icon.visible = True
        _listen_for_clicks(icon)
        controller, stop = self._controller, self._stop
        worker = threading.Thread(
            target=self.refresher, args=(icon,), name="tray-refresh", daemon=True
        )
        try:
            controller.start()
            log.info("tray ready")
            worker.start()
            while not stop.wait(min(0.2, controller.tick())):
                pass
        except BoothsyncError as exc:
            self.failure.append(exc)
        finally:
            stop.set()
            if worker.is_alive():
                worker.join(REFRESH_SECONDS * 5)
            controller.stop(GRACE_SECONDS)
            icon.stop()
            _end_if_stuck(self.returned, 1 if self.failure else 0)
