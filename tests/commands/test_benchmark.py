"""`manage.py benchmark`: every option documented, bad options refused with CommandError before anything starts."""

from __future__ import annotations

import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import ROOT
from vectors.management.commands.benchmark import Command

OWN_OPTIONS = {
    "--url",
    "--allow-remote",
    "--endpoint",
    "--concurrency",
    "--rate",
    "--connections",
    "--duration",
    "--requests",
    "--warmup",
    "--inputs-per-request",
    "--corpus",
    "--timeout",
    "--limit",
    "--limit-batch-sizes",
    "--limit-seconds",
    "--compare",
    "--json",
    "--plot",
    "--progress",
    "--no-progress",
    "--label",
    "--no-store",
}


def test_help_documents_every_option_of_the_command():
    parser = Command().create_parser("manage.py", "benchmark")
    declared = {s for action in parser._actions for s in action.option_strings if s.startswith("--")}
    assert OWN_OPTIONS <= declared
    for action in parser._actions:
        if set(action.option_strings) & OWN_OPTIONS:
            assert action.help and len(action.help) > 20, action.option_strings
    text = parser.format_help()
    for option in OWN_OPTIONS:
        assert option in text
    for endpoint in ("openai-float", "openai-base64", "tei", "get_vector", "bench-sync", "bench-async"):
        assert endpoint in text


def test_help_runs_from_the_command_line():
    done = subprocess.run(
        [sys.executable, "manage.py", "benchmark", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0
    assert "--concurrency" in done.stdout and "--compare" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "8", "--rate", "10"], "not both"),
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--duration", "-2"], "--duration must be more than 0"),
        (["--endpoint", "get_vector", "--inputs-per-request", "3"], "takes 1 text per request"),
        (["--url", "http://192.0.2.10:8000"], "--allow-remote"),
        (["--compare", "--endpoint", "tei"], "leave out --endpoint"),
        (["--limit-batch-sizes", "16,big"], "--limit-batch-sizes"),
        (["--plot", "out.jpg"], "*.png"),
        (["--concurrency", "many"], "invalid int value"),
        (["--endpoint", "grpc"], "invalid choice"),
    ],
)
def test_bad_options_raise_command_error_with_a_clear_message(args, message):
    with pytest.raises(CommandError) as caught:
        call_command("benchmark", *args, stdout=StringIO(), stderr=StringIO())
    assert message in str(caught.value)


def test_a_target_that_is_not_listening_is_a_command_error_not_a_traceback():
    with pytest.raises(CommandError, match="did not answer 200"):
        call_command(
            "benchmark", "--url", "http://127.0.0.1:9", "--duration", "1", stdout=StringIO(), stderr=StringIO()
        )
