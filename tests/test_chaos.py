"""The chaos run, small: a daemon killed and restarted, a receiver that fails and goes away.

Runs ``python -m bench.chaos`` as a subprocess and reads its printed figures. No timing is
asserted beyond what the run itself judges: the machines are shared and noisy.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def figure(pattern: str, output: str) -> re.Match[str]:
    found = re.search(pattern, output, re.MULTILINE)
    assert found is not None, f"no line matching {pattern!r}:\n{output}"
    return found


def test_chaos_run_delivers_every_picture_byte_exact() -> None:
    """With 30 % of requests failing, URLs valid 2 s, the receiver away for 3 s and the daemon
    SIGKILLed twice, every picture arrives byte-exact, with at most one duplicate per upload
    cut off by a kill or the outage (two uploads at a time), and the daemon stops with exit
    code 0."""
    kills = 2
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.chaos",
            *("--files", "15", "--kills", str(kills), "--outage", "3"),
            *("--fault-rate", "0.3", "--url-lifetime", "2"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    delivered = figure(r"^delivered: +(?P<n>[0-9]+) of (?P<of>[0-9]+) byte-exact$", result.stdout)
    assert (delivered["n"], delivered["of"]) == ("15", "15"), output
    assert figure(r"^missing: +(?P<n>[0-9]+)", result.stdout)["n"] == "0", output
    assert figure(r"^damaged copies: +(?P<n>[0-9]+)$", result.stdout)["n"] == "0", output
    assert figure(r"^kills: +(?P<n>[0-9]+) ", result.stdout)["n"] == str(kills), output
    duplicates = figure(
        r"^duplicates: +(?P<n>[0-9]+) \(target <= (?P<limit>[0-9]+),", result.stdout
    )
    assert int(duplicates["limit"]) == (kills + 1) * 2, output
    assert int(duplicates["n"]) <= int(duplicates["limit"]), output
    assert figure(r"^daemon exit code: +(?P<code>\S+) ", result.stdout)["code"] == "0", output
    assert re.search(r"^result: +PASS$", result.stdout, re.MULTILINE), output
