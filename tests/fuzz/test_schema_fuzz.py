"""Schemathesis against the service's own OpenAPI schema, in process through the full ASGI app (short form).

Positive cases follow the schema, negative ones break it. Every answer must be a non-5xx, documented, of the
documented content type and shape; broken requests must be refused with a 4xx.

Not checked: that every schema-valid request is accepted. Some refusals depend on the served model and its
config (an unknown `model`, `dimensions` past the model's width, a whitespace-only text, too many tokens with
truncate=false), which no static schema states.

Why not the schemathesis pytest plugin (`schema.parametrize()` with `from_fixture`): under pytest 9 it writes
`request.node._nodeid`, which no longer exists. Each operation's strategy runs under plain `@given` instead.
Schemathesis drives the ASGI app from its own event-loop thread; the engine gives that loop its own batcher.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)


def negative_data_rejected(ctx, response, case):
    """Schemathesis' negative-data check, counting 413 as the rejection it is (a body over the limit)."""
    if response.status_code == 413:
        return None
    return negative_data_rejection(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejected,
]
MAX_EXAMPLES = 30
SETTINGS = {"deadline": None, "database": None, "derandomize": True, "suppress_health_check": list(HealthCheck)}
CALL_TIMEOUT_S = 30  # the model's first load on a busy 2-core machine takes ~20 s; an answer, well under 1 s

# Operations that take input, fuzzed both ways; the rest take no input and get one positive call each.
WITH_INPUT = [
    ("POST", "/v1/embeddings"),
    ("POST", "/embed"),
    ("POST", "/similarity"),
    ("GET", "/get_vector"),
]
ALIASES = [("GET", "/get_vector_simple"), ("GET", "/get_vector_async")]
WITHOUT_INPUT = [("GET", "/v1/models"), ("GET", "/info"), ("GET", "/health"), ("GET", "/ready")]


@pytest.fixture(scope="module")
def api_schema():
    """The schema as the service serves it at /api/schema/, bound to the in-process ASGI app; model warm."""
    from embedservice.asgi import application

    schema = schemathesis.openapi.from_asgi("/api/schema/?format=json", application)
    warm = schema["/get_vector"]["GET"].Case(query={"sentence": "warm the model before fuzzing"})
    answer = warm.call(timeout=CALL_TIMEOUT_S * 4)
    assert answer.status_code == 200, answer.text
    return schema


def fuzz(api_schema, method: str, path: str, mode: GenerationMode, max_examples: int) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=max_examples, **SETTINGS)
    def run(case) -> None:
        case.call_and_validate(checks=CHECKS, timeout=CALL_TIMEOUT_S)

    run()


def test_schema_lists_every_fuzzed_operation(api_schema):
    listed = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert listed == set(WITH_INPUT + ALIASES + WITHOUT_INPUT)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["positive", "negative"])
@pytest.mark.parametrize(("method", "path"), WITH_INPUT)
def test_operations_with_input_answer_no_5xx_and_as_documented(api_schema, method, path, mode):
    fuzz(api_schema, method, path, mode, MAX_EXAMPLES)


@pytest.mark.parametrize(("method", "path"), ALIASES)
def test_get_vector_aliases_answer_no_5xx_and_as_documented(api_schema, method, path):
    fuzz(api_schema, method, path, GenerationMode.POSITIVE, MAX_EXAMPLES // 3)


@pytest.mark.parametrize(("method", "path"), WITHOUT_INPUT)
def test_operations_without_input_answer_as_documented(api_schema, method, path):
    fuzz(api_schema, method, path, GenerationMode.POSITIVE, 1)
