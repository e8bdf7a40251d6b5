"""What the production runner does once its server has stopped: leave a model call that never returns."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import ROOT
from vectors import conf, serving
from vectors.engine.config import ModelConfig
from vectors.engine.registry import Registry


@pytest.fixture
def lanes(monkeypatch):
    """A registry of one model (never loaded) with two encode lanes, as a model on a CPU has them."""
    registry = Registry([ModelConfig("m", "/nowhere")])
    engine = registry.get("m")
    engine.executors.append(ThreadPoolExecutor(1, thread_name_prefix="encode-m-lane1"))
    monkeypatch.setattr(conf, "get_registry", lambda: registry)
    return engine


def test_lanes_that_are_idle_or_finish_within_the_grace_end_and_the_process_goes_on(lanes, caplog):
    lanes.executors[0].submit(time.sleep, 0.2).result(timeout=5)  # a lane that ran once, then idles
    lanes.executors[1].submit(time.sleep, 0.3)  # a batch still running as the server stops
    left, out = [], io.StringIO()
    serving.leave_hung_model_calls(out, grace_s=5, leave=left.append)
    assert left == [] and out.getvalue() == "" and "model call" not in caplog.text
    assert not lanes.lane_threads()


def test_a_model_call_that_outlives_the_grace_makes_the_process_leave_without_it(lanes, caplog):
    hung = threading.Event()
    lanes.executors[1].submit(hung.wait, 30)
    left, out = [], io.StringIO()
    started = time.monotonic()
    try:
        serving.leave_hung_model_calls(out, grace_s=0.3, leave=left.append)
        took_s = time.monotonic() - started
    finally:
        hung.set()
    assert left == [serving.HUNG_MODEL_CALL_EXIT] and 0.3 <= took_s < 3
    assert out.getvalue() == "stopped with a model call still running\n"
    assert "a model call has not returned" in caplog.text and "encode-m-lane1" in caplog.text


def test_the_process_really_exits_past_a_hung_lane_which_would_otherwise_hold_it(tmp_path):
    script = textwrap.dedent(
        """
        import sys, threading
        from vectors import conf, serving  # no django.setup(): the registry is this script's own
        from vectors.engine.config import ModelConfig
        from vectors.engine.registry import Registry

        registry = Registry([ModelConfig("m", "/nowhere")])
        registry.get("m").executor.submit(threading.Event().wait)  # never returns; the interpreter joins it at exit
        conf.get_registry = lambda: registry
        if sys.argv[1] == "leave":
            serving.leave_hung_model_calls(sys.stdout, grace_s=0.2)
        print("returned", flush=True)
        """
    )
    env = {"DJANGO_SETTINGS_MODULE": "embedservice.settings", "EMBED_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = {"cwd": ROOT, "env": env, "capture_output": True, "text": True}
    done = subprocess.run([sys.executable, "-c", script, "leave"], timeout=60, **run)
    assert done.returncode == serving.HUNG_MODEL_CALL_EXIT, done.stderr
    assert done.stdout == "stopped with a model call still running\n"
    with pytest.raises(subprocess.TimeoutExpired) as held:  # without it, the interpreter waits for the call at exit
        subprocess.run([sys.executable, "-c", script, "stay"], timeout=4, **run)
    printed = held.value.stdout or b""  # bytes here whatever `text` says (POSIX)
    assert "returned" in (printed.decode() if isinstance(printed, bytes) else printed)
