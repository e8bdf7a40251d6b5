"""Logging filters named in settings.LOGGING."""

from __future__ import annotations

import logging


class SecurityWithoutTraceback(logging.Filter):
    """Log Django's security refusals (a Host not in ALLOWED_HOSTS ...) as one line, not with a traceback.

    Each is a client's bad request, answered 400; the traceback says only where Django noticed it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security"):
            record.exc_info = None
            record.exc_text = None
        return True
