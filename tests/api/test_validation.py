"""Bad input gets a clear JSON error naming the problem; the model is never called for it."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from django.conf import settings
from django.test import override_settings

from tests.api.conftest import send_raw
from tests.conftest import cosines
from vectors import conf


def model_calls() -> int:
    engine = conf.get_registry().get(None)
    return engine.encoder.model_calls


async def post_raw(client, path: str, raw: bytes, content_type: str = "application/json"):
    return await client.post(path, raw, content_type)


BAD_OPENAI = [
    (b'{"input": ', 400, "invalid_json", None),
    (b'{"input": 12}', 400, "invalid_request", "input"),
    (b'{"input": ""}', 400, "invalid_request", "input"),
    (b'{"input": "   "}', 400, "invalid_request", "input"),
    (b'{"input": []}', 400, "invalid_request", "input"),
    (b'{"input": ["ok", 3]}', 400, "invalid_request", "input"),
    (b'{"input": [["a"]]}', 400, "invalid_request", "input"),
    (b'{"input": [[1, -2]]}', 400, "invalid_request", "input"),
    (b'{"input": [[999999999]]}', 400, "invalid_request", "input"),
    (b'{"input": "x", "encoding_format": "int8"}', 400, "invalid_request", "encoding_format"),
    (b'{"input": "x", "dimensions": 0}', 400, "invalid_request", "dimensions"),
    (b'{"input": "x", "dimensions": "12"}', 400, "invalid_request", "dimensions"),
    (b'{"input": "x", "dimensions": 385}', 400, "invalid_request", "dimensions"),
    (b'{"input": "x", "model": 7}', 400, "invalid_request", "model"),
    (b'{"input": "x", "model": "no-such-model"}', 404, "model_not_found", "model"),
    (b'{"input": "nul \\u0000 inside"}', 400, "invalid_request", "input"),
    (b'{"input": "lone \\ud800 surrogate"}', 400, "invalid_request", "input"),
    (b'{"input": "\\u200b"}', 400, "invalid_request", "input"),  # zero-width space: no text for the model
    (b'{"input": ["ok", "\\ufeff\\u00ad \\u0001"]}', 400, "invalid_request", "input"),
    (b"[1, 2]", 400, "invalid_request", None),
    (b"", 400, "invalid_request", "input"),
]


@pytest.mark.parametrize(("raw", "status", "code", "param"), BAD_OPENAI)
async def test_bad_openai_requests_get_the_openai_error_envelope(client, raw, status, code, param):
    await client.get("/get_vector", {"sentence": "load the model first"})
    before = model_calls()
    response = await post_raw(client, "/v1/embeddings", raw)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert error["message"]
    if param:
        assert error["param"] == param
    assert model_calls() == before


@pytest.mark.parametrize("path", ["/v1/embeddings", "/embed", "/similarity"])
@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"null", "null"),
        (b'["a", "b"]', "an array"),
        (b'"a text"', "a string"),
        (b"7", "a number"),
        (b"true", "a boolean"),
    ],
)
async def test_a_body_that_is_json_but_not_an_object_is_refused_in_jsons_words(client, path, raw, kind):
    response = await post_raw(client, path, raw)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["message"] == f"the request body must be a JSON object, not {kind}"
    assert error["code"] == "invalid_request" and error["param"] is None


async def test_too_many_inputs_is_refused_with_the_limit_named(client):
    response = await post_raw(client, "/v1/embeddings", orjson.dumps({"input": ["x"] * 2049}))
    assert response.status_code == 400
    assert "2048" in response.json()["error"]["message"]


async def test_a_flat_token_array_is_one_input_and_its_length_limit_is_named(client):
    ids = [1000] * 2049  # 2049 ids of one input, not 2049 inputs
    answer = await post_raw(client, "/v1/embeddings", orjson.dumps({"input": ids}))
    assert answer.status_code == 200 and len(answer.json()["data"]) == 1
    limit = conf.limits().max_input_chars
    answer = await post_raw(client, "/v1/embeddings", orjson.dumps({"input": [[1000] * (limit + 1)]}))
    assert answer.status_code == 400 and f"the limit is {limit}" in answer.json()["error"]["message"]


async def test_similarity_counts_the_source_sentence_against_the_input_limit_and_says_so(client):
    limit = conf.limits().max_inputs_per_request
    body = {"inputs": {"source_sentence": "a", "sentences": ["b"] * limit}}
    error = (await post_raw(client, "/similarity", orjson.dumps(body))).json()["error"]
    assert error["param"] == "inputs.sentences"
    assert f"has {limit} sentences; with the source sentence that is {limit + 1} inputs" in error["message"]
    body = {"inputs": {"source_sentence": "a" * (conf.limits().max_input_chars + 1), "sentences": ["b"]}}
    error = (await post_raw(client, "/similarity", orjson.dumps(body))).json()["error"]
    assert error["param"] == "inputs.source_sentence" and "the source sentence has" in error["message"]


async def test_wrong_types_in_tei_requests_name_the_field(client):
    response = await post_raw(client, "/embed", orjson.dumps({"inputs": "x", "normalize": "yes"}))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "normalize"


async def test_missing_or_empty_sentence_on_get_vector_is_400(client):
    assert (await client.get("/get_vector")).status_code == 400
    response = await client.get("/get_vector", {"sentence": ""})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "sentence"


async def test_body_over_the_limit_is_413(client):
    embeddings = {**settings.EMBEDDINGS, "MAX_BODY_BYTES": 1000}
    with override_settings(EMBEDDINGS=embeddings, DATA_UPLOAD_MAX_MEMORY_SIZE=1000):
        response = await post_raw(client, "/v1/embeddings", orjson.dumps({"input": "x" * 5000}))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_non_json_content_type_is_415(client):
    response = await post_raw(client, "/v1/embeddings", b"input=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


async def test_unknown_route_and_wrong_method_answer_json(client):
    missing = await client.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = await client.get("/v1/embeddings")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("path", "raw", "param"),
    [
        (
            "/similarity",
            b'{"inputs": {"source_sentence": "a \\ud83d b", "sentences": ["x"]}}',
            "inputs.source_sentence",
        ),
        ("/v1/embeddings", b'{"input": "x", "model": "m\\udc00"}', "model"),
    ],
)
async def test_a_lone_surrogate_in_a_string_field_is_named_by_its_code_point(client, path, raw, param):
    error = (await post_raw(client, path, raw)).json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", param)
    assert ("U+D83D" if path == "/similarity" else "U+DC00") in error["message"], error


@pytest.mark.parametrize("text", ["\ud800", "ok \udfff", "🙂 a\ud83d", "x" * 500 + "\udc01"])
def test_get_vector_s_sentence_refuses_a_lone_surrogate_with_drf_s_message(text):
    from rest_framework.exceptions import ValidationError

    from vectors.api.endpoints import validated
    from vectors.api.serializers import GetVectorQuerySerializer

    surrogate = next(c for c in text if 0xD800 <= ord(c) <= 0xDFFF)
    with pytest.raises(ValidationError) as refused:
        validated(GetVectorQuerySerializer, {"sentence": text})
    assert str(refused.value.detail["sentence"][0]) == f"Surrogate characters are not allowed: U+{ord(surrogate):X}."
    assert validated(GetVectorQuerySerializer, {"sentence": "ok 🙂 é"}) == {"sentence": "ok 🙂 é"}


def test_text_fields_check_for_lone_surrogates_at_c_speed_not_with_drf_s_loop():
    from rest_framework.validators import ProhibitSurrogateCharactersValidator

    from vectors.api.serializers import EmbeddingsRequestSerializer, GetVectorQuerySerializer, NoSurrogates

    for field in (GetVectorQuerySerializer().fields["sentence"], EmbeddingsRequestSerializer().fields["model"]):
        kinds = [type(validator) for validator in field.validators]
        assert NoSurrogates in kinds and ProhibitSurrogateCharactersValidator not in kinds, kinds


@pytest.mark.parametrize(
    "query",
    [
        b"sentence=%E9t%E9",  # "été" percent-encoded from ISO-8859-1, not UTF-8
        b"sentence=caf%C3",  # a UTF-8 sequence cut short
        b"sentence=%ED%A0%80",  # a surrogate's UTF-8-style bytes: not UTF-8
        b"sentence=ok&sentence=%FF",  # the value that counts (the last) is the bad one
    ],
)
async def test_a_query_whose_percent_escapes_are_not_utf8_is_a_400_naming_the_parameter(fast_path, query):
    before = model_calls()
    answer = await send_raw("/get_vector", [], [], method="GET", query=query)
    assert answer.status_code == 400, answer.content
    error = answer.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", "sentence"), error
    assert error["message"].startswith("sentence: its percent-encoded bytes are not UTF-8"), error
    assert model_calls() == before


async def test_a_query_in_utf8_gets_the_vector_of_its_text_on_both_adapters(fast_path, reference):
    answer = await send_raw("/get_vector", [], [], method="GET", query=b"sentence=%C3%A9t%C3%A9+caf%C3%A9")
    assert answer.status_code == 200, answer.content
    vector = np.array(answer.json()["vector"])
    assert cosines(vector[None], reference.encode(["été café"])).min() >= 0.9999
