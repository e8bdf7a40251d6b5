"""Request ids and request-log entry ids: 32 hex digits, never repeated within a process, across a fork or
between processes (a repeated entry id would make the log drop a row as already stored)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from vectors.api.accounting import new_request_id
from vectors.models import new_entry_id
from vectors.recorder import add_request


def test_ids_are_32_hex_digits_and_unique():
    ids = [new_request_id() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_draws_ids_of_its_own():
    read, write = os.pipe()
    before = new_request_id()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave without running pytest's teardown
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    parent = new_request_id()
    assert child[:16] != before[:16] and parent[:16] == before[:16]
    assert child != parent


def test_another_process_draws_ids_of_its_own():
    code = "import django; django.setup(); from vectors.api.accounting import new_request_id; print(new_request_id())"
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="embedservice.settings")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    other = other.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{32}", other) and other[:16] != new_request_id()[:16]


def test_entry_ids_and_request_ids_come_from_one_counter_and_never_meet():
    ids = [new_entry_id() if n % 2 else new_request_id() for n in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_requests_logged_with_one_request_id_get_entry_ids_of_their_own(request_log):
    for status in (200, 200, 503):
        add_request(request_id="retry-7", endpoint="openai", model="m", caller="10.0.0.1", status=status, total_ms=1.0)
    entries = request_log.entries()
    assert [e.request_id for e in entries] == ["retry-7"] * 3
    assert len({e.entry_id for e in entries}) == 3
