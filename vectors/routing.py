"""WebSocket routes, and the Origin guard in front of them."""

from __future__ import annotations

from urllib.parse import ParseResult

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.urls import re_path

from .consumers import EmbedConsumer


class NoSuchStream(AsyncWebsocketConsumer):
    """Refuse a handshake on a path that has no stream (the server answers 403), instead of a 500."""

    async def connect(self) -> None:
        await self.close()


websocket_urlpatterns = [
    re_path(r"^ws/embed/?$", EmbedConsumer.as_asgi(), name="ws-embed"),  # with or without the slash
    re_path(r"", NoSuchStream.as_asgi()),
]


class BrowserOriginValidator(OriginValidator):
    """Refuse a handshake whose Origin is not one of ALLOWED_HOSTS; let one without Origin through.

    Browsers always send Origin, so cross-site WebSocket hijacking is still refused. Server-side
    callers (java.net.http.WebSocket, Python websockets, Tyrus, OkHttp) send none, and channels'
    AllowedHostsOriginValidator would refuse every one of them with a 403.
    """

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        return parsed_origin is None or self.validate_origin(parsed_origin)


def allowed_origins() -> list[str]:
    """Return the Origin patterns accepted: ALLOWED_HOSTS, as channels' own validator uses them."""
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = ["localhost", "127.0.0.1", "[::1]"]
    return hosts
