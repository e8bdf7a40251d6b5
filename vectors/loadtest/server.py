"""The target: a running server given by URL (loopback unless allowed), or one started here and stopped after."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx

LISTENING = re.compile(r"listening on (http://[^\s]+)")


class TargetError(RuntimeError):
    """The target cannot be used: refused, not answering, or the server would not start."""


def url_problem(url: str, allow_remote: bool) -> str | None:
    """Return why `url` cannot be a target, or None when it can."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--url {url!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:8000"
    if parts.path not in ("", "/") or parts.query:
        return f"--url {url!r} must be the server's root, without a path or query"
    if not allow_remote and not is_loopback(parts.hostname):
        return f"--url {url!r} is not a loopback address; load-testing another machine needs --allow-remote"
    return None


def is_loopback(host: str) -> bool:
    """Return whether `host` is localhost or a loopback IP (names are not resolved)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def wait_ready(base_url: str, timeout_s: float, alive: object = None) -> None:
    """Poll GET /ready until it answers 200.

    Raises:
        TargetError: not ready within `timeout_s`, or the server process ended.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    with httpx.Client(base_url=base_url, timeout=5, trust_env=False) as client:
        while time.monotonic() < deadline:
            if alive is not None and not alive():  # type: ignore[operator]
                raise TargetError("the server process ended before it was ready")
            try:
                response = client.get("/ready")
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
    raise TargetError(f"{base_url}/ready did not answer 200 within {timeout_s:.0f} s (last: {last})")


class LocalServer:
    """`manage.py serve --port 0` in its own process group, as the README runs it."""

    def __init__(self, manage_py: Path, env_extra: dict[str, str] | None = None, start_timeout_s: float = 180) -> None:
        self.manage_py = manage_py
        self.env_extra = env_extra or {}
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None
        self.url = ""
        self._log = tempfile.NamedTemporaryFile(prefix="benchmark-server-", suffix=".log", delete=False)  # noqa: SIM115
        self.log_path = Path(self._log.name)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self) -> str:
        """Start the server and return its URL once it listens and /ready says 200.

        Raises:
            TargetError: it did not come up; the log's tail is in the message.
        """
        env = {**os.environ, **self.env_extra}
        self.process = subprocess.Popen(
            [sys.executable, str(self.manage_py), "serve", "--host", "127.0.0.1", "--port", "0"],
            cwd=self.manage_py.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
        )
        deadline = time.monotonic() + self.start_timeout_s
        while not self.url:
            match = LISTENING.search(self.log())
            if match:
                self.url = match.group(1).rstrip("/")
            elif self.process.poll() is not None:
                raise TargetError(f"the server exited with status {self.process.returncode}:\n{self._tail()}")
            elif time.monotonic() > deadline:
                raise TargetError(f"the server did not listen within {self.start_timeout_s:.0f} s:\n{self._tail()}")
            else:
                time.sleep(0.1)
        try:
            wait_ready(self.url, max(5.0, deadline - time.monotonic()), alive=lambda: self.process.poll() is None)
        except TargetError as exc:
            raise TargetError(f"{exc}\n{self._tail()}") from exc
        return self.url

    def stop(self, grace_s: float = 30) -> int | None:
        """SIGTERM the server (it drains), then SIGKILL its process group if it overstays; return its status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                pass
        # Kill whatever is left in its group (the server itself if it overstayed, or anything it forked).
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if process.poll() is None:
            process.wait(10)
        self._log.close()
        return process.returncode

    def _tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


@contextmanager
def local_server(manage_py: Path, env_extra: dict[str, str] | None = None) -> Iterator[LocalServer]:
    """Start a server for the length of the block; stop it however the block ends."""
    server = LocalServer(manage_py, env_extra)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.log_path.unlink(missing_ok=True)
