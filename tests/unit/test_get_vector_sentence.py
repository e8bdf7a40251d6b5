"""`GET /get_vector`'s sentence: taken without the serializer when it passes, refused as the serializer refuses."""

from __future__ import annotations

import pytest
from rest_framework.exceptions import ValidationError

from vectors import conf
from vectors.api import endpoints
from vectors.api.serializers import GetVectorQuerySerializer

LONG = "x" * 100_000


def serializer_verdict(query: dict) -> object:
    serializer = GetVectorQuerySerializer(data=query)
    return serializer.validated_data["sentence"] if serializer.is_valid() else serializer.errors


def fast_verdict(query: dict) -> object:
    try:
        return endpoints.valid_sentence(query)
    except ValidationError as exc:
        return exc.detail


@pytest.mark.parametrize(
    "query",
    [
        {"sentence": "The quick brown fox"},
        {"sentence": "  padded  ", "format": "json"},
        {"sentence": "été café 東京"},
        {"sentence": ""},
        {"sentence": "   "},
        {"sentence": "\u200b\u00ad"},
        {"sentence": "a\x00b"},
        {"sentence": "lone \ud800 surrogate"},
        {"sentence": LONG},
        {},
        {"text": "the wrong name"},
    ],
    ids=repr,
)
def test_the_sentence_or_the_refusal_is_the_serializers(query):
    assert len(LONG) > conf.limits().max_input_chars  # the long one is over the limit
    assert fast_verdict(query) == serializer_verdict(query)


def test_a_good_sentence_does_not_go_through_the_serializer(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the serializer ran")

    monkeypatch.setattr(endpoints, "validated", refuse)
    assert endpoints.valid_sentence({"sentence": "hello"}) == "hello"
    with pytest.raises(AssertionError, match="the serializer ran"):
        endpoints.valid_sentence({"sentence": ""})
