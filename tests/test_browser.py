"""The browser-test harness itself (tests/browser.py): what it starts, ends and records."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

import tests.browser
from boothsync.receiver import Receiver
from tests.browser import (
    MARK_VARIABLE,
    BrowserProcess,
    chromium_processes,
    fresh_start,
    quit_chromium,
    shot,
    start_chromium,
    wait_for_element,
    wait_for_text,
)
from tests.helpers import wait_for, zombie_children

PAGE = "data:text/html,<title>t</title><p id=greeting>Hello from the booth</p>"


def running(process: BrowserProcess) -> bool:
    try:
        text = Path(f"/proc/{process.pid}/stat").read_text()
    except OSError:
        return False
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0] not in "ZX" and int(fields[19]) == process.start


def test_quitting_leaves_no_chromium_process(tmp_path: Path) -> None:
    """After quit_chromium, chromedriver, every chromium process under it and the crash
    handlers that detached from it have ended, and none is left a zombie of the tests."""
    driver = start_chromium(tmp_path)
    try:
        driver.get(PAGE)
        processes = chromium_processes(driver)
    finally:
        quit_chromium(driver)

    assert {"chromedriver", "chromium"} <= {process.name for process in processes}
    assert [process for process in processes if running(process)] == []
    wait_for(lambda: not zombie_children(os.getpid()), what="no zombie chromedriver")


def test_a_browser_process_left_running_is_killed_and_named(tmp_path: Path) -> None:
    """A process of the browser that outlives quit (as a detached crash handler could) is
    found by the browser's mark, killed, and named in the failure."""
    driver = start_chromium(tmp_path)
    mark = driver.service.env[MARK_VARIABLE]
    straggler = subprocess.Popen(
        ["sleep", "60"], env={**os.environ, MARK_VARIABLE: mark}, start_new_session=True
    )
    try:
        # Named among whatever else had not ended yet (a browser process still on its way out).
        with pytest.raises(AssertionError, match=rf"left after quit: .*sleep \({straggler.pid}\)"):
            quit_chromium(driver, timeout=0.5)
        assert straggler.wait(timeout=10) == -signal.SIGKILL
    finally:
        if straggler.poll() is None:
            straggler.kill()
            straggler.wait()


def test_starting_never_runs_selenium_manager(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The browser starts without Selenium Manager (which may download browsers and drivers):
    a stand-in for it that records each run is never run."""
    ran = tmp_path / "selenium-manager-ran"
    stand_in = tmp_path / "selenium-manager"
    stand_in.write_text(f'#!/bin/sh\ntouch "{ran}"\nexit 1\n')
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("SE_MANAGER_PATH", str(stand_in))

    driver = start_chromium(tmp_path / "browser")
    try:
        driver.get(PAGE)
        assert wait_for_text(driver, "Hello from the booth").text == "Hello from the booth"
    finally:
        quit_chromium(driver)

    assert not ran.exists()


@pytest.mark.parametrize("ci", ["", "true"])
def test_a_missing_browser_skips_except_under_ci(
    ci: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without chromium the browser tests are skipped, saying what to install; with CI set
    they fail instead, so CI cannot pass without running them."""
    monkeypatch.setattr(tests.browser, "CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("CI", ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception

    with pytest.raises(outcome) as raised:
        start_chromium(tmp_path)

    assert "sudo apt install chromium chromium-driver" in str(raised.value)
    assert not (tmp_path / "profile").exists()


def test_an_alert_stays_open_for_the_test_to_see(browser: WebDriver) -> None:
    """A script's alert is still there when the test looks for it, so a test that finds no
    alert has shown that no script raised one."""
    browser.get("data:text/html,<p>page</p><img src=x onerror=alert(1)>")

    assert browser.switch_to.alert.text == "1"


def test_each_test_gets_no_cookies_and_no_stored_data(
    browser: WebDriver, receiver: Receiver
) -> None:
    """What one test leaves in the browser (cookies, also from a window it closed; local
    storage of a page it moved on from; extra windows; an open alert) is gone when the next
    takes it over."""
    first = browser.current_window_handle
    browser.get(f"{receiver.base_url}/")
    browser.execute_script("localStorage.setItem('left', 'behind')")
    browser.get(PAGE)
    browser.switch_to.new_window("tab")
    # Another host, so that only the cookie jar as a whole holds this cookie.
    browser.get(receiver.base_url.replace("127.0.0.1", "localhost") + "/")
    browser.add_cookie({"name": "session", "value": "left-behind"})
    browser.close()
    browser.switch_to.window(first)
    browser.switch_to.new_window("tab")
    browser.get("data:text/html,<script>alert('left open')</script>")

    fresh_start(browser)

    assert len(browser.window_handles) == 1
    assert browser.current_url == "about:blank"
    assert browser.execute_cdp_cmd("Network.getAllCookies", {})["cookies"] == []
    browser.get(f"{receiver.base_url}/")
    assert browser.execute_script("return localStorage.length") == 0


def test_waits_return_what_they_waited_for(browser: WebDriver) -> None:
    """wait_for_element and wait_for_text return the element once it is there, and fail the
    test at the deadline, quoting the page, when it never comes."""
    browser.get(PAGE)

    assert wait_for_element(browser, By.ID, "greeting").tag_name == "p"
    assert wait_for_text(browser, "from the", by=By.ID, value="greeting").tag_name == "p"
    with pytest.raises(AssertionError, match="Hello from the booth"):
        wait_for_text(browser, "never on the page", timeout=0.3)
    with pytest.raises(AssertionError, match="an element id='missing'"):
        wait_for_element(browser, By.ID, "missing", timeout=0.3)


def test_screenshots_go_where_the_variable_says(
    browser: WebDriver,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """shot() writes a PNG named by the test module, the test and the step into
    $BOOTHSYNC_TEST_ARTIFACTS."""
    monkeypatch.setenv("BOOTHSYNC_TEST_ARTIFACTS", str(tmp_path / "artifacts"))
    browser.get(PAGE)

    path = shot(browser, request, "the page")

    assert path == (
        tmp_path / "artifacts" / "test_browser.test_screenshots_go_where_the_variable_says"
        "-the_page.png"
    )
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
