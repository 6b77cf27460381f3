"""Hub test fixtures: a store of each engine (SQLite in tmp_path; PostgreSQL in a throwaway
database per test module, a fresh schema per test), skipped cleanly without a server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store import HubStore, open_store
from tests.hub.helpers import new_schema, pg_available, throwaway_database

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """URL of a throwaway database for this test module (skips when there is no server)."""
    why = pg_available()
    if why:
        if os.environ.get("CI"):  # CI starts PostgreSQL (.ci/run): a missing server is a failure there
            pytest.fail(f"PostgreSQL is required in CI: {why}")
        pytest.skip(why)
    with throwaway_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store spec for each engine: a fresh directory, or a fresh schema of the module's database."""
    if request.param == "sqlite":
        return str(tmp_path / "hub")
    database: str = request.getfixturevalue("pg_database")
    return new_schema(database)


@pytest.fixture
def store(store_spec: str) -> Iterator[HubStore]:
    s = open_store(store_spec)
    yield s
    s.close()
