"""The browser-test harness: Debian's chromium, headless, driven by Selenium through Debian's
chromium-driver.

Owns starting and quitting the browser (:func:`start_chromium`, :func:`quit_chromium`), the
fixtures the browser tests use (``browser``, on a module's ``chromium_driver``), the waits
(:func:`wait_for_element`, :func:`wait_for_text`) and screenshots (:func:`shot`). The fixtures
reach the tests through ``tests/conftest.py``.

Must not: download anything. The browser and its driver are Debian's, at fixed paths, and
Selenium Manager (Selenium's downloader of browsers and drivers) is kept offline for the whole
test process and never asked, as both paths are given. Must not leave a chromium process
behind, nor touch the home folder of whoever runs the tests. Where chromium or chromedriver
is missing the browser tests are skipped with the reason, unless ``CI`` is set: there they
fail, so a CI run cannot pass without them.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Literal, NamedTuple

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoAlertPresentException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from tests.helpers import wait_for

__all__ = [
    "ARTIFACTS_VARIABLE",
    "CHROMEDRIVER",
    "CHROMIUM",
    "MARK_VARIABLE",
    "REPORTS",
    "BrowserProcess",
    "artifacts_dir",
    "browser",
    "chromium_driver",
    "chromium_missing",
    "chromium_processes",
    "fresh_start",
    "quit_chromium",
    "shot",
    "start_chromium",
    "wait_for_element",
    "wait_for_text",
]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS_VARIABLE = "BOOTHSYNC_TEST_ARTIFACTS"
"""Where screenshots go; ``<repo>/test-artifacts/`` without it."""
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
"""A test's reports by phase (setup, call, teardown), kept by the hook in tests/conftest.py."""

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 1280, 900
ARGUMENTS = (
    # chromium's own sandbox needs user namespaces, which containers and CI runners often lack,
    # and chromium run as root does not start with it at all.
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    # /dev/shm is 64 MB in a default container, too small for a renderer.
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    # Nothing reaches out on its own: no update checks, component downloads or sync.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # On a desktop, chromium would otherwise ask the keyring over D-Bus for its passwords.
    "--password-store=basic",
    f"--window-size={WIDTH},{HEIGHT}",
)
# Every process of one browser carries this variable with the browser's own value: chromium's
# crash handlers detach from the process tree, so the tree alone would miss them.
MARK_VARIABLE = "BOOTHSYNC_TEST_BROWSER"
_WAIT = 10.0

# Selenium Manager finds, or downloads, a browser and a driver when none is given. Both are
# given, which skips it (Selenium 4.20 and the newest alike); should a release run it all the
# same, it stays offline (SE_OFFLINE, which the selenium-manager of both honours), downloads
# no browser and sends no statistics. Newer releases take SE_CHROMEDRIVER over the path the
# Service is given: it names Debian's driver too, so a value from the caller's shell cannot
# swap in another driver.
os.environ.update(
    SE_OFFLINE="true",
    SE_AVOID_BROWSER_DOWNLOAD="true",
    SE_AVOID_STATS="true",
    SE_CHROMEDRIVER=CHROMEDRIVER,
)


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None when chromium and its driver are there."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not missing:
        return None
    return (
        f"{' and '.join(missing)} not found: the browser tests need Debian's chromium and "
        "chromium-driver (sudo apt install chromium chromium-driver)"
    )


def _require_chromium() -> None:
    reason = chromium_missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so the browser tests must run", pytrace=False)
    pytest.skip(reason)


