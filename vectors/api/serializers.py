"""Request serializers: the shape of every embedding request, validated before the model is called."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from .. import conf


@dataclass(frozen=True)
class Inputs:
    """Validated inputs: either texts, or token-id arrays to decode with the model's tokenizer."""

    texts: list[str] | None = None
    token_arrays: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.texts if self.texts is not None else self.token_arrays or [])


def _check_text(value: str, where: str, max_chars: int) -> str:
    if not value.strip():
        raise serializers.ValidationError(f"{where} is empty; every input must contain text")
    if len(value) > max_chars:
        raise serializers.ValidationError(f"{where} has {len(value)} characters; the limit is {max_chars}")
    if not value.isprintable() and invisible_only().fullmatch(value):
        # Tokenizers drop these: the model would see no text and answer one same vector for them all.
        raise serializers.ValidationError(f"{where} holds only control or format characters; it must contain text")
    if "\x00" in value:
        raise serializers.ValidationError(f"{where} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise serializers.ValidationError(f"{where} contains an unpaired surrogate") from None
    return value


@functools.cache
def invisible_only() -> re.Pattern[str]:
    """A text of nothing but whitespace, control and format characters (zero-width space, BOM, soft hyphen).

    Built once, at the first text that is not all printable, from the Unicode database: the planes
    that hold such characters (0, 1 and 14). A regex scans at C speed, so a long hostile text costs the
    event loop about what parsing its JSON did.
    """
    points = [*range(0x10000), *range(0x10000, 0x20000), *range(0xE0000, 0xE1000)]
    chars = "".join(chr(p) for p in points if unicodedata.category(chr(p)) in ("Cc", "Cf") or chr(p).isspace())
    return re.compile(f"[{re.escape(chars)}]*")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


TEXTS_SCHEMA = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]}
TOKENS_SCHEMA = {
    "oneOf": [
        *TEXTS_SCHEMA["oneOf"],
        {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
        {
            "type": "array",
            "items": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
            "minItems": 1,
        },
    ]
}


@extend_schema_field(TEXTS_SCHEMA)
class InputsField(serializers.Field):
    """A text, a list of texts, or (OpenAI only) token-id arrays."""

    default_error_messages = {"invalid": "must be a string or a non-empty list of strings"}

    def __init__(self, *, allow_tokens: bool = False, **kwargs: object) -> None:
        self.allow_tokens = allow_tokens
        super().__init__(**kwargs)

    def to_internal_value(self, data: object) -> Inputs:
        limits = conf.limits()
        if isinstance(data, str):
            return Inputs(texts=[_check_text(data, "the input", limits.max_input_chars)])
        if not isinstance(data, list):
            raise serializers.ValidationError(self._expected())
        if not data:
            raise serializers.ValidationError("is an empty list; send at least one input")
        if self.allow_tokens and _is_int(data[0]):  # one input of token ids (its ids are not inputs)
            return Inputs(token_arrays=[self._tokens(data, "the token array")])
        if len(data) > limits.max_inputs_per_request:
            raise serializers.ValidationError(
                f"has {len(data)} inputs; the limit is {limits.max_inputs_per_request} per request"
            )
        if all(isinstance(item, str) for item in data):
            return Inputs(texts=[_check_text(t, f"input[{i}]", limits.max_input_chars) for i, t in enumerate(data)])
        if self.allow_tokens and all(isinstance(item, list) for item in data):
            return Inputs(token_arrays=[self._tokens(item, f"input[{i}]") for i, item in enumerate(data)])
        raise serializers.ValidationError(self._expected() + "; lists may not mix types")

    def _expected(self) -> str:
        if self.allow_tokens:
            return "must be a string, a list of strings, a list of token ids or a list of token-id lists"
        return "must be a string or a list of strings"

    def _tokens(self, items: list, where: str) -> list[int]:
        if not items:
            raise serializers.ValidationError(f"{where} is empty")
        limit = conf.limits().max_input_chars
        if len(items) > limit:  # before looking at each id
            raise serializers.ValidationError(f"{where} has {len(items)} token ids; the limit is {limit}")
        if not all(_is_int(i) and i >= 0 for i in items):
            raise serializers.ValidationError(f"{where} must hold non-negative integer token ids")
        return list(items)

    def to_representation(self, value: object) -> object:
        return value


@extend_schema_field(TOKENS_SCHEMA)
class TokenInputsField(InputsField):
    """InputsField that also takes token-id arrays (OpenAI)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(allow_tokens=True, **kwargs)


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean only; DRF's own would take "yes", 1 and "on"."""

    def to_internal_value(self, data: object) -> bool:
        if not isinstance(data, bool):
            raise serializers.ValidationError("must be true or false")
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer only; DRF's own would take "12" and 12.0."""

    def to_internal_value(self, data: object) -> int:
        if not _is_int(data):
            raise serializers.ValidationError("must be an integer")
        return super().to_internal_value(data)


class NoSurrogates(ProhibitSurrogateCharactersValidator):
    """DRF's check that a text holds no lone surrogate, with its message, at C speed.

    DRF's own looks at every character in a Python loop: 5 us for a 100-character sentence, about 40 % of
    validating `GET /get_vector` on the event loop, and more for longer texts. A string encodes to UTF-8
    exactly when it holds no lone surrogate; only a text that does not is handed to DRF's loop, which
    names the first one.
    """

    def __call__(self, value: object) -> None:
        try:
            str(value).encode("utf-8")
        except UnicodeEncodeError:
            super().__call__(value)


class TextField(serializers.CharField):
    """DRF's CharField, with its lone-surrogate check done by `NoSurrogates`."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.validators = [
            NoSurrogates() if type(v) is ProhibitSurrogateCharactersValidator else v for v in self.validators
        ]


class StrictCharField(TextField):
    """A JSON string only; DRF's own would turn 12 into "12"."""

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            raise serializers.ValidationError("must be a string")
        return super().to_internal_value(data)


class EmbeddingsRequestSerializer(serializers.Serializer):
    """OpenAI `POST /v1/embeddings`."""

    input = TokenInputsField(help_text="A text, a list of texts, or token-id arrays of the model's own tokenizer.")
    model = StrictCharField(
        required=False, allow_blank=True, max_length=256, help_text="Served model name; the default model when omitted."
    )
    encoding_format = serializers.ChoiceField(
        choices=["float", "base64"], default="float", help_text="base64 = little-endian float32 bytes."
    )
    dimensions = StrictIntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="Keep the first k components, then re-normalise (Matryoshka).",
    )
    user = StrictCharField(required=False, allow_blank=True, max_length=256)


