"""How `serve` sets daphne up: the listen backlog (Twisted's own default is 50), no Twisted access log; and how
any daphne that runs this app gets the early 413."""

from __future__ import annotations

import re
import sys
import types

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString

from vectors import conf, daphne_server
from vectors.api.errors import PayloadTooLarge
from vectors.daphne_server import daphne_endpoints, forget_requests_without_application, skip_twisted_access_log
from vectors.serving import ServeOptions


def test_tcp_and_unix_endpoints_listen_with_the_backlog_asked_for():
    tcp = daphne_endpoints(ServeOptions(host="127.0.0.1", port=8123, backlog=777))
    unix = daphne_endpoints(ServeOptions(unix_socket="/tmp/embed.sock", backlog=777))
    assert len(tcp) == len(unix) == 1
    assert serverFromString(reactor, tcp[0])._backlog == 777
    assert serverFromString(reactor, unix[0])._backlog == 777


def test_the_default_is_uvicorns_2048_and_an_inherited_socket_keeps_its_own():
    assert serverFromString(reactor, daphne_endpoints(ServeOptions())[0])._backlog == 2048
    assert daphne_endpoints(ServeOptions(fd=5)) == ["fd:fileno=5"]


def test_twisted_formats_no_access_log_line_per_request(monkeypatch):
    from daphne.http_protocol import HTTPFactory
    from twisted.web import http
    from twisted.web.test.requesthelper import DummyChannel

    monkeypatch.setattr(HTTPFactory, "log", HTTPFactory.log)  # restored after the test
    factory = HTTPFactory(None)
    factory.startFactory()
    formatted = []
    factory._logFormatter = lambda *args: formatted.append(args) or "line"
    request = http.Request(DummyChannel(), False)
    factory.log(request)
    assert len(formatted) == 1  # Twisted's default: one combined-format line per answered request
    skip_twisted_access_log()
    factory.log(request)
    assert len(formatted) == 1


def test_requests_that_never_reached_the_application_are_forgotten_before_daphne_cancels_the_rest():
    running, refused = object(), object()
    connections = {running: {"application_instance": "task"}, refused: {"connected": 1.0}}
    forget_requests_without_application(connections)
    assert connections == {running: {"application_instance": "task"}}


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.half_closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def loseWriteConnection(self) -> None:  # noqa: N802 - Twisted's name
        self.half_closed = True

    def loseConnection(self) -> None:  # noqa: N802 - Twisted's name
        pass

    def getPeer(self) -> object:  # noqa: N802 - Twisted's name
        return type("Address", (), {"host": "10.0.0.9"})()


class FakeRequest:
    def __init__(self, request_id: bytes) -> None:
        self.channel = type("Channel", (), {"_command": b"POST", "_path": b"/embed?x=1", "persistent": True})()
        self.channel.transport = FakeTransport()
        self.request_id = request_id

    def getHeader(self, name: bytes) -> bytes | None:  # noqa: N802 - Twisted's name
        return self.request_id if name == b"x-request-id" else None


def test_a_refusal_echoes_a_printable_request_id_and_replaces_any_other(request_log, monkeypatch):
    monkeypatch.setattr(daphne_server, "LINGER_S", 0.0)
    answers = {}
    for sent in (b"client-id-7", b"bad\x0bid", b"x" * 300):
        request = FakeRequest(sent)
        daphne_server.refuse(request, PayloadTooLarge.over(10))
        head = request.channel.transport.written.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        answers[sent] = dict(line.split(": ", 1) for line in head.split("\r\n")[1:])["x-request-id"]
        assert head.startswith("HTTP/1.1 413 ") and request.channel.transport.half_closed
    assert answers[b"client-id-7"] == "client-id-7"
    assert re.fullmatch(r"[0-9a-f]{32}", answers[b"bad\x0bid"]) and re.fullmatch(r"[0-9a-f]{32}", answers[b"x" * 300])
    logged = [(e.endpoint, e.status, e.request_id, e.caller) for e in request_log.entries()]
    assert ("tei", 413, "client-id-7", "10.0.0.9") in logged


class FakeServer:
    """daphne's Server as far as the wrapping goes: how often it ran, and what its exit saw."""

    def __init__(self) -> None:
        self.connections: dict = {}
        self.ran = 0
        self.killed: dict | None = None

    def run(self) -> None:
        self.ran += 1

    def kill_all_applications(self) -> str:
        self.killed = dict(self.connections)
        return "deferred"


def test_any_daphne_server_limits_bodies_from_settings_as_it_starts_and_is_wrapped_once(monkeypatch, settings):
    settings.EMBEDDINGS = {**settings.EMBEDDINGS, "MAX_BODY_BYTES": 12345}
    server_module = types.ModuleType("daphne.server")
    server_module.Server = type("Server", (FakeServer,), {})  # a class of its own, wrapped for this test only
    monkeypatch.setitem(sys.modules, "daphne.server", server_module)
    limits = []
    monkeypatch.setattr(daphne_server, "limit_request_bodies", limits.append)
    daphne_server.limit_bodies_when_daphne_runs()
    daphne_server.limit_bodies_when_daphne_runs()  # a second import of the ASGI module wraps nothing more
    assert limits == []  # Twisted's request is left alone until a server runs
    server = server_module.Server()
    server.run()
    assert limits == [conf.limits().max_body_bytes] == [12345] and server.ran == 1
    running, refused = object(), object()
    server.connections = {running: {"application_instance": "task"}, refused: {"connected": 1.0}}
    assert server.kill_all_applications() == "deferred"
    assert server.killed == {running: {"application_instance": "task"}}  # no KeyError on the refused one


def test_a_process_without_daphnes_server_is_left_as_it_is(monkeypatch):
    from daphne.http_protocol import WebRequest

    got_length = WebRequest.gotLength
    # As in a process that never imported it (uvicorn's without daphne's app): importing it now would fail.
    monkeypatch.setitem(sys.modules, "daphne.server", None)
    daphne_server.limit_bodies_when_daphne_runs()
    assert sys.modules["daphne.server"] is None and WebRequest.gotLength is got_length
