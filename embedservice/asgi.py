"""ASGI entry point: HTTP through Django, WebSocket through Channels' router."""

import os

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "embedservice.settings")
# Static files (admin, Swagger UI) are served from the apps themselves: no collectstatic, no CDN.
django_asgi = ASGIStaticFilesHandler(get_asgi_application())

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - needs Django set up first

from vectors.api.fastpath import FastEmbeddingApp  # noqa: E402
from vectors.daphne_server import limit_bodies_when_daphne_runs  # noqa: E402
from vectors.routing import BrowserOriginValidator, allowed_origins, websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The hot embedding routes skip Django's per-request machinery; everything else goes to Django.
        "http": FastEmbeddingApp(django_asgi),
        # Browsers must come from an allowed host; server-side callers send no Origin (see BrowserOriginValidator).
        "websocket": BrowserOriginValidator(URLRouter(websocket_urlpatterns), allowed_origins()),
    }
)

# daphne buffers a whole body before the application sees it: whatever runs daphne here (`manage.py serve`,
# `runserver`, a bare `daphne`) refuses one over EMBED_MAX_BODY_BYTES first. In a process that never runs a
# daphne Server (uvicorn's) no request changes: Twisted's request is patched only as a Server starts.
limit_bodies_when_daphne_runs()
