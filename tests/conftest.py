"""Shared fixtures: a real SQLite file and, where reachable, a fresh PostgreSQL database.

PostgreSQL runs at 127.0.0.1:5432 in CI (trust auth, database ``test``); there its tests must
run, so an unreachable server fails the run when CI=true and skips elsewhere with the reason.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get("WATCHNET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("select 1")
        return None
    except Exception as e:  # noqa: BLE001  (any failure means: no server to test against)
        return f"PostgreSQL at {PG_ADMIN_URL} not reachable ({type(e).__name__})"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    reason = _pg_available()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests")
        pytest.skip(reason)
    import psycopg

    name = f"watchnet_test_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'node.db'}"
        return
    base: str = request.getfixturevalue("postgres_url")
    import psycopg

    admin = base.replace("postgresql+psycopg://", "postgresql://", 1)
    schema_db = f"{admin.rsplit('/', 1)[1]}_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{schema_db}"')
    yield f"{base.rsplit('/', 1)[0]}/{schema_db}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{schema_db}" WITH (FORCE)')
