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


SLOWEST_FIRST = (
    "test_private_mode.py",
    "test_demo.py",
    "test_walkthrough.py",
    "test_federation.py",
    "test_restore.py",
    "test_fork_clearance_network.py",
    "test_score_disclosure.py",
    "test_sign_in_throttle.py",
    "test_report.py",
    "test_report_counts.py",
    "test_peer_log.py",
    "test_leader.py",
    "test_cluster.py",
    "chaos/test_partition.py",
    "chaos/test_kill_mid_propagation.py",
    "chaos/test_database_restart.py",
    "chaos/test_slow_peer.py",
    "chaos/test_clock_skew.py",
    "test_worker_state.py",
    "test_cluster_writes.py",
    "test_cluster_freshness.py",
    "test_forward_flood.py",
    "test_face_service.py",
    "test_console_story.py",
    "test_console_tour_browser.py",
    "test_alert_faces_browser.py",
    "test_alert_faces.py",
    "test_cli_bad_input.py",
    "test_complaint_referrals.py",
    "test_witnessing.py",
)
"""Modules that take a minute or more on two busy cores, longest first: the suite runs on two
workers, one module at a time each, and starting the long ones first keeps one worker from
finishing a long module alone at the end."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent

    def rank(item: pytest.Item) -> int:
        name = item.path.relative_to(here).as_posix() if item.path.is_relative_to(here) else ""
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="module")
def throwaway_postgres() -> Iterator[object]:
    """A PostgreSQL cluster of the module's own (``tests.throwaway_pg``): for tests that stop the
    database or read its files, never done to the shared server."""
    from tests.throwaway_pg import throwaway_postgres_cluster

    yield from throwaway_postgres_cluster()
