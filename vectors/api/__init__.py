"""HTTP API: serializers, the shared embedding core, views, errors and rendering."""
