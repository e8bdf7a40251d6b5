"""Ages for `prunelogs --older-than`."""

from __future__ import annotations

from datetime import timedelta

import pytest

from vectors.retention import parse_age


@pytest.mark.parametrize(
    ("text", "age"),
    [("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), ("12h", timedelta(hours=12)),
     ("7d", timedelta(days=7)), ("2w", timedelta(weeks=2)), (" 1.5d ", timedelta(hours=36))],
)  # fmt: skip
def test_ages_read_as_a_number_and_a_unit(text, age):
    assert parse_age(text) == age


@pytest.mark.parametrize("text", ["7", "d", "7 days", "-1d", "0d", "7y", ""])
def test_anything_else_is_refused_with_the_expected_form(text):
    with pytest.raises(ValueError, match="90s, 30m, 12h, 7d or 2w"):
        parse_age(text)
