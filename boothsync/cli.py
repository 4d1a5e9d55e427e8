"""The ``boothsync`` command: argument parsing, exit codes and human output.

Exit codes: 0 done (a stop with Ctrl+C or SIGTERM is how ``run``, ``tray``, ``demo`` and
``receiver`` are done), 1 something outside boothsync failed (the gallery, the network, a
check, no boothsync running to command), 2 the configuration or the command line is wrong,
3 ``status`` found something the operator must see to (failed pictures, a rejected key, a
missing folder), 130 interrupted (Ctrl+C before a command was done, or a second one that cut
a stop short). An expected failure is one line on stderr, never a traceback.
Logic lives in the modules; this one only calls and prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boothsync import __version__
from boothsync.config import CONFIG_ENV, Config, find_config, load_config, secrets
from boothsync.daemon import (
    INTERRUPTED_EXIT,
    InstanceState,
    instance_state,
    parse_level,
    setup_logging,
    stop_signals,
    wait_for_stop,
)
from boothsync.errors import BoothsyncError, ConfigError, NoConfigFile
from boothsync.names import printable
from boothsync.outbox import PAUSED_FLAG, Outbox
from boothsync.paths import CONFIG_FILE_NAME, default_state_dir, outbox_path, user_config_file
from boothsync.status import STATES, iso, needs_attention
from boothsync.status import report as status_json

__all__ = ["main"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_ATTENTION = 3
EXIT_INTERRUPTED = INTERRUPTED_EXIT

# How long `pause`, `resume` and `reload` wait for the running boothsync to take the command
# (seconds): it looks every second, but not while a config reload restarts its work.
COMMAND_WAIT = 10.0
# How often, meanwhile, it looks whether that boothsync still runs (seconds).
_STILL_RUNNING_LOOK = 1.0

if TYPE_CHECKING:
    from boothsync.destinations import DestinationContext


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
        sys.stdout.flush()
        return result
    except BrokenPipeError:
        # Whatever read the output stopped reading (`boothsync status --json | head`): there is
        # nobody left to tell. Python's own flush at exit would fail again, loudly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except ConfigError as exc:
        print(f"boothsync: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BoothsyncError as exc:
        print(f"boothsync: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"boothsync {args.command}: interrupted", file=sys.stderr)
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

    verify = commands.add_parser(
        "verify",
        parents=[with_config],
        help="is every picture in the gallery? (safe to pack up: exit 0 only then)",
    )
    verify.set_defaults(handler=_verify)

    retry = commands.add_parser(
        "retry", parents=[with_config], help="put failed pictures back in the queue"
    )
    retry.add_argument("--destination", metavar="NAME", help="only this destination")
    retry.set_defaults(handler=_retry)

    forget = commands.add_parser(
        "forget",
        parents=[with_config],
        help="drop failed pictures from the queue for good (all, or the one named)",
    )
    forget.add_argument(
        "picture", nargs="?", metavar="PICTURE", help="only this picture (file name or path)"
    )
    forget.add_argument("--destination", metavar="NAME", help="only this destination")
    forget.set_defaults(handler=_forget)

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

    init = commands.add_parser(
        "init",
        parents=[common],
        help="write the first config: asks for the folder, the gallery and its key",
        description="Writes a config with the watched folder and one gallery, picked from "
        "the events and albums its key reaches, then checks it. Flags answer the questions "
        "(for scripts); what they leave out is asked.",
    )
    init.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        default=Path(CONFIG_FILE_NAME),
        help="where to write it (default: %(default)s in this folder)",
    )
    init.add_argument("--folder", help="the folder the booth software saves pictures into")
    init.add_argument("--type", help="the gallery: eventpics, picsui, picpeak or folder")
    init.add_argument(
        "--api-key",
        metavar="KEY",
        help="the gallery's API key or token (else asked, without echo)",
    )
    init.add_argument("--link-id", metavar="ID", help="EventPics: the event's link_id")
    init.add_argument("--album-id", metavar="ID", help="EventPics: the album")
    init.add_argument("--event-id", metavar="ID", help="Picsui, PicPeak: the event")
    init.add_argument("--base-url", metavar="URL", help="the API's address (PicPeak: your server)")
    init.add_argument("--path", metavar="FOLDER", help="type folder: the folder to copy into")
    init.add_argument("--force", action="store_true", help="replace an existing config file")
    init.add_argument(
        "--example",
        action="store_true",
        help="print the full reference config, every key explained, and write nothing",
    )
    init.set_defaults(handler=_init)

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

    dashboard = commands.add_parser(
        "dashboard",
        parents=[with_config],
        help="open the running boothsync's dashboard in the browser (with a login link)",
    )
    dashboard.add_argument(
        "--print-url",
        action="store_true",
        help="only print the URL to open (it logs in once, within 5 minutes)",
    )
    dashboard.set_defaults(handler=_dashboard)

    setup = commands.add_parser(
        "setup",
        parents=[with_config],
        help="set boothsync up in the browser (the first config, or change the one there is)",
    )
    setup.set_defaults(handler=_setup)

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
    demo.add_argument(
        "--no-browser", action="store_true", help="print the dashboard's address, do not open it"
    )
    demo.set_defaults(handler=_demo)
    return parser


def _load(args: argparse.Namespace, *, listing: bool = False) -> Config:
    config = load_config(find_config(args.config), listing=listing)
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

    config = _load_or_set_up(args, browser=False)
    return EXIT_OK if config is None else run_service(config, args.level)


def _tray(args: argparse.Namespace) -> int:
    from boothsync.tray import run_tray

    if args.attach:
        return run_tray(_load(args), attach=True)
    config = _load_or_set_up(args, browser=True)
    return EXIT_OK if config is None else run_tray(config, attach=False)


def _setup(args: argparse.Namespace) -> int:
    """The setup in the browser: the first config's wizard, or the settings of an existing
    one (of the running boothsync, or of one started here)."""
    from boothsync.daemon import run_service

    explicit: Path | None = args.config
    if explicit is not None and not explicit.expanduser().exists():
        config = _set_up(explicit.expanduser(), args, browser=True)
    else:
        try:
            config = _load(args)
        except NoConfigFile:
            # The wizard's page goes on to the dashboard by itself once boothsync runs.
            config = _set_up(_first_config_target(), args, browser=True)
        else:
            folder = outbox_path(config).parent
            if instance_state(folder).running:
                return _open_dashboard(folder, "/settings")
            _open_when_served(folder, "/settings")
    return EXIT_OK if config is None else run_service(config, args.level)


def _load_or_set_up(args: argparse.Namespace, *, browser: bool) -> Config | None:
    """The config, or (none anywhere) the one the setup wizard saves; None if stopped first."""
    try:
        return _load(args)
    except NoConfigFile:
        pass
    return _set_up(_first_config_target(), args, browser=browser)


def _first_config_target() -> Path:
    """Where the first setup saves the config: $BOOTHSYNC_CONFIG, else the user config folder."""
    named = os.environ.get(CONFIG_ENV)
    return Path(named) if named else user_config_file()


def _set_up(target: Path, args: argparse.Namespace, *, browser: bool) -> Config | None:
    from boothsync.daemon import first_setup

    if not first_setup(target, on_serving=_open_login if browser else None):
        return None
    return _load(argparse.Namespace(config=target, level=args.level))


def _open_login(login: str) -> None:
    from boothsync.desktop import can_open_browser, open_path

    if can_open_browser() and open_path(login):
        print("opened the setup in the browser", flush=True)
    else:
        print(f"open this in a browser within 5 minutes:\n{login}", flush=True)


def _open_dashboard(folder: Path, page: str = "/") -> int:
    from boothsync.web.server import NoDashboard, login_link

    try:
        _open_login(login_link(folder, page))
    except NoDashboard as exc:
        raise BoothsyncError(f"boothsync {exc}") from exc
    return EXIT_OK


def _open_when_served(folder: Path, page: str) -> None:
    """Open the dashboard of the boothsync about to start here, once it serves."""
    from boothsync.web.server import NoDashboard, login_link, serving_url

    def opener() -> None:
        deadline = time.monotonic() + 30
        pause = threading.Event()
        while serving_url(folder) is None and time.monotonic() < deadline:
            pause.wait(0.2)
        try:
            _open_login(login_link(folder, page))
        except NoDashboard as exc:
            log.warning("cannot open the dashboard: %s", exc)

    threading.Thread(target=opener, name="open-dashboard", daemon=True).start()


def _say(line: str) -> None:
    """Print a line that may hold a file name: a newline, an escape code or bytes that are not
    UTF-8 in it are shown escaped, never acted on (or a crash of the encoder)."""
    print(printable(line))


def _status(args: argparse.Namespace) -> int:
    config = _load(args)
    database = outbox_path(config)
    instance = instance_state(database.parent)
    report = status_json(config, database, instance)
    code = EXIT_ATTENTION if needs_attention(report) else EXIT_OK
    if args.json:
        # ASCII only: a file name that is not UTF-8 comes out escaped, not as a crash.
        print(json.dumps(report, indent=2))
        return code
    _say(_running_line(instance))
    _say(f"queue: {database}" + ("" if report["queue_exists"] else " (nothing queued yet)"))
    for line in _queue_lines(report):
        _say(line)
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
        where = f"{error['file']} to " if error["file"] else ""
        where += f"{error['destination']} at {error['at']}"
        _say(f"last error: {where}: {error['error']}")
    if report["totals"]["failed"]:
        _say(
            "failed pictures: `boothsync retry` sends them again once the cause is fixed,"
            " `boothsync forget` drops them"
        )
    return code


def _verify(args: argparse.Namespace) -> int:
    """One line per destination: every picture there, or the names of those missing."""
    from boothsync.verify import describe, verify

    config = _load(args)
    checks = verify(config, outbox_path(config))
    for check in checks:
        _say(describe(check))
    return EXIT_OK if all(check.ok for check in checks) else EXIT_FAILED


def _queue_lines(report: dict[str, Any]) -> list[str]:
    """Paused, missing folders, and what waits: new pictures (they go first) and backlog."""
    lines = []
    if report["paused"]:
        lines.append("uploads: paused (`boothsync resume` resumes them)")
    lines.extend(f"watch folder missing: {folder}" for folder in report["missing_folders"])
    if report["totals"]["waiting"]:
        lines.append(f"waiting: {report['live']} new (they go first), {report['backlog']} backlog")
    if report["keeping_awake"]:
        lines.append("keeping the computer awake until the pictures are uploaded")
    return lines


def _running_line(instance: InstanceState) -> str:
    """Whether boothsync runs on this queue, in words."""
    if instance.running:
        since = f", since {iso(instance.since)}" if instance.since is not None else ""
        return f"boothsync: running (pid {instance.pid}{since})"
    if instance.since is not None:
        return f"boothsync: not running (stopped {iso(instance.since)})"
    if instance.started is not None:
        return (
            f"boothsync: not running (the last one started {iso(instance.started)} and ended"
            " without a clean stop: killed, crashed, or the computer went off)"
        )
    return "boothsync: not running (it never ran with this queue)"


def _retry(args: argparse.Namespace) -> int:
    config = _load(args)
    _destinations_for(config, args.destination)  # an unknown --destination is refused
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


# What `pause`, `resume` and `reload` say once the running boothsync took the command.
_TAKEN = {
    "pause": "paused: boothsync (pid {pid}) starts no more uploads until `boothsync resume`",
    "resume": "resumed: boothsync (pid {pid}) uploads again",
    "reload": "reload: boothsync (pid {pid}) rereads its config now; its log says how that went",
}

# The paused flag once the running boothsync has applied the command (it writes the flag just
# after it takes the command, so `status` right after the command already says so).
_PAUSED_AFTER = {"pause": "1", "resume": "0"}

# Why each would do nothing without a running boothsync.
_NOTHING_TO_DO = {
    "pause": "a fresh start always uploads",
    "resume": "a fresh start always uploads",
    "reload": "a start reads the config anyway",
}


def _send_command(args: argparse.Namespace) -> int:
    """Leave pause, resume or reload in the queue database and wait for the running boothsync
    to take it; with none running, say so instead: the next start would drop it."""
    config = _load(args)
    database = outbox_path(config)
    control = args.control
    instance = instance_state(database.parent)
    if not instance.running:
        raise BoothsyncError(
            f"nothing to {control}: no boothsync runs with the queue in {database.parent}"
            f" ({_NOTHING_TO_DO[control]}); start it with `boothsync run`, the tray or the"
            " service, or give the -c FILE it runs with"
        )
    stop = threading.Event()
    outbox = Outbox(database)
    try:
        command = outbox.send_command(control)
        deadline = time.monotonic() + COMMAND_WAIT
        look = time.monotonic() + _STILL_RUNNING_LOOK
        while not (taken := outbox.command_taken(command)):
            if taken is None:
                raise BoothsyncError(
                    f"boothsync (pid {instance.pid}) was just starting and dropped the"
                    f" {control} as sent before it ran; send it again"
                )
            if time.monotonic() >= look:
                # The lock is looked at seldom: each look is one a starting boothsync waits out.
                look = time.monotonic() + _STILL_RUNNING_LOOK
                if not instance_state(database.parent).running:
                    raise BoothsyncError(
                        f"boothsync (pid {instance.pid}) stopped before it took the {control}"
                    )
            if time.monotonic() >= deadline:
                print(
                    f"{control} sent: boothsync (pid {instance.pid}) has not taken it yet"
                    " (a config reload may be under way); it will as soon as it can"
                )
                return EXIT_OK
            stop.wait(0.05)
        paused = _PAUSED_AFTER.get(control)
        while paused is not None and outbox.flags().get(PAUSED_FLAG) != paused:
            if time.monotonic() >= deadline:
                break
            stop.wait(0.05)
    finally:
        outbox.close()
    print(_TAKEN[control].format(pid=instance.pid))
    return EXIT_OK


def _forget(args: argparse.Namespace) -> int:
    """Drop failed pictures from the queue: all of them, one destination's, or one picture."""
    config = _load(args)
    _destinations_for(config, args.destination)  # an unknown --destination is refused
    database = outbox_path(config)
    forgotten: list[tuple[str, str]] = []
    failed: list[tuple[str, str]] = []
    if database.exists():
        outbox = Outbox(database)
        try:
            forgotten = outbox.forget_failed(destination=args.destination, name=args.picture)
            if not forgotten and args.picture:
                failed = outbox.failed(destination=args.destination)
        finally:
            outbox.close()
    for path, destination in forgotten:
        _say(f"forgotten: {Path(path).name} (to {destination}); it is not uploaded there")
    if forgotten or not args.picture:
        print(f"{len(forgotten)} failed upload(s) forgotten" if forgotten else "no failed uploads")
        return EXIT_OK
    names = sorted({Path(path).name for path, _ in failed})
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    raise BoothsyncError(
        printable(
            f"no failed picture is called {args.picture!r}"
            + (f"; failed now: {shown}" if names else "; none has failed")
        )
    )


