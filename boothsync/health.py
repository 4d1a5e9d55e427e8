"""Each destination's health: online, offline, rate-limited, unauthorized (or unknown).

A destination that rejects the key or the event is paused as a whole (unauthorized) instead
of failing every file in turn; one that asks to slow down (429) waits until its Retry-After
(rate-limited); one that cannot be reached (offline) gets no more uploads, only a cheap
probe with backoff, and when the probe answers every waiting file of it is due at once.
Other destinations go on meanwhile.

With a check at start, each destination is checked once as the workers start, on a thread
of its own so no upload waits for it: the request ``boothsync check`` makes (or its probe).
A clear answer that the key, the event or an album is wrong pauses it as a rejected upload
would; no answer at all is an outage as for an upload; a fine answer makes it online. So a
wrong setting shows within seconds, not with the first picture.

:class:`HealthTracker` owns this state machine for the uploader: the uploader tells it what
an upload met (:meth:`~HealthTracker.uploaded`, :meth:`~HealthTracker.unauthorized`,
:meth:`~HealthTracker.rate_limited`, :meth:`~HealthTracker.unreachable`) and asks it which
destinations may be claimed for (:meth:`~HealthTracker.active`). Every change is written to
the outbox, where a read-only status finds it. Pauses and rate limits end on the uploader's
clock (monotonic); outages and probes are timed on :func:`time.monotonic`.

This module never claims or records jobs (the uploader does), and never speaks HTTP itself:
a destination's ``probe`` and ``verify`` do.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum

from boothsync.destinations.base import Destination, Verifiable
from boothsync.errors import DestinationUnavailable, NetworkError, OutboxError, UploadError
from boothsync.outbox import Outbox
from boothsync.retry import backoff

__all__ = ["PROBE_BASE", "PROBE_CAP", "DestinationHealth", "Health", "HealthTracker"]

log = logging.getLogger(__name__)

# Probing an offline destination: exponential backoff with equal jitter, from
# about half a second up to this cap. The gap between the gallery's return and
# the next probe can be as long as the cap, and a gallery that comes back
# overloaded may let a probe wait seconds for its answer: so probes start every
# second at most, without waiting for the ones still out (up to _PROBES_IN_FLIGHT
# at once), and the first to get any answer ends the outage. A probe is one small
# GET: one a second during a long outage costs a few hundred bytes a second.
PROBE_BASE = 1.0
PROBE_CAP = 1.0
_PROBES_IN_FLIGHT = 3
# How long a stop waits for probes still out (each has a short timeout of its own).
_PROBE_JOIN = 6.0
# The probe loop looks at the outages at least this often, even if nothing wakes it.
_IDLE_CHECK = 5.0


class Health(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    RATE_LIMITED = "rate-limited"
    UNAUTHORIZED = "unauthorized"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class DestinationHealth:
    """A destination's health; ``paused_until`` (the uploader's clock, monotonic) ends a pause
    or a rate limit: no job of it is claimed before then."""

    health: Health
    detail: str = ""
    paused_until: float | None = None


@dataclass
class _Outage:
    """An offline destination: since when (monotonic), probes so far, when to probe next,
    and how many probes are still waiting for an answer."""

    since: float
    probes: int
    next_probe: float
    in_flight: int = 0


class HealthTracker:
    """The health of a set of destinations, their outages, probes and the check at start.

    ``stopping`` is the owner's stop event: once it is set, checks and probes drop their
    results and the probe loop ends (after :meth:`wake_prober`). ``on_back`` is called when
    a destination is reachable again, so that idle workers look at the queue now.
    """

    def __init__(
        self,
        outbox: Outbox,
        destinations: Mapping[str, Destination],
        *,
        stopping: threading.Event,
        on_back: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        pause_seconds: float = 300.0,
        probe_base: float = PROBE_BASE,
        probe_cap: float = PROBE_CAP,
    ) -> None:
        self._outbox = outbox
        self._destinations = dict(destinations)
        self._stopping = stopping
        self._on_back = on_back
        self._clock = clock
        self._pause_seconds = pause_seconds
        self._probe_base = probe_base
        self._probe_cap = probe_cap
        self._probe_wake = threading.Event()
        self._outages: dict[str, _Outage] = {}
        self._lock = threading.Lock()
        self._health = {name: DestinationHealth(Health.UNKNOWN) for name in self._destinations}
        self._prober: list[threading.Thread] = []
        self._checks: list[threading.Thread] = []

    def publish(self) -> None:
        """Write every destination's health as it stands to the outbox (before any upload)."""
        for name, health in self._health.items():
            self._store_health(name, health)

    def start(self, check_at_start: Mapping[str, Collection[str]]) -> None:
        """Start the probe loop, and check each destination in ``check_at_start`` (with the
        album ids its pictures go to) once, each on a thread of its own."""
        prober = threading.Thread(target=self._probe_loop, name="uploader-probe", daemon=True)
        prober.start()
        self._prober.append(prober)
        for name, albums in check_at_start.items():
            if name not in self._destinations:
                continue
            check = threading.Thread(
                target=self._check_once,
                args=(name, tuple(albums)),
                name=f"uploader-check-{name}",
                daemon=True,
            )
            check.start()
            self._checks.append(check)

    @property
    def threads(self) -> list[threading.Thread]:
        """The threads that run as long as the owner does (the probe loop): for its watchdog
        and its stop."""
        return list(self._prober)

    def wake_prober(self) -> None:
        """The stop event is set (or an outage began): the probe loop looks now."""
        self._probe_wake.set()

    def join_checks(self, deadline: float) -> None:
        """Wait for the checks at start until ``deadline`` (monotonic)."""
        for check in self._checks:
            # A check still waiting for its answer is no upload: what is left of the time,
            # then it is left behind (a daemon; its result is dropped once stopping).
            check.join(max(0.0, deadline - time.monotonic()))

    def snapshot(self) -> dict[str, DestinationHealth]:
        """Every destination's health now."""
        with self._lock:
            return dict(self._health)

    def active(self) -> list[str]:
        """Destinations to claim jobs for: configured, reachable, not paused or rate-limited."""
        now = self._clock()
        with self._lock:
            return [
                name
                for name, state in self._health.items()
                if name not in self._outages
                and (state.paused_until is None or state.paused_until <= now)
            ]

    def pause_left(self) -> float | None:
        """Seconds until the first pause or rate limit still running ends; None if none runs."""
        now = self._clock()
        left: float | None = None
        with self._lock:
            for state in self._health.values():
                # A pause that already ended says nothing about when to look
                # again (and would make idle workers spin).
                if state.paused_until is not None and state.paused_until > now:
                    wait = state.paused_until - now
                    left = wait if left is None else min(left, wait)
        return left

    def uploaded(self, name: str) -> None:
        """An upload to ``name`` went through: it is online."""
        # An upload that went through while another worker found the
        # destination unreachable proves it is back.
        self._back_online(name)
        self._set_health(name, DestinationHealth(Health.ONLINE))

    def unauthorized(self, name: str, exc: DestinationUnavailable) -> None:
        """``name`` rejected the key, the event or an album: no job of it for a while."""
        until = self._clock() + self._pause_seconds
        with self._lock:
            before = self._health.get(name)
        if before is None or before.health is not Health.UNAUTHORIZED:
            log.error("%s; uploads to %s are paused, files wait in the queue", exc, name)
        else:
            log.warning("%s still rejects boothsync: %s", name, exc)
        self._set_health(name, DestinationHealth(Health.UNAUTHORIZED, str(exc), paused_until=until))

    def rate_limited(self, name: str, message: str, delay: float) -> None:
        """``name`` asked to slow down: no job of it for ``delay`` seconds (or longer, if an
        earlier limit still runs)."""
        until = self._clock() + delay
        with self._lock:
            before = self._health.get(name)
        if (
            before is not None
            and before.health is Health.RATE_LIMITED
            and before.paused_until is not None
        ):
            until = max(until, before.paused_until)
        if before is None or before.health is not Health.RATE_LIMITED:
            log.warning(
                "%s asks boothsync to slow down (%s); its uploads wait %.0f s, others go on",
                name,
                message,
                delay,
            )
        self._set_health(name, DestinationHealth(Health.RATE_LIMITED, message, paused_until=until))

    def unreachable(self, name: str) -> bool:
        """Whether ``name`` is offline: an outage is known already, or it does not answer its
        probe now (one probe decides)."""
        with self._lock:
            known = name in self._outages
        return known or not self._reachable(name)

    def offline(self, name: str, message: str) -> None:
        """``name`` cannot be reached: no more jobs of it, the probe loop takes over."""
        now = time.monotonic()
        with self._lock:
            if name in self._outages:
                return
            self._outages[name] = _Outage(
                since=now, probes=0, next_probe=now + self._probe_delay(1)
            )
        self._set_health(name, DestinationHealth(Health.OFFLINE, message))
        self._probe_wake.set()

    def _reachable(self, name: str) -> bool:
        """Whether the destination answers its probe; a probe that breaks counts as an answer.

        (A bug in a probe must not hold a destination offline for ever: the
        job backoff then still applies.)
        """
        try:
            self._destinations[name].probe()
        except UploadError:
            return False
        except Exception:
            log.exception("probing %s failed unexpectedly", name)
        return True

    def _check_once(self, name: str, albums: tuple[str, ...]) -> None:
        """The check at start: one cheap request tells whether the key, the event and the
        albums are right, before a picture is the test. Only a clear answer that they are
        wrong pauses the destination; a network that does not answer is an outage, as for
        an upload; a server in trouble changes nothing (the first upload tells)."""
        destination = self._destinations[name]
        try:
            if isinstance(destination, Verifiable):
                destination.verify(albums)
            else:
                destination.probe()
        except DestinationUnavailable as exc:
            if not self._stopping.is_set():
                self.unauthorized(name, exc)
        except NetworkError as exc:
            if not self._stopping.is_set() and self.unreachable(name):
                self.offline(name, str(exc) or type(exc).__name__)
        except UploadError as exc:
            log.info("%s could not be checked at start (%s); its first upload will tell", name, exc)
        except Exception:
            # A client closed under a check by a stop says nothing about the destination.
            if not self._stopping.is_set():
                log.exception("checking %s at start failed unexpectedly", name)
        else:
            self._checked(name, verified=isinstance(destination, Verifiable))

    def _checked(self, name: str, *, verified: bool) -> None:
        """The check at start went well: online, unless an upload that finished first
        already said (it knows better than this check)."""
        with self._lock:
            current = self._health.get(name)
            if current is None or current.health is not Health.UNKNOWN:
                return
            online = DestinationHealth(Health.ONLINE)
            self._health[name] = online
        said = "accepts the key and knows the event" if verified else "is reachable"
        log.info("%s checked at start: it %s", name, said)
        self._store_health(name, online)

    def _probe_delay(self, probes: int) -> float:
        return backoff(probes, base=self._probe_base, cap=self._probe_cap)

    def _probe_loop(self) -> None:
        """The one place an offline destination is contacted: a cheap probe, with backoff.

        Each probe runs on a thread of its own, so one that a slow gallery keeps waiting
        does not hold back the next: the first probe that gets an answer ends the outage.
        """
        probes: list[threading.Thread] = []
        while not self._stopping.is_set():
            # Cleared before looking, so a destination going offline meanwhile
            # is never missed.
            self._probe_wake.clear()
            now = time.monotonic()
            due = []
            with self._lock:
                for name, outage in self._outages.items():
                    if outage.next_probe <= now and outage.in_flight < _PROBES_IN_FLIGHT:
                        outage.probes += 1
                        outage.in_flight += 1
                        outage.next_probe = now + self._probe_delay(outage.probes + 1)
                        due.append(name)
            probes = [t for t in probes if t.is_alive()]
            for name in due:
                probe = threading.Thread(
                    target=self._probe_once,
                    args=(name,),
                    name=f"uploader-probe-{name}",
                    daemon=True,
                )
                probe.start()
                probes.append(probe)
            with self._lock:
                upcoming = min((o.next_probe for o in self._outages.values()), default=math.inf)
            self._probe_wake.wait(min(_IDLE_CHECK, max(0.0, upcoming - time.monotonic())))
        deadline = time.monotonic() + _PROBE_JOIN
        for probe in probes:
            # A probe's own timeout ends it; one that outlives this is left behind (a daemon).
            probe.join(max(0.0, deadline - time.monotonic()))

    def _probe_once(self, name: str) -> None:
        try:
            if self._reachable(name):
                self._back_online(name)
        finally:
            with self._lock:
                outage = self._outages.get(name)
                if outage is not None:
                    outage.in_flight -= 1
            # A slot is free: the loop may start the next probe if one is due.
            self._probe_wake.set()

    def _back_online(self, name: str) -> None:
        """The destination answered: every waiting file of it goes now."""
        with self._lock:
            outage = self._outages.pop(name, None)
            if outage is None:
                return
        waiting = 0
        try:
            # Files backed off by errors from before the outage need not wait it out.
            self._outbox.make_due(name)
            waiting = self._outbox.stats().destinations.get(name, {}).get("waiting", 0)
        except OutboxError as exc:
            log.error("%s", exc)
        log.info(
            "%s is reachable again after %.0f s; %d picture(s) waiting go now",
            name,
            time.monotonic() - outage.since,
            waiting,
        )
        self._set_health(name, DestinationHealth(Health.ONLINE))
        self._on_back()

    def _set_health(self, name: str, health: DestinationHealth) -> None:
        with self._lock:
            before = self._health.get(name)
            self._health[name] = health
        if before is None or before.health is not health.health:
            if health.health is Health.OFFLINE:
                log.warning(
                    "%s is offline: %s; pictures wait and go when it is back", name, health.detail
                )
            elif (
                health.health is Health.ONLINE
                and before is not None
                # Back from offline is said by _back_online, with figures.
                and before.health in (Health.UNAUTHORIZED, Health.RATE_LIMITED)
            ):
                log.info("%s is online again", name)
            self._store_health(name, health)

    def _store_health(self, name: str, health: DestinationHealth) -> None:
        try:
            self._outbox.set_health(name, health.health.value, health.detail)
        except OutboxError as exc:
            log.error("%s", exc)
