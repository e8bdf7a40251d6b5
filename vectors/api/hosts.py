"""The Host header check, the same on the lean route as Django's on every other route (ALLOWED_HOSTS)."""

from __future__ import annotations

import functools

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from .errors import InvalidRequest


def disallowed_host(host: str) -> InvalidRequest:
    """The 400 for a Host this server does not answer to (Django's DisallowedHost)."""
    domain, _port = split_domain_port(host)
    if not domain:
        return InvalidRequest(f"the Host header {host!r} is not a valid host name", code="invalid_host")
    return InvalidRequest(
        f"the Host header {host!r} is not one this server answers to; add {domain!r} to DJANGO_ALLOWED_HOSTS",
        code="invalid_host",
    )


def check_host(host: str | None, server: tuple | None) -> None:
    """Raise `disallowed_host` unless Django would accept this request's host: the Host header (several
    joined with commas, which no host matches), else the server's own address, as Django reads them."""
    if host is None:
        name, port = server or ("unknown", 0)  # what Django's ASGI request takes without a server address
        host = f"{name}:{port}"
    if not host_allowed(host, tuple(settings.ALLOWED_HOSTS), settings.DEBUG):
        raise disallowed_host(host)


@functools.lru_cache(maxsize=64)  # a client sends the same Host every time
def host_allowed(host: str, allowed: tuple[str, ...], debug: bool) -> bool:
    """Tell whether Django's own host validation accepts `host` against `allowed`."""
    if debug and not allowed:
        allowed = (".localhost", "127.0.0.1", "[::1]")  # what Django allows then
    domain, _port = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)
