"""Start real node processes for tests: ``watchnet init`` + ``watchnet serve`` on a free port."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from node.cli import main
from tests.factories import KEYS, make_manifest, signed_manifest

PASSWORD = "a long enough password"
STAFF = {
    "reg1": "registrar",
    "off1": "officer",
    "off2": "officer",
    "op1": "operator",
    "aud1": "auditor",
    "adm1": "admin",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@dataclass
class NodeProcess:
    directory: Path
    port: int
    tokens: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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
        node = cls(directory, port)
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

    def start(self) -> None:
        log = open(self.directory / "serve.log", "ab")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "watchnet"), "serve", "--node", str(self.directory)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/v1/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        raise RuntimeError(f"node did not start: {(self.directory / 'serve.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def call(
        self, method: str, path: str, user: str | None = None, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        if user is not None:
            request.add_header("Authorization", f"Bearer {self.tokens[user]}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")
