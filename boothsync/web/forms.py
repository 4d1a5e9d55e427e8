"""The bodies of the dashboard's requests: small forms, read without a multipart parser.

Owns reading an urlencoded or JSON body of at most MAX_BODY bytes into one string per key.
"""

from __future__ import annotations

import json
from typing import Final
from urllib.parse import parse_qs

from starlette.requests import Request

__all__ = ["MAX_BODY", "BadForm", "read_form"]

#: Bodies of the dashboard's own requests are a few hundred bytes; more is not a page of ours.
MAX_BODY: Final = 64 * 1024


class BadForm(Exception):
    """A body that is too large or no form; the app answers 400."""


async def read_form(request: Request) -> dict[str, str]:
    """A small urlencoded or JSON body as one value per key (no multipart: none is sent)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadForm(f"a body larger than {MAX_BODY} bytes")
    if not body:
        return {}
    try:
        if request.headers.get("content-type", "").startswith("application/json"):
            data = json.loads(body)
            if not isinstance(data, dict):
                raise BadForm("not a JSON object")
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
        pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (ValueError, UnicodeError) as exc:
        raise BadForm(str(exc)) from None
    return {k: v[-1] for k, v in pairs.items()}
