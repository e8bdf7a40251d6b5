"""`serve --workers`' supervisor with stand-in worker processes: restart, boot failure, crash loop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import ROOT, wait_until
from vectors import workers

FAKE_WORKER = textwrap.dedent(
    """
    import os, pathlib, signal, sys, time
    mode, state = os.environ["FAKE_MODE"], pathlib.Path(os.environ["FAKE_STATE"])
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))  # before its file: a test may stop it from then on
    (state / str(os.getpid())).touch()  # one file per process started
    if mode == "boot-fails":
        sys.exit(3)
    print("listening on http://127.0.0.1:1", flush=True)
    if mode == "crash-loop":
        time.sleep(0.05)
        sys.exit(1)
    if mode == "first-dies" and not (state / "died").exists():
        (state / "died").touch()
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGKILL)
    while True:
        time.sleep(0.05)
    """
)


# The supervisor runs in a process of its own, as under `manage.py serve --workers`: it installs signal
# handlers, and a test process that has loaded torch, ONNX Runtime and OpenVINO crashed (SIGSEGV) when
# it signalled itself to stop one.
SUPERVISOR = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import django
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedservice.settings")
    django.setup()
    from vectors.serving import ServeOptions
    from vectors.workers import run_workers
    sys.exit(run_workers(ServeOptions(port=0), int(sys.argv[2]), Path(sys.argv[1]), sys.stdout))
    """
)


@pytest.fixture
def supervise(tmp_path: Path):
    """Run the supervisor over the stand-in worker in `mode`; return (exit code, output, processes started)."""
    script = tmp_path / "fake_manage.py"
    script.write_text(FAKE_WORKER)
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "metrics").mkdir()
    env = {**os.environ, "FAKE_STATE": str(state), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}

    def workers_started() -> int:
        return len([p for p in state.iterdir() if p.name.isdigit()])

    def run(mode: str, count: int, stop_once_started: int | None = None) -> tuple[int, str, int]:
        """Run the supervisor; SIGTERM it once `stop_once_started` worker processes have started."""
        supervisor = subprocess.Popen(
            [sys.executable, "-c", SUPERVISOR, str(script), str(count)],
            cwd=ROOT,
            env={**env, "FAKE_MODE": mode},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if stop_once_started is not None:
            # Wait for the workers themselves, not for a fixed time that a busy machine (a parallel test
            # worker starting servers) may not be done in; a pool that never gets there fails below.
            wait_until(lambda: workers_started() >= stop_once_started or supervisor.poll() is not None, 60, 0.02)
            supervisor.send_signal(signal.SIGTERM)
        output, _ = supervisor.communicate(timeout=60)
        return supervisor.returncode, output, workers_started()

    return run


def test_a_worker_that_dies_while_serving_is_replaced_and_the_pool_stops_cleanly_later(supervise):
    code, output, started = supervise("first-dies", 2, stop_once_started=3)  # the two and a replacement
    assert "exited with code -9; starting a new one" in output
    replaced = output.count("starting a new one")
    assert started == 2 + replaced
    assert "listening on http://" in output and output.rstrip().endswith("stopped")
    assert code == 0, output


def test_a_worker_that_cannot_start_stops_the_pool_with_its_code(supervise):
    code, output, started = supervise("boot-fails", 2)
    assert code == 3
    assert "before it was serving; stopping the others" in output
    assert "starting a new one" not in output
    assert started == 2


def test_a_worker_that_keeps_dying_is_given_up_on(supervise):
    code, output, started = supervise("crash-loop", 1)
    assert code == 1
    assert output.count("starting a new one") == workers.MAX_RESTARTS
    assert f"after {workers.MAX_RESTARTS} restarts within" in output
    assert started == 1 + workers.MAX_RESTARTS
