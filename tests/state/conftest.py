"""The state tier's engines, real ones: see tests/support/state_services.py."""

import pytest

from tests.support.fleet import gateways  # noqa: F401
from tests.support.state_services import PostgresServer, postgres_server, redis_db, redis_server  # noqa: F401


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:  # noqa: F811
    """A database of its own on the session's PostgreSQL."""
    return postgres_server.fresh_database()
