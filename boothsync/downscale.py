"""Shrinking a JPEG for a slow venue link: a smaller copy, same look, same metadata.

Owns :func:`downscale`: a copy of a JPEG whose longer edge is at most ``max_edge`` pixels,
turned upright (the pixels follow the EXIF orientation, and the kept EXIF then says
"upright"), with the original EXIF block, ICC profile and XMP packet kept, so the gallery
still sorts it by its capture time. Anything else (not a JPEG, already small enough,
damaged, too many pixels to decode safely) gets None: the caller sends the original.

Must never write to, move or lock the original, and must never raise for what a picture
holds: a damaged picture is one warning, not an error.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Literal

from PIL import Image

__all__ = ["downscale"]

log = logging.getLogger(__name__)

_ORIENTATION = 0x0112
_EXIF_HEADER = b"Exif\x00\x00"
_SHORT = 3

# What makes a picture stored as EXIF orientation N look upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# An XMP copy of the orientation would turn the upright pixels again in some viewers.
_XMP_ORIENTATION = (
    re.compile(rb'\s?tiff:Orientation="[0-9]"'),
    re.compile(rb"<tiff:Orientation>[0-9]</tiff:Orientation>"),
)


def downscale(path: Path, *, max_edge: int, quality: int, into: Path) -> Path | None:
    """A copy of the JPEG at ``path`` at most ``max_edge`` pixels on its longer edge, or None.

    The copy is written into the folder ``into`` (created if needed) as a JPEG of ``quality``
    and its path returned; the caller removes it when done. None, and the original is to be
    sent as it is, when the file is not a JPEG (judged by its content), its longer edge is not
    above ``max_edge``, or it cannot be decoded safely (a warning says why).
    """
    try:
        with Image.open(path) as image:
            if image.format != "JPEG":
                return None
            width, height = image.size
            if max(width, height) <= max_edge:
                return None
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and width * height > limit:
                log.warning(
                    "%s: %dx%d is more pixels than boothsync decodes (%d); sending the original",
                    path,
                    width,
                    height,
                    limit,
                )
                return None
            return _shrink(image, path, max_edge, quality, into)
    except Image.DecompressionBombError as exc:
        log.warning("%s: too many pixels to shrink safely (%s); sending the original", path, exc)
    except Exception as exc:
        # Pillow raises many types for a damaged file (OSError, SyntaxError, ValueError...).
        log.warning(
            "%s: cannot be shrunk (%s: %s); sending the original", path, type(exc).__name__, exc
        )
    return None


def _shrink(image: Image.Image, path: Path, max_edge: int, quality: int, into: Path) -> Path:
    width, height = image.size
    scale = max_edge / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    orientation = _orientation(image)
    exif: bytes | None = image.info.get("exif")
    icc: bytes | None = image.info.get("icc_profile")
    xmp: bytes | None = image.info.get("xmp")
    # Let the JPEG decoder skip detail that the resize would throw away (1/2, 1/4, 1/8 scale,
    # never below ``size``): a fraction of the memory and time, which a small booth PC needs.
    image.draft(image.mode, size)
    small = image.resize(size, Image.Resampling.LANCZOS)
    turn = _UPRIGHT.get(orientation)
    if turn is not None:
        small = small.transpose(turn)
        if exif:
            exif = _upright_exif(exif, image)
        if xmp:
            for pattern in _XMP_ORIENTATION:
                xmp = pattern.sub(b"", xmp)
    into.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"{path.stem}-", suffix=".jpg", dir=into)
    os.close(fd)
    target = Path(name)
    options: dict[str, object] = {"quality": quality}
    if exif:
        options["exif"] = exif
    if icc:
        options["icc_profile"] = icc
    if xmp:
        options["xmp"] = xmp
    try:
        small.save(target, "JPEG", **options)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1 to 8); 1 when absent or not a number."""
    value = image.getexif().get(_ORIENTATION, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _upright_exif(exif: bytes, image: Image.Image) -> bytes:
    """``exif`` saying orientation 1, every other byte as it was.

    The value is changed where it lies, so maker notes (which often point at absolute
    offsets) stay readable. Should the tag not be where it ought to be, Pillow writes the
    block anew instead.
    """
    patched = _patch_orientation(exif)
    if patched is not None:
        return patched
    rebuilt = image.getexif()
    rebuilt[_ORIENTATION] = 1
    return rebuilt.tobytes()


def _patch_orientation(exif: bytes) -> bytes | None:
    """Orientation set to 1 in IFD0 of a raw EXIF block; None if it is not a plain SHORT there."""
    base = len(_EXIF_HEADER) if exif.startswith(_EXIF_HEADER) else 0
    mark = exif[base : base + 2]
    if mark not in (b"II", b"MM"):
        return None
    order: Literal["little", "big"] = "little" if mark == b"II" else "big"
    ifd = base + int.from_bytes(exif[base + 4 : base + 8], order)
    if ifd + 2 > len(exif):
        return None
    count = int.from_bytes(exif[ifd : ifd + 2], order)
    for index in range(count):
        entry = ifd + 2 + 12 * index
        if entry + 12 > len(exif):
            return None
        if int.from_bytes(exif[entry : entry + 2], order) != _ORIENTATION:
            continue
        kind = int.from_bytes(exif[entry + 2 : entry + 4], order)
        values = int.from_bytes(exif[entry + 4 : entry + 8], order)
        if kind != _SHORT or values != 1:
            return None
        data = bytearray(exif)
        data[entry + 8 : entry + 10] = (1).to_bytes(2, order)
        return bytes(data)
    return None