def start_chromium(workdir: Path) -> WebDriver:
    """Start headless chromium on a new empty profile under ``workdir``; its home folder is
    there too (chromium keeps crash reports and caches under $HOME whatever the profile).

    Skips the calling test where chromium or chromedriver is missing, or fails it under CI.
    End it with :func:`quit_chromium`.
    """
    _require_chromium()
    profile = workdir / "profile"
    home = workdir / "home"
    profile.mkdir(parents=True)
    home.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ARGUMENTS:
        options.add_argument(argument)
    options.add_argument(f"--user-data-dir={profile}")
    # An alert stays open until a test looks for it: under the default ("dismiss and notify")
    # the next command would close it, and a test could miss a script that ran.
    options.unhandled_prompt_behavior = "ignore"
    environment = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        MARK_VARIABLE: uuid.uuid4().hex,
    }
    service = Service(executable_path=CHROMEDRIVER, env=environment)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


class BrowserProcess(NamedTuple):
    """One process of a browser; ``start`` (clock ticks after boot) tells a reused pid apart."""

    pid: int
    start: int
    name: str


def _read_process(pid: int) -> tuple[BrowserProcess, int, str] | None:
    """The process, its parent's pid and its state; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ... starttime ...": comm may hold spaces and parentheses.
    name = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    return BrowserProcess(pid, int(fields[19]), name), int(fields[1]), fields[0]


def _carries(pid: int, mark: bytes) -> bool:
    try:
        return mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # gone, or another user's
        return False


def chromium_processes(driver: WebDriver) -> set[BrowserProcess]:
    """The running processes of ``driver``'s browser: chromedriver, everything below it, and
    the crash handlers that detached from it (found by the mark in their environment)."""
    return _processes(driver.service.process.pid, driver.service.env[MARK_VARIABLE])


def _processes(root: int, mark: str) -> set[BrowserProcess]:
    entry_of_mark = f"{MARK_VARIABLE}={mark}".encode()
    children: dict[int, list[int]] = {}
    known: dict[int, BrowserProcess] = {}
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        read = _read_process(int(entry.name))
        if read is None or read[2] in "ZX":
            continue
        process, parent, _ = read
        known[process.pid] = process
        children.setdefault(parent, []).append(process.pid)
        if _carries(process.pid, entry_of_mark):
            found.add(process)
    todo = [root] if root in known else []
    while todo:
        pid = todo.pop()
        found.add(known[pid])
        todo.extend(children.get(pid, []))
    return found


def _still_running(processes: set[BrowserProcess]) -> list[BrowserProcess]:
    running = []
    for process in processes:
        read = _read_process(process.pid)
        if read is not None and read[0].start == process.start and read[2] not in "ZX":
            running.append(process)
    return running


def quit_chromium(driver: WebDriver, *, timeout: float = 10.0) -> None:
    """Quit the browser and wait until none of its processes runs any more.

    A process still running at the deadline is killed (it is one of this browser's) and the
    caller fails with the list.
    """
    root, mark = driver.service.process.pid, driver.service.env[MARK_VARIABLE]
    processes = _processes(root, mark)

    def left() -> list[BrowserProcess]:
        return _still_running(processes | _processes(root, mark))

    try:
        driver.quit()
    finally:
        with suppress(AssertionError):
            wait_for(lambda: not left(), timeout=timeout, what="every chromium process to end")
        leftovers = left()
        for process in leftovers:
            with suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
        if leftovers:
            names = ", ".join(f"{p.name} ({p.pid})" for p in sorted(leftovers))
            raise AssertionError(f"chromium processes left after quit: {names}")


def fresh_start(driver: WebDriver) -> None:
    """Make a used browser look new to a page: one blank window at the usual size, no alert,
    no cookies, no cached answers, and no stored data (local storage, IndexedDB, service
    workers) of any origin in the history of a window still open. Storage of an origin seen
    only in a window that was closed stays; each test's server has a port of its own anyway,
    so an origin of its own."""
    handles = driver.window_handles
    origins = set()
    for handle in handles:
        driver.switch_to.window(handle)
        with suppress(NoAlertPresentException):
            driver.switch_to.alert.dismiss()
        history = driver.execute_cdp_cmd("Page.getNavigationHistory", {})
        for entry in history["entries"]:
            if found := re.match(r"https?://[^/]+", entry["url"]):
                origins.add(found.group())
        if handle != handles[0]:
            driver.close()
    driver.switch_to.window(handles[0])
    driver.get("about:blank")
    driver.set_window_size(WIDTH, HEIGHT)
    driver.implicitly_wait(0)
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    for origin in origins:
        driver.execute_cdp_cmd(
            "Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"}
        )


@pytest.fixture(scope="module")
def chromium_driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """One chromium for a test module (it takes about a second to start); tests take it
    through ``browser``, which hands it over fresh."""
    driver = start_chromium(tmp_path_factory.mktemp("chromium"))
    try:
        yield driver
    finally:
        quit_chromium(driver)


@pytest.fixture
def browser(chromium_driver: WebDriver, request: pytest.FixtureRequest) -> Iterator[WebDriver]:
    """Headless chromium on a blank page with an empty cookie jar; a screenshot named
    ``<test>-failed.png`` is taken when the test fails (and one from an earlier run removed
    when it starts)."""
    _shot_path(request, "failed").unlink(missing_ok=True)
    fresh_start(chromium_driver)
    yield chromium_driver
    report = request.node.stash.get(REPORTS, {}).get("call")
    if report is not None and report.failed:
        with suppress(WebDriverException):  # a dead browser fails the test already
            shot(chromium_driver, request, "failed")
    fresh_start(chromium_driver)


def artifacts_dir() -> Path:
    """Where screenshots go: ``$BOOTHSYNC_TEST_ARTIFACTS``, or else ``<repo>/test-artifacts``."""
    return Path(os.environ.get(ARTIFACTS_VARIABLE) or ROOT / "test-artifacts")


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def shot(driver: WebDriver, request: pytest.FixtureRequest, step: str) -> Path:
    """Save a screenshot of the page as ``<test module>.<test name>-<step>.png`` in
    :func:`artifacts_dir` and return its path."""
    path = _shot_path(request, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        raise AssertionError(f"chromium took no screenshot for {path.name}")
    return path


def _shot_path(request: pytest.FixtureRequest, step: str) -> Path:
    module = _file_part(Path(request.node.path).stem)
    return artifacts_dir() / f"{module}.{_file_part(request.node.name)}-{_file_part(step)}.png"


def _wait(driver: WebDriver, timeout: float) -> WebDriverWait[WebDriver]:
    # The page under test may replace itself (a refresh) between a find and a read.
    return WebDriverWait(
        driver, timeout, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)
    )


def wait_for_element(
    driver: WebDriver, by: str, value: str, *, timeout: float = _WAIT
) -> WebElement:
    """The first element ``by``/``value`` finds, once there is one; fails the test at the
    deadline."""

    def found(driver: WebDriver) -> WebElement | Literal[False]:
        elements = driver.find_elements(by, value)
        return elements[0] if elements else False

    try:
        return _wait(driver, timeout).until(found)
    except TimeoutException:
        raise AssertionError(
            f"timed out after {timeout}s waiting for an element {by}={value!r} on "
            f"{driver.current_url}"
        ) from None


def wait_for_text(
    driver: WebDriver,
    text: str,
    *,
    by: str = By.TAG_NAME,
    value: str = "body",
    timeout: float = _WAIT,
) -> WebElement:
    """The first element ``by``/``value`` finds whose rendered text contains ``text``, once
    there is one; fails the test at the deadline, quoting the page's text."""

    def found(driver: WebDriver) -> WebElement | Literal[False]:
        for element in driver.find_elements(by, value):
            if text in element.text:
                return element
        return False

    try:
        return _wait(driver, timeout).until(found)
    except TimeoutException:
        page = ""
        with suppress(WebDriverException):
            page = driver.find_element(By.TAG_NAME, "body").text[:2000]
        raise AssertionError(
            f"timed out after {timeout}s waiting for {text!r} in an element {by}={value!r} "
            f"on {driver.current_url}; the page says:\n{page}"
        ) from None
