"""WebSocket tests: Channels closes stale DB connections around every message, so they may touch the DB."""

import pytest


@pytest.fixture(autouse=True)
def _db_for_channels(db):
    """Allow the database for Channels' connection housekeeping (channels.db.aclose_old_connections)."""
