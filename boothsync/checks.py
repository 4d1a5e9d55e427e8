"""The checks of ``boothsync check``: one list of lines, for the command and the dashboard.

Owns what is checked and in which order: the config read (it is, or there would be no
config), each watched folder exists, the state folder can be written, and each destination's
own check (reachable, key accepted, event and albums there). Must not print or decide an exit
code (the CLI does), nor hold a destination open after it: each is closed once checked.
"""

from __future__ import annotations

from pathlib import Path

from boothsync.config import Config
from boothsync.destinations import CheckItem, DestinationContext, create
from boothsync.paths import outbox_path

__all__ = ["run_checks"]


def run_checks(config: Config) -> list[CheckItem]:
    """Every check of ``config``, in the order ``boothsync check`` prints them. Each line says
    whether it held, what was checked and what was seen; none holds a key."""
    lines = [CheckItem(True, "config is valid", str(config.source or ""))]
    for watch in config.watches:
        exists = watch.path.is_dir()
        lines.append(
            CheckItem(exists, f"watch folder {watch.path}", "exists" if exists else "missing")
        )
    lines.append(_writable(outbox_path(config).parent))
    context = DestinationContext(booth=config.booth.name, tz=config.booth.tz)
    for name, cfg in config.destinations.items():
        albums = [w.album_id for w in config.watches if w.album_id and name in w.destinations]
        destination = create(cfg, context=context)
        try:
            lines.extend(destination.check(albums))
        finally:
            destination.close()
    return lines


def _writable(folder: Path) -> CheckItem:
    label = f"state folder {folder}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".boothsync-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return CheckItem(False, label, f"not writable: {exc.strerror or exc}")
    return CheckItem(True, label, "writable")
