"""``python -m boothsync`` does the same as the ``boothsync`` command."""

from __future__ import annotations

from boothsync.cli import main

raise SystemExit(main())
