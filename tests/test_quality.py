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
