"""JSON request bodies, parsed one way for both adapters: the lean ASGI route and the DRF views."""

from __future__ import annotations

import json
from typing import IO

import orjson
from rest_framework.parsers import BaseParser

from .errors import InvalidRequest, UnsupportedMediaType


def parse_json(body: bytes) -> object:
    """Parse a JSON body (an empty body is an empty object); raise InvalidRequest for what is not JSON."""
    if not body.strip():
        return {}
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    # orjson refuses some inputs the stdlib takes (lone surrogate escapes, nesting past 1024 levels);
    # let validation name those.
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise InvalidRequest("body is not valid JSON: it nests too deeply", code="invalid_json") from None


def check_media_type(content_type: str | None) -> None:
    """Refuse a body declared as anything but JSON; a body declared as nothing is read as JSON."""
    if content_type and content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(f"unsupported media type {content_type!r}; send application/json")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


class JSONParser(BaseParser):
    """DRF's parser slot filled with `parse_json`, so both adapters accept and refuse the same bodies."""

    media_type = "application/json"

    def parse(
        self, stream: IO[bytes] | None, media_type: str | None = None, parser_context: dict | None = None
    ) -> object:
        return parse_json(stream.read() if stream is not None else b"")
