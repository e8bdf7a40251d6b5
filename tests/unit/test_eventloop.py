"""serve's event loop: uvloop by default, asyncio on request, anything else refused with the choices."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from tests.conftest import ROOT
from vectors import checks, eventloop


@pytest.fixture
def policy():
    """Restore the event loop policy a test changes."""
    before = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(before)


@pytest.mark.parametrize("choice", ["uvloop", "asyncio"])
def test_install_makes_new_loops_of_the_chosen_kind_whatever_was_installed_before(policy, choice):
    eventloop.install("uvloop" if choice == "asyncio" else "asyncio")
    eventloop.install(choice)
    loop = asyncio.new_event_loop()
    try:
        assert eventloop.kind(loop) == choice
    finally:
        loop.close()


def test_an_unknown_event_loop_is_refused_naming_the_choices(policy):
    with pytest.raises(ImproperlyConfigured, match=r"EMBED_EVENT_LOOP='tokio': expected uvloop or asyncio"):
        eventloop.install("tokio")


def test_the_system_check_refuses_an_unknown_event_loop():
    cfg = {**copy.deepcopy(settings.EMBEDDINGS), "EVENT_LOOP": "tokio"}
    with override_settings(EMBEDDINGS=cfg):
        errors = [e for e in checks.check_embeddings() if e.level >= 40]
    assert [(e.id, "EMBED_EVENT_LOOP='tokio'" in e.msg) for e in errors] == [("vectors.E007", True)]


def test_manage_py_serve_chooses_the_loop_from_the_settings_its_settings_option_names():
    # Read before Django sees the command line: --settings must be applied first, as Django applies it.
    run = subprocess.run(
        [sys.executable, "manage.py", "serve", "--settings", "tests.settings.bogus_loop", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode == 1 and "EMBED_EVENT_LOOP='bogus'" in run.stderr, run.stderr
