"""The dashboard in a real browser (Debian's chromium), as an operator uses it: the first
setup's wizard against the local receiver, then the live page while pictures arrive, fail and
are retried; and a change to an existing config that keeps its comments."""

from __future__ import annotations

import json
import socket
import tomllib
from datetime import datetime
from pathlib import Path

import pytest
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from boothsync.demo import write_sample_jpeg
from boothsync.receiver import DEMO_API_KEY, Receiver
from tests.browser import shot, wait_for_element, wait_for_text
from tests.helpers import wait_for
from tests.test_cli import Daemon, boothsync, write_config


def fresh_machine(tmp_path: Path) -> dict[str, str]:
    """The environment of an account that has never run boothsync: no config anywhere."""
    home = tmp_path / "home"
    for folder in ("config", "state", "pictures"):
        (home / folder).mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_STATE_HOME": str(home / "state"),
        "LOGS_DIRECTORY": str(home / "logs"),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# Clicks the element if htmx has wired it: content swapped in a moment ago is wired once it
# settles (until then a form would submit as a plain page load), and the live part is
# replaced every second (an element found before that is gone).
_WIRED_CLICK = """
const element = document.querySelector(arguments[0]);
if (!element || element.closest('.htmx-added')) {
  return false;
}
element.click();
return true;
"""


def click(driver: WebDriver, css: str) -> None:
    """Click the first element ``css`` finds, once htmx has wired it."""
    wait_for(lambda: driver.execute_script(_WIRED_CLICK, css) is True, what=f"{css} to click")


def fill_key(driver: WebDriver, api_key: str, base_url: str) -> None:
    """The wizard's key step: the key and the gallery's address typed in afresh."""
    for name, value in (("api_key", api_key), ("base_url", base_url)):
        field = wait_for_element(driver, By.NAME, name)
        field.clear()
        field.send_keys(value)


def drop(folder: Path, name: str, minute: int) -> None:
    write_sample_jpeg(folder / name, datetime(2026, 6, 1, 20, minute), name, (30, 90, 200))


def test_first_setup_then_the_live_dashboard(
    tmp_path: Path, receiver: Receiver, browser: WebDriver, request: pytest.FixtureRequest
) -> None:
    """With no config, `boothsync run` serves the wizard: the gallery, its key, the event and
    album picked from the receiver's list, the folder picked in the folder picker, the checks,
    save. boothsync then runs on the saved config (which `boothsync check` accepts); a dropped
    picture appears with its thumbnail, one the gallery refuses shows under Failed with the
    reason, Retry sends it, and Pause pauses."""
    environ = fresh_machine(tmp_path)
    # One address for the setup and the boothsync it starts, as 8700 is by default: the page
    # follows from the one to the other.
    environ["BOOTHSYNC_WEB_LISTEN"] = f"127.0.0.1:{free_port()}"
    hot = tmp_path / "booth" / "Prints"
    hot.mkdir(parents=True)
    run = Daemon("run", cwd=tmp_path, **environ)
    try:
        wait_for(lambda: "no config yet" in run.output, timeout=30, what="setup mode")
        link = boothsync("dashboard", "--print-url", cwd=tmp_path, **environ)
        assert link.returncode == 0, link.stderr
        browser.get(link.stdout.strip())
        wait_for_text(browser, "Which gallery?")
        shot(browser, request, "1-gallery")
        click(browser, "#next-type")

        # A key the gallery refuses: the step comes back saying so, on the page.
        fill_key(browser, "not-the-key", receiver.base_url)
        click(browser, "#next-key")
        wait_for_text(browser, "rejected", by=By.ID, value="wizard")
        shot(browser, request, "2-wrong-key")
        assert "not-the-key" not in browser.page_source

        fill_key(browser, DEMO_API_KEY, receiver.base_url)
        shot(browser, request, "2-key")
        click(browser, "#next-key")

        click(browser, "input[value='demo/a2']")
        shot(browser, request, "3-event")
        click(browser, "#next-event")

        # The folder picker: up from the home folder to the booth's folder, then pick it.
        wait_for_element(browser, By.CSS_SELECTOR, "#browser .browse")
        folder = browser.find_element(By.ID, "folder")
        folder.send_keys(str(hot))
        shot(browser, request, "4-folder")
        click(browser, "#next-folder")

        wait_for_text(browser, "[ok] config is valid")
        wait_for_text(browser, "All good.")
        shot(browser, request, "5-checks")
        click(browser, "#save")
        wait_for_text(browser, "Saved")
        # boothsync starts on the new config and the page follows it to the dashboard.
        wait_for_element(browser, By.ID, "state", timeout=30)
        config = tmp_path / "home" / "config" / "boothsync" / "boothsync.toml"
        written = tomllib.loads(config.read_text(encoding="utf-8"))
        assert written["destinations"]["eventpics"]["album_id"] == "a2"
        assert Path(written["watch"][0]["path"]) == hot
        assert config.stat().st_mode & 0o777 == 0o600
        checked = boothsync("check", "-c", str(config), **environ)
        assert checked.returncode == 0, checked.stdout + checked.stderr

        drop(hot, "IMG_0001.jpg", 1)
        # Looked up afresh each time: the live part is replaced every second.
        wait_for(
            lambda: browser.execute_script(
                "const thumb = document.querySelector(\"#recent img[src^='/thumbs/']\");"
                " return !!thumb && thumb.complete && thumb.naturalWidth > 0"
            ),
            timeout=30,
            what="a thumbnail shown",
        )
        wait_for_text(browser, "IMG_0001.jpg", by=By.ID, value="recent")
        shot(browser, request, "6-uploaded")

        receiver.faults.fail_next = [("getuploadurl", 415)]
        drop(hot, "IMG_0002.jpg", 2)
        wait_for_element(browser, By.CSS_SELECTOR, ".failed-job button.retry", timeout=30)
        wait_for_text(browser, "415", by=By.ID, value="failed")
        # The README's picture of the dashboard (docs/dashboard.png) is this screenshot.
        shot(browser, request, "7-failed")
        click(browser, ".failed-job button.retry")
        wait_for_text(browser, "IMG_0002.jpg", by=By.ID, value="recent", timeout=30)
        wait_for(lambda: not browser.find_elements(By.CSS_SELECTOR, ".failed-job"))
        assert len(receiver.received()) == 2
        shot(browser, request, "8-retried")

        click(browser, "#pause")
        wait_for_element(browser, By.ID, "resume")
        report = boothsync("status", "-c", str(config), "--json", **environ)
        assert json.loads(report.stdout)["paused"] is True
        # While paused a waiting picture is not "empty in" any time.
        drop(hot, "IMG_0003.jpg", 3)
        wait_for_text(browser, "paused", by=By.CSS_SELECTOR, value="tr.dest td.eta")
        page = browser.page_source
        assert DEMO_API_KEY not in page
        shot(browser, request, "9-paused")
    finally:
        code = run.stop()
    assert code == 0, run.output
    assert "Traceback" not in run.output


