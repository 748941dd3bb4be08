"""Start real node processes for tests: ``watchnet init`` + ``watchnet serve`` on a free port."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stdout
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from node.cli.main import main
from node.config import NodeConfig, StorageSettings
from node.demo.network import LocalNode, free_port
from tests.factories import KEYS, make_manifest, signed_manifest

PASSWORD = "a long enough password"
RESERVE_MB = 4
"""``[storage] reserve_mb`` of the test nodes."""
STAFF = {
    "reg1": "registrar",
    "off1": "officer",
    "off2": "officer",
    "op1": "operator",
    "aud1": "auditor",
    "adm1": "admin",
}


def cli(*argv: str, stdin: str | None = None) -> str:
    buffer = io.StringIO()
    old_stdin = sys.stdin
    try:
        if stdin is not None:
            sys.stdin = io.StringIO(stdin)
        with redirect_stdout(buffer):
            code = main(list(argv))
    finally:
        sys.stdin = old_stdin
    assert code == 0, f"watchnet {' '.join(argv)} exited {code}"
    return buffer.getvalue()


class NodeProcess(LocalNode):
    """A single node (``chain-a``) for tests that need one real process, set up with the CLI."""

    @classmethod
    def create(cls, root: Path, database_url: str | None = None) -> NodeProcess:
        manifest = root / "group-manifest.json"
        now = datetime.now(UTC).replace(microsecond=0)
        manifest.write_bytes(signed_manifest(make_manifest(now=now), KEYS[0], KEYS[1]).to_bytes())
        directory = root / "node"
        extra = ["--database-url", database_url] if database_url else []
        roots = [a for k in KEYS for a in ("--root-keyid", k.keyid)]
        port = free_port()
        cli(
            "init",
            str(directory),
            "--node-id",
            "chain-a",
            "--manifest",
            str(manifest),
            *roots,
            "--port",
            str(port),
            *extra,
        )
        config = NodeConfig.load(directory)  # a small disk reserve: tests start many nodes on one disk
        (directory / "config.toml").write_text(
            replace(config, storage=StorageSettings(reserve_mb=RESERVE_MB)).to_toml(), encoding="utf-8"
        )
        node = cls("chain-a", directory, port)
        for username, role in STAFF.items():
            cli(
                "user",
                "add",
                "--node",
                str(directory),
                username,
                "--role",
                role,
                "--password-stdin",
                stdin=PASSWORD + "\n",
            )
            node.tokens[username] = cli("user", "token", "--node", str(directory), username).strip()
        return node
