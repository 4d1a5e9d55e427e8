"""What each tray menu item does: pause, resume, retry, forget, open a folder, the log or the
config, reload the config, start at login, quit. The icon only calls :meth:`TrayActions.run`
with the item's action id; a failure is logged, never raised into pystray.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from boothsync.config import Config
from boothsync.desktop import Autostart, open_path
from boothsync.errors import BoothsyncError
from boothsync.paths import log_file, state_dir
from boothsync.tray.controllers import Controller

__all__ = ["TrayActions", "tray_command"]

log = logging.getLogger(__name__)


def tray_command(config_file: Path | None) -> list[str]:
    """The command line that starts this tray again: this interpreter, this config."""
    command = [sys.executable, "-m", "boothsync", "tray"]
    if config_file is not None:
        command += ["-c", str(Path(config_file).resolve())]
    return command


class TrayActions:
    """What each menu action id does; the icon only calls :meth:`run`."""

    def __init__(
        self,
        config: Config,
        controller: Controller,
        *,
        quit: Callable[[], None],
        autostart: Autostart | None = None,
        opener: Sequence[str] | None = None,
        attach: bool = False,
    ) -> None:
        self.config = config
        self.controller = controller
        self._quit = quit
        self.autostart = autostart
        self._opener = opener
        self._attach = attach

    def autostart_enabled(self) -> bool | None:
        if self.autostart is None:
            return None
        try:
            return self.autostart.enabled()
        except OSError as exc:
            log.debug("cannot read the start-at-login entry: %s", exc)
            return False

    def run(self, action: str) -> None:
        """Do what the menu item ``action`` says; a failure is logged, never raised to pystray."""
        handlers: dict[str, Callable[[], None]] = {
            "pause": self.controller.pause,
            "resume": self.controller.resume,
            "retry": self.controller.retry_failed,
            "forget": self.controller.forget_failed,
            "open_dashboard": self.open_dashboard,
            "open_folder": self.open_folder,
            "open_log": self.open_log,
            "open_config": self.open_config,
            "reload": self.controller.reload,
            "autostart": self.toggle_autostart,
            "quit": self._quit,
        }
        handler = handlers.get(action)
        if handler is None:
            log.debug("no menu action %r", action)
            return
        try:
            handler()
        except (BoothsyncError, OSError) as exc:
            log.error("%s: %s", action, exc)

    def _open(self, path: Path) -> None:
        open_path(path, opener=self._opener)

    def open_dashboard(self) -> None:
        """The dashboard in the browser, logged in by a one-time link."""
        from boothsync.web.server import login_link

        open_path(login_link(state_dir(self.config)), opener=self._opener)

    def open_folder(self) -> None:
        for watch in self.config.watches:
            if watch.path.is_dir():
                self._open(watch.path)
            else:
                log.warning("the watched folder %s is missing", watch.path)

    def open_log(self) -> None:
        path = log_file(self.config)
        if not path.exists():
            log.warning("no log file yet at %s", path)
            path = path.parent
        self._open(path)

    def open_config(self) -> None:
        if self.config.source is None:
            log.warning("this boothsync has no config file to open")
            return
        self._open(self.config.source)

    def toggle_autostart(self) -> None:
        if self.autostart is None:
            return
        on = not self.autostart_enabled()
        command = tray_command(self.config.source)
        if self._attach:
            command.append("--attach")
        self.autostart.set(on, command)
        log.info("start at login %s", "on" if on else "off")
