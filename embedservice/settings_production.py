"""Production settings: DEBUG off, secrets and hosts from the environment, API keys required.

Use with DJANGO_SETTINGS_MODULE=embedservice.settings_production. `manage.py check --deploy
--fail-level WARNING` passes with it. TLS is expected at a proxy in front (set
DJANGO_BEHIND_TLS_PROXY=1 so Django trusts X-Forwarded-Proto); the admin is redirected to HTTPS,
the API routes are exempt so plain-HTTP callers inside the network are not redirected.
"""

from django.core.exceptions import ImproperlyConfigured

from .settings import *  # noqa: F403
from .settings import EMBEDDINGS, env, env_bool, env_list, env_number

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env.get("DJANGO_SECRET_KEY", "")
if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("dev-only"):
    raise ImproperlyConfigured("production: set DJANGO_SECRET_KEY to a random string of at least 50 characters")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS")
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("production: set DJANGO_ALLOWED_HOSTS (comma-separated host names)")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
SECURE_REDIRECT_EXEMPT = [
    r"^v1/",
    r"^embed$",
    r"^similarity$",
    r"^get_vector",
    r"^(info|health|ready|metrics)$",
]
SECURE_HSTS_SECONDS = int(env_number("DJANGO_HSTS_SECONDS", 31_536_000))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

EMBEDDINGS = {**EMBEDDINGS, "REQUIRE_API_KEY": env_bool("EMBED_REQUIRE_API_KEY", True)}
