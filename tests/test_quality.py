"""House rules the code keeps: lint, strict types, and an honest public surface."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import boothsync

ROOT = Path(__file__).resolve().parents[1]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_finds_nothing() -> None:
    """The code and tests pass ruff's lint and formatting checks."""
    lint = run("ruff", "check", "boothsync", "tests")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    style = run("ruff", "format", "--check", "boothsync", "tests")
    assert style.returncode == 0, style.stdout + style.stderr


def test_mypy_strict_passes() -> None:
    """boothsync/ type-checks under mypy --strict."""
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def modules() -> list[str]:
    # __main__ runs the command when imported: it has nothing to export.
    names = [m.name for m in pkgutil.walk_packages(boothsync.__path__, "boothsync.")]
    return [n for n in names if n != "boothsync.__main__"]


@pytest.mark.parametrize("name", ["boothsync", *modules()])
def test_all_names_exist(name: str) -> None:
    """Every name a module lists in __all__ exists, and every module says what it exports."""
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"


def test_package_exports_are_sorted_and_public() -> None:
    """The package's own surface is the version and the error tree, nothing private."""
    assert boothsync.__all__ == sorted(boothsync.__all__)
    assert all(not n.startswith("_") or n == "__version__" for n in boothsync.__all__)


@pytest.mark.parametrize("name", modules())
def test_every_module_says_what_it_owns(name: str) -> None:
    """Each module opens with a docstring (what it owns, what it must not do)."""
    module = importlib.import_module(name)
    assert (module.__doc__ or "").strip(), f"{name} has no module docstring"


def test_headless_daemon_does_not_import_the_tray() -> None:
    """The service code path never imports pystray (it needs a display)."""
    code = "import sys, boothsync.daemon, boothsync.cli; print('pystray' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_ci_runs_the_test_commands_the_readme_gives() -> None:
    """`.ci/run` runs exactly the test commands of the README's Development section (the
    newest and the lowest allowed dependencies), each as a line of its own, in that order, so
    a fresh clone runs what CI runs."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Development", 1)[1]
    commands = [
        line.strip()
        for block in section.split("```sh")[1:]
        for line in block.split("```", 1)[0].splitlines()
        if ".venv" in line and line.strip().endswith("-m pytest")  # the whole suite
    ]
    assert len(commands) == 2, commands
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    found = [line for line in ci if line in commands]
    assert found == commands, found


def test_every_lower_bound_is_pinned_for_the_lowest_run() -> None:
    """`.ci/minimums.py` pins each direct dependency of pyproject.toml (test tools too) to its
    lower bound, so the lowest run tests every bound pyproject.toml states."""
    result = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "minimums.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    pins = dict(line.split("==") for line in result.stdout.split())
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    for name, version in pins.items():
        assert f'"{name}>={version}' in pyproject, (name, version)
    assert {"watchdog", "httpx", "Pillow", "pystray", "pytest", "mypy"} <= set(pins)
