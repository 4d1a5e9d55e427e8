"""File names and messages as people and galleries get to see them.

Owns two things a hostile or merely odd file name must not break: :func:`printable`, the
form in which any text that may hold a name (a log line, a status line, an error stored
in the queue) is shown, with control characters, terminal escape codes and bytes that are
not UTF-8 written as escapes, so a name can neither forge a log line nor break an encoder;
and :func:`upload_name`, the name a picture is uploaded under when its own is not valid
UTF-8 (a Windows share mounted with the wrong character set) or holds control characters.

Must not touch files or know about destinations: it only turns text into text.
"""

from __future__ import annotations

import os

__all__ = ["has_odd_name", "printable", "upload_name"]

# Python decodes a byte that is not UTF-8 in a file name to one of these ("surrogateescape").
_ESCAPED_BYTES = range(0xDC80, 0xDD00)
_SIMPLE_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` on one line, safe for any terminal, log file or database.

    Printable characters (letters of every script, spaces) stay as they are; everything
    else is escaped as Python writes it: ``\\n``, ``\\x1b``, ``\\u202e`` (a right-to-left
    override that could disguise a name), and a byte that was not UTF-8 as ``\\xe4``.
    Backslashes are left as they are, so Windows paths stay readable.
    """
    if text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
            continue
        code = ord(char)
        if code in _ESCAPED_BYTES:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[char])
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def has_odd_name(name: str) -> bool:
    """Whether ``name`` would be uploaded under another name (see :func:`upload_name`)."""
    return upload_name(name) != name


def upload_name(name: str) -> str:
    """The name to upload a picture called ``name`` under.

    A name that is not valid UTF-8 is read as Windows-1252, the character set of the
    Windows PCs such names come from ("Fotobox_G\\xe4ste.jpg" becomes "Fotobox_Gäste.jpg");
    a byte Windows-1252 leaves undefined, and any control or formatting character, becomes
    "_". Any other name is sent as it is.
    """
    if name.isprintable():
        return name
    raw = os.fsencode(name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = "".join(_cp1252(byte) for byte in _utf8_runs(raw))
    return "".join(char if char.isprintable() else "_" for char in text)


def _utf8_runs(raw: bytes) -> list[bytes | int]:
    """``raw`` split into valid UTF-8 runs (bytes) and single bytes that are not (ints)."""
    parts: list[bytes | int] = []
    at = 0
    while at < len(raw):
        try:
            parts.append(raw[at:].decode("utf-8").encode("utf-8"))
            break
        except UnicodeDecodeError as exc:
            if exc.start:
                parts.append(raw[at : at + exc.start])
            parts.append(raw[at + exc.start])
            at += exc.start + 1
    return parts


def _cp1252(part: bytes | int) -> str:
    if isinstance(part, bytes):
        return part.decode("utf-8")
    try:
        return bytes([part]).decode("cp1252")
    except UnicodeDecodeError:
        return "_"
