"""``LocalNetwork`` on a PostgreSQL server: a fresh database per node, dropped on the final teardown.

CI runs every group test this way (``WATCHNET_DEMO_DATABASE_SERVER``), so the databases must
really be the nodes' own, and must not pile up on the shared server.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from node.config import NodeConfig
from node.demo.network import DATABASE_SERVER_VARIABLE, LocalNetwork, _database_name
from tests.conftest import PG_ADMIN_URL
from tests.nodedb import node_sql


def existing(names: list[str]) -> set[str]:
    with psycopg.connect(PG_ADMIN_URL) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)", (names,))
        return {row[0] for row in rows}


def test_database_names_are_plain_identifiers_within_63_bytes() -> None:
    assert _database_name("0a1b2c3d", "chain-a") == "watchnet_demo_0a1b2c3d_chain_a"
    long = _database_name("0a1b2c3d", "Store-" + "x" * 80)
    assert len(long) == 63 and long.startswith("watchnet_demo_0a1b2c3d_store_xxx")


def test_without_a_server_every_node_stays_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_SERVER_VARIABLE, "postgresql+psycopg://postgres@127.0.0.1:5432")
    assert LocalNetwork(tmp_path / "env", ["chain-a"]).database_server is not None
    network = LocalNetwork(tmp_path / "explicit", ["chain-a"], database_server=None)
    network.create()
    assert NodeConfig.load(network.node("chain-a").directory).effective_database_url.startswith("sqlite")
    assert network.created_databases == []


def test_each_node_gets_its_own_database_and_destroy_drops_them(postgres_url: str, tmp_path: Path) -> None:
    server = postgres_url.rsplit("/", 1)[0]
    network = LocalNetwork(tmp_path, ["chain-a", "chain-b"], database_server=server)
    network.create()
    try:
        names = list(network.created_databases)
        urls = [
            NodeConfig.load(network.node(n).directory).effective_database_url for n in ("chain-a", "chain-b")
        ]
        assert [make_url(u).database for u in urls] == names and len(set(names)) == 2
        assert existing(names) == set(names)
        assert not any(p.name == "watchnet.db" for p in tmp_path.rglob("*"))
        for node_id in ("chain-a", "chain-b"):
            with node_sql(network.node(node_id).directory) as db:
                assert db.dialect == "postgresql"
                assert db.rows("select count(*) from account") == [(6,)]
        network.stop()
        assert existing(names) == set(names), "stop() is not the final teardown"
    finally:
        network.destroy()
    assert existing(names) == set()
    network.destroy()
