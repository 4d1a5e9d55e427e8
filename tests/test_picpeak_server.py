"""boothsync against a real PicPeak server, when one is named (skipped otherwise).

PicPeak is a Node.js application; these tests do not start one. Set, for a PicPeak you run
(any version with the API v1 and API tokens):

- ``BOOTHSYNC_PICPEAK_URL``: its address, e.g. ``http://127.0.0.1:3000``;
- ``BOOTHSYNC_PICPEAK_TOKEN``: an API token (``pp_live_...``) with the ``write`` scope;
- ``BOOTHSYNC_PICPEAK_EVENT``: the number of an event the pictures may be uploaded to;
- ``BOOTHSYNC_PICPEAK_ADMIN``: ``user:password`` of an admin, to delete one picture from the
  gallery behind boothsync's back as an operator's admin would.

The pictures each run uploads are new (their bytes and sizes are random), so earlier runs'
photos in the event do not stand for them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.helpers import wait_for
from tests.test_cli import Daemon, boothsync, status

_NAMES = ("URL", "TOKEN", "EVENT", "ADMIN")
_SETTINGS = {name: os.environ.get(f"BOOTHSYNC_PICPEAK_{name}", "") for name in _NAMES}

pytestmark = pytest.mark.skipif(
    not all(_SETTINGS.values()),
    reason="no PicPeak server named: set BOOTHSYNC_PICPEAK_URL, _TOKEN, _EVENT and _ADMIN",
)


@dataclass
class PicPeak:
    url: str
    token: str
    event: int
    admin: tuple[str, str]

    def gallery(self) -> list[dict[str, object]]:
        """The photos of the event's gallery, as its guests see them."""
        with httpx.Client(base_url=self.url, timeout=30) as client:
            api = {"Authorization": f"Bearer {self.token}"}
            link = client.get(f"/api/v1/events/{self.event}/share-link", headers=api).json()
            login = client.post(
                "/api/auth/gallery/share-login",
                json={"slug": link["slug"], "token": link["share_token"]},
            ).json()
            guest = {"Authorization": f"Bearer {login['token']}"}
            photos: list[dict[str, object]] = client.get(
                f"/api/gallery/{link['slug']}/photos", headers=guest
            ).json()["photos"]
            return photos

    def delete(self, photo_id: object) -> None:
        """Delete one photo as PicPeak's admin does (its login cookie, then the admin API)."""
        user, password = self.admin
        with httpx.Client(base_url=self.url, timeout=30) as client:
            login = client.post(
                "/api/auth/admin/login", json={"username": user, "password": password}
            )
            login.raise_for_status()
            token = login.cookies.get("admin_token") or login.json().get("token")
            deleted = client.delete(
                f"/api/admin/photos/{self.event}/photos/{photo_id}",
                headers={"Authorization": f"Bearer {token}"},
            )
            deleted.raise_for_status()


@pytest.fixture
def picpeak() -> PicPeak:
    user, _, password = _SETTINGS["ADMIN"].partition(":")
    return PicPeak(
        _SETTINGS["URL"].rstrip("/"),
        _SETTINGS["TOKEN"],
        int(_SETTINGS["EVENT"]),
        (user, password),
    )


def booth_picture(path: Path) -> int:
    """A real JPEG of a random colour with random padding in a comment: its size and bytes
    are this run's own. Returns its size."""
    colour = tuple(secrets.randbelow(256) for _ in range(3))
    comment = secrets.token_bytes(1000 + secrets.randbelow(20_000))
    Image.new("RGB", (640, 480), colour).save(path, "JPEG", comment=comment)
    return path.stat().st_size


@pytest.fixture
def uploaded(tmp_path: Path, picpeak: PicPeak) -> Iterator[tuple[Path, dict[str, int]]]:
    """Three pictures uploaded to the event by a `boothsync run`, now stopped: the config
    and each picture's size by name."""
    hot = tmp_path / "hot"
    hot.mkdir()
    config = tmp_path / "boothsync.toml"
    config.write_text(
        f"""
[booth]
name = "picpeak-check"
timezone = "Europe/Berlin"

[[watch]]
path = "{hot.as_posix()}"
settle_seconds = 0.3

[destinations.picpeak]
type = "picpeak"
api_token = "{picpeak.token}"
event_id = {picpeak.event}
base_url = "{picpeak.url}"

[state]
dir = "{(tmp_path / "state").as_posix()}"

[web]
enabled = false
""",
        encoding="utf-8",
    )
    stamp = datetime.now().strftime("%H%M%S")
    daemon = Daemon("run", "-c", str(config))
    try:
        wait_for(lambda: "ready" in daemon.output, timeout=30, what="boothsync ready")
        sizes = {}
        for n in range(3):
            name = f"CHECK_{stamp}_{n}.jpg"
            staged = tmp_path / name
            sizes[name] = booth_picture(staged)
            staged.rename(hot / name)
        wait_for(
            lambda: status(config)["totals"]["uploaded"] == 3,
            timeout=60,
            interval=0.3,
            what="the pictures in PicPeak",
        )
    finally:
        assert daemon.stop() == 0, daemon.output
    yield config, sizes


def test_every_picture_is_in_the_real_gallery(uploaded: tuple[Path, dict[str, int]]) -> None:
    """After the upload, verify finds every picture in PicPeak's gallery: exit 0."""
    config, _ = uploaded
    result = boothsync("verify", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "picpeak: all 3 pictures uploaded and in the gallery"


def test_a_picture_deleted_in_the_real_gallery_is_named(
    uploaded: tuple[Path, dict[str, int]], picpeak: PicPeak
) -> None:
    """A picture the admin deleted in PicPeak after boothsync uploaded it is named by verify,
    exit 1."""
    config, sizes = uploaded
    name = sorted(sizes)[1]
    matching = [p for p in picpeak.gallery() if p.get("size") == sizes[name]]
    assert len(matching) == 1, matching
    picpeak.delete(matching[0]["id"])
    result = boothsync("verify", "-c", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.strip() == f"picpeak: 1 uploaded but not in the gallery: {name}"