def test_changing_the_album_keeps_the_config_comments(
    tmp_path: Path, receiver: Receiver, browser: WebDriver, request: pytest.FixtureRequest
) -> None:
    """On the setup page, another album picked from the gallery's list is saved into the
    config with its comments and order kept, and the running boothsync reloads it."""
    config = write_config(tmp_path, receiver.base_url)
    text = config.read_text(encoding="utf-8").replace(
        "[[watch]]", "# the booth's output folder (kept by the dashboard)\n[[watch]]"
    )
    config.write_text(text, encoding="utf-8")
    run = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "dashboard on" in run.output, timeout=30)
        link = boothsync("dashboard", "-c", str(config), "--print-url")
        browser.get(link.stdout.strip().replace("/login?", "/login?next=/settings&"))
        wait_for_text(browser, "Watched folders")
        assert "not set" not in browser.page_source.replace("api_key</small> set", "")
        assert DEMO_API_KEY not in browser.page_source
        shot(browser, request, "1-settings")
        click(browser, "tr.destination button")
        click(browser, "input[value='demo/a2']")
        click(browser, "#next-event")
        wait_for_text(browser, "All good.")
        click(browser, "#save")
        wait_for_text(browser, "is saved")
        shot(browser, request, "2-saved")
        after = config.read_text(encoding="utf-8")
        assert "# the booth's output folder (kept by the dashboard)" in after
        assert after.replace('album_id = "a2"', 'album_id = "a1"') == text
        wait_for(lambda: "the config changed" in run.output, timeout=15)
    finally:
        assert run.stop() == 0
    assert "Traceback" not in run.output


# Sends the page's commands (POSTs under /api/) 2.5 s late, as over a slow link.
_SLOW_COMMANDS = """
const open = XMLHttpRequest.prototype.open;
const send = XMLHttpRequest.prototype.send;
XMLHttpRequest.prototype.open = function (method, url) {
  this.slowCommand = method === 'POST' && String(url).indexOf('/api/') === 0;
  return open.apply(this, arguments);
};
XMLHttpRequest.prototype.send = function (body) {
  if (this.slowCommand) {
    setTimeout(() => send.call(this, body), 2500);
  } else {
    send.call(this, body);
  }
};
"""


def test_a_refused_command_and_a_stopped_boothsync_are_said_on_the_page(
    tmp_path: Path, receiver: Receiver, browser: WebDriver, request: pytest.FixtureRequest
) -> None:
    """A command boothsync turns down is not silently dropped: its reason shows at the top of
    the page, as text. When boothsync stops, the page says it does not answer instead of
    standing still as if all were well."""
    config = write_config(tmp_path, receiver.base_url)
    run = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "dashboard on" in run.output, timeout=30)
        link = boothsync("dashboard", "-c", str(config), "--print-url")
        browser.get(link.stdout.strip())
        wait_for_element(browser, By.ID, "state")
        assert not browser.find_element(By.ID, "notice").is_displayed()
        # As if the page's token were stale: the command is refused, and the page says why.
        browser.execute_script(
            "document.querySelector('meta[name=\"csrf-token\"]').content = 'stale'"
        )
        # And its answer slow to come, over several of the live part's refreshes: they wait
        # for it, or the button would be replaced and its answer lost with it.
        browser.execute_script(_SLOW_COMMANDS)
        click(browser, "#pause")
        wait_for_text(browser, "reload the page", by=By.ID, value="notice")
        assert browser.find_elements(By.ID, "pause"), "the refused pause paused"
        shot(browser, request, "1-refused")
    finally:
        code = run.stop()
    assert code == 0, run.output
    wait_for_text(browser, "does not answer", by=By.ID, value="notice")
    shot(browser, request, "2-stopped")
