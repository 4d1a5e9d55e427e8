"""The local receiver's page at ``GET /`` as a browser shows it: real chromium, real HTTP on
127.0.0.1."""

from __future__ import annotations

import httpx
import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from boothsync.receiver import DEMO_API_KEY, Receiver
from tests.browser import shot, wait_for_text
from tests.helpers import jpeg

HOSTILE_NAME = "<img src=x onerror=alert(1)>.jpg"


def upload(receiver: Receiver, file_name: str, data: bytes) -> None:
    """Send one picture the way EventPics takes it: ask for an upload URL, then PUT to it."""
    with httpx.Client(base_url=receiver.base_url, timeout=10) as client:
        asked = client.post(
            "/getuploadurl",
            json={"apiKey": DEMO_API_KEY, "linkId": "demo", "fileName": file_name},
        )
        assert asked.status_code == 200, asked.text
        put = client.put(
            asked.json()["uploadUrl"], content=data, headers={"Content-Type": "image/jpeg"}
        )
        assert put.status_code == 200, put.text


def test_a_name_made_of_markup_shows_as_text_and_runs_nothing(
    browser: WebDriver, receiver: Receiver, request: pytest.FixtureRequest
) -> None:
    """A picture named like an HTML tag with a script shows on the page as that literal name:
    no element is made of it and its script never runs."""
    upload(receiver, HOSTILE_NAME, jpeg(b"hostile"))

    # get() returns once the page has loaded, images included, so an injected <img> would
    # have failed to load and fired its onerror by now.
    browser.get(f"{receiver.base_url}/")

    with pytest.raises(NoAlertPresentException):
        _ = browser.switch_to.alert
    sources = [
        image.get_attribute("src") or "" for image in browser.find_elements(By.TAG_NAME, "img")
    ]
    assert [source for source in sources if source.endswith("x")] == []
    cell = wait_for_text(browser, HOSTILE_NAME, by=By.TAG_NAME, value="td")
    assert HOSTILE_NAME in cell.text
    shot(browser, request, "hostile-name")
