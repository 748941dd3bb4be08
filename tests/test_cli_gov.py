"""The organisation's CLI, end to end: keys, create, two of three sign, verify, refuse rollback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.cli.main import main
from protocol.keys import PublicSigningKey

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "group.toml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def keyid(path: Path) -> str:
    return PublicSigningKey.from_str(path.read_text().strip()).keyid


@pytest.fixture
def org(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    for i in (1, 2, 3):
        code, out = run(capsys, "gov", "keygen", "--out", str(tmp_path / f"org{i}.key"), "--json")
        assert code == 0 and json.loads(out)["keyid"] == keyid(tmp_path / f"org{i}.pub")
        assert os.stat(tmp_path / f"org{i}.key").st_mode & 0o777 == 0o600
    signers = [a for i in (1, 2, 3) for a in ("--signer", str(tmp_path / f"org{i}.pub"))]
    code, _ = run(
        capsys,
        "gov",
        "create",
        "--description",
        str(EXAMPLE),
        *signers,
        "--threshold",
        "2",
        "--out",
        str(tmp_path / "manifest.json"),
    )
    assert code == 0
    return tmp_path


def roots(d: Path) -> list[str]:
    return [a for i in (1, 2, 3) for a in ("--root-keyid", keyid(d / f"org{i}.pub"))]


def test_round_trip_two_of_three(org: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = str(org / "manifest.json")
    assert run(capsys, "gov", "sign", manifest, "--key", str(org / "org1.key"))[0] == 0
    code, out = run(capsys, "gov", "verify", manifest, *roots(org))
    assert code == 1 and "signed by 1/3 keys, threshold 2" in out
    assert run(capsys, "gov", "sign", manifest, "--key", str(org / "org3.key"))[0] == 0
    code, out = run(capsys, "gov", "verify", manifest, *roots(org), "--json")
    assert code == 0 and json.loads(out)["accepted"] is True


def test_tampered_file_refused(org: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = org / "manifest.json"
    for i in (1, 2):
        run(capsys, "gov", "sign", str(manifest), "--key", str(org / f"org{i}.key"))
    data = json.loads(manifest.read_text())
    data["signed"]["policy"]["match_threshold"] = 0.1
    manifest.write_text(json.dumps(data))
    code, out = run(capsys, "gov", "verify", str(manifest), *roots(org))
    assert code == 1 and "threshold_not_met" in out


def test_rolled_back_copy_refused(org: Path, capsys: pytest.CaptureFixture[str]) -> None:
    v1 = org / "manifest.json"
    for i in (1, 2):
        run(capsys, "gov", "sign", str(v1), "--key", str(org / f"org{i}.key"))
    v2 = org / "v2.json"
    code, _ = run(capsys, "gov", "member", "suspend", str(v1), "chain-b", "--out", str(v2))
    assert code == 0
    for i in (2, 3):
        run(capsys, "gov", "sign", str(v2), "--key", str(org / f"org{i}.key"))
    assert run(capsys, "gov", "verify", str(v2), "--trusted", str(v1))[0] == 0
    code, out = run(capsys, "gov", "verify", str(v1), "--trusted", str(v2))
    assert code == 1 and "rollback" in out


def test_sign_with_foreign_key_is_refused(
    org: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run(capsys, "gov", "keygen", "--out", str(tmp_path / "intruder.key"))
    assert main(["gov", "sign", str(org / "manifest.json"), "--key", str(tmp_path / "intruder.key")]) == 1
    assert "not one of the manifest's 3 signing keys" in capsys.readouterr().err


def test_notice_in_both_languages(org: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "共同利用" in run(capsys, "gov", "notice", str(org / "manifest.json"), "--lang", "ja")[1]
    assert "Fact of joint use" in run(capsys, "gov", "notice", str(org / "manifest.json"), "--lang", "en")[1]


def test_help_through_the_installed_script() -> None:
    script = Path(sys.executable).parent / "watchnet"
    out = subprocess.run([str(script), "gov", "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("keygen", "create", "sign", "verify", "member", "bump", "notice"):
        assert command in out
