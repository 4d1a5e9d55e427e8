"""Stand-ins for the galleries boothsync has no local receiver for, used by the tests only.

``picsui`` and ``picpeak`` answer as those services answer, with fault injection; they do not
ship in the package. The EventPics receiver is part of boothsync (``boothsync demo`` and
``boothsync receiver`` serve it) and lives in ``boothsync.receiver``.
"""
