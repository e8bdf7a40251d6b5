"""Embedding endpoints as plain async functions (validate -> core.embed -> payload), shared by both adapters.

The DRF views (vectors.api.views) and the lean ASGI route (vectors.api.fastpath) are thin adapters over
these functions: one implementation of each contract, one error table, one way to record a request.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from rest_framework.exceptions import ValidationError

from . import core
from .errors import InvalidRequest
from .serializers import (
    EmbeddingsRequestSerializer,
    EmbedRequestSerializer,
    GetVectorQuerySerializer,
    Inputs,
    SimilarityRequestSerializer,
    check_sentence,
)


@dataclass(frozen=True)
class Answer:
    """A successful answer: the JSON payload and the outcome behind it (timings, model, tokens)."""

    payload: object
    outcome: core.EmbedOutcome


def validated(serializer_class: type, data: object) -> dict:
    """Validate `data` with a serializer; raise its ValidationError (mapped to 400) otherwise.

    The same checks and error details as `serializer_class(data=data).is_valid(raise_exception=True)`,
    through one long-lived instance per class: building a serializer deep-copies its fields, which was
    most of the ~80 us the OpenAI request cost to validate (now ~15 us). Validation keeps no state on
    the instance and runs without an await, so requests on the event loop never share one mid-way.
    A body that is JSON but not an object is refused here, in JSON's words (DRF's would name a Python type).
    """
    if not isinstance(data, dict):
        raise InvalidRequest(f"the request body must be a JSON object, not {json_kind(data)}")
    return _validator(serializer_class).run_validation(data)


def json_kind(value: object) -> str:
    """What a parsed JSON value is, in JSON's terms."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string" if isinstance(value, str) else "an array"


@functools.cache
def _validator(serializer_class: type) -> object:
    return serializer_class()


def valid_sentence(query: object) -> str:
    """`GetVectorQuerySerializer`'s sentence. A sentence that passes its checks is taken without the
    serializer's pass over its fields, the hot path's largest share of validation; anything else goes
    through the serializer, for its exact refusal."""
    sentence = query.get("sentence") if isinstance(query, dict) else None
    if type(sentence) is str:
        try:
            return check_sentence(sentence)
        except ValidationError:
            pass
    return validated(GetVectorQuerySerializer, query)["sentence"]


def openai_item(index: int, row: np.ndarray, encoding: str) -> dict:
    if encoding == "base64":
        return {
            "object": "embedding",
            "index": index,
            "embedding": base64.b64encode(row.astype("<f4").tobytes()).decode(),
        }
    return {"object": "embedding", "index": index, "embedding": row}


async def openai_embeddings(data: object) -> Answer:
    """OpenAI `POST /v1/embeddings`."""
    params = validated(EmbeddingsRequestSerializer, data)
    outcome = await core.embed(
        core.EmbedJob(params["input"], model=params.get("model"), truncate=True, dimensions=params.get("dimensions"))
    )
    encoding = params["encoding_format"]
    payload = {
        "object": "list",
        "data": [openai_item(i, row, encoding) for i, row in enumerate(outcome.vectors)],
        "model": outcome.model,
        "usage": {"prompt_tokens": outcome.prompt_tokens, "total_tokens": outcome.prompt_tokens},
    }
    return Answer(payload, outcome)


async def tei_embed(data: object) -> Answer:
    """TEI `POST /embed`: a list of vectors."""
    params = validated(EmbedRequestSerializer, data)
    outcome = await core.embed(
        core.EmbedJob(
            params["inputs"],
            model=params.get("model"),
            truncate=params["truncate"],
            normalize=params["normalize"],
            dimensions=params.get("dimensions"),
            param="inputs",
        )
    )
    return Answer(outcome.vectors, outcome)


async def get_vector(query: object) -> Answer:
    """The write-up's `GET /get_vector?sentence=`: `{"vector": [...]}`."""
    outcome = await core.embed(core.EmbedJob(Inputs(texts=[valid_sentence(query)]), param="sentence"))
    return Answer({"vector": outcome.vectors[0]}, outcome)


async def similarity(data: object) -> Answer:
    """Cosine of a source sentence against each sentence."""
    params = validated(SimilarityRequestSerializer, data)
    texts = [params["inputs"]["source_sentence"], *params["inputs"]["sentences"].texts]
    outcome = await core.embed(
        core.EmbedJob(
            Inputs(texts=texts), model=params.get("model"), truncate=params["truncate"], normalize=True, param="inputs"
        )
    )
    scores = outcome.vectors[1:] @ outcome.vectors[0]
    return Answer([float(s) for s in scores], outcome)


Handler = Callable[[object], Awaitable[Answer]]
