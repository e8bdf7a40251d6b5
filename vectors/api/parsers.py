"""JSON request bodies, parsed one way for both adapters: the lean ASGI route and the DRF views."""

from __future__ import annotations

import json
import urllib.parse
from typing import IO

import orjson
from rest_framework.parsers import BaseParser

from .errors import InvalidRequest, UnsupportedMediaType


def parse_query(raw: bytes | str, strict: bool = True) -> dict[str, str]:
    """A query string's parameters, parsed one way for both adapters (a repeated name: the last one, as
    Django's `QueryDict.get`).

    Each name and value must be UTF-8 once percent-decoded, as a JSON body must be: a caller that encoded its
    text in another charset (Java's `URLEncoder.encode(text, StandardCharsets.ISO_8859_1)`, say) gets a 400
    naming the parameter, not the vector of a text whose letters became U+FFFD. `strict=False` makes those
    bytes U+FFFD instead, as Django's QueryDict does: for reading `?format=` before the API key is checked
    (a wrong key is a 401 whatever else the request holds).
    """
    raw = raw.encode("utf-8") if isinstance(raw, str) else raw
    # latin-1 maps every byte to one character, so the pairs keep the exact bytes that decode below.
    pairs = urllib.parse.parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="latin-1")
    errors = "strict" if strict else "replace"
    query = {}
    for name, value in pairs:
        try:
            query[name.encode("latin-1").decode("utf-8", errors)] = value.encode("latin-1").decode("utf-8", errors)
        except UnicodeDecodeError:
            param = name.encode("latin-1").decode("utf-8", errors="replace")
            raise InvalidRequest(
                f"{param}: its percent-encoded bytes are not UTF-8; percent-encode the text's UTF-8 bytes"
                " (Java: URLEncoder.encode(text, StandardCharsets.UTF_8))",
                param=param,
            ) from None
    return query


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
