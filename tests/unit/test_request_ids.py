"""Request ids: 32 hex digits, never repeated within a process, across a fork or between processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from vectors.api.accounting import new_request_id


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
