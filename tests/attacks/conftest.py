"""The attack suite runs against the same in-process server as the integration tests, on both
deployments (SQLite + in-process Redis, and the real PostgreSQL + Redis)."""

from tests.integration.conftest import server_settings, world

__all__ = ["server_settings", "world"]
