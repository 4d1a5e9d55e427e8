"""Keeping the computer from going to sleep while pictures wait to be uploaded.

Owns asking the operating system not to sleep and letting go again: on Linux a logind
inhibitor through ``systemd-inhibit`` (its child reads our pipe, so it ends, and the
inhibitor with it, whenever boothsync does, even killed), on macOS ``caffeinate -i -w PID``,
on Windows ``SetThreadExecutionState`` held by a thread of its own. Where none of them is at
hand (no logind, a container) it says so once, at start, and does nothing.

Must not decide when to hold (the engine does, from the queue), nor raise: a failure to keep
the computer awake is one log line, and uploads go on.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

__all__ = ["Awake", "keep_awake", "shared"]

log = logging.getLogger(__name__)

WHY: Final = "pictures are still waiting to be uploaded"
# Where logind keeps its state: it runs (and takes inhibitors) only where this exists.
LOGIND: Final = Path("/run/systemd/seats")


class Awake:
    """Hold or release the platform's "do not sleep" (:meth:`update`); ``held`` says which.
    ``start`` begins a hold and returns its release, or raises OSError."""

    def __init__(self, how: str, start: Callable[[], Callable[[], None]] | None) -> None:
        self.how = how
        self._start = start
        self._release: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._failed = False

    @property
    def available(self) -> bool:
        return self._start is not None

    @property
    def held(self) -> bool:
        return self._release is not None

    def update(self, busy: bool) -> bool:
        """Hold while ``busy``, release as soon as not; whether it holds now."""
        with self._lock:
            if busy and self._release is None and self._start is not None and not self._failed:
                try:
                    self._release = self._start()
                except OSError as exc:
                    # Said once: the next try would only fail the same way.
                    self._failed = True
                    log.warning("cannot keep the computer awake (%s): %s", self.how, exc)
                    return False
                log.info("keeping the computer awake while pictures wait (%s)", self.how)
            elif not busy and self._release is not None:
                self.release()
                log.info("pictures all uploaded: the computer may sleep again")
            return self._release is not None

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


@functools.cache
def shared() -> Awake:
    """This process's way (looked for, and said when there is none, once)."""
    return keep_awake()


def keep_awake(
    platform: str = sys.platform,
    *,
    which: Callable[[str], str | None] = shutil.which,
    logind: Path = LOGIND,
) -> Awake:
    """The way this computer is kept awake; one line at start where there is none."""
    if platform == "win32":  # pragma: no cover - Windows only
        return Awake("SetThreadExecutionState", _windows)
    if platform == "darwin":
        caffeinate = which("caffeinate")
        if caffeinate is not None:
            command = [caffeinate, "-i", "-w", str(os.getpid())]
            return Awake("caffeinate", lambda: _child(command))
        reason = "caffeinate is missing"
    else:
        inhibit = which("systemd-inhibit")
        if inhibit is not None and logind.is_dir():
            command = [
                inhibit,
                "--what=sleep:idle",
                "--who=boothsync",
                f"--why={WHY}",
                "--mode=block",
                # It reads the pipe from boothsync: when boothsync ends, however, so does it.
                "cat",
            ]
            return Awake("a logind inhibitor", lambda: _child(command))
        reason = "no systemd-inhibit" if inhibit is None else "logind does not run here"
    log.info(
        "this computer may go to sleep with pictures waiting (%s): keep it awake by hand",
        reason,
    )
    return Awake("none", None)


def _child(command: list[str]) -> Callable[[], None]:
    """Start ``command`` holding the inhibitor; its release ends it."""
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        close_fds=True,
    )
    try:
        # A refusal (logind says no) ends it at once: seen here rather than never.
        process.wait(0.2)
    except subprocess.TimeoutExpired:
        pass
    else:
        said = process.stderr.read().decode("utf-8", "replace").strip() if process.stderr else ""
        raise OSError(said.splitlines()[-1] if said else f"exited with {process.returncode}")

    def release() -> None:
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()

    return release


def _windows() -> Callable[[], None]:  # pragma: no cover - Windows only
    """SetThreadExecutionState belongs to the thread that called it: a thread of its own
    holds it until released."""
    import ctypes

    es_continuous, es_system_required = 0x80000000, 0x00000001
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    done = threading.Event()
    started = threading.Event()
    failed: list[str] = []

    def hold() -> None:
        if not kernel32.SetThreadExecutionState(es_continuous | es_system_required):
            failed.append("SetThreadExecutionState failed")
            started.set()
            return
        started.set()
        done.wait()
        kernel32.SetThreadExecutionState(es_continuous)

    thread = threading.Thread(target=hold, name="keep-awake", daemon=True)
    thread.start()
    started.wait(5)
    if failed:
        raise OSError(failed[0])

    def release() -> None:
        done.set()
        thread.join(5)

    return release
