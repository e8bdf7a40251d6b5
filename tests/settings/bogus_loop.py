"""The project's settings with an event loop no one offers: `manage.py serve --settings` must read these."""

from embedservice.settings import *  # noqa: F403

EMBEDDINGS = {**EMBEDDINGS, "EVENT_LOOP": "bogus"}  # noqa: F405
