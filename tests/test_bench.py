"""The benchmarks run: a tiny configuration finishes and prints every figure.

Only that they run. No timing, CPU or memory figure is asserted: the machines are shared
and noisy, and the benchmarks print their targets rather than enforce them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from bench.idle import write_config

ROOT = Path(__file__).resolve().parents[1]

# A figure, or "n/a" where the platform cannot measure it.
FIGURE = r"(?:[0-9]+\.[0-9]+|n/a)"


def _run_bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m ARGS`` from the repository root, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_idle_benchmark_runs_and_reports_every_mode() -> None:
    """`python -m bench.idle` in a tiny configuration exits 0 and prints CPU, % of a core,
    ratio, peak RSS, start-to-ready time and uploads for the baseline, native, dashboard
    (served, and with a page open) and polling runs, with no known file uploaded again."""
    result = _run_bench("bench.idle", "--seconds", "2", "--files", "200", "--poll-interval", "0.5")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    modes = (("baseline", 0), ("native", 200), ("web", 200), ("web+page", 200), ("polling", 200))
    for mode, files in modes:
        row = re.search(
            rf"^{re.escape(mode)} +{files}( +{FIGURE}){{4}}"
            rf" +[0-9]+\.[0-9]+ +(?P<uploads>[0-9]+) +\S",
            result.stdout,
            re.MULTILINE,
        )
        assert row is not None, f"no figures for {mode}:\n{output}"
        assert row["uploads"] == "0", output
        assert f"{mode}: {files} file(s)" in result.stdout


def test_latency_benchmark_runs_and_reports_both_modes() -> None:
    """`python -m bench.latency` with 3 small drops per mode exits 0 and prints the baseline
    and, for pictures written in place and renamed in, p50, p95 and max with their ratios to
    the baseline and the target."""
    result = _run_bench("bench.latency", "--drops", "3", "--size-mb", "0.2")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert re.search(r"^machine: \S", result.stdout, re.MULTILINE), output
    assert re.search(r"baseline \(bare POST \+ PUT, p50 of \d+\): [0-9.]+ ms", result.stdout)
    for mode in ("in place", "renamed"):
        row = re.search(
            rf"^{mode} +3( +[0-9]+\.[0-9]+){{5}} +target p50 <= 300 ms",
            result.stdout,
            re.MULTILINE,
        )
        assert row is not None, f"no figures for {mode}:\n{output}"


def test_burst_benchmark_runs_and_reports_daemon_and_floor() -> None:
    """`python -m bench.burst` with 8 small files and 2 rounds exits 0 and prints every floor
    run and every daemon run (seconds, MB/s, CPU seconds of both sides), then the ratio of the
    medians beside the target."""
    result = _run_bench("bench.burst", "--files", "8", "--size-mb", "0.2", "--rounds", "2")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert re.search(r"^machine: \S", result.stdout, re.MULTILINE), output
    for name in ("floor 1", "boothsync 1", "floor 2", "boothsync 2", "floor 3"):
        # seconds, MB/s, then the uploading side's and the receiver's CPU seconds
        row = re.search(
            rf"^{name} +8 +[0-9]+\.[0-9]+ +[0-9]+\.[0-9]+( +{FIGURE}){{2}}$",
            result.stdout,
            re.MULTILINE,
        )
        assert row is not None, f"no figures for {name}:\n{output}"
    assert re.search(
        r"median of 2 boothsync run\(s\) [0-9.]+ s / median of 3 floor run\(s\) [0-9.]+ s"
        r" = [0-9.]+x; target <= 1\.2x: (met|MISSED)",
        result.stdout,
    ), output
    assert re.search(r"best boothsync run / best floor run: [0-9.]+x", output)


def test_restart_benchmark_runs_and_reports_ready_and_rehashes() -> None:
    """`python -m bench.restart` with 200 known files and one run of each kind exits 0 and
    prints the median start-to-ready time, ratio, bytes read, uploads and jobs for the
    baseline and the known files, the read bound, the re-hashed count and the target."""
    result = _run_bench("bench.restart", "--files", "200", "--runs", "1")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert re.search(r"^machine: \S", result.stdout, re.MULTILINE), output
    for mode, files in (("baseline", 0), ("known", 200)):
        row = re.search(
            rf"^{mode} +{files} +[0-9]+\.[0-9]+ +{FIGURE} +{FIGURE} +(?P<uploads>[0-9]+)"
            r" +[0-9]+$",
            result.stdout,
            re.MULTILINE,
        )
        assert row is not None, f"no figures for {mode}:\n{output}"
        assert row["uploads"] == "0", output
    assert re.search(r"^read beyond the baseline .*: -?[0-9.n/a]+ MB", result.stdout, re.M)
    assert re.search(r"^re-hashed: 0 picture\(s\)", result.stdout, re.MULTILINE), output
    assert re.search(
        r"^target: ready <= 3 s with none re-hashed: (met|MISSED)", result.stdout, re.MULTILINE
    ), output


def test_outbox_benchmark_runs_and_reports_rates_and_status() -> None:
    """`python -m bench.outbox` on 2,000 jobs exits 0 and prints claims+completions per
    second (one thread, four threads, bare sqlite3) with ratios and targets, and the status
    times (subprocess, read-only open, stats() alone, Python start)."""
    result = _run_bench("bench.outbox", "--jobs", "2000")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert re.search(r"^machine: \S", result.stdout, re.MULTILINE), output
    for label in ("outbox, 1 thread", "outbox, 4 threads"):
        row = re.search(
            rf"^{label} +[0-9]+ +[0-9]+\.[0-9]+ +>= 2000/s: (met|MISSED)$",
            result.stdout,
            re.MULTILINE,
        )
        assert row is not None, f"no figures for {label}:\n{output}"
    assert re.search(r"^bare sqlite3, 1 thread +[0-9]+ +1\.00", result.stdout, re.MULTILINE)
    assert re.search(
        r"^status --json, subprocess +2000 +[0-9]+\.[0-9] +[0-9]+\.[0-9]+"
        r" +<= 200 ms: (met|MISSED)$",
        result.stdout,
        re.MULTILINE,
    ), output
    for label in ("open read-only", "stats\\(\\) alone"):
        for jobs in (2000, 1000):
            assert re.search(
                rf"^{label} +{jobs} +[0-9]+\.[0-9] +[0-9]+\.[0-9]+$", result.stdout, re.MULTILINE
            ), f"no {label} at {jobs}:\n{output}"
    assert re.search(r"^python start \+ import cli +0 +[0-9]+\.[0-9]", result.stdout, re.M)


def test_one_command_runs_the_chosen_benchmarks_and_sums_up() -> None:
    """`python -m bench --quick --only outbox` runs that benchmark and ends with a summary
    giving each figure's verdict against its target."""
    result = _run_bench("bench", "--quick", "--only", "outbox", timeout=180)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "=== outbox:" in result.stdout
    summary = result.stdout.split("=== summary", 1)[1]
    assert re.search(r"^outbox: measured in [0-9]+ s$", summary, re.MULTILINE), output
    assert re.search(r">= 2000/s: (met|MISSED)", summary), output
    assert re.search(r"<= 200 ms: (met|MISSED)", summary), output


