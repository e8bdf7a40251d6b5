"""`serve --workers N`: N server processes sharing one listening socket, supervised by this process.

The parent binds the port once and starts N fresh `manage.py serve --fd` processes that inherit
the socket (the kernel spreads connections between them). Each loads its own copy of the models.
PROMETHEUS_MULTIPROC_DIR is set for them so /metrics adds up every worker. SIGTERM/SIGINT are
forwarded; each worker drains as a single server does; the parent exits when all have stopped.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import IO

from .serving import ServeOptions


def run_workers(opts: ServeOptions, workers: int, manage_py: Path, out: IO[str]) -> int:
    """Bind, start `workers` servers on the shared socket, relay their output, return the worst exit code."""
    listener = socket.create_server((opts.host, opts.port), backlog=2048)
    listener.set_inheritable(True)
    host, port = listener.getsockname()[:2]
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="embed-metrics-")
    for stale in Path(metrics_dir).glob("*.db"):
        stale.unlink()  # prometheus_client requires an empty folder at start
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    command = [sys.executable, str(manage_py), "serve", "--fd", str(listener.fileno())]
    command += ["--drain-timeout", str(opts.drain_timeout_s), "--server", opts.server]
    command += ["--access-log"] if opts.access_log else []
    command += ["--no-warm"] if not opts.warm else []
    children = [
        subprocess.Popen(
            command, env=env, pass_fds=(listener.fileno(),), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(workers)
    ]
    ready = threading.Semaphore(0)
    lock = threading.Lock()

    def relay(index: int, child: subprocess.Popen) -> None:
        for line in child.stdout:  # type: ignore[union-attr]
            if line.startswith("listening on"):
                ready.release()
                continue
            with lock:
                out.write(f"[worker {index}] {line}")
                out.flush()

    relays = [threading.Thread(target=relay, args=(i, c), daemon=True) for i, c in enumerate(children)]
    for thread in relays:
        thread.start()

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    def announce() -> None:
        for _ in children:
            ready.acquire()
        with lock:
            out.write(f"listening on http://{host}:{port} ({workers} workers)\n")
            out.flush()

    threading.Thread(target=announce, daemon=True).start()
    codes = [child.wait() for child in children]
    for thread in relays:
        thread.join(5)
    listener.close()
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(metrics_dir, ignore_errors=True)
    out.write("stopped\n")
    out.flush()
    return max(codes, key=abs)
