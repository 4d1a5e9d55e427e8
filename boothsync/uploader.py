"""Worker threads that turn queued jobs into uploaded pictures.

Each worker claims one job from the outbox, reads the capture time, checks
whether the destination may already have this content, hands the file to its
destination and records what happened: uploaded, duplicate (the destination
already has this content, in this album), waiting (try again later, with
backoff), or failed (the gallery refused this file, or the file is gone or
unreadable).

The duplicate check reads a file whole before sending it only when a picture
of the same size and beginning (the first 64 KiB) is already uploaded there;
otherwise the content hash (XXH3-128) is taken from the bytes as they are sent,
so a picture is read from disk once.

Each destination has a health (online, offline, rate-limited, unauthorized), kept by a
:class:`~boothsync.health.HealthTracker`: a worker tells it what an upload met (a rejected
key, a 429, no answer, an upload that went through), and claims jobs only for the
destinations it calls active; the tracker probes an offline one and runs the check at start
(``check_at_start``). Quick retries inside one attempt draw on a client-wide
:class:`~boothsync.retry.RetryBudget`.

``concurrency`` workers upload at once; as many spare workers wait for a gallery that
keeps every upload in flight standing still (no byte moved for :data:`_HEDGE_AFTER`, and
for longer than the recent uploads took, see :data:`_DURATIONS_KEPT`), and then start on
the next pictures one by one, so a stalled answer delays only its own picture.

A worker still busy a minute past the time its destination allows for a job
(every request of a gallery has a deadline) counts as stuck: :attr:`Uploader.alive`
turns False, so the service watchdog sees it.

The operator can pause the uploader as a whole (:meth:`Uploader.pause`): no
job is claimed until :meth:`Uploader.resume`, while uploads in flight finish.

The file is stat'ed before it is read; before the last bytes of the upload go
it is checked again (its stat and the hash of its beginning), and if it changed
the request is cut off there, so the gallery keeps nothing of it (a presigned
PUT or a multipart POST that does not complete stores nothing), and the job is
sent again with the new version: a gallery never keeps a copy that is torn,
stale or partial. The content hash is computed here, once per
job (scans stay cheap); :func:`content_hash` is also what the engine compares
before it moves or deletes a picture.

This module only claims rows; it never looks at folders and never speaks HTTP
itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol
from zoneinfo import ZoneInfo

import xxhash

from boothsync.attempts import attempt_policy, attempts_bound
from boothsync.bandwidth import Bandwidth
from boothsync.capture import Capture, CaptureOptions, capture_time, content_type
from boothsync.destinations.base import READ_CHUNK, Destination, TimeBounded, UploadItem
from boothsync.errors import (
    DestinationUnavailable,
    FileRejected,
    NetworkError,
    OutboxError,
    RetryableError,
    ServerBusy,
    SourceChanged,
    SourceFileError,
    UploadError,
)
from boothsync.health import PROBE_BASE, PROBE_CAP, DestinationHealth, HealthTracker
from boothsync.names import upload_name
from boothsync.outbox import Job, Outbox
from boothsync.retry import RetryBudget, backoff

__all__ = [
    "Downscale",
    "UploadReport",
    "Uploader",
    "content_hash",
]

log = logging.getLogger(__name__)

# An idle worker looks at the queue at least this often, so a job whose
# backoff ran out is picked up even if nobody wakes the worker.
_IDLE_CHECK = 5.0

# Read this much at a time when hashing: pictures can be large videos, and a
# Raspberry Pi has little memory to spare.
_HASH_CHUNK = 1024 * 1024
# The head of a file (see _head) ends here: past a JPEG's EXIF and into its pixels.
_HEAD_BYTES = 64 * 1024


class _Digest(Protocol):
    def update(self, data: memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


# A completion reaches the disk at most this long (seconds) after it was recorded, while
# the workers are busy; a power cut in that time can only send its picture once more.
_SYNC_DELAY = 0.2

_CHANGED_ERROR = "changed while it was being uploaded; sending it again"

# A gallery back from an outage but still overloaded may let a request wait seconds for its
# answer, and every worker can meet such a wait at once. When every upload in flight has
# made no progress for this long, one spare worker starts on the next picture, then another
# after as long again, up to ``concurrency`` spares: a stalled request delays its own
# picture, not the queue. On a healthy link no request stands still that long.
_HEDGE_AFTER = 1.0
# Unless uploads usually take longer: on a slow link the kernel takes a whole picture into
# its send buffer at once, and its request then stands still, as far as the worker can see,
# until the link has carried it and the answer comes. So the wait before a spare starts is
# also at least the lower quartile of how long the last _DURATIONS_KEPT uploads took: a
# spare starts for a request slower than the uploads usually are, not for a slow link (more
# uploads at once would only share it and make every picture later, the fresh one too).
_DURATIONS_KEPT = 16
# A job whose file is being sent to the same destination by another worker (another version
# of it) is handed back for this long, uncounted: two versions of one picture never travel
# at once, so the second finds the first's content and is not sent twice.
_SAME_FILE_WAIT = 1.0

# A file that cannot be read (permissions, a locked file) is tried this many
# times, with the job backoff in between (about 20 minutes in all), before it fails
# with the reason. Meanwhile a change of its permissions, or a scan that finds it
# readable, makes it due at once (the watcher asks the queue).
_READ_ATTEMPTS = 10

# A worker still busy with one job this long past the time its destination allows for it is
# stuck (a blocked disk, a wait nothing bounds): :attr:`Uploader.alive` turns False, so the
# service watchdog restarts boothsync and the job goes back to the queue.
_STUCK_GRACE = 60.0
# A destination that states no deadline (a folder copy) is allowed this long, plus a second
# for every _UNSTATED_RATE bytes of the file.
_UNSTATED_SECONDS = 600.0
_UNSTATED_RATE = 256 * 1024


@dataclass(frozen=True)
class UploadReport:
    """What became of one job; given to ``on_report`` after every try.

    ``outcome`` is "uploaded", "duplicate" (completed without an upload: the
    destination already had the same content in the same album; ``note`` says
    which file), "waiting" (tried again later; ``error`` says why), "failed",
    "gone" (the file was deleted before its upload, and its job dropped) or "paused".
    """

    job: Job
    outcome: str
    seconds: float
    capture: Capture | None = None
    error: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class _Version:
    """What a stat says about the content of a file: if this changes, so may the bytes.

    The change time moves with every write even when a writer puts the modification time
    back, and the inode number tells a file replaced by another of the same size and time.
    """

    size: int
    mtime_ns: int
    ctime_ns: int = 0
    inode: tuple[int, int] = (0, 0)


@dataclass
class _Try:
    """What one try at a job found out so far, step by step (see :meth:`Uploader._process`):
    when it started, the capture time, the version sent, the hash of its head and of its
    content, and the file already uploaded with the same content."""

    started: float
    capture: Capture | None = None
    before: _Version | None = None
    head: str | None = None
    digest: str | None = None
    copy: Path | None = None


@dataclass(frozen=True)
class Downscale:
    """Send a destination JPEGs no larger than ``max_edge`` pixels, at JPEG ``quality``."""

    max_edge: int
    quality: int


class Uploader:
    """``concurrency`` worker threads over one outbox and a set of destinations."""

    def __init__(
        self,
        outbox: Outbox,
        destinations: Mapping[str, Destination],
        *,
        tz: ZoneInfo,
        capture_options: CaptureOptions | None = None,
        concurrency: int = 2,
        on_report: Callable[[UploadReport], None] | None = None,
        on_file_done: Callable[[Job], None] | None = None,
        pause_seconds: float = 300.0,
        changed_delay: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        retry_budget: RetryBudget | None = None,
        job_backoff: Callable[[int], float] = backoff,
        probe_base: float = PROBE_BASE,
        probe_cap: float = PROBE_CAP,
        read_attempts: int = _READ_ATTEMPTS,
        bandwidth: Bandwidth | None = None,
        downscale: Mapping[str, Downscale] | None = None,
        refuse: Callable[[Job], str | None] | None = None,
        stuck_grace: float = _STUCK_GRACE,
        spares: int | None = None,
        hedge_after: float = _HEDGE_AFTER,
        check_at_start: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        self._outbox = outbox
        # Destinations to check once at start, each with the album ids its pictures go to.
        self._check_at_start = dict(check_at_start or {})
        self._busy = _Busy(stuck_grace)
        self._sending = _Sending()
        # Says why a job's file must not be sent at all (a link leading outside the watched
        # folders), checked again right before each upload: the folder may have changed.
        self._refuse = refuse
        # One limit for every worker and destination: it is the venue's link that is shared.
        self._bandwidth = bandwidth
        # Per destination: send JPEGs shrunk to (max_edge, quality); the original stays as it is.
        self._downscale = dict(downscale or {})
        self._destinations = dict(destinations)
        self._tz = tz
        self._capture_options = capture_options
        self._concurrency = concurrency
        # Spare workers, and how long every upload in flight must have stood still before one
        # starts: waiting for the shared bandwidth limit is not standing still, so with a limit
        # it is the time a worker's share of it takes to let one chunk out, on top.
        self._spares = concurrency if spares is None else spares
        self._hedge_after = hedge_after
        if bandwidth is not None:
            self._hedge_after += READ_CHUNK * concurrency / bandwidth.rate
        self._on_report = on_report
        self._on_file_done = on_file_done
        # Short: the writer is most likely done by then, and if not, the next
        # try sees the change again and waits once more.
        self._changed_delay = changed_delay
        # One budget for every worker: the point is to bound the whole client.
        self._budget = retry_budget if retry_budget is not None else RetryBudget()
        self._job_backoff = job_backoff
        self._read_attempts = read_attempts
        self._stopping = threading.Event()
        self._health = HealthTracker(
            outbox,
            self._destinations,
            stopping=self._stopping,
            on_back=self.wake,
            # Pauses and rate limits are waits: measured on a monotonic clock, so that setting
            # the wall clock back does not lengthen them.
            clock=clock,
            pause_seconds=pause_seconds,
            probe_base=probe_base,
            probe_cap=probe_cap,
        )
        self._cond = threading.Condition()
        self._generation = 0
        self._threads: list[threading.Thread] = []
        # Held across the paused check and the claim, so once pause() returned
        # no worker is about to claim.
        self._pause_lock = threading.Lock()
        self._paused = False

    def start(self) -> None:
        self._health.publish()
        for index in range(self._concurrency):
            thread = threading.Thread(target=self._work, name=f"uploader-{index + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)
        for index in range(self._spares):
            thread = threading.Thread(
                target=self._work,
                kwargs={"spare": True},
                name=f"uploader-spare-{index + 1}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        self._health.start(self._check_at_start)

    def wake(self) -> None:
        """New jobs are in the queue: idle workers look now instead of at their next check."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def pause(self) -> None:
        """Claim no more jobs until :meth:`resume`; uploads in flight finish as usual."""
        with self._pause_lock:
            self._paused = True

    def resume(self) -> None:
        """Claim jobs again, at once."""
        with self._pause_lock:
            self._paused = False
        self.wake()

    @property
    def paused(self) -> bool:
        return self._paused

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop claiming; give in-flight uploads up to ``timeout`` seconds to finish.

        Returns True when every worker ended in time. An upload still running
        after that keeps its job in ``uploading``; the next start puts it back.
        """
        self._stopping.set()
        self._health.wake_prober()
        self.wake()
        deadline = time.monotonic() + timeout
        threads = self._all_threads()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive()]
        self._health.join_checks(deadline)
        if alive:
            log.warning(
                "uploads still running after %.0f s; they resume at the next start", timeout
            )
        return not alive

    @property
    def alive(self) -> bool:
        """Every worker thread is running, none stuck on one job (for the service watchdog)."""
        threads = self._all_threads()
        running = bool(threads) and all(t.is_alive() for t in threads)
        return running and not self._busy.stuck()

    def health(self) -> dict[str, DestinationHealth]:
        return self._health.snapshot()

    def _all_threads(self) -> list[threading.Thread]:
        """The workers, then the probe loop: what runs as long as the uploader does."""
        return [*self._threads, *self._health.threads]

    def _work(self, *, spare: bool = False) -> None:
        """A worker's loop: claim, upload, record. A spare worker claims only while every
        upload in flight has made no progress for a while (see :data:`_HEDGE_AFTER`)."""
        while not self._stopping.is_set():
            with self._cond:
                generation = self._generation
            if spare and not self._busy.all_stalled(self._hedge_after, at_least=self._concurrency):
                # Looked at again twice per hedge time: a lock and a glance at a few clocks.
                self._idle(generation, self._hedge_after / 2)
                continue
            try:
                looked = self._outbox.now()
                with self._pause_lock:
                    paused = self._paused
                    # A spare starts only while every upload in flight stands still: a live
                    # one that stalls holds no backlog back then.
                    job = (
                        None
                        if paused
                        else self._outbox.claim(only=self._health.active(), hold=not spare)
                    )
            except OutboxError as exc:
                log.error("%s", exc)
                self._idle(generation, _IDLE_CHECK)
                continue
            if paused:
                # resume() wakes the workers.
                self._sync()
                self._idle(generation, _IDLE_CHECK)
                continue
            if job is None:
                # Nothing left to send now: what was recorded goes to the disk at once.
                self._sync()
                self._idle(generation, self._until_next_due(looked))
                continue
            if not self._sending.take(job):
                # Another version of this file is on its way to this destination: this one
                # waits its turn, so that the duplicate check then sees what that one sent.
                self._release(job, delay=_SAME_FILE_WAIT)
                continue
            try:
                with self._busy.job(
                    self._job_deadline(job), f"{job.path.name} to {job.destination}"
                ):
                    self._process(job)
            finally:
                self._sending.drop(job)
                if job.live:
                    # The backlog of its destination may have been held for it.
                    self.wake()
        self._sync()

    def _progressing(self, on_read: Callable[[int, bytes], None]) -> Callable[[int, bytes], None]:
        """``on_read`` that also notes this worker's upload as moving (bytes are going out)."""

        def read(offset: int, data: bytes) -> None:
            on_read(offset, data)
            self._busy.moved()

        return read

    def _job_deadline(self, job: Job) -> float:
        """Seconds a worker may take for ``job``: its destination's deadline for one upload
        (or a generous one), each quick retry, and this worker's share of the bandwidth limit."""
        destination = self._destinations.get(job.destination)
        if isinstance(destination, TimeBounded):
            per_try = destination.upload_deadline(job.size)
        else:
            per_try = _UNSTATED_SECONDS + job.size / _UNSTATED_RATE
        if self._bandwidth is not None:
            # Every worker draws on the one limit: at worst this one waits for all of them.
            per_try += job.size * (self._concurrency + self._spares) / self._bandwidth.rate
        return attempts_bound(per_try)

    def _sync(self, older_than: float = 0.0) -> None:
        """Put the queue's unsynced writes (the workers' completions) on the disk."""
        try:
            self._outbox.sync(older_than=older_than)
        except OutboxError as exc:
            log.error("%s", exc)

    def _idle(self, generation: int, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(
                lambda: self._generation != generation or self._stopping.is_set(), timeout
            )

    def _until_next_due(self, looked: float) -> float:
        """How long to wait after a claim at ``looked`` (the queue's clock) found nothing."""
        try:
            due = self._outbox.next_due(only=self._health.active())
        except OutboxError:
            return _IDLE_CHECK
        if due is not None and due <= looked:
            # Due when the claim looked, yet not handed out: backlog held while a live picture
            # is uploaded (see Outbox.claim). That upload's end wakes the workers.
            return _IDLE_CHECK
        # A due time is on the queue's own schedule, which no wall-clock step moves.
        wait = _IDLE_CHECK if due is None else due - self._outbox.now()
        paused = self._health.pause_left()
        if paused is not None:
            wait = min(wait, paused)
        return min(_IDLE_CHECK, max(0.01, wait))

    def _process(self, job: Job) -> None:
        """One try at a job, step by step: stat, capture time, duplicate check, send; then
        what happened is recorded (:meth:`_settle`), or classified by its error
        (:meth:`_classify`)."""
        tried = _Try(started=time.monotonic())
        destination = self._destinations[job.destination]
        try:
            refusal = self._refuse(job) if self._refuse is not None else None
            if refusal is not None:
                self._fail(job, SourceFileError(refusal), tried.started, None)
                return
            tried.before = before = self._stat(job)
            tried.capture = capture = self._capture(job)
            tried.head = head = _head(job.path, before.size)
            tried.digest, tried.copy = self._duplicate(job, before.size, head)
            if tried.copy is None:
                tried.digest = self._send(job, destination, capture, before, head, tried.digest)
        except Exception as exc:
            self._classify(job, exc, tried)
        else:
            self._settle(job, tried)

    def _stat(self, job: Job) -> _Version:
        """The version of the file that is sent: the one it holds now."""
        # Whatever the file holds now is what gets sent, even if it changed
        # after it was queued: the watcher queues that newer version too,
        # and the duplicate check then settles it without a second upload.
        before = _version(job.path)
        if (before.size, before.mtime_ns) != (job.size, job.mtime_ns):
            log.debug("%s changed since it was queued; sending its current content", job.path)
        return before

    def _duplicate(self, job: Job, size: int, head: str) -> tuple[str | None, Path | None]:
        """The duplicate check: when a file of this size and beginning is already uploaded to
        the job's destination and album, the content hash and the file with that content (if
        any); else (None, None), and nothing is read."""
        # Two workers holding identical content for the same destination
        # may both find no copy here and both upload: the gallery then has
        # it twice. Rare (the same picture written twice within one upload
        # time) and harmless, so no lock across the upload.
        if not self._outbox.may_have_uploaded(
            head, size=size, destination=job.destination, album_id=job.album_id
        ):
            return None, None
        # One of the same size and beginning is there: compare the whole content.
        digest = content_hash(job.path)
        return digest, self._find_uploaded(job, digest, size)

    def _send(
        self,
        job: Job,
        destination: Destination,
        capture: Capture,
        before: _Version,
        head: str,
        digest: str | None,
    ) -> str:
        """Upload the file (with the quick retries); its content hash (``digest`` if known)."""
        hashing = _StreamHash()
        item = self._item(
            job,
            capture,
            before,
            on_read=self._progressing(hashing.feed),
            guard=_unchanged_guard(job.path, before, head),
        )
        with self._shrunk(job, item) as sent:
            for attempt in attempt_policy(self._stopping, budget=self._budget):
                with attempt:
                    began = time.monotonic()
                    destination.upload(sent)
                    # The answer came: moving, not standing still, while it is recorded.
                    self._busy.took(time.monotonic() - began)
        if digest is not None:
            return digest
        # Hashed on the way out, unless the destination read the file otherwise
        # (a copy to a folder, a shrunk copy).
        return hashing.hexdigest(before.size) or content_hash(job.path)

    def _classify(self, job: Job, exc: Exception, tried: _Try) -> None:
        """Record a try that raised, by what its error says: of the destination (paused,
        offline, rate-limited, try again later), of the file (changed, gone, unreadable,
        refused), of the queue, or a bug. Called while ``exc`` is being handled."""
        started, capture = tried.started, tried.capture
        if isinstance(exc, DestinationUnavailable):
            self._release(job)
            self._health.unauthorized(job.destination, exc)
            self._report(job, "paused", started, capture, str(exc))
        elif isinstance(exc, NetworkError):
            self._unreachable(job, exc, started, capture)
        elif isinstance(exc, ServerBusy) and exc.status == 429:
            self._rate_limited(job, exc, started, capture)
        elif isinstance(exc, RetryableError):
            self._retry_later(job, exc, started, capture)
        elif isinstance(exc, SourceFileError):
            # A body cut off because the file changed while it was sent, a destination that
            # read a file while it shrank, or a hash cut short by a replace: a change to
            # send again, not a bad file.
            if isinstance(exc, SourceChanged) or (
                tried.before is not None and _changed(job.path, tried.before)
            ):
                self._send_again(job, started, capture)
            else:
                self._source_error(job, exc, started, capture)
        elif isinstance(exc, FileRejected | UploadError):
            self._fail(job, exc, started, capture)
        elif isinstance(exc, OutboxError):
            log.error("%s", exc)
        else:
            # A bug, not a gallery's answer: keep the file queued and say so.
            log.exception("unexpected error uploading %s to %s", job.path, job.destination)
            self._retry_later(job, exc, started, capture)

    def _settle(self, job: Job, tried: _Try) -> None:
        """Record a try that went through: done, unless the file changed meanwhile (then it
        goes again)."""
        # Set before anything else ran.
        assert tried.before is not None and tried.digest is not None
        if _changed(job.path, tried.before):
            self._send_again(job, tried.started, tried.capture)
        else:
            assert tried.head is not None
            self._complete(
                job, tried.capture, tried.started, (tried.digest, tried.head), tried.copy
            )

    def _find_uploaded(self, job: Job, digest: str, size: int) -> Path | None:
        """A file with this content already uploaded to the job's destination and album.

        Jobs uploaded before the hash became XXH3-128 have only a SHA-256: the file is hashed
        that way too, but only when one of them had its size (nearly never).
        """
        outbox, destination, album_id = self._outbox, job.destination, job.album_id
        copy = outbox.find_uploaded(digest, destination=destination, album_id=album_id)
        if copy is None and outbox.has_sha256_of_size(
            size, destination=destination, album_id=album_id
        ):
            sha256 = _sha256(job.path)
            copy = outbox.find_uploaded_sha256(sha256, destination=destination, album_id=album_id)
        return copy

    @contextmanager
    def _shrunk(self, job: Job, item: UploadItem) -> Iterator[UploadItem]:
        """``item``, or a shrunk copy of it for a destination with ``max_edge`` (removed after)."""
        wanted = self._downscale.get(job.destination)
        if wanted is None or item.content_type != "image/jpeg":
            yield item
            return
        from boothsync.downscale import downscale  # Pillow is loaded only when it is needed

        with tempfile.TemporaryDirectory(prefix="boothsync-shrunk-") as folder:
            small = downscale(
                job.path, max_edge=wanted.max_edge, quality=wanted.quality, into=Path(folder)
            )
            if small is None:
                yield item
            else:
                # What is sent is not the original: it is hashed from its own file.
                size = small.stat().st_size
                yield replace(item, path=small, size=size, on_read=None)

    def _capture(self, job: Job) -> Capture:
        if job.taken_at_ms is not None and job.taken_at_source:
            return Capture(taken_at_ms=job.taken_at_ms, source=job.taken_at_source)
        return capture_time(job.path, self._tz, options=self._capture_options)

    def _item(
        self,
        job: Job,
        capture: Capture,
        version: _Version,
        on_read: Callable[[int, bytes], None] | None = None,
        guard: Callable[[], None] | None = None,
    ) -> UploadItem:
        return UploadItem(
            # A link (one the watch allows) is read as the file it leads to, by that name.
            path=Path(os.path.realpath(job.path)) if os.path.islink(job.path) else job.path,
            file_name=upload_name(job.path.name),
            size=version.size,
            content_type=content_type(job.path),
            taken_at_ms=capture.taken_at_ms,
            album_id=job.album_id,
            bandwidth=self._bandwidth,
            on_read=on_read,
            guard=guard,
        )

    def _complete(
        self,
        job: Job,
        capture: Capture | None,
        started: float,
        hashes: tuple[str, str],
        copy: Path | None = None,
    ) -> None:
        """Record the job done: uploaded, or (``copy``) already there with the same content.
        ``hashes``: the content's XXH3-128 and its head's (see :func:`_head`)."""
        note = f"same content as {copy.name}, already uploaded" if copy is not None else None
        try:
            # Not synced on its own: in a burst one sync every _SYNC_DELAY takes the
            # completions of all workers to the disk (a sync per picture held every other
            # worker's queue access up behind it), and an idle worker syncs at once.
            done = self._outbox.complete(
                job.id,
                taken_at_ms=capture.taken_at_ms if capture else None,
                taken_at_source=capture.source if capture else None,
                xxh128=hashes[0],
                head=hashes[1],
                note=note,
                synced=False,
            )
            self._outbox.sync(older_than=_SYNC_DELAY)
        except OutboxError as exc:
            log.error("%s", exc)
            return
        if note is not None:
            log.info("%s not sent to %s again: %s", job.path.name, job.destination, note)
            self._report(job, "duplicate", started, capture, None, note)
        else:
            self._health.uploaded(job.destination)
            log.info("uploaded %s to %s", job.path.name, job.destination)
            self._report(job, "uploaded", started, capture, None)
        if done:
            self._file_done(job)

    def _file_done(self, job: Job) -> None:
        if self._on_file_done is not None:
            try:
                self._on_file_done(job)
            except Exception:
                log.exception("after-upload step failed for %s", job.path)

    def _send_again(self, job: Job, started: float, capture: Capture | None) -> None:
        """The file changed (or vanished) while it was hashed or sent: try it again soon.

        The attempt is not counted: neither the file nor the destination did
        anything wrong, and a job that is backed off for it would leave a
        stale copy in the gallery for longer. A file that vanished fails on the
        next try, with that reason.
        """
        if self._stopping.is_set():
            self._release(job)
            return
        try:
            self._outbox.retry_later(
                job.id, delay=self._changed_delay, error=_CHANGED_ERROR, count_attempt=False
            )
        except OutboxError as exc:
            log.error("%s", exc)
        log.info("%s to %s: %s", job.path.name, job.destination, _CHANGED_ERROR)
        self._report(job, "waiting", started, capture, _CHANGED_ERROR)

    def _retry_later(
        self,
        job: Job,
        exc: Exception,
        started: float,
        capture: Capture | None,
        *,
        unreadable: bool = False,
    ) -> None:
        if self._stopping.is_set():
            self._release(job)
            return
        delay = self._job_backoff(job.attempts)
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            delay = max(delay, exc.retry_after)
        message = str(exc) or type(exc).__name__
        try:
            self._outbox.retry_later(job.id, delay=delay, error=message, unreadable=unreadable)
        except OutboxError as db_exc:
            log.error("%s", db_exc)
        log.warning(
            "%s to %s: %s; trying again in %.0f s", job.path.name, job.destination, message, delay
        )
        self._report(job, "waiting", started, capture, message)

    def _unreachable(
        self, job: Job, exc: NetworkError, started: float, capture: Capture | None
    ) -> None:
        """No answer even after the quick retries: is it the network, or this one request?

        One probe decides. If the destination answers it, the trouble was this
        request (a reset, a PUT too slow for the timeout): the job backs off as
        usual. If not, the destination is offline: the job goes back uncounted
        (the file did nothing wrong), no more jobs of it are claimed, and the
        probe thread takes over. Files in flight that hit the same outage are
        handed back quietly: one line for the outage, not one per file.
        """
        if self._stopping.is_set():
            self._release(job)
            return
        name = job.destination
        if not self._health.unreachable(name):
            self._retry_later(job, exc, started, capture)
            return
        message = str(exc) or type(exc).__name__
        try:
            self._outbox.retry_later(job.id, delay=0.0, error=message, count_attempt=False)
        except OutboxError as db_exc:
            log.error("%s", db_exc)
        self._health.offline(name, message)
        log.debug("%s to %s waits for the destination to be reachable", job.path.name, name)
        self._report(job, "waiting", started, capture, message)

    def _rate_limited(
        self, job: Job, exc: ServerBusy, started: float, capture: Capture | None
    ) -> None:
        """429: this destination waits until the server's Retry-After; the others go on.

        The server asked us to slow down, the file did nothing wrong: the
        attempt is not counted, and the job is due when the wait ends.
        """
        if self._stopping.is_set():
            self._release(job)
            return
        name = job.destination
        delay = exc.retry_after
        if delay is None:
            delay = self._job_backoff(max(1, job.attempts))
        message = str(exc) or type(exc).__name__
        try:
            self._outbox.retry_later(job.id, delay=delay, error=message, count_attempt=False)
        except OutboxError as db_exc:
            log.error("%s", db_exc)
        self._health.rate_limited(name, message, delay)
        self._report(job, "waiting", started, capture, message)
        # Idle workers may be waiting for this destination's next due job.
        self.wake()

    def _source_error(
        self, job: Job, exc: SourceFileError, started: float, capture: Capture | None
    ) -> None:
        """The picture itself is the problem: gone for good, or not readable (yet).

        A missing file is dropped from the queue at once, with one warning: there is nothing
        left to upload, and a failure nobody can retry would keep the tray red for ever. Should
        it come back, the watcher queues it anew. An unreadable one (permissions, a lock held
        by the booth software) may be fixed by then, so it is tried again with
        the job backoff for a while before it fails with the reason; marked
        unreadable, so that the watcher makes it due at once (even once failed)
        when a change of its permissions or a scan finds it readable.
        """
        if _missing(job.path, exc):
            self._forget_vanished(job, started, capture)
            return
        if job.attempts >= self._read_attempts:
            self._fail(job, exc, started, capture, unreadable=True)
        else:
            self._retry_later(job, exc, started, capture, unreadable=True)

    def _fail(
        self,
        job: Job,
        exc: Exception,
        started: float,
        capture: Capture | None,
        *,
        unreadable: bool = False,
    ) -> None:
        message = str(exc)
        try:
            self._outbox.fail(job.id, error=message, unreadable=unreadable)
        except OutboxError as db_exc:
            log.error("%s", db_exc)
        log.error("%s not uploaded to %s: %s", job.path.name, job.destination, message)
        self._report(job, "failed", started, capture, message)

    def _forget_vanished(self, job: Job, started: float, capture: Capture | None) -> None:
        message = f"missing: {job.path} vanished"
        try:
            self._outbox.forget_vanished(job.id)
        except OutboxError as exc:
            log.error("%s", exc)
        log.warning(
            "%s was deleted before it was uploaded to %s; it is dropped from the queue",
            job.path,
            job.destination,
        )
        self._report(job, "gone", started, capture, message)

    def _release(self, job: Job, *, delay: float = 0.0) -> None:
        try:
            self._outbox.release(job.id, delay=delay)
        except OutboxError as exc:
            log.error("%s", exc)

    def _report(
        self,
        job: Job,
        outcome: str,
        started: float,
        capture: Capture | None,
        error: str | None,
        note: str | None = None,
    ) -> None:
        if self._on_report is None:
            return
        report = UploadReport(
            job=job,
            outcome=outcome,
            seconds=time.monotonic() - started,
            capture=capture,
            error=error,
            note=note,
        )
        try:
            self._on_report(report)
        except Exception:
            log.exception("report callback failed")


def _missing(path: Path, exc: SourceFileError) -> bool:
    """Whether a source-file error means the file is gone (not merely unreadable)."""
    if isinstance(exc.__cause__, FileNotFoundError):
        return True
    try:
        os.stat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def _version(path: Path) -> _Version:
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise SourceFileError(f"missing: {path} vanished") from exc
    except OSError as exc:
        raise SourceFileError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    return _Version(
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
        inode=(st.st_dev, st.st_ino),
    )


def _unchanged_guard(path: Path, before: _Version, head: str) -> Callable[[], None]:
    """The check an upload makes before its last bytes go (:attr:`UploadItem.guard`): the
    file is still the version stat'ed before it was sent, and its first 64 KiB still hash as
    they did (a rewrite within one tick of the file system's clock leaves the times as they
    were, not the bytes). Raises SourceChanged otherwise."""

    def check() -> None:
        try:
            same = not _changed(path, before) and _head(path, before.size) == head
        except SourceFileError:
            same = False
        if not same:
            raise SourceChanged(f"{path}: changed while it was being sent")

    return check


def _changed(path: Path, before: _Version) -> bool:
    """Whether the file is no longer the version stat'ed before it was hashed (or is gone)."""
    try:
        return _version(path) != before
    except SourceFileError:
        return True


class _Sending:
    """The files on their way to each destination now: (path, destination) pairs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pairs: set[tuple[Path, str]] = set()

    def take(self, job: Job) -> bool:
        """Mark ``job``'s file as on its way to its destination; False if it already is."""
        pair = (job.path, job.destination)
        with self._lock:
            if pair in self._pairs:
                return False
            self._pairs.add(pair)
            return True

    def drop(self, job: Job) -> None:
        with self._lock:
            self._pairs.discard((job.path, job.destination))


class _Busy:
    """Which job each worker is on, by when it should be done (for :attr:`Uploader.alive`),
    when its upload last moved, and how long the last uploads took (for the spare workers)."""

    def __init__(self, grace: float) -> None:
        self._grace = grace
        self._lock = threading.Lock()
        self._until: dict[str, tuple[float, str]] = {}  # worker -> (deadline, what)
        self._moved: dict[str, float] = {}  # worker -> when its job last made progress
        self._told: set[str] = set()
        self._durations: deque[float] = deque(maxlen=_DURATIONS_KEPT)

    @contextmanager
    def job(self, seconds: float, what: str) -> Iterator[None]:
        worker = threading.current_thread().name
        now = time.monotonic()
        with self._lock:
            self._until[worker] = (now + seconds, what)
            self._moved[worker] = now
        try:
            yield
        finally:
            with self._lock:
                del self._until[worker]
                del self._moved[worker]
                self._told.discard(worker)

    def moved(self) -> None:
        """The calling worker's upload made progress (bytes went out)."""
        worker = threading.current_thread().name
        with self._lock:
            if worker in self._moved:
                self._moved[worker] = time.monotonic()

    def took(self, seconds: float) -> None:
        """The calling worker's upload went through in ``seconds`` (its request, from its
        first byte to the answer)."""
        worker = threading.current_thread().name
        with self._lock:
            self._durations.append(seconds)
            if worker in self._moved:
                self._moved[worker] = time.monotonic()

    def all_stalled(self, after: float, *, at_least: int) -> bool:
        """Whether at least ``at_least`` workers are busy and none of them made progress in the
        last ``after`` seconds, nor in the time most recent uploads took (see
        :data:`_DURATIONS_KEPT`)."""
        now = time.monotonic()
        with self._lock:
            if len(self._moved) < at_least:
                return False
            if self._durations:
                after = max(after, sorted(self._durations)[len(self._durations) // 4])
            return all(now - moved >= after for moved in self._moved.values())

    def stuck(self) -> bool:
        """Whether a worker is busy more than the grace past its job's deadline (said once)."""
        now = time.monotonic()
        with self._lock:
            late = [
                (w, what, now - at)
                for w, (at, what) in self._until.items()
                if now > at + self._grace
            ]
            news = [entry for entry in late if entry[0] not in self._told]
            self._told.update(worker for worker, _, _ in news)
        for worker, what, over in news:
            log.error("%s is stuck: %s is %.0f s past its deadline", worker, what, over)
        return bool(late)


class _StreamHash:
    """The XXH3-128 of a file's bytes as a destination reads them to send them
    (:attr:`UploadItem.on_read`): bytes read again (a retry) count once; a gap leaves it
    incomplete, and then the file is hashed on its own."""

    def __init__(self) -> None:
        self._digest = xxhash.xxh3_128()
        self._position = 0

    def feed(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        if offset <= self._position < end:
            self._digest.update(memoryview(data)[self._position - offset :])
            self._position = end

    def hexdigest(self, size: int) -> str | None:
        """The hash when exactly ``size`` bytes were seen from the start, else None."""
        return self._digest.hexdigest() if self._position == size else None


def _head(path: Path, size: int) -> str:
    """XXH3-64 of the size and the first :data:`_HEAD_BYTES` bytes: two files with
    different heads cannot have the same content."""
    try:
        with path.open("rb") as handle:  # buffered: reads until it has them all, or the end
            start = handle.read(_HEAD_BYTES)
    except FileNotFoundError as exc:
        raise SourceFileError(f"missing: {path} vanished") from exc
    except OSError as exc:
        raise SourceFileError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    return xxhash.xxh3_64(size.to_bytes(8, "little") + start).hexdigest()


def content_hash(path: Path) -> str:
    """The file's XXH3-128 in hex: the content hash the duplicate check records for every
    upload (and the engine compares before it moves or deletes a picture)."""
    return _hash(path, xxhash.xxh3_128())


def _sha256(path: Path) -> str:
    """The file's SHA-256 in hex (the content hash of jobs uploaded by older versions)."""
    return _hash(path, hashlib.sha256())


def _hash(path: Path, digest: _Digest) -> str:
    """Feed the file to ``digest`` in chunks, never all of it in memory; its hex digest."""
    buffer = bytearray(_HASH_CHUNK)
    view = memoryview(buffer)
    try:
        with path.open("rb", buffering=0) as handle:
            while read := handle.readinto(buffer):
                digest.update(view[:read])
    except FileNotFoundError as exc:
        raise SourceFileError(f"missing: {path} vanished") from exc
    except OSError as exc:
        raise SourceFileError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    return digest.hexdigest()
