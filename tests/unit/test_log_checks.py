"""Bad EMBED_LOG_* settings are refused at startup by system checks."""

from __future__ import annotations

from django.conf import settings
from django.test import override_settings

from vectors.checks import check_request_log


def ids_with(**overrides) -> list[str]:
    with override_settings(EMBEDDINGS={**settings.EMBEDDINGS, **overrides}):
        return [message.id for message in check_request_log()]


def test_the_defaults_pass():
    assert ids_with() == []


def test_sizes_and_intervals_must_be_positive():
    assert ids_with(LOG_BUFFER_ROWS=0, LOG_FLUSH_MS=-1) == ["vectors.E020", "vectors.E020"]
    assert ids_with(LOG_MAX_ROWS=-5) == ["vectors.E021"]


def test_a_batch_larger_than_the_buffer_is_a_warning():
    assert ids_with(LOG_BUFFER_ROWS=100, LOG_FLUSH_ROWS=500) == ["vectors.W020"]
