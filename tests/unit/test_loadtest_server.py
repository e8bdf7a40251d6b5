"""The target: loopback checks, and a started server that is always stopped, its whole process group with it."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from vectors.loadtest.server import LocalServer, TargetError, is_loopback, url_problem, wait_ready

FAKE_MANAGE = textwrap.dedent(
    '''
    """Stands in for manage.py: `serve` answers /ready on a free port, like the real one."""
    import http.server, os, signal, subprocess, sys, threading

    mode = os.environ.get("FAKE_MODE", "obedient")
    if mode == "crash":
        print("cannot load the model", flush=True)
        sys.exit(3)

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/ready" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "300"])
        print(f"child {child.pid}", flush=True)
    else:
        signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=server.shutdown).start())
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
    '''
)


@pytest.fixture
def fake_manage(tmp_path: Path) -> Path:
    path = tmp_path / "manage.py"
    path.write_text(FAKE_MANAGE)
    return path


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST", "::1", "[::1]"])
def test_loopback_hosts_are_recognised(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.5", "example.com", "0.0.0.0", "localhost.example.com"])
def test_other_hosts_are_remote(host):
    assert not is_loopback(host)


def test_a_remote_url_is_refused_unless_allowed():
    assert "--allow-remote" in url_problem("http://10.1.1.1:8000", allow_remote=False)
    assert url_problem("http://10.1.1.1:8000", allow_remote=True) is None


def test_a_started_server_is_ready_and_stops_on_sigterm(fake_manage):
    server = LocalServer(fake_manage, {"FAKE_MODE": "obedient"})
    url = server.start()
    assert httpx.get(url + "/ready").status_code == 200
    pid = server.process.pid
    assert server.stop(grace_s=10) == 0
    assert gone(pid)


def test_a_server_that_ignores_sigterm_is_killed_with_everything_it_started(fake_manage):
    server = LocalServer(fake_manage, {"FAKE_MODE": "stubborn"})
    server.start()
    child = int(server.log().split("child ")[1].split()[0])
    pid = server.process.pid
    server.stop(grace_s=0.5)
    deadline = time.monotonic() + 5
    while not (gone(pid) and gone(child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid) and gone(child)


def test_a_server_that_exits_while_starting_is_a_target_error_with_its_log(fake_manage):
    server = LocalServer(fake_manage, {"FAKE_MODE": "crash"})
    with pytest.raises(TargetError, match="exited with status 3(.|\n)*cannot load the model"):
        server.start()
    server.stop()


def test_waiting_for_a_server_that_never_answers_times_out_with_a_target_error():
    with pytest.raises(TargetError, match="did not answer 200"):
        wait_ready("http://127.0.0.1:9", timeout_s=0.5)
