"""``watchnet pia``: the PIA record filled from a node directory, left for the operator to complete and sign."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import tomllib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from governance.rules import RegistrationRules
from node.cli import gov as cli_gov
from node.cli import report as cli_report
from node.cli.report import DEFAULT_TEMPLATE, PLACEHOLDER_RE, fill_pia
from node.config import NodeConfig, NoticeSettings
from node.demo.network import free_port
from node.files import write_atomic
from protocol.errors import ConfigurationError, WatchnetError
from tests.factories import KEYS, make_manifest, signed_manifest
from tests.nodeproc import cli

SECRET_DB_PASSWORD = "s3cret-db-pass"


def run(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="watchnet")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_gov.register(sub)
    cli_report.register(sub)
    args = parser.parse_args(list(argv))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = args.handler(args)
        except WatchnetError as e:
            print(f"watchnet: {e.code}: {e}")
            code = 1
    return code, out.getvalue()


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pia")
    manifest = root / "group-manifest.json"
    now = datetime.now(UTC).replace(microsecond=0)
    manifest.write_bytes(signed_manifest(make_manifest(now=now), KEYS[0], KEYS[1]).to_bytes())
    directory = root / "node"
    roots = [a for k in KEYS for a in ("--root-keyid", k.keyid)]
    cli(
        "init",
        str(directory),
        "--node-id",
        "chain-a",
        "--manifest",
        str(manifest),
        *roots,
        "--port",
        str(free_port()),
    )
    config = NodeConfig.load(directory)
    notice = NoticeSettings.from_dict(
        {
            "url": "https://a-mart.example/notice",
            "operator": {"ja": "株式会社Aマート", "en": "A-Mart Co., Ltd."},
            "address": {"ja": "東京都渋谷区1-2-3", "en": "1-2-3 Shibuya, Tokyo"},
            "representative": {"ja": "代表取締役 佐藤 花子", "en": "Hanako Sato, CEO"},
            "contact": {"ja": "privacy@a-mart.example", "en": "privacy@a-mart.example"},
            "recording_retention": "30d",
            "sites": [
                {
                    "site_id": "shibuya-01",
                    "name": {"ja": "渋谷店", "en": "Shibuya"},
                    "cameras": ["entrance"],
                    "signage_posted_on": "2026-10-01",
                },
                {"site_id": "ebisu-02", "name": {"ja": "恵比寿店", "en": "Ebisu"}},
            ],
        }
    )
    updated = replace(
        config,
        notice=notice,
        database_url=f"postgresql+psycopg://watch:{SECRET_DB_PASSWORD}@db.a-mart.example/watchnet",
    )
    write_atomic(directory / "config.toml", updated.to_toml().encode())
    return directory


def test_the_pia_states_what_the_node_knows_and_leaves_the_rest_to_the_operator(
    node_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pia.md"
    code, said = run("pia", "--node", str(node_dir), "--out", str(out))
    assert code == 0 and "To complete" in said, said
    text = out.read_text(encoding="utf-8")
    manifest = make_manifest()
    rules = RegistrationRules.from_dict(tomllib.loads((node_dir / "rules.toml").read_text()))
    assert not PLACEHOLDER_RE.search(text)
    assert text.startswith("# Privacy impact assessment: A-Mart Co., Ltd. (chain-a)")
    for expected in (
        "株式会社Aマート / A-Mart Co., Ltd.",
        "1-2-3 Shibuya, Tokyo",
        "Hanako Sato, CEO",
        "https://a-mart.example/notice",
        "posted since 2026-10-01",
        "NOT POSTED YET",
        "30 days",
        f"at most {rules.retention_days} days",
        f"at most {manifest.policy.max_retention_days} days",
        manifest.policy.model.model_id,
        manifest.policy.model.weights_sha256,
        "non-commercial research only",
        str(manifest.policy.match_threshold),
        manifest.joint_use.administrator.name.en,
        manifest.joint_use.administrator.representative.ja,
        "ccp-197-2-inquiry",
        "cabinet-order-5-iv",
        "| auditor | audit.read, log.read, requests.read, report.read |",
        "postgresql at the configured server",
    ):
        assert expected in text, expected
    for purpose in manifest.joint_use.purposes:
        assert f"| {purpose.code} |" in text
    for member in manifest.joint_use.members:
        assert f"| {member.node_id} |" in text
    for item in manifest.joint_use.items:
        assert f"| {item.code} |" in text
    for category in rules.categories:
        assert category in text
    sections = re.findall(r"^## (\d+)\. ", text, flags=re.MULTILINE)
    assert sections == [str(i) for i in range(1, 13)]
    assert text.count("**To complete") >= 6 and "| Signature | |" in text


def test_the_pia_holds_no_secret(node_dir: Path) -> None:
    code, text = run("pia", "--node", str(node_dir))
    assert code == 0
    assert SECRET_DB_PASSWORD not in text and "db.a-mart.example" not in text
    for key_file in (node_dir / "keys").iterdir():
        secret = key_file.read_text(encoding="utf-8").strip()
        assert secret and secret not in text, key_file.name


def test_a_template_asking_for_something_unknown_is_refused(node_dir: Path, tmp_path: Path) -> None:
    template = tmp_path / "t.md"
    template.write_text("# {{operator}}\n{{blood_type}}\n", encoding="utf-8")
    code, text = run("pia", "--node", str(node_dir), "--template", str(template))
    assert code == 1 and "configuration" in text and "blood_type" in text
    config = NodeConfig.load(node_dir)
    rules = RegistrationRules.from_dict(tomllib.loads((node_dir / "rules.toml").read_text()))
    filled = fill_pia(
        "{{node_id}} {{model}}", config, make_manifest(), rules, source="x", now=datetime.now(UTC)
    )
    assert filled.startswith("chain-a ")


def test_every_placeholder_of_the_shipped_template_is_filled() -> None:
    asked = set(PLACEHOLDER_RE.findall(DEFAULT_TEMPLATE.read_text(encoding="utf-8")))
    assert asked == {
        "node_id",
        "operator",
        "source",
        "generated_at",
        "deployment",
        "joint_use",
        "purposes",
        "data_items",
        "flows",
        "retention",
        "safeguards",
        "model",
        "rights",
    }


def test_a_node_without_written_rules_cannot_fill_its_pia(node_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "node"
    shutil.copytree(node_dir, copy)
    (copy / "rules.toml").unlink()
    code, text = run("pia", "--node", str(copy))
    assert code == 1 and "rules.toml not found" in text
    with pytest.raises(ConfigurationError):
        NodeConfig.load(tmp_path / "missing")
