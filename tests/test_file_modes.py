"""The node directory is the owner's alone: 0700 directories, 0600 files, checked by ``watchnet serve``.

Real ``watchnet init`` and ``watchnet serve`` processes: the database, its ``-wal`` after a write
through the service, the config, rules, manifest and keys; then a loosened mode makes serve name
the path and the ``chmod`` on stderr, or refuse to start (exit 2) under
``[security] loose_permissions = "refuse"``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from node.config import NodeConfig, SecuritySettings
from node.demo.network import free_port
from protocol.errors import ConfigurationError
from tests.factories import KEYS, make_manifest, signed_manifest

ROOTS = [a for k in KEYS for a in ("--root-keyid", k.keyid)]


def watchnet(*argv: str, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    """``watchnet ARGV`` in its own process, under the everyday umask 022 unless told otherwise."""
    return subprocess.run(
        [sys.executable, "-m", "node.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        umask=umask,
        check=False,
    )


def init_node(root: Path) -> tuple[Path, int]:
    manifest = root / "group-manifest.json"
    now = datetime.now(UTC).replace(microsecond=0)
    manifest.write_bytes(signed_manifest(make_manifest(now=now), KEYS[0], KEYS[1]).to_bytes())
    directory, port = root / "node", free_port()
    done = watchnet(
        "init",
        str(directory),
        "--node-id",
        "chain-a",
        "--manifest",
        str(manifest),
        *ROOTS,
        "--port",
        str(port),
    )
    assert done.returncode == 0, done.stderr
    return directory, port


class Serving:
    """``watchnet serve`` with its output in a file outside the node directory."""

    def __init__(self, directory: Path, port: int, log: Path) -> None:
        self.url, self.log = f"http://127.0.0.1:{port}", log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "node.cli.main", "serve", "--node", str(directory)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                umask=0o022,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited {self.process.returncode}: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/v1/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise AssertionError(f"serve did not answer: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    yield init_node(tmp_path)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_init_and_serve_keep_the_node_directory_private(tmp_path: Path, node: tuple[Path, int]) -> None:
    directory, port = node
    assert mode(directory) == 0o700 and mode(directory / "keys") == 0o700
    for name in (
        "config.toml",
        "rules.toml",
        "manifest.json",
        "watchnet.db",
        *(f"keys/{k}.key" for k in ("signing", "encryption", "data")),
    ):
        assert mode(directory / name) == 0o600, f"{name}: {mode(directory / name):04o}"
    serving = Serving(directory, port, tmp_path / "serve.log")
    try:
        serving.wait_ready()
        body = json.dumps({"category": "notice", "summary": "The sign by the door is hard to read."}).encode()
        request = urllib.request.Request(f"{serving.url}/v1/complaints", data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 201
        wal = directory / "watchnet.db-wal"
        assert wal.exists() and wal.stat().st_size > 0, "the complaint was not written through the WAL"
        created = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*"))
        loose = {p: f"{mode(directory / p):04o}" for p in created if mode(directory / p) & 0o077}
        assert loose == {}, loose
        assert mode(wal) == 0o600 and mode(directory / "watchnet.db-shm") == 0o600
    finally:
        serving.stop()
    assert "readable or writable by group or others" not in serving.log.read_text()


def test_serve_names_each_loose_path_and_the_chmod(tmp_path: Path, node: tuple[Path, int]) -> None:
    directory, port = node
    os.chmod(directory, 0o755)
    os.chmod(directory / "config.toml", 0o644)
    serving = Serving(directory, port, tmp_path / "serve.log")
    try:
        serving.wait_ready()
    finally:
        serving.stop()
    warnings = [line for line in serving.log.read_text().splitlines() if "group or others" in line]
    assert warnings == [
        f"watchnet serve: {directory} has mode 0755, readable or writable by group or others; "
        f"fix with: chmod 700 {directory}",
        f"watchnet serve: {directory / 'config.toml'} has mode 0644, readable or writable by group or "
        f"others; fix with: chmod 600 {directory / 'config.toml'}",
    ]


def test_serve_refuses_to_start_when_the_config_says_so(tmp_path: Path, node: tuple[Path, int]) -> None:
    directory, _ = node
    config = NodeConfig.load(directory)
    assert config.security.loose_permissions == "warn"
    strict = replace(config, security=SecuritySettings(loose_permissions="refuse"))
    (directory / "config.toml").write_text(strict.to_toml(), encoding="utf-8")
    os.chmod(directory / "config.toml", 0o600)
    os.chmod(directory / "rules.toml", 0o664)
    done = watchnet("serve", "--node", str(directory))
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert f"{directory / 'rules.toml'} has mode 0664" in done.stderr
    assert f"fix with: chmod 600 {directory / 'rules.toml'}" in done.stderr
    assert "refusing to start" in done.stderr and "serving node" not in done.stdout


def test_loose_permissions_setting_round_trips_and_is_checked(tmp_path: Path) -> None:
    config = NodeConfig(directory=tmp_path, node_id="chain-a", security=SecuritySettings("refuse"))
    assert NodeConfig.from_toml(config.to_toml(), tmp_path) == config
    with pytest.raises(
        ConfigurationError, match=r"security.loose_permissions: 'ignore' is not one of warn, refuse"
    ):
        NodeConfig.from_toml('node_id = "chain-a"\n[security]\nloose_permissions = "ignore"\n', tmp_path)
