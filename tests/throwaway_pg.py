"""A PostgreSQL cluster of a test's own, for tests that stop, break or read the files of a database.

Never the shared server: ``initdb`` and ``pg_ctl`` as the postgres user on a free port, in a
directory removed at the end whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from node.demo.network import free_port

PG_BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL cluster of the test's own, run as the postgres user in a directory it owns."""

    directory: Path
    port: int

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _as_postgres(self, program: str, *argv: str, timeout: float = 60) -> None:
        binary = PG_BINARIES[-1].parent / program
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(binary), *argv],
            check=True,
            capture_output=True,
            timeout=timeout,
        )

    @classmethod
    def create(cls) -> ThrowawayPostgres:
        owner = pwd.getpwnam("postgres")
        directory = Path(tempfile.mkdtemp(prefix="watchnet-pg-"))
        os.chown(directory, owner.pw_uid, owner.pw_gid)
        cluster = cls(directory, free_port())
        cluster._as_postgres("initdb", "-D", str(cluster.data), "-U", "postgres", "-A", "trust", "--no-sync")
        with (cluster.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                f"port = {cluster.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{directory}'\nfsync = off\nsynchronous_commit = off\n"
                "full_page_writes = off\nmax_connections = 100\n"
            )
        return cluster

    def start(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def create_database(self, name: str) -> str:
        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


def throwaway_postgres_cluster() -> Iterator[ThrowawayPostgres]:
    """A started cluster, removed afterwards; skipped (failed in CI) where PostgreSQL is not installed."""
    if not PG_BINARIES or shutil.which("runuser") is None:
        reason = "PostgreSQL's binaries (/usr/lib/postgresql/*/bin) or runuser not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run the chaos tests")
        pytest.skip(reason)
    cluster = ThrowawayPostgres.create()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