def _destinations_for(config: Config, only: str | None) -> list[str]:
    if only is None:
        return list(config.destinations)
    if only not in config.destinations:
        raise ConfigError(f"no destination named {only!r}", key="--destination")
    return [only]


def _events(args: argparse.Namespace) -> int:
    from boothsync.destinations import create

    # Listing is how the event ids are found: only the key is needed for it.
    config = _load(args, listing=True)
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
    return _check_config(_load(args))


def _check_config(config: Config) -> int:
    from boothsync.checks import run_checks

    problems = 0
    for line in run_checks(config):
        problems += not line.ok
        print(
            f"[{'ok' if line.ok else 'FAIL'}] {line.label}"
            + (f": {line.detail}" if line.detail else "")
        )
    print("all good" if not problems else f"{problems} problem(s)")
    return EXIT_OK if not problems else EXIT_FAILED


def _init(args: argparse.Namespace) -> int:
    from boothsync.first_config import Answers, Prompter, example_text, write_first_config

    if args.example:
        print(example_text(), end="")
        return EXIT_OK
    target: Path = args.config.expanduser()
    if target.exists() and not args.force:
        raise ConfigError(
            "already exists; `boothsync check -c FILE` checks it, --force replaces it",
            file=str(target),
        )
    answers = Answers(
        folder=args.folder,
        type=args.type,
        api_key=args.api_key,
        base_url=args.base_url,
        link_id=args.link_id,
        album_id=args.album_id,
        event_id=args.event_id,
        path=args.path,
    )
    written = write_first_config(target, answers, Prompter(sys.stdin, sys.stdout))
    config = _load(argparse.Namespace(config=written, level=args.level))
    private = " (readable only by you)" if os.name == "posix" else ""
    print(f"wrote {written}{private}; checking it:")
    result = _check_config(config)
    if result == EXIT_OK:
        print(f"next: boothsync run -c {written}")
    return result


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


def _dashboard(args: argparse.Namespace) -> int:
    """Leave a one-time login token for the running boothsync's dashboard and open (or print)
    the URL that uses it."""
    from boothsync.web.server import NoDashboard, login_link

    try:
        folder = outbox_path(_load(args)).parent
    except NoConfigFile:
        # A boothsync without a config serves its setup from the default state folder.
        folder = default_state_dir()
    instance = instance_state(folder)
    if not instance.running:
        raise BoothsyncError(
            f"no boothsync runs with the queue in {folder}; start it with `boothsync run`, the"
            " tray or the service (or give the -c FILE it runs with)"
        )
    try:
        login = login_link(folder)
    except NoDashboard as exc:
        raise BoothsyncError(f"boothsync (pid {instance.pid}) {exc}") from exc
    if args.print_url:
        print(login)
        return EXIT_OK
    _open_login(login)
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from boothsync.demo import run_demo

    if args.samples < 0:
        raise ConfigError("must be 0 or more", key="--samples")

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        return run_demo(args.dir, samples=args.samples, say=say, browser=not args.no_browser)
    except OSError as exc:
        raise BoothsyncError(f"{args.dir}: {exc.strerror or exc}") from exc
