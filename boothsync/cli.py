"""The ``boothsync`` command: argument parsing, exit codes and human output.

Exit codes: 0 done, 1 something outside boothsync failed (the gallery, the
network, a check), 2 the configuration or the command line is wrong, 130
interrupted. An expected failure is one line on stderr, never a traceback.
Logic lives in the modules; this one only calls and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boothsync import __version__
from boothsync.config import Config, find_config, load_config, secrets
from boothsync.daemon import parse_level, setup_logging, stop_signals, wait_for_stop
from boothsync.errors import BoothsyncError, ConfigError
from boothsync.names import printable
from boothsync.outbox import Event, Outbox
from boothsync.paths import outbox_path

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130

if TYPE_CHECKING:
    from boothsync.destinations import DestinationContext

STATES = ("waiting", "uploading", "uploaded", "failed")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_CONFIG
    try:
        from_env = os.environ.get("BOOTHSYNC_LOG_LEVEL")
        if args.log_level is None and from_env is None and args.command == "demo":
            # The demo's own lines tell the story; routine log lines would bury them.
            from_env = "warning"
        args.level = parse_level(
            args.log_level or from_env,
            source="--log-level" if args.log_level else "$BOOTHSYNC_LOG_LEVEL",
        )
        setup_logging(args.level)
        result: int = args.handler(args)
        return result
    except ConfigError as exc:
        print(f"boothsync: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BoothsyncError as exc:
        print(f"boothsync: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        metavar="LEVEL",
        help="debug, info, warning or error (default: $BOOTHSYNC_LOG_LEVEL or info)",
    )
    with_config = argparse.ArgumentParser(add_help=False, parents=[common])
    with_config.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        help="config file (default: $BOOTHSYNC_CONFIG, ./boothsync.toml, the user config dir)",
    )

    parser = argparse.ArgumentParser(
        prog="boothsync",
        description="Uploads every photo booth picture to the event's online gallery.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"boothsync {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run", parents=[with_config], help="watch and upload until stopped (Ctrl+C, SIGTERM)"
    )
    run.set_defaults(handler=_run)

    tray = commands.add_parser(
        "tray", parents=[with_config], help="watch and upload with a tray icon (Quit to stop)"
    )
    tray.add_argument(
        "--attach",
        action="store_true",
        help="show and control a boothsync already running as a service instead",
    )
    tray.set_defaults(handler=_tray)

    status = commands.add_parser(
        "status", parents=[with_config], help="what is waiting, uploaded and failed"
    )
    status.add_argument("--json", action="store_true", help="one JSON object instead of text")
    status.set_defaults(handler=_status)

    retry = commands.add_parser(
        "retry", parents=[with_config], help="put failed pictures back in the queue"
    )
    retry.add_argument("--destination", metavar="NAME", help="only this destination")
    retry.set_defaults(handler=_retry)

    pause = commands.add_parser(
        "pause", parents=[with_config], help="ask the running boothsync to start no more uploads"
    )
    pause.set_defaults(handler=_send_command, control="pause")
    resume = commands.add_parser(
        "resume", parents=[with_config], help="ask the running boothsync to upload again"
    )
    resume.set_defaults(handler=_send_command, control="resume")
    reload = commands.add_parser(
        "reload",
        parents=[with_config],
        help="ask the running boothsync to reread its config (as SIGHUP does)",
    )
    reload.set_defaults(handler=_send_command, control="reload")

    events = commands.add_parser(
        "events", parents=[with_config], help="list the gallery's events and albums for the key"
    )
    events.add_argument("--destination", metavar="NAME", help="only this destination")
    events.set_defaults(handler=_events)

    check = commands.add_parser(
        "check", parents=[with_config], help="validate the config and reach every destination"
    )
    check.set_defaults(handler=_check)

    receiver = commands.add_parser(
        "receiver", parents=[common], help="run the local EventPics-compatible receiver"
    )
    receiver.add_argument("--host", default="127.0.0.1", help="address to listen on")
    receiver.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    receiver.add_argument(
        "--dir", type=Path, default=Path("received"), help="where received files are stored"
    )
    receiver.add_argument("--api-key", default=None, help="key to accept (default: demo-key)")
    receiver.add_argument("--link-id", default=None, help="the event's linkId (default: demo)")
    receiver.set_defaults(handler=_receiver)

    service = commands.add_parser(
        "service", help="install or remove boothsync as a service (systemd, Windows)"
    )
    actions = service.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser(
        "install",
        parents=[with_config],
        help="write the service definition for this installation and config, then start it",
    )
    install.add_argument(
        "--user", action="store_true", help="a systemd user service (kiosk desktops)"
    )
    install.add_argument(
        "--print",
        dest="print_only",
        action="store_true",
        help="print the definition instead of installing it",
    )
    install.add_argument(
        "--unit-dir", type=Path, metavar="DIR", help="write it here (images, packagers)"
    )
    install.add_argument(
        "--run-as",
        metavar="ACCOUNT",
        help="the system service's account (default: $SUDO_USER, else the current one; root only "
        "when named)",
    )
    install.set_defaults(handler=_service_install)
    uninstall = actions.add_parser(
        "uninstall", parents=[common], help="stop the service and remove its definition"
    )
    uninstall.add_argument("--user", action="store_true", help="the systemd user service")
    uninstall.add_argument("--unit-dir", type=Path, metavar="DIR", help="remove it from here")
    uninstall.set_defaults(handler=_service_uninstall)

    demo = commands.add_parser(
        "demo", parents=[common], help="see it work: local receiver, hot folder, sample pictures"
    )
    demo.add_argument(
        "--dir",
        type=Path,
        default=Path("boothsync-demo"),
        help="demo folder (default: %(default)s)",
    )
    demo.add_argument("--samples", type=int, default=3, help="sample pictures to write")
    demo.set_defaults(handler=_demo)
    return parser


def _load(args: argparse.Namespace) -> Config:
    config = load_config(find_config(args.config))
    # Now that the keys are known, make sure no log line can ever show one.
    setup_logging(args.level, secrets=_secrets(config))
    return config


def _context(config: Config) -> DestinationContext:
    from boothsync.destinations import DestinationContext

    return DestinationContext(booth=config.booth.name, tz=config.booth.tz)


def _secrets(config: Config) -> list[str]:
    return secrets(config)


def _run(args: argparse.Namespace) -> int:
    from boothsync.daemon import run_service

    return run_service(_load(args), args.level)


def _tray(args: argparse.Namespace) -> int:
    from boothsync.tray import run_tray

    return run_tray(_load(args), attach=args.attach)


def _say(line: str) -> None:
    """Print a line that may hold a file name: a newline, an escape code or bytes that are not
    UTF-8 in it are shown escaped, never acted on (or a crash of the encoder)."""
    print(printable(line))


def _status(args: argparse.Namespace) -> int:
    config = _load(args)
    database = outbox_path(config)
    report = _status_report(config, database)
    if args.json:
        # ASCII only: a file name that is not UTF-8 comes out escaped, not as a crash.
        print(json.dumps(report, indent=2))
        return EXIT_OK
    _say(f"queue: {database}" + ("" if report["queue_exists"] else " (nothing queued yet)"))
    if report["paused"]:
        _say("uploads: paused (`boothsync resume` resumes them)")
    for folder in report["missing_folders"]:
        _say(f"watch folder missing: {folder}")
    for name, entry in report["destinations"].items():
        counts = "  ".join(f"{state} {entry[state]}" for state in STATES)
        if entry["duplicates"]:
            counts += f" (of which {entry['duplicates']} already there: same content)"
        detail = f" ({entry['detail']})" if entry.get("detail") else ""
        _say(f"{name}: {entry['health']}{detail}  {counts}")
    last = report["last_upload"]
    if last:
        taken = (
            f" (taken {last['taken_at']}, from {last['taken_at_source']})"
            if last["taken_at"]
            else ""
        )
        _say(f"last upload: {last['file']} to {last['destination']} at {last['at']}{taken}")
    else:
        _say("last upload: none yet")
    if report["sources"]:
        sources = ", ".join(f"{source} {count}" for source, count in report["sources"].items())
        _say(f"capture times from: {sources}")
    error = report["last_error"]
    if error:
        where = f"{error['file']} to {error['destination']} at {error['at']}"
        _say(f"last error: {where}: {error['error']}")
    return EXIT_OK


def _status_report(config: Config, database: Path) -> dict[str, Any]:
    """Counts per state and destination, health, last upload and last error, read-only."""
    zero = dict.fromkeys(STATES, 0)
    destinations: dict[str, dict[str, Any]] = {
        name: {"type": cfg.type, **zero, "duplicates": 0, "health": "unknown", "detail": ""}
        for name, cfg in config.destinations.items()
    }
    report: dict[str, Any] = {
        "database": str(database),
        "queue_exists": database.exists(),
        "totals": dict(zero),
        "destinations": destinations,
        "last_upload": None,
        "last_error": None,
        "sources": {},
        "paused": False,
        "missing_folders": [],
    }
    if not database.exists():
        return report
    outbox = Outbox(database, readonly=True)
    try:
        stats = outbox.stats()
        health = outbox.health()
        flags = outbox.flags()
    finally:
        outbox.close()
    report["paused"] = flags.get("paused") == "1"
    report["missing_folders"] = _json_list(flags.get("missing_folders"))
    for name, counts in stats.destinations.items():
        entry = destinations.setdefault(
            name, {"type": "unknown", **zero, "duplicates": 0, "health": "unknown", "detail": ""}
        )
        entry.update({state: counts.get(state, 0) for state in STATES})
        entry["duplicates"] = stats.duplicates.get(name, 0)
    for name, (state, detail) in health.items():
        if name in destinations:
            destinations[name]["health"] = state
            destinations[name]["detail"] = detail
    report["totals"] = {state: stats.totals.get(state, 0) for state in STATES}
    report["last_upload"] = _event_json(stats.last_upload)
    report["last_error"] = _event_json(stats.last_error)
    report["sources"] = dict(sorted(stats.sources.items()))
    return report


def _json_list(text: str | None) -> list[str]:
    """A flag holding a JSON list of strings; anything else reads as empty."""
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return [str(item) for item in value] if isinstance(value, list) else []


def _event_json(event: Event | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {
        "file": Path(event.path).name,
        "path": event.path,
        "destination": event.destination,
        "at": _iso(event.at),
        "error": event.error,
        "note": event.note,
        "taken_at": _iso(event.taken_at_ms / 1000) if event.taken_at_ms is not None else None,
        "taken_at_source": event.taken_at_source,
    }


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def _retry(args: argparse.Namespace) -> int:
    config = _load(args)
    if args.destination and args.destination not in config.destinations:
        raise ConfigError(f"no destination named {args.destination!r}", key="--destination")
    database = outbox_path(config)
    if not database.exists():
        print("nothing to retry: the queue is empty")
        return EXIT_OK
    outbox = Outbox(database)
    try:
        count = outbox.retry_failed(destination=args.destination)
    finally:
        outbox.close()
    print(f"{count} failed upload(s) queued again" if count else "no failed uploads")
    return EXIT_OK


def _send_command(args: argparse.Namespace) -> int:
    """Leave pause or resume in the queue database, where the running boothsync takes it."""
    config = _load(args)
    database = outbox_path(config)
    outbox = Outbox(database)
    try:
        outbox.send_command(args.control)
    finally:
        outbox.close()
    print(f"{args.control} sent: a running boothsync applies it within a second")
    return EXIT_OK


def _destinations_for(config: Config, only: str | None) -> list[str]:
    if only is None:
        return list(config.destinations)
    if only not in config.destinations:
        raise ConfigError(f"no destination named {only!r}", key="--destination")
    return [only]


def _events(args: argparse.Namespace) -> int:
    from boothsync.destinations import create

    config = _load(args)
    failed = False
    for name in _destinations_for(config, args.destination):
        destination = create(config.destinations[name], context=_context(config))
        try:
            events = destination.events()
        except BoothsyncError as exc:
            print(f"boothsync: {name}: {exc}", file=sys.stderr)
            failed = True
            continue
        finally:
            destination.close()
        cfg = config.destinations[name]
        where = getattr(cfg, "base_url", None) or getattr(cfg, "path", "")
        if cfg.type == "folder":
            print(f"{name} ({where}): a folder, no events or albums")
            continue
        print(f"{name} ({where}): {len(events)} event(s)")
        for event in events:
            value = (
                event.link_id if event.link_id.isdigit() and event.id_key == "event_id" else None
            )
            shown = value if value is not None else f'"{event.link_id}"'
            print(f"  {event.title or '(untitled)'}\n    {event.id_key} = {shown}")
            for album in event.albums:
                print(f'      album_id = "{album.id}"  {album.title}')
            if not event.albums and event.id_key == "link_id":
                print("      (no albums)")
    return EXIT_FAILED if failed else EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from boothsync.destinations import create

    config = _load(args)
    lines: list[tuple[bool, str, str]] = [(True, "config is valid", str(config.source or ""))]
    for watch in config.watches:
        exists = watch.path.is_dir()
        lines.append((exists, f"watch folder {watch.path}", "exists" if exists else "missing"))
    state = outbox_path(config).parent
    lines.append(_writable(state))
    for name, cfg in config.destinations.items():
        albums = [w.album_id for w in config.watches if w.album_id and name in w.destinations]
        destination = create(cfg, context=_context(config))
        try:
            lines.extend((i.ok, i.label, i.detail) for i in destination.check(albums))
        finally:
            destination.close()
    problems = 0
    for ok, label, detail in lines:
        problems += not ok
        print(f"[{'ok' if ok else 'FAIL'}] {label}" + (f": {detail}" if detail else ""))
    print("all good" if not problems else f"{problems} problem(s)")
    return EXIT_OK if not problems else EXIT_FAILED


def _writable(folder: Path) -> tuple[bool, str, str]:
    label = f"state folder {folder}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".boothsync-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return False, label, f"not writable: {exc.strerror or exc}"
    return True, label, "writable"


def _service_install(args: argparse.Namespace) -> int:
    from boothsync import service

    config = _load(args)
    if args.print_only:
        print(service.render(config, user=args.user, run_as=args.run_as), end="")
        # On stderr, so that the unit alone can be redirected into a file.
        note = service.state_note(config, user=args.user)
        if note is not None:
            print(note, file=sys.stderr)
        return EXIT_OK
    service.install(config, user=args.user, folder=args.unit_dir, run_as=args.run_as)
    return EXIT_OK


def _service_uninstall(args: argparse.Namespace) -> int:
    from boothsync import service

    service.uninstall(user=args.user, folder=args.unit_dir)
    return EXIT_OK


def _receiver(args: argparse.Namespace) -> int:
    from boothsync.receiver import DEMO_API_KEY, Receiver, demo_events

    events = demo_events()
    if args.link_id:
        events = [type(events[0])(events[0].title, args.link_id, events[0].albums)]
    api_key = args.api_key or DEMO_API_KEY
    stop = threading.Event()
    try:
        receiver = Receiver(args.dir, host=args.host, port=args.port, keys={api_key: events})
        receiver.start()
    except OSError as exc:
        raise BoothsyncError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
        ) from exc
    with stop_signals(stop):
        try:
            albums = ", ".join(f"{a.id} ({a.title})" for a in events[0].albums)
            print(f"EventPics-compatible receiver on {receiver.base_url}", flush=True)
            print(f"  api key: {api_key}  link_id: {events[0].link_id}  albums: {albums}")
            print(f"  storing files in {args.dir.resolve()}; Ctrl+C to stop", flush=True)
            wait_for_stop(stop)
        finally:
            receiver.stop()
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from boothsync.demo import run_demo

    if args.samples < 0:
        raise ConfigError("must be 0 or more", key="--samples")

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        return run_demo(args.dir, samples=args.samples, say=say)
    except OSError as exc:
        raise BoothsyncError(f"{args.dir}: {exc.strerror or exc}") from exc
