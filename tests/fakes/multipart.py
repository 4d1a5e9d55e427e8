"""One multipart/form-data reader for the tests' fakes of the galleries.

Owns reading a form as a gallery server reads it: :class:`MultipartReader` streams the parts of
a body from any ``read(size)`` source, so a large upload never sits in memory whole, and
:func:`parse_multipart` reads a body already in memory into its parts. A body that is not a
well-formed form raises :class:`MultipartError`; each fake answers it in its service's words.

Must not: use the ``cgi`` module, or know which service's form it reads.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable

__all__ = [
    "CHUNK",
    "MultipartError",
    "MultipartReader",
    "boundary",
    "disposition_param",
    "parse_multipart",
]

CHUNK = 256 * 1024
"""The most bytes asked of the source at once."""
_MAX_HEADER_BYTES = 16 * 1024

Part = tuple[dict[str, str], str | None, str | None, bytes]


class MultipartError(ValueError):
    """The body is not a well-formed multipart/form-data form."""


def boundary(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/form-data`` content type; None for any other type."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not content_type.startswith("multipart/form-data") or match is None:
        return None
    return match.group(1).encode("latin-1")


def disposition_param(value: str, name: str) -> str | None:
    """A parameter (``name``, ``filename``) of a Content-Disposition value, or None."""
    match = re.search(rf'(?:^|;)\s*{name}="((?:[^"\\]|\\.)*)"', value) or re.search(
        rf"(?:^|;)\s*{name}=([^;\s]+)", value
    )
    if match is None:
        return None
    return re.sub(r"\\(.)", r"\1", match.group(1))


class MultipartReader:
    """The parts of a form, read from ``read`` (which returns b"" at the end) as they come."""

    def __init__(self, read: Callable[[int], bytes], boundary: bytes) -> None:
        self._read = read
        self._delimiter = b"\r\n--" + boundary
        # A leading CRLF lets the first delimiter be found like every other one.
        self._buffer = b"\r\n"
        self._in_data = True  # the preamble counts as data to skip

    def _fill(self) -> bool:
        data = self._read(CHUNK)
        self._buffer += data
        return bool(data)

    def next_part(self) -> dict[str, str] | None:
        """Skip to the next part; its headers (lower-case names), or None after the last."""
        if self._in_data:
            self.skip_data()
        while len(self._buffer) < 2:
            if not self._fill():
                raise MultipartError("Unexpected end of form")
        if self._buffer.startswith(b"--"):
            return None
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > _MAX_HEADER_BYTES or not self._fill():
                raise MultipartError("Malformed part header")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        self._in_data = True
        return headers

    def skip_data(self) -> None:
        """Read past the current part's bytes."""
        self.copy_data(lambda _: None)

    def copy_data(self, sink: Callable[[bytes], None]) -> None:
        """Hand the current part's bytes to ``sink``; stop after the next delimiter."""
        keep = len(self._delimiter) - 1
        while True:
            index = self._buffer.find(self._delimiter)
            if index >= 0:
                if index:
                    sink(self._buffer[:index])
                self._buffer = self._buffer[index + len(self._delimiter) :]
                self._in_data = False
                return
            if len(self._buffer) > keep:
                sink(self._buffer[:-keep])
                self._buffer = self._buffer[-keep:]
            if not self._fill():
                raise MultipartError("Unexpected end of form")


def parse_multipart(body: bytes, content_type: str) -> list[Part]:
    """The parts of a form in memory: ``(params, filename, content_type, data)``.

    ``params`` holds the Content-Disposition's ``name`` and ``filename`` where given. Raises
    :class:`MultipartError` on a body that is not well-formed.
    """
    mark = boundary(content_type)
    if mark is None:
        raise MultipartError("the body must be multipart/form-data with a boundary")
    form = MultipartReader(io.BytesIO(body).read, mark)
    parts: list[Part] = []
    while (headers := form.next_part()) is not None:
        chunks: list[bytes] = []
        form.copy_data(chunks.append)
        disposition = headers.get("content-disposition", "")
        params = {
            key: value
            for key in ("name", "filename")
            if (value := disposition_param(disposition, key)) is not None
        }
        parts.append(
            (params, params.get("filename"), headers.get("content-type"), b"".join(chunks))
        )
    return parts
