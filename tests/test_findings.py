"""Rule violations, quality failures and audit checks are said in Japanese from their codes."""

from __future__ import annotations

import ast
import json
import pickle
import re
import string
from datetime import date, timedelta
from pathlib import Path

import pytest

from governance.errors import RegistrationRefused
from governance.findings import Finding
from governance.rules import RegistrationRules, check_registration
from node.console.i18n import FINDINGS, Translator
from tests.factories import T0, make_manifest

ROOT = Path(__file__).resolve().parent.parent


def _findings_in_source() -> dict[str, set[str]]:
    """Every ``Finding("code", "english", **values)`` the product builds: code -> the values' names."""
    found: dict[str, set[str]] = {}
    for path in [*ROOT.glob("governance/**/*.py"), *ROOT.glob("node/**/*.py")]:
        if path.name == "findings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Finding":
                codes = node.args[0]
                names = {k.arg for k in node.keywords if k.arg}
                options = [codes.body, codes.orelse] if isinstance(codes, ast.IfExp) else [codes]
                for code in options:
                    assert isinstance(code, ast.Constant), f"{path}:{node.lineno}: the code must be literal"
                    found[code.value] = names
    return found


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_every_finding_the_product_builds_has_a_japanese_sentence() -> None:
    built = _findings_in_source()
    assert len(built) >= 40  # rules, quality and the auditor's checks
    missing = sorted(set(built) - set(FINDINGS))
    assert not missing, f"add these codes to node/console/i18n.py FINDINGS: {missing}"
    assert not sorted(set(FINDINGS) - set(built)), "FINDINGS holds codes nothing builds"
    for code, names in built.items():  # a Japanese sentence may say less, never a value not carried
        assert _fields(FINDINGS[code]) <= names, code


def test_a_finding_is_its_english_sentence_and_keeps_its_code_and_values() -> None:
    f = Finding("face_too_small", "face is {pixels} px wide, at least {limit} px needed", pixels=61, limit=80)
    assert f == "face is 61 px wide, at least 80 px needed"
    assert json.dumps([f]) == '["face is 61 px wide, at least 80 px needed"]'
    again = pickle.loads(pickle.dumps(f))
    assert (again, again.code, dict(again.values)) == (f, "face_too_small", {"pixels": 61, "limit": 80})


def _refusal(**facts: object) -> RegistrationRefused:
    manifest = make_manifest()
    rules = RegistrationRules(
        categories=("shoplifting",), evidence_kinds=("police-report",), retention_days=90
    )
    now = T0
    given: dict[str, object] = {
        "category": "shoplifting",
        "evidence_kind": "police-report",
        "incident_date": date(2026, 10, 30),
        "registered_at": now,
        "expires_at": now + timedelta(days=30),
        "model_id": manifest.policy.model.model_id,
        "now": now,
        **facts,
    }
    with pytest.raises(RegistrationRefused) as e:
        check_registration(manifest, rules, **given)  # type: ignore[arg-type]
    return e.value


def test_a_rule_violation_reads_in_japanese_with_its_codes_named() -> None:
    refused = _refusal(category="theft", evidence_kind="incident-record", incident_date=date(2026, 12, 1))
    codes = [v.code for v in refused.violations if isinstance(v, Finding)]
    assert codes == ["category_not_registered_here", "evidence_not_accepted", "incident_after_registration"]
    ja, en = Translator("ja"), Translator("en")
    said = [ja.finding(v) for v in refused.violations]
    assert said[0] == "区分「窃盗」はこの事業者が登録する区分（万引き）にありません"
    assert said[1] == "証跡の種類「事案記録」は認められていません（認められる種類: 被害届）"
    for line in said:
        assert not re.search(r"[A-Za-z]{3,}", line), line
    assert [en.finding(v) for v in refused.violations] == list(refused.violations)
    assert "'theft' is not one this node registers" in str(refused)


def test_an_error_inside_a_finding_is_named_by_its_label_and_plain_text_passes_through() -> None:
    ja = Translator("ja")
    f = Finding(
        "event_bad", "event {index}: {detail}", index=3, error="bad_signature", detail="signature invalid"
    )
    assert ja.finding(f).startswith("イベント 3: ") and "signature invalid" not in ja.finding(f)
    assert ja.finding("a peer's own text") == "a peer's own text"
    unknown = Finding("not_a_code_we_know", "something {x}", x=1)
    assert ja.finding(unknown) == "something 1"
