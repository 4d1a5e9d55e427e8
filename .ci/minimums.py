"""Print a pip constraints file that pins every direct dependency to its lower bound.

Read from pyproject.toml (the dependencies and the test extra), so the versions CI tests as
"the lowest allowed" are always the ones pyproject.toml promises: a bound cannot drift from
what is tested. Requirements whose environment marker does not apply here are left out.

    python3 .ci/minimums.py > lowest.txt
    pip install -c lowest.txt -e '.[test]'
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_LOWER = re.compile(r">=\s*([0-9][A-Za-z0-9.]*)")


def applies(marker: str) -> bool:
    """The few markers pyproject.toml uses: ``sys_platform == "..."``."""
    found = re.fullmatch(r"""\s*sys_platform\s*==\s*["']([^"']+)["']\s*""", marker)
    if found is None:
        raise SystemExit(f"minimums.py: cannot read the environment marker {marker!r}")
    return sys.platform == found.group(1)


def main() -> int:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    for requirement in requirements:
        spec, _, marker = requirement.partition(";")
        if marker and not applies(marker):
            continue
        name = _NAME.match(spec)
        lower = _LOWER.search(spec)
        if name is None:
            raise SystemExit(f"minimums.py: cannot read the requirement {requirement!r}")
        if lower is None:
            # Without a lower bound there is nothing to pin; say so rather than test "any".
            raise SystemExit(f"minimums.py: {name.group(1)} has no lower bound (>=) to test")
        print(f"{name.group(1)}=={lower.group(1)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
