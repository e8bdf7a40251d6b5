"""How `serve` sets daphne up: the listen backlog (Twisted's own default is 50), no Twisted access log."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString

from vectors.daphne_server import daphne_endpoints, skip_twisted_access_log
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