def test_recovery_benchmark_runs_and_reports_first_pictures() -> None:
    """`python -m bench.recovery` with one short outage of each kind exits 0 and prints, per
    round and in sum, when the first waiting picture arrived after the gallery's return,
    beside the target."""
    result = _run_bench(
        "bench.recovery", "--rounds", "1", "--outage", "2", "--pictures", "2", "--stall", "0.5"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    for kind in ("faulty", "healthy"):
        assert re.search(
            rf"^round +\d+ {kind} *: first picture +{FIGURE} s, all 2 +{FIGURE} s",
            result.stdout,
            re.MULTILINE,
        ), output
    assert re.search(
        rf"^first picture after a faulty return: median {FIGURE} s, worst {FIGURE} s;"
        r" target <= 10 s: (met|MISSED)$",
        result.stdout,
        re.MULTILINE,
    ), output


def test_link_self_check_runs_and_reports_rates_and_round_trips() -> None:
    """`python -m bench.link --measure` for one profile and 0.5 MB exits 0 and prints, for
    the bare loopback baseline and the link, the rate up (one connection and four), the rate
    down and the round trips, each link figure beside its set value, then the verdict."""
    result = _run_bench("bench.link", "--measure", "--profile", "venue", "--megabytes", "0.5")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert re.search(r"^machine: \S", result.stdout, re.MULTILINE), output
    for direction in ("up", "up, 4 conns", "down"):
        # Over loopback the rest of a transfer may come in one read: no time, "inf".
        assert re.search(
            rf"^direct +{direction} +n/a +(?:[0-9]+\.[0-9]+|inf) +n/a$", result.stdout, re.M
        ), f"no baseline for {direction}:\n{output}"
        assert re.search(
            rf"^venue +{direction} +20\.00 +[0-9]+\.[0-9]+ +[0-9]+\.[0-9]+$",
            result.stdout,
            re.MULTILINE,
        ), f"no figures for {direction}:\n{output}"
    assert re.search(r"^direct +n/a +[0-9.]+ +n/a +n/a +[0-9.]+ +n/a$", result.stdout, re.M)
    assert re.search(
        r"^venue +80\.0 +[0-9.]+ +[0-9.]+ +160\.0 +[0-9.]+ +[0-9.]+$", result.stdout, re.M
    ), output
    assert re.search(r"^target: .*: (met|MISSED)$", result.stdout, re.MULTILINE), output


def test_live_benchmark_runs_and_reports_fresh_pictures() -> None:
    """`python -m bench.live` with a small backlog behind a 4 Mbit/s link and two fresh
    pictures exits 0 and prints the own upload (the baseline), one backlog upload under the
    load, and for each fresh picture its latency (or that it missed the cap), the backlog
    left and gone meanwhile, and its target with the verdict."""
    result = _run_bench(
        "bench.live",
        *("--backlog", "20", "--size-mb", "0.2", "--fresh", "2", "--every", "1"),
        *("--up", "4", "--cap", "15"),
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert re.search(r"^machine: \S", result.stdout, re.MULTILINE), output
    assert re.search(r"^order: the daemon's default", result.stdout, re.MULTILINE), output
    assert re.search(
        r"^own upload \(empty queue, through the link\): median [0-9.]+ s of 3 ",
        result.stdout,
        re.M,
    ), output
    assert re.search(
        r"^one backlog upload under the load: (?:[0-9.]+ s = [0-9.]+ in flight|n/a)",
        result.stdout,
        re.MULTILINE,
    ), output
    for name in ("FRESH_01.jpg", "FRESH_02.jpg"):
        row = re.search(
            rf"^{name} +[0-9]+\.[0-9] +(?:[0-9]+\.[0-9]+|> 15) +{FIGURE} +[0-9]+ +[0-9]+"
            r"  (?:<= [0-9.]+ s: (?:met|MISSED)|n/a)",
            result.stdout,
            re.MULTILINE,
        )
        assert row is not None, f"no figures for {name}:\n{output}"
    assert re.search(
        r"^fresh pictures in the gallery within the 15 s cap: \d of 2", result.stdout, re.M
    ), output


def test_benchmark_config_has_an_upload_order_only_when_given(tmp_path: Path) -> None:
    """The benchmarks' config carries `[upload] order` only when one is given, so that
    without it the daemon's own default order applies."""

    def upload(name: str, order: str | None) -> dict[str, object]:
        config = write_config(
            tmp_path / name,
            watch=tmp_path,
            state=tmp_path / "state",
            base_url="http://127.0.0.1:9",
            upload_order=order,
        )
        table: dict[str, object] = tomllib.loads(config.read_text("utf-8"))["upload"]
        return table

    assert upload("plain.toml", None) == {"concurrency": 2}
    assert upload("live.toml", "live") == {"concurrency": 2, "order": "live"}


def test_slowlink_benchmark_runs_and_reports_every_run() -> None:
    """`python -m bench.slowlink` with 3 small files over the venue profile, without rclone,
    exits 0 and prints the floor, the bare loop and boothsync (seconds, pictures per minute,
    MB/s, fraction of the floor), the fraction against its target and the bandwidth limit's
    achieved rate against the limit."""
    result = _run_bench(
        "bench.slowlink", "--files", "3", "--size-mb", "0.2", "--profile", "venue", "--no-rclone"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert re.search(r"^machine: \S", result.stdout, re.MULTILINE), output
    for name, at_once in (("floor", ""), ("bare loop", "2 threads"), ("boothsync", "2 workers")):
        row = re.search(
            rf"^venue +{name} +3 +{re.escape(at_once)}( +[0-9]+\.[0-9]+){{4}}$",
            result.stdout,
            re.MULTILINE,
        )
        assert row is not None, f"no figures for {name}:\n{output}"
    assert not re.search(r"^venue +rclone ", result.stdout, re.MULTILINE), output
    assert re.search(
        r"^venue: boothsync [0-9.]+ of the floor; target >= 0\.90: (met|MISSED)$",
        result.stdout,
        re.MULTILINE,
    ), output
    assert re.search(
        r"^venue: bandwidth_limit 1250000 B/s, 2 file\(s\): [0-9]+ B/s = [0-9.]+x the limit;"
        r" target within 5%: (met|MISSED)$",
        result.stdout,
        re.MULTILINE,
    ), output
