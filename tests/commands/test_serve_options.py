"""`manage.py serve` refuses options that cannot work before it loads a model or listens."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--read-timeout", "-1", "--read-timeout must be >= 0"),
        ("--read-timeout", "nan", "--read-timeout must be >= 0"),
        ("--drain-timeout", "0", "--drain-timeout must be > 0"),
        ("--backlog", "0", "--backlog must be >= 1"),
        ("--workers", "0", "--workers must be >= 1"),
    ],
)
def test_serve_refuses_an_impossible_option(option, value, message):
    with pytest.raises(CommandError, match=message):
        call_command("serve", option, value)
