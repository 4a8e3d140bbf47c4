"""The state tier's engines, real ones: see tests/support/state_services.py."""

from tests.support.fleet import gateways  # noqa: F401
from tests.support.state_services import postgres_server, redis_db, redis_server  # noqa: F401
