"""The tray icon behind ``boothsync tray``: the operator's glance at the booth.

A front end over the status (:mod:`boothsync.status`), in parts along their jobs:

- :mod:`~boothsync.tray.texts`: the words, in English and German;
- :mod:`~boothsync.tray.view`: a snapshot turned into a state colour, an icon image, a
  tooltip, a menu as plain data, and the notifications worth showing;
- :mod:`~boothsync.tray.controllers`: the running boothsync, in-process (the tray runs its
  own :class:`~boothsync.daemon.Service`, which rereads a changed config as ``boothsync run``
  does) or attached (``--attach``, or on its own when a service already holds the state
  folder: its queue database read read-only, menu commands sent through it);
- :mod:`~boothsync.tray.actions`: what each menu item does;
- :mod:`~boothsync.tray.icon`: the pystray glue and the run loop, :func:`run_tray`.

Opening a folder and starting at login are :mod:`boothsync.desktop`'s. Everything but
:func:`run_tray` works without a display, so it is tested without one; pystray is imported
only inside :func:`run_tray`. Must not be imported by the headless daemon.
"""

from __future__ import annotations

from boothsync.desktop import XdgAutostart
from boothsync.tray.actions import TrayActions, tray_command
from boothsync.tray.controllers import AttachedController, EngineController
from boothsync.tray.icon import run_tray
from boothsync.tray.texts import TEXTS, language
from boothsync.tray.view import (
    COLOURS,
    MAX_TOOLTIP,
    MenuEntry,
    Notifier,
    icon_image,
    menu_model,
    tooltip,
    tray_state,
)

__all__ = [
    "COLOURS",
    "MAX_TOOLTIP",
    "TEXTS",
    "AttachedController",
    "EngineController",
    "MenuEntry",
    "Notifier",
    "TrayActions",
    "XdgAutostart",
    "icon_image",
    "language",
    "menu_model",
    "run_tray",
    "tooltip",
    "tray_command",
    "tray_state",
]
