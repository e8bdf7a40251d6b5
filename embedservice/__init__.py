"""embedservice: the Django project (settings, urls, ASGI application)."""