class EmbedRequestSerializer(serializers.Serializer):
    """TEI `POST /embed`."""

    inputs = InputsField(help_text="A text or a list of texts.")
    normalize = StrictBooleanField(default=True)
    truncate = StrictBooleanField(
        default=False, help_text="Cut texts longer than the model's limit instead of answering 422."
    )
    dimensions = StrictIntegerField(required=False, allow_null=True, min_value=1)
    model = StrictCharField(required=False, allow_blank=True, max_length=256)


class SimilarityInputsSerializer(serializers.Serializer):
    source_sentence = StrictCharField(max_length=1_000_000)
    sentences = InputsField()


class SimilarityRequestSerializer(serializers.Serializer):
    """TEI-style `POST /similarity`: cosine of a source sentence against each sentence."""

    inputs = SimilarityInputsSerializer()
    model = StrictCharField(required=False, allow_blank=True, max_length=256)
    truncate = StrictBooleanField(default=True)

    def validate(self, attrs: dict) -> dict:
        limits = conf.limits()
        try:
            _check_text(attrs["inputs"]["source_sentence"], "the source sentence", limits.max_input_chars)
        except serializers.ValidationError as exc:
            raise serializers.ValidationError({"inputs": {"source_sentence": exc.detail}}) from None
        sentences: Inputs = attrs["inputs"]["sentences"]
        count = len(sentences.texts or ())
        if count + 1 > limits.max_inputs_per_request:  # the source sentence is encoded too
            raise serializers.ValidationError(
                {
                    "inputs": {
                        "sentences": [
                            f"has {count} sentences; with the source sentence that is {count + 1} inputs, "
                            f"the limit is {limits.max_inputs_per_request} per request"
                        ]
                    }
                }
            )
        return attrs


class GetVectorQuerySerializer(serializers.Serializer):
    """The write-up's `GET /get_vector?sentence=`."""

    sentence = TextField(allow_blank=True, trim_whitespace=False)

    def validate_sentence(self, value: str) -> str:
        return check_sentence(value)


def check_sentence(value: str) -> str:
    """`GET /get_vector`'s sentence checks, for the serializer and for the hot path that skips it
    (vectors.api.endpoints.valid_sentence)."""
    return _check_text(value, "sentence", conf.limits().max_input_chars)
