"""The benchmarks run: a tiny configuration finishes and prints every figure.

Only that they run. No timing, CPU or memory figure is asserted: the machines are shared
and noisy, and the benchmarks print their targets rather than enforce them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A figure, or "n/a" where the platform cannot measure it.
FIGURE = r"(?:[0-9]+\.[0-9]+|n/a)"


def test_idle_benchmark_runs_and_reports_every_mode() -> None:
    """`python -m bench.idle` in a tiny configuration exits 0 and prints CPU, % of a core,
    ratio, peak RSS, start-to-ready time and uploads for the baseline, native and polling
    runs, with no known file uploaded again."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.idle",
            *("--seconds", "2", "--files", "200", "--poll-interval", "0.5"),
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
    for mode, files in (("baseline", 0), ("native", 200), ("polling", 200)):
        row = re.search(
            rf"^{mode} +{files}( +{FIGURE}){{4}} +[0-9]+\.[0-9]+ +(?P<uploads>[0-9]+) +\S",
            result.stdout,
            re.MULTILINE,
        )
        assert row is not None, f"no figures for {mode}:\n{output}"
        assert row["uploads"] == "0", output
        assert f"{mode}: {files} file(s)" in result.stdout
