"""The tray's words, in English and German, and which of them the booth speaks."""

from __future__ import annotations

import contextlib
import locale
import os
from collections.abc import Mapping
from typing import Final

__all__ = ["TEXTS", "language"]

TEXTS: Final[Mapping[str, Mapping[str, str]]] = {
    "en": {
        "waiting_n": "{n} waiting",
        "uploaded_n": "{n} uploaded",
        "failed_n": "{n} failed",
        "paused": "paused",
        "folder_missing": "folder missing",
        "uploaded_line": "Uploaded today: {n}",
        "waiting_line": "Waiting: {n}",
        "waiting_split": "Waiting: {n} ({live} new, {backlog} backlog)",
        "failed_line": "Failed: {n}",
        "safe_line": "Safe to pack up",
        "to_go_line": "{n} pictures still to go",
        "to_go_one": "1 picture still to go",
        "last_upload": "Last upload: {file} at {time}",
        "last_upload_none": "Last upload: none yet",
        "destination": "{name}: {health}",
        "missing_line": "Folder missing: {path}",
        "pause": "Pause uploads",
        "resume": "Resume uploads",
        "retry": "Retry failed",
        "forget": "Forget failed",
        "open_dashboard": "Open dashboard",
        "open_folder": "Open watched folder",
        "open_log": "Open log",
        "open_config": "Open config",
        "reload": "Reload config",
        "autostart": "Start at login",
        "quit": "Quit",
        "online": "online",
        "offline": "offline",
        "rate-limited": "rate-limited",
        "unauthorized": "key rejected",
        "unknown": "connecting",
        "note_unauthorized": "{name} rejected the API key: nothing is uploaded there.",
        "note_offline": "{name} has been offline for {minutes} minutes; pictures wait.",
        "note_recovered": "{name} is back: uploads go on.",
    },
    "de": {
        "waiting_n": "{n} wartend",
        "uploaded_n": "{n} hochgeladen",
        "failed_n": "{n} fehlgeschlagen",
        "paused": "angehalten",
        "folder_missing": "Ordner fehlt",
        "uploaded_line": "Heute hochgeladen: {n}",
        "waiting_line": "Wartend: {n}",
        "waiting_split": "Wartend: {n} ({live} neu, {backlog} Rückstand)",
        "failed_line": "Fehlgeschlagen: {n}",
        "safe_line": "Sicher zum Abbauen",
        "to_go_line": "Noch {n} Bilder ausstehend",
        "to_go_one": "Noch 1 Bild ausstehend",
        "last_upload": "Letzter Upload: {file} um {time}",
        "last_upload_none": "Letzter Upload: noch keiner",
        "destination": "{name}: {health}",
        "missing_line": "Ordner fehlt: {path}",
        "pause": "Uploads anhalten",
        "resume": "Uploads fortsetzen",
        "retry": "Fehlgeschlagene erneut senden",
        "forget": "Fehlgeschlagene verwerfen",
        "open_dashboard": "Dashboard öffnen",
        "open_folder": "Überwachten Ordner öffnen",
        "open_log": "Protokoll öffnen",
        "open_config": "Konfiguration öffnen",
        "reload": "Konfiguration neu laden",
        "autostart": "Bei Anmeldung starten",
        "quit": "Beenden",
        "online": "online",
        "offline": "offline",
        "rate-limited": "gedrosselt",
        "unauthorized": "Schlüssel abgelehnt",
        "unknown": "verbinde",
        "note_unauthorized": "{name} hat den API-Schlüssel abgelehnt: dorthin wird nichts "
        "hochgeladen.",
        "note_offline": "{name} ist seit {minutes} Minuten offline; die Bilder warten.",
        "note_recovered": "{name} ist wieder erreichbar: die Uploads gehen weiter.",
    },
}


def language(setting: str, environ: Mapping[str, str] | None = None) -> str:
    """``[booth] language`` resolved: "en" or "de"; "auto" asks the system locale."""
    if setting in TEXTS:
        return setting
    env = os.environ if environ is None else environ
    candidates = [env.get("LC_ALL", ""), env.get("LC_MESSAGES", ""), env.get("LANG", "")]
    if environ is None:
        with contextlib.suppress(ValueError):
            candidates.append(locale.getlocale()[0] or "")
    for name in candidates:
        if name and name not in ("C", "POSIX"):
            return "de" if name.lower().startswith("de") else "en"
    return "en"
