"""One upload speed limit shared by every worker and destination (``[upload] bandwidth_limit``).

Owns parsing a limit such as ``"2MB/s"`` and a thread-safe token bucket that the readers of
upload bodies draw from, so that boothsync together never sends faster than the limit and the
booth's own traffic (live view, a sharing station) keeps its share of a venue's link. Must
not know about HTTP or files.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

__all__ = ["Bandwidth", "parse_rate"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*(?:/\s*s(?:ec)?)?\s*$", re.IGNORECASE)


def parse_rate(text: str) -> int:
    """Bytes per second from ``"2MB/s"``, ``"500 kB/s"``, ``"1.5MiB/s"`` or a plain number.

    Raises ValueError with a message fit for a config error.
    """
    match = _RATE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f'must be a rate such as "2MB/s" or "500kB/s" (got {text!r})')
    rate = float(match.group(1)) * _UNITS[unit]
    if rate < 1024:
        raise ValueError(f"must be at least 1kB/s (got {text!r})")
    return int(rate)


class Bandwidth:
    """A token bucket: :meth:`take` returns once ``n`` more bytes may go out.

    The bucket holds at most a quarter of a second's worth, so a pause is never followed by
    a burst much above the limit. Waiting happens outside the lock; each caller reserves its
    share first, so workers queue up fairly instead of racing.
    """

    def __init__(
        self,
        bytes_per_second: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self.rate = bytes_per_second
        self._burst = max(1.0, bytes_per_second / 4)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self._burst
        self._stamp = clock()

    def take(self, n: int) -> None:
        """Block until ``n`` bytes may be sent (``n`` may exceed the burst: it just waits)."""
        if n <= 0:
            return
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            debt = -self._tokens
        if debt > 0:
            self._sleep(debt / self.rate)
