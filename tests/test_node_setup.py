"""Setting up a node from the command line: init, config, schema, staff accounts, tokens."""

from __future__ import annotations

import io
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from governance.roles import Action, Forbidden, Role, permitted, require_permission
from node.cli.main import main
from node.config import Federation, NodeConfig
from node.context import NodeContext
from node.records.accounts import AccountDisabled, AccountExists, AuthenticationFailed, StaffAccounts
from node.storage.engine import make_engine
from node.storage.migrate import head_revision, upgrade
from protocol.errors import ConfigurationError, MalformedError
from tests.factories import KEYS, T0, make_manifest, signed_manifest

PASSWORD = "a long enough password"


@pytest.fixture
def manifest_file(tmp_path: Path) -> Path:
    from datetime import UTC, datetime

    path = tmp_path / "group-manifest.json"
    doc = signed_manifest(make_manifest(now=datetime.now(UTC).replace(microsecond=0)), KEYS[0], KEYS[1])
    path.write_bytes(doc.to_bytes())
    return path


def roots() -> list[str]:
    return [a for k in KEYS for a in ("--root-keyid", k.keyid)]


def init(tmp_path: Path, manifest_file: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> Path:
    node = tmp_path / "node"
    assert (
        main(
            [
                "init",
                str(node),
                "--node-id",
                "chain-a",
                "--manifest",
                str(manifest_file),
                *roots(),
                "--json",
                *extra,
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["schema"] == head_revision() and "other keys" in out["standing"]
    return node


def test_init_creates_a_working_node(
    tmp_path: Path, manifest_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = init(tmp_path, manifest_file, capsys)
    for name in ("signing.key", "encryption.key", "data.key"):
        assert os.stat(node / "keys" / name).st_mode & 0o777 == 0o600
    context = NodeContext.load(node)
    assert context.config.node_id == "chain-a" and context.manifest.version == 1
    assert context.rules.retention_days == 365
    assert main(["init", str(node), "--node-id", "chain-a", "--manifest", str(manifest_file), *roots()]) == 1


def test_init_refuses_an_unpinned_manifest(tmp_path: Path, manifest_file: Path) -> None:
    assert (
        main(
            [
                "init",
                str(tmp_path / "n"),
                "--node-id",
                "chain-a",
                "--manifest",
                str(manifest_file),
                "--root-keyid",
                "ab" * 32,
            ]
        )
        == 1
    )
    assert not (tmp_path / "n").exists()


def test_users_through_the_cli(
    tmp_path: Path, manifest_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    node = init(tmp_path, manifest_file, capsys)
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert (
        main(
            ["user", "add", "--node", str(node), "alice", "--role", "registrar", "--password-stdin", "--json"]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["user", "list", "--node", str(node), "--json"]) == 0
    assert [u["username"] for u in json.loads(capsys.readouterr().out)] == ["alice"]
    assert main(["user", "token", "--node", str(node), "alice", "--json"]) == 0
    token = json.loads(capsys.readouterr().out)["token"]
    assert main(["user", "list", "--node", str(node), "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert [t["state"] for t in listed["tokens"]] == ["valid"] and token not in json.dumps(listed)
    context = NodeContext.load(node)
    assert context.accounts.authenticate_token(token, T0).username == "alice"
    assert main(["user", "disable", "--node", str(node), "alice"]) == 0
    with pytest.raises(AccountDisabled):
        context.accounts.authenticate_token(token, T0)


def test_schema_check_refuses_an_empty_database(
    tmp_path: Path, manifest_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    node = init(tmp_path, manifest_file, capsys)
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["db", "check", "--node", str(node), "--database-url", empty]) == 1
    assert "watchnet db upgrade" in capsys.readouterr().err
    assert main(["db", "upgrade", "--node", str(node), "--database-url", empty]) == 0
    assert main(["db", "check", "--node", str(node), "--database-url", empty]) == 0


def test_accounts(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    accounts = StaffAccounts(engine)
    accounts.add("carol", Role.OFFICER, PASSWORD, T0)
    with pytest.raises(AccountExists):
        accounts.add("carol", Role.OPERATOR, PASSWORD, T0)
    with pytest.raises(MalformedError, match="at least 12"):
        accounts.add("dave", Role.OPERATOR, "short", T0)
    with pytest.raises(MalformedError, match="username"):
        accounts.add("no spaces allowed", Role.OPERATOR, PASSWORD, T0)
    here, later = T0, T0 + timedelta(minutes=1)
    assert (
        accounts.authenticate_password("carol", PASSWORD, source="192.0.2.1", now=here).role is Role.OFFICER
    )
    with pytest.raises(AuthenticationFailed):
        accounts.authenticate_password("nobody", PASSWORD, source="192.0.2.1", now=here)
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            accounts.authenticate_password("carol", "wrong password!", source="192.0.2.1", now=here)
    with pytest.raises(AuthenticationFailed):  # inside the delay: throttled, not disabled
        accounts.authenticate_password("carol", PASSWORD, source="192.0.2.1", now=here)
    assert dict((m.username, d) for m, d in accounts.list())["carol"] is False
    assert (
        accounts.authenticate_password("carol", PASSWORD, source="192.0.2.1", now=later).username == "carol"
    )
    accounts.set_disabled("carol", True, actor="host:test", now=T0)
    with pytest.raises(AuthenticationFailed):  # a wrong password says nothing of the account
        accounts.authenticate_password("carol", "wrong password!", source="192.0.2.1", now=later)
    with pytest.raises(AccountDisabled):
        accounts.authenticate_password("carol", PASSWORD, source="192.0.2.2", now=T0)
    accounts.set_disabled("carol", False, actor="host:test", now=T0)
    token = accounts.issue_token("carol", T0, timedelta(hours=1))
    assert accounts.authenticate_token(token, T0).username == "carol"
    with pytest.raises(AuthenticationFailed, match="expired"):
        accounts.authenticate_token(token, T0 + timedelta(hours=2))
    accounts.revoke_token(token)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        accounts.authenticate_token(token, T0)


def test_password_and_token_never_stored_in_clear(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade(engine)
    accounts = StaffAccounts(engine)
    accounts.add("erin", Role.AUDITOR, PASSWORD, T0)
    token = accounts.issue_token("erin", T0)
    engine.dispose()
    data = b"".join(p.read_bytes() for p in tmp_path.glob("a.db*"))
    assert PASSWORD.encode() not in data and token.encode() not in data
    assert b"$argon2id$" in data


@pytest.mark.parametrize(
    ("role", "action", "allowed"),
    [
        (Role.REGISTRAR, Action.PROPOSE_ENTRY, True),
        (Role.REGISTRAR, Action.APPROVE_ENTRY, False),
        (Role.OFFICER, Action.PROPOSE_ENTRY, False),
        (Role.OFFICER, Action.DELETE_ENTRY, True),
        (Role.ADMIN, Action.APPROVE_ENTRY, False),
        (Role.ADMIN, Action.MANAGE_ACCOUNTS, True),
        (Role.OPERATOR, Action.MATCH, True),
        (Role.OPERATOR, Action.READ_AUDIT, False),
        (Role.AUDITOR, Action.READ_AUDIT, True),
        (Role.AUDITOR, Action.MATCH, False),
    ],
)
def test_role_table(role: Role, action: Action, allowed: bool) -> None:
    assert permitted(role, action) is allowed
    if not allowed:
        with pytest.raises(Forbidden, match=role.value):
            require_permission(role, action)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('node_id = "Bad Id"', "node_id"),
        ('node_id = "chain-a"\n[listen]\nport = 70000', "port"),
        ('node_id = "chain-a"\n[retention]\nsweep_interval = "soon"', "duration"),
        ('node_id = "chain-a"\n[telemetry]\nexporter = "syslog"', "exporter"),
        ('node_id = "chain-a"\n[telemetry]\nexporter = "otlp"', "otlp_endpoint"),
        ('node_id = "chain-a"\n[limits]\nmax_body_bytes = 10', "max_body_bytes"),
        ('node_id = "chain-a"\ncolour = "blue"', "unknown settings"),
        ("node_id = ", "not valid TOML"),
        ('node_id = "chain-a"\n[federation]\nhe_processes = 3', "he_processes 3"),
        ('node_id = "chain-a"\n[federation]\nhe_processes = 16', "he_processes"),
    ],
)
def test_config_errors(toml: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=message):
        NodeConfig.from_toml(toml, tmp_path)


def test_config_round_trip_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = NodeConfig(
        directory=tmp_path,
        node_id="chain-b",
        root_keyids=(KEYS[0].keyid,),
        retention_sweep=timedelta(minutes=5),
        federation=Federation(he_processes=4),
    )
    again = NodeConfig.from_toml(config.to_toml(), tmp_path)
    assert again == config
    assert again.federation.he_processes == 4
    assert again.effective_database_url.endswith("watchnet.db")
    monkeypatch.setenv("WATCHNET_DATABASE_URL", "postgresql+psycopg://x@y/z")
    assert again.effective_database_url == "postgresql+psycopg://x@y/z"
    monkeypatch.setenv("WATCHNET_DATA_KEY", "not-a-key")
    with pytest.raises(ConfigurationError, match="WATCHNET_DATA_KEY"):
        again.data_key_from_env()


def test_node_refuses_to_start_with_another_model(
    tmp_path: Path, manifest_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from node.face.models import DETECTOR_FILE, RECOGNIZER_FILE, default_model_dir

    node = init(tmp_path, manifest_file, capsys)
    shipped = default_model_dir()
    other = tmp_path / "other-model"
    other.mkdir()
    shutil.copy(shipped / DETECTOR_FILE, other / DETECTOR_FILE)
    shutil.copy(shipped / "2d106det.onnx", other / RECOGNIZER_FILE)
    monkeypatch.setenv("WATCHNET_MODEL_DIR", str(other))
    with pytest.raises(ConfigurationError, match="not the group's pinned model"):
        NodeContext.load(node)
    monkeypatch.delenv("WATCHNET_MODEL_DIR")
    assert NodeContext.load(node).model_pack.recognizer_sha256 == make_manifest().policy.model.weights_sha256


def test_api_tokens_are_prefixed_so_they_never_look_like_an_option(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from governance.roles import Role
    from node.records.accounts import TOKEN_PREFIX, StaffAccounts
    from node.storage.engine import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 't.db'}")
    upgrade(engine)
    accounts = StaffAccounts(engine)
    now = datetime.now(UTC)
    accounts.add("aud1", Role.AUDITOR, "a long enough password", now)
    tokens = [accounts.issue_token("aud1", now) for _ in range(50)]
    assert all(t.startswith(TOKEN_PREFIX) for t in tokens) and len(set(tokens)) == 50
    assert accounts.authenticate_token(tokens[0], now).username == "aud1"
