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


def test_a_pool_on_a_port_in_use_is_a_command_error_naming_it():
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"):
            call_command("serve", "--workers", "2", "--host", "127.0.0.1", "--port", str(port))


def test_a_pool_exits_with_the_status_its_worker_stopped_it_with(monkeypatch):
    from vectors.management.commands import serve

    monkeypatch.setattr(serve, "run_workers", lambda *args: 70)  # a worker that left a hung model call
    with pytest.raises(CommandError, match="a worker exited with status 70") as stopped:
        call_command("serve", "--workers", "2")
    assert stopped.value.returncode == 70


@pytest.mark.parametrize("server", ["daphne", "uvicorn"])
def test_a_server_on_a_port_in_use_exits_with_an_error_naming_it_not_zero(server, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "EMBED_DATA_DIR": str(tmp_path), "EMBED_LOG_REQUESTS": "0"}
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "manage.py", "serve", "--no-warm", "--server", server, "--port", str(port)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1, (done.stdout, done.stderr)  # daphne exited 0 here, as if it had served
    assert f"127.0.0.1:{port}" in done.stderr and "already in use" in done.stderr.lower()
    assert "listening on" not in done.stdout and "stopped" not in done.stdout
