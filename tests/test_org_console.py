"""The certified organisation's console (issue #20): accounts and roles, sign-in, the members page,
drafts of the next manifest version, signatures uploaded, publishing under the nodes' own rules.

Served in this process by ``build_gov_app`` on a real SQLite database (``org.db``) and a real
manifest file, read over HTTP like a browser without script would: forms with their CSRF token,
303 redirects, cookies. Signatures are made with ``watchnet gov sign`` (the CLI, in this
process), as a key holder does offline.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestServer
from sqlmodel import Session, select

from governance.changes import CHANGE_KINDS, manifest_changes
from governance.description import add_member, next_version, set_member_status
from governance.manifest import LocalizedText, Manifest, Member, MemberStatus
from governance.roles import Role
from node.console.i18n import MESSAGES, Translator
from node.org.server import build_gov_app
from node.org.staff import OrgStaff, database_url
from node.records.keystore import save_key
from node.storage.models import AuditRecord
from protocol.errors import MalformedError
from protocol.keys import EncryptionKey, SigningKey
from protocol.signed import SignedDocument
from tests.factories import KEYS, make_manifest, signed_manifest
from tests.nodeproc import PASSWORD, cli

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')
NOW = datetime.now(UTC).replace(microsecond=0)
STAFF = {"sec1": Role.SECRETARIAT, "kh1": Role.KEY_HOLDER, "kh2": Role.KEY_HOLDER, "aud1": Role.AUDITOR}


def newcomer() -> Member:
    return Member(
        node_id="chain-z",
        name=LocalizedText("ゼット商店", "Zed Stores"),
        signing_key=SigningKey.generate().public,
        encryption_key=EncryptionKey.generate().public,
        endpoint="http://127.0.0.1:9",
    )


class Browser:
    """One browser: its own cookie jar, and the CSRF token of the last page it read."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.client = aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def get(self, path: str) -> tuple[int, str]:
        response = await self.client.get(path, allow_redirects=True)
        text = await response.text()
        if m := CSRF_RE.search(text):
            self.csrf = m.group(1)
        return response.status, text

    async def post(
        self, path: str, data: dict[str, str] | FormData, *, follow: bool = True
    ) -> tuple[int, str]:
        if isinstance(data, dict):
            data = {"csrf": self.csrf, **data}
        response = await self.client.post(path, data=data, allow_redirects=follow)
        text = await response.text()
        if m := CSRF_RE.search(text):
            self.csrf = m.group(1)
        return response.status, text

    async def login(self, username: str, password: str = PASSWORD) -> tuple[int, str]:
        await self.get("/console/login?lang=en")
        return await self.post("/console/login?lang=en", {"username": username, "password": password})

    async def upload(self, path: str, data: bytes, *, field: str = "signature") -> tuple[int, str]:
        form = FormData()
        form.add_field("csrf", self.csrf)
        form.add_field(field, data, filename="signed.json", content_type="application/json")
        return await self.post(path, form)


@pytest.fixture
def org(tmp_path: Path) -> dict[str, Any]:
    """A manifest in force (version 1, signed by two of three keys), key files, staff accounts."""
    path = tmp_path / "manifest.json"
    path.write_bytes(signed_manifest(make_manifest(now=NOW), KEYS[0], KEYS[1]).to_bytes())
    for i, key in enumerate(KEYS):
        save_key(tmp_path / f"org{i + 1}.key", key)
    staff = OrgStaff.open(database_url(tmp_path))
    for username, role in STAFF.items():
        staff.accounts.add(username, role, PASSWORD, NOW)
    staff.close()
    return {"dir": tmp_path, "manifest": path}


def run(
    org: dict[str, Any], scenario: Callable[[Callable[[], Awaitable[Browser]], OrgStaff], Awaitable[None]]
) -> None:
    staff = OrgStaff.open(database_url(org["dir"]))

    async def go() -> None:
        app = build_gov_app(org["manifest"], org["dir"] / "reports", staff=staff, member_poll=3600)
        async with TestServer(app) as server:
            browsers: list[Browser] = []

            async def browser() -> Browser:
                browsers.append(Browser(str(server.make_url(""))))
                return browsers[-1]

            try:
                await scenario(browser, staff)
            finally:
                for b in browsers:
                    await b.client.close()

    try:
        asyncio.run(go())
    finally:
        staff.close()


def audit_records(staff: OrgStaff, prefix: str = "org.") -> list[tuple[str, str, str]]:
    with Session(staff.engine) as session:
        rows = session.exec(select(AuditRecord).order_by(AuditRecord.seq)).all()
        return [(r.action, r.target, r.outcome) for r in rows if r.action.startswith(prefix)]


def test_gov_user_add_makes_the_first_admin_with_the_organisations_roles_only(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(signed_manifest(make_manifest(now=NOW), KEYS[0], KEYS[1]).to_bytes())
    out = cli(
        "gov",
        "user",
        "add",
        "boss",
        "--role",
        "admin",
        "--password-stdin",
        "--manifest",
        str(path),
        stdin=PASSWORD + "\n",
    )
    assert "added boss (admin)" in out
    assert (tmp_path / "org.db").stat().st_mode & 0o077 == 0
    listed = json.loads(cli("gov", "user", "list", "--manifest", str(path), "--json"))
    assert [(a["username"], a["role"]) for a in listed] == [("boss", "admin")]
    staff = OrgStaff.open(database_url(tmp_path))
    try:
        with pytest.raises(MalformedError, match="not one of this server's roles"):
            staff.accounts.add("clerk", Role.REGISTRAR, PASSWORD, NOW)
        with pytest.raises(MalformedError, match="at least 12"):
            staff.accounts.add("short", Role.SECRETARIAT, "short", NOW)
        assert audit_records(staff, "account.") == [("account.add", "boss", "ok:admin")]
    finally:
        staff.close()
    with pytest.raises(SystemExit):  # argparse: a member's role is not offered
        cli(
            "gov",
            "user",
            "add",
            "x",
            "--role",
            "registrar",
            "--password-stdin",
            "--manifest",
            str(path),
            stdin=PASSWORD,
        )


def test_a_members_node_refuses_the_organisations_roles(tmp_path: Path) -> None:
    from node.records.accounts import StaffAccounts
    from node.storage.engine import make_engine
    from node.storage.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'node.db'}")
    upgrade(engine)
    try:
        with pytest.raises(MalformedError, match="not one of this server's roles"):
            StaffAccounts(engine).add("sec", Role.SECRETARIAT, PASSWORD, NOW)
    finally:
        engine.dispose()


@pytest.mark.timeout(120)
def test_sign_in_roles_and_pages_in_both_languages(org: dict[str, Any]) -> None:
    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        b = await browser()
        status, text = await b.get("/console/login")
        assert status == 200 and "認定個人情報保護団体 管理画面" in text and "団体のアカウント" in text
        status, text = await b.get("/console/login?lang=en")
        assert "Organisation console" in text
        status, text = await b.login("sec1", "wrong password!!")
        assert status == 401 and "Wrong username or password" in text
        status, text = await b.post(
            "/console/login?lang=en", {"username": "sec1", "password": PASSWORD, "csrf": "x"}
        )
        assert status == 403
        status, text = await b.login("sec1")
        assert status == 200 and "<h1>Members</h1>" in text and "Secretariat" not in text  # landed on members
        for lang in ("ja", "en"):
            for page in ("/console/members", "/console/drafts"):
                status, text = await b.get(f"{page}?lang={lang}")
                assert status == 200, (page, lang)
                assert f'<html lang="{lang}">' in text
        status, text = await b.get("/console/members?lang=ja")
        assert "加盟事業者" in text and 'data-member="chain-a"' in text and "事務局" in text
        keyholder = await browser()
        status, text = await keyholder.login("kh1")
        assert status == 200 and "Manifest drafts and signing" in text and 'id="admit-form"' not in text
        status, text = await keyholder.post(
            "/console/drafts?lang=en", {"action": "suspend", "node_id": "chain-b"}
        )
        assert status == 403 and 'data-code="forbidden"' in text
        auditor = await browser()
        await auditor.login("aud1")
        status, _ = await auditor.post("/console/drafts/2/publish?lang=en", {})
        assert status == 403
        outcomes = [r[2] for r in audit_records(staff, "POST /console")]
        assert outcomes.count("refused:forbidden") == 2
        logins = [r for r in audit_records(staff, "console.login")]
        assert ("console.login", logins[0][1], "refused:unauthenticated") in logins
        assert sum(1 for r in logins if r[2] == "ok") == 3

    run(org, scenario)


def test_every_change_kind_reads_in_both_languages() -> None:
    for kind in CHANGE_KINDS:
        ja, en = MESSAGES[f"change.{kind}"]
        values = {"subject": "chain-z", "before": "1", "after": "2", "name": "x"}
        assert Translator("ja").t(f"change.{kind}", **values) and Translator("en").t(
            f"change.{kind}", **values
        )
        assert ja != en


def test_changes_are_listed_in_words_against_the_version_in_force() -> None:
    v1: Manifest = make_manifest(now=NOW)
    assert manifest_changes(v1, next_version(v1)) == []
    admitted = add_member(v1, newcomer())
    (change,) = manifest_changes(v1, admitted)
    assert (change.kind, change.subject, change.after) == ("member-added", "chain-z", "http://127.0.0.1:9")
    assert (
        Translator("ja")
        .t(
            "change.member-added",
            subject=change.subject,
            before="",
            after=change.after,
            name=change.name.get("ja"),
        )
        .startswith("事業者の加盟: ゼット商店")
    )
    suspended = set_member_status(v1, "chain-b", MemberStatus.SUSPENDED)
    assert [(c.kind, c.subject) for c in manifest_changes(v1, suspended)] == [("member-suspended", "chain-b")]
    assert [
        c.kind
        for c in manifest_changes(suspended, set_member_status(suspended, "chain-b", MemberStatus.ACTIVE))
    ] == ["member-reinstated"]
    policy = v1.policy
    stricter = next_version(
        v1,
        roles={"manifest": type(v1.manifest_role)(v1.manifest_role.keyids, 3)},
        policy=type(policy)(
            model=policy.model,
            match_threshold=policy.match_threshold,
            max_retention_days=policy.max_retention_days - 10,
            incident_categories=policy.incident_categories[1:],
            required_evidence=policy.required_evidence,
        ),
        joint_use=type(v1.joint_use)(
            statement=v1.joint_use.statement,
            items=v1.joint_use.items,
            members=v1.joint_use.members,
            purposes=v1.joint_use.purposes[1:],
            administrator=v1.joint_use.administrator,
        ),
        expires=v1.expires + timedelta(days=30),
    )
    kinds = [c.kind for c in manifest_changes(v1, stricter)]
    assert kinds == ["purpose-removed", "threshold", "retention-shortened", "category-removed", "expires"], (
        kinds
    )


@pytest.mark.timeout(180)
def test_admission_is_drafted_signed_twice_and_published_only_at_the_threshold(org: dict[str, Any]) -> None:
    directory: Path = org["dir"]
    member = newcomer()

    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        sec = await browser()
        await sec.login("sec1")
        fields = {
            "action": "admit",
            "node_id": member.node_id,
            "name_ja": member.name.ja,
            "name_en": member.name.en,
            "signing_key": member.signing_key.to_str(),
            "encryption_key": member.encryption_key.to_str(),
            "endpoint": member.endpoint,
        }
        status, text = await sec.post("/console/drafts?lang=en", {**fields, "signing_key": "not a key"})
        assert status == 400 and 'data-code="malformed"' in text
        status, text = await sec.post("/console/drafts?lang=ja", fields)
        assert status == 200 and 'data-version="2"' in text and 'data-state="open"' in text
        assert "事業者の加盟: ゼット商店（chain-z、接続先 http://127.0.0.1:9）" in text
        assert 'data-signed="0" data-threshold="2"' in text
        status, text = await sec.post("/console/drafts?lang=en", {"action": "suspend", "node_id": "chain-b"})
        assert status == 409 and 'data-code="draft_open"' in text
        status, text = await sec.post("/console/drafts/2/publish?lang=en", {})
        assert status == 401 and 'data-code="threshold_not_met"' in text
        assert 'href="/console/drafts/2?lang=en">Back</a>' in text  # back to the draft, not home

        kh1, kh2 = await browser(), await browser()
        await kh1.login("kh1")
        await kh2.login("kh2")
        response = await kh1.client.get("/console/drafts/2/file")
        assert response.status == 200 and "attachment" in response.headers["Content-Disposition"]
        draft_file = directory / "kh1-download.json"
        draft_file.write_bytes(await response.read())
        second_file = directory / "kh2-download.json"
        second_file.write_bytes(draft_file.read_bytes())
        cli("gov", "sign", str(draft_file), "--key", str(directory / "org1.key"))
        cli("gov", "sign", str(second_file), "--key", str(directory / "org2.key"))

        await kh1.get("/console/drafts/2?lang=en")
        # a file signing something else (version 1 as in force) is refused, and nothing is kept
        status, text = await kh1.upload("/console/drafts/2/signatures?lang=en", org["manifest"].read_bytes())
        assert status == 401 and 'data-code="signature_mismatch"' in text
        status, text = await kh1.upload("/console/drafts/2/signatures?lang=en", draft_file.read_bytes())
        assert status == 200 and "The signature was added." in text
        assert 'id="collected" data-signed="1"' in text
        assert f'data-keyid="{KEYS[0].keyid}" data-signed="yes"' in text and "kh1 at" in text
        status, text = await kh1.upload("/console/drafts/2/signatures?lang=en", draft_file.read_bytes())
        assert "already collected" in text

        status, text = await sec.post("/console/drafts/2/publish?lang=en", {})
        assert status == 401 and 'data-code="threshold_not_met"' in text
        assert SignedDocument.from_bytes(org["manifest"].read_bytes(), Manifest).payload.version == 1

        await kh2.get("/console/drafts/2?lang=ja")
        status, text = await kh2.upload("/console/drafts/2/signatures?lang=ja", second_file.read_bytes())
        assert status == 200 and 'id="collected" data-signed="2"' in text and 'id="publish-form"' not in text

        status, text = await sec.get("/console/drafts/2?lang=en")
        assert 'data-publishable="yes"' in text and 'id="problems"' not in text
        status, text = await sec.post("/console/drafts/2/publish?lang=en", {})
        assert status == 200 and "Published." in text and 'data-state="published"' in text
        published = SignedDocument.from_bytes(org["manifest"].read_bytes(), Manifest)
        assert published.payload.version == 2 and published.payload.member("chain-z") is not None
        response = await sec.client.get("/v1/manifest")
        assert (await response.json())["signed"]["version"] == 2
        status, text = await sec.post("/console/drafts/2/publish?lang=en", {})
        assert status == 404 and 'data-code="no_draft"' in text

        records = audit_records(staff)
        assert ("org.draft", "v2:admit:chain-z", "ok") in records
        assert ("org.signature", "v2", "refused:signature_mismatch") in records
        assert ("org.signature", f"v2:{KEYS[0].keyid[:16]}", "ok:added=1") in records
        assert ("org.publish", "v2", "refused:threshold_not_met") in records
        assert ("org.publish", "v2:admit:chain-z", "ok") in records
        status, text = await sec.get("/console/members?lang=en")
        assert 'data-member="chain-z"' in text and 'id="in-force-version">Version 2' in text

    run(org, scenario)


@pytest.mark.timeout(120)
def test_a_draft_made_on_an_older_version_is_stale(org: dict[str, Any]) -> None:
    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        sec = await browser()
        await sec.login("sec1")
        status, text = await sec.post("/console/drafts?lang=en", {"action": "suspend", "node_id": "chain-b"})
        assert status == 200 and "Member suspended:" in text
        # meanwhile the CLI published version 2 (a renewal) by hand
        v1 = SignedDocument.from_bytes(org["manifest"].read_bytes(), Manifest).payload
        org["manifest"].write_bytes(signed_manifest(next_version(v1), KEYS[0], KEYS[1]).to_bytes())
        draft = org["dir"] / "drafts" / "draft-v2.json"
        doc = SignedDocument.from_bytes(draft.read_bytes(), Manifest)
        for key in KEYS[:2]:
            doc.sign(key)
        await sec.get("/console/drafts/2?lang=en")
        status, text = await sec.upload("/console/drafts/2/signatures?lang=en", doc.to_bytes())
        assert status == 403  # a secretary may not upload signatures
        kh = await browser()
        await kh.login("kh1")
        status, text = await kh.upload("/console/drafts/2/signatures?lang=en", doc.to_bytes())
        assert status == 200 and 'id="stale"' in text
        status, text = await sec.post("/console/drafts/2/publish?lang=en", {})
        assert status == 409 and 'data-code="draft_stale"' in text
        status, text = await sec.post("/console/drafts/2/withdraw?lang=en", {})
        assert status == 200 and "The draft was withdrawn." in text
        assert ("org.withdraw", "v2", "ok") in audit_records(staff)

    run(org, scenario)


@pytest.mark.timeout(60)
def test_members_page_says_what_is_known_of_fetches_and_reachability(org: dict[str, Any]) -> None:
    v1: Manifest = make_manifest(now=NOW)
    a, b_ = v1.joint_use.members
    members = (replace(a, endpoint="http://127.0.0.1:9"), replace(b_, endpoint="http://127.0.0.2:9"))
    org["manifest"].write_bytes(
        signed_manifest(
            replace(v1, joint_use=replace(v1.joint_use, members=members)), KEYS[0], KEYS[1]
        ).to_bytes()
    )

    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        b = await browser()
        await b.login("aud1")
        status, text = await b.get("/console/members?lang=en")
        assert 'data-reach="not-asked"' in text and "have not been asked" in text
        (await b.client.get("/v1/manifest")).close()
        status, text = await b.post("/console/members/check?lang=en", {})
        assert status == 200 and "Every node was asked" in text
        assert text.count('data-reach="unreachable"') == 2  # nothing listens on port 9
        assert 'data-fetch="seen"' in text and "Fetched at" in text  # chain-a's address is 127.0.0.1
        assert 'data-fetch="none"' in text  # nothing came from 127.0.0.2
        assert ("org.members.check", "0/2 answered", "ok") in audit_records(staff)

    run(org, scenario)


@pytest.mark.timeout(60)
def test_complaints_register_in_the_console(org: dict[str, Any]) -> None:
    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        public = await browser()
        response = await public.client.post(
            "/v1/complaints",
            json={
                "category": "misidentification",
                "summary": "I was stopped at B's door",
                "about_member": "chain-b",
            },
        )
        assert response.status == 201
        reference = (await response.json())["reference"]
        sec = await browser()
        await sec.login("sec1")
        status, text = await sec.get("/console/members?lang=en")
        assert re.search(r'data-member="chain-b".*?data-complaints-open="1"', text, re.S)
        status, text = await sec.get("/console/complaints?lang=ja")
        assert status == 200 and f'data-complaint="{reference}"' in text and 'data-about="chain-b"' in text
        assert "誤認（人違い）" in text and f'id="close-{reference}"' in text
        kh = await browser()
        await kh.login("kh1")
        status, _ = await kh.get("/console/complaints?lang=en")
        assert status == 403
        aud = await browser()
        await aud.login("aud1")
        status, text = await aud.get("/console/complaints?lang=en")
        assert status == 200 and 'id="read-only"' in text and f'id="close-{reference}"' not in text
        status, text = await sec.post(
            f"/console/complaints/{reference}/close?lang=en", {"outcome": "resolved", "note": "B apologised"}
        )
        assert status == 200 and "The complaint was closed." in text and 'data-outcome="resolved"' in text
        status, text = await sec.post(
            f"/console/complaints/{reference}/close?lang=en", {"outcome": "resolved", "note": "again"}
        )
        assert status == 409 and 'data-code="wrong_state"' in text
        assert ("org.complaint.close", reference, "ok:resolved") in audit_records(staff)
        status, text = await sec.get("/console/members?lang=en")
        assert "0 open, 1 closed" in text

    run(org, scenario)


@pytest.mark.timeout(120)
def test_a_key_holder_posts_the_signature_from_the_cli(org: dict[str, Any]) -> None:
    from node.cli.main import main

    directory: Path = org["dir"]
    manifest = str(org["manifest"])
    token = json.loads(cli("gov", "user", "token", "kh1", "--manifest", manifest, "--days", "7", "--json"))[
        "token"
    ]
    (directory / "kh1.token").write_text(token + "\n", encoding="utf-8")
    wrong = json.loads(cli("gov", "user", "token", "sec1", "--manifest", manifest, "--json"))["token"]
    (directory / "sec1.token").write_text(wrong, encoding="utf-8")

    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        sec = await browser()
        await sec.login("sec1")
        await sec.post("/console/drafts?lang=en", {"action": "suspend", "node_id": "chain-b"})
        response = await sec.client.get("/console/drafts/2/file")
        draft = directory / "draft.json"
        draft.write_bytes(await response.read())
        base = sec.base.rstrip("/")

        def sign(key: str, token_file: str) -> int:
            return main(
                [
                    "gov",
                    "sign",
                    str(draft),
                    "--key",
                    str(directory / key),
                    "--post",
                    base,
                    "--token-file",
                    str(directory / token_file),
                ]
            )

        assert await asyncio.to_thread(sign, "org1.key", "sec1.token") != 0  # a secretary may not sign
        out = await asyncio.to_thread(
            cli, "gov", "sign", str(draft), "--key", str(directory / "org1.key"), "--post", base,
            "--token-file", str(directory / "kh1.token"), "--json",
        )  # fmt: skip
        posted = json.loads(out)["posted"]
        assert posted == {"version": 2, "added": [KEYS[0].keyid], "already": [], "signed": 1, "threshold": 2}
        _, text = await sec.get("/console/drafts/2?lang=en")
        assert 'id="collected" data-signed="1"' in text and "kh1 at" in text
        response = await sec.client.post(
            "/v1/org/drafts/2/signatures",
            data=draft.read_bytes(),
            headers={"Authorization": "Bearer wnt_nope"},
        )
        assert response.status == 401 and (await response.json())["error"] == "unauthenticated"
        records = audit_records(staff)
        assert ("org.signature", f"v2:{KEYS[0].keyid[:16]}", "ok:added=1") in records
        assert ("org.signature", "v2", "refused:forbidden") in records
        assert ("org.signature", "v2", "refused:unauthenticated") in records

    run(org, scenario)


@pytest.mark.timeout(60)
def test_an_expiring_manifest_is_flagged_and_a_renewal_drafted(org: dict[str, Any]) -> None:
    v1: Manifest = make_manifest(now=NOW)
    soon = replace(v1, expires=NOW + timedelta(days=10))
    org["manifest"].write_bytes(signed_manifest(soon, KEYS[0], KEYS[1]).to_bytes())

    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        sec = await browser()
        await sec.login("sec1")
        status, text = await sec.get("/console/members?lang=ja")
        assert (
            'data-expiring="yes"' in text
            and 'id="expiry-warning"' in text
            and "有効期限が近づいています" in text
        )
        status, text = await sec.post("/console/drafts?lang=en", {"action": "renew", "days": "0"})
        assert status == 400
        status, text = await sec.post("/console/drafts?lang=en", {"action": "renew", "days": "180"})
        assert status == 200 and 'data-kind="expires"' in text and "Expiry changed:" in text
        draft = SignedDocument.from_bytes((org["dir"] / "drafts" / "draft-v2.json").read_bytes(), Manifest)
        assert draft.payload.version == 2 and draft.payload.expires >= NOW + timedelta(days=180)
        assert manifest_changes(soon, draft.payload)[0].kind == "expires"
        assert ("org.draft", "v2:renew:", "ok") in audit_records(staff)

    run(org, scenario)


@pytest.mark.timeout(60)
def test_a_fork_report_is_shown_verified_again_and_decided(org: dict[str, Any]) -> None:
    from tests.test_gov_serve import _fork, _head

    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        public = await browser()
        response = await public.client.post("/v1/reports", json=_fork(_head(3, 1), _head(3, 2)))
        assert response.status == 201
        report_id = (await response.json())["received"]
        sec = await browser()
        await sec.login("sec1")
        status, text = await sec.get("/console/members?lang=en")
        assert re.search(r'data-member="chain-a".*?data-forks="1"', text, re.S)
        status, text = await sec.get("/console/forks?lang=ja")
        assert status == 200 and f'id="fork-{report_id}"' in text and 'data-check="ok"' in text
        assert "いま再検証: 分岐を証明しています" in text and "AQEBAQEB" in text and "AgICAgIC" in text
        status, text = await sec.post(
            f"/console/forks/{report_id}/decision?lang=en", {"decision": "explain", "note": ""}
        )
        assert status == 400
        status, text = await sec.post(
            f"/console/forks/{report_id}/decision?lang=en",
            {"decision": "explain", "note": "asked A for its log"},
        )
        assert status == 200 and 'data-decision="explain"' in text
        status, text = await sec.post(
            f"/console/forks/{report_id}/decision?lang=en",
            {"decision": "suspension-drafted", "note": "no answer in 14 days"},
        )
        assert 'data-decision="suspension-drafted"' in text and "(draft of version 2)" in text
        status, text = await sec.get("/console/drafts/2?lang=en")
        assert "Member suspended:" in text and "chain-a" in text
        kh = await browser()
        await kh.login("kh1")
        status, text = await kh.get("/console/forks?lang=en")
        assert status == 200 and f'id="decide-{report_id}"' not in text
        status, _ = await kh.post(
            f"/console/forks/{report_id}/decision?lang=en", {"decision": "dismissed", "note": "x"}
        )
        assert status == 403
        records = audit_records(staff)
        assert ("org.fork.decision", f"chain-a:{report_id}", "ok:explain") in records
        assert ("org.draft", "v2:suspend:chain-a", "ok") in records
        from node.org.clearances import read_decisions

        outcomes = [d["outcome"] for d in read_decisions(org["dir"] / "reports")]
        assert outcomes == ["explain", "suspension-drafted"]

    run(org, scenario)


@pytest.mark.timeout(60)
def test_the_rules_document_is_generated_from_the_manifest_in_force(org: dict[str, Any]) -> None:
    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        b = await browser()
        _, text = await b.get("/rules?lang=ja")
        assert (
            "個人情報保護指針" in text and "万引き (shoplifting)" in text and "被害届 (police-report)" in text
        )
        assert "最長 365 日" in text and "3 名のうち 2 名" in text and "マニフェスト第 1 版" in text
        _, text = await b.get("/rules?lang=en")
        assert "at most 365 days" in text and "3 key holders have signed" in text
        v1 = SignedDocument.from_bytes(org["manifest"].read_bytes(), Manifest).payload
        policy = replace(v1.policy, max_retention_days=180)
        org["manifest"].write_bytes(
            signed_manifest(next_version(v1, policy=policy), KEYS[0], KEYS[1]).to_bytes()
        )
        response = await b.client.get("/rules.txt", headers={"Accept-Language": "en"})
        text = await response.text()
        assert response.status == 200 and "at most 180 days" in text and "manifest version 2" in text
        await b.login("aud1")
        _, text = await b.get("/console/members?lang=en")
        assert 'href="/rules?lang=en"' in text

    run(org, scenario)


@pytest.mark.timeout(60)
def test_the_group_report_sums_verified_member_reports_and_lists_the_missing(org: dict[str, Any]) -> None:
    from governance.report import ReportScope, TransparencyReport, parse_period
    from tests.factories import NODE_A_SIGNING, NODE_B_SIGNING

    def member_report(issuer: str, key: SigningKey, approved: int) -> bytes:
        report = TransparencyReport.empty(
            scope=ReportScope.NODE,
            issuer=issuer,
            group_id="jp-retail-watch",
            period=parse_period("2026-Q3"),
            generated_at=datetime(2026, 10, 2, tzinfo=UTC),
            manifest_version=1,
            members=[issuer],
        )
        data = report.to_dict()
        data["entries"]["approved"] = approved
        document = SignedDocument(TransparencyReport.from_dict(data))
        document.sign(key)
        return document.to_bytes()

    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        sec = await browser()
        await sec.login("sec1")
        status, text = await sec.get("/console/report?lang=en&period=2026-Q3")
        assert status == 200 and "No report for this period yet." in text
        assert 'data-member="chain-a"' in text and 'data-member="chain-b"' in text  # both missing
        status, text = await sec.upload(
            "/console/report/upload?lang=en", member_report("chain-a", NODE_B_SIGNING, 3), field="report"
        )
        assert status == 401 and 'data-code="report_signature"' in text
        status, text = await sec.upload(
            "/console/report/upload?lang=en", member_report("chain-a", NODE_A_SIGNING, 3), field="report"
        )
        assert status == 200 and "The report was taken." in text and 'data-period="2026-Q3"' in text
        assert re.search(r'id="missing-list"><li data-member="chain-b">', text)
        response = await sec.client.get("/report/2026-Q3")
        assert response.status == 404 and (await response.json())["error"] == "no_report"
        await sec.upload(
            "/console/report/upload?lang=ja", member_report("chain-b", NODE_B_SIGNING, 4), field="report"
        )
        status, text = await sec.post("/console/report/2026-Q3/publish?lang=ja", {})
        assert status == 200 and 'id="published"' in text and "全ての参加事業者が報告しています" in text
        response = await sec.client.get("/report/2026-Q3?lang=en")
        page = await response.text()
        assert response.status == 200 and "Every member has reported" in page and "2026-Q3" in page
        records = audit_records(staff)
        assert ("org.report.add", "2026-Q3:chain-a", "ok") in records
        assert ("org.report.publish", "2026-Q3", "ok:members=2,missing=0") in records
        kh = await browser()
        await kh.login("kh1")
        status, _ = await kh.upload(
            "/console/report/upload?lang=en", member_report("chain-a", NODE_A_SIGNING, 1), field="report"
        )
        assert status == 403

    run(org, scenario)


@pytest.mark.timeout(60)
def test_the_member_list_shows_what_each_member_owes_the_others_from_their_newest_signed_reports(
    org: dict[str, Any],
) -> None:
    from governance.report import ReportScope, TransparencyReport, parse_period
    from tests.factories import NODE_A_SIGNING, NODE_B_SIGNING

    def member_report(issuer: str, key: SigningKey, period: str, day: int, owed: dict[str, int] | None) -> bytes:
        report = TransparencyReport.empty(
            scope=ReportScope.NODE,
            issuer=issuer,
            group_id="jp-retail-watch",
            period=parse_period(period),
            generated_at=datetime(2026, 11, day, tzinfo=UTC),
            manifest_version=1,
            members=[issuer],
        )
        report.entries.owed_receipts = owed
        document = SignedDocument(report)
        document.sign(key)
        return document.to_bytes()

    def owes(text: str, member: str) -> str:
        found = re.search(rf'data-member="{member}".*?data-owes="(\d+)"', text, re.S)
        assert found is not None
        return found.group(1)

    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        sec = await browser()
        await sec.login("sec1")
        _, text = await sec.get("/console/members?lang=en")
        assert owes(text, "chain-b") == "0" and "No other member&#39;s report yet" in text
        for data in (
            member_report("chain-a", NODE_A_SIGNING, "2026-Q3", 1, {"chain-b": 5}),
            member_report("chain-a", NODE_A_SIGNING, "2026-Q4", 20, {"chain-b": 2}),  # newer: this one counts
            member_report("chain-b", NODE_B_SIGNING, "2026-Q4", 20, None),  # a node before the field
        ):
            status, _ = await sec.upload("/console/report/upload?lang=en", data, field="report")
            assert status == 200
        _, text = await sec.get("/console/members?lang=en")
        assert owes(text, "chain-b") == "2" and 'data-owner="chain-a"' in text and "2 to chain-a" in text
        assert owes(text, "chain-a") == "0" and "No other member&#39;s report yet" in text  # chain-b said nothing
        _, text = await sec.get("/console/members?lang=ja")
        assert "未送付 2 件" in text

    run(org, scenario)


@pytest.mark.timeout(60)
def test_the_group_notice_page_takes_a_complaint_about_a_member(org: dict[str, Any]) -> None:
    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        public = await browser()
        _, page = await public.get("/notice?lang=ja")
        assert "苦情の申出（認定個人情報保護団体へ送信されます）" in page
        assert 'action="notice/complaint"' in page and '<option value="chain-b">' in page
        form = {"lang": "ja", "category": "misidentification", "summary": "入口で人違いされた", "contact": ""}
        response = await public.client.post("/notice/complaint", data={**form, "about_member": "chain-z"})
        assert response.status == 400 and "参加事業者は一覧から選んでください" in await response.text()
        response = await public.client.post("/notice/complaint", data={**form, "category": "marketing"})
        assert response.status == 400 and "内容の種類を一覧から選んでください" in await response.text()
        response = await public.client.post("/notice/complaint", data={**form, "about_member": "chain-b"})
        text = await response.text()
        assert response.status == 201 and "苦情を受け付けました" in text
        reference = re.search(r"cmp-[0-9a-f]+", text).group(0)  # type: ignore[union-attr]
        sec = await browser()
        await sec.login("sec1")
        _, text = await sec.get("/console/complaints?lang=en")
        assert f'data-complaint="{reference}"' in text and 'data-about="chain-b"' in text

    run(org, scenario)


@pytest.mark.timeout(60)
def test_an_admin_manages_the_organisations_accounts_in_the_console(org: dict[str, Any]) -> None:
    staff = OrgStaff.open(database_url(org["dir"]))
    staff.accounts.add("boss", Role.ADMIN, PASSWORD, NOW)
    staff.close()

    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        admin = await browser()
        status, text = await admin.login("boss")
        assert status == 200 and "<h1>Members</h1>" in text and 'href="/console/accounts?lang=en"' in text
        status, text = await admin.get("/console/accounts?lang=ja")
        assert (
            status == 200
            and '<option value="key-holder">' in text
            and '<option value="registrar">' not in text
        )
        new = {"username": "kh3", "role": "key-holder", "password": PASSWORD, "password_again": PASSWORD}
        status, text = await admin.post("/console/accounts/add?lang=en", new)
        assert status == 200 and 'data-account="kh3"' in text
        status, text = await admin.post(
            "/console/accounts/add?lang=en", {**new, "username": "reg1", "role": "registrar"}
        )
        assert status == 400 and "not one of this server" in text
        status, text = await admin.post("/console/accounts/token?lang=en", {"username": "kh3", "days": "7"})
        assert status == 200 and "wnt_" in text
        kh3 = await browser()
        status, text = await kh3.login("kh3")
        assert status == 200 and "Manifest drafts and signing" in text
        sec = await browser()
        await sec.login("sec1")
        status, _ = await sec.get("/console/accounts?lang=en")
        assert status == 403
        assert ("account.add", "kh3", "ok:key-holder") in audit_records(staff, "account.")

    run(org, scenario)


@pytest.mark.timeout(60)
def test_the_auditor_reads_the_organisations_audit_log_with_its_chain_checked(org: dict[str, Any]) -> None:
    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        sec = await browser()
        await sec.login("sec1")
        await sec.post("/console/drafts?lang=en", {"action": "suspend", "node_id": "chain-b"})
        aud = await browser()
        await aud.login("aud1")
        status, text = await aud.get("/console/audit?lang=ja&routine=show")
        assert status == 200 and "org.draft" in text and "v2:suspend:chain-b" in text and "sec1" in text
        assert 'data-verification="verified"' in text
        response = await aud.client.get("/console/audit.csv?lang=en&action=org.draft")
        body = (await response.read()).decode("utf-8-sig")
        assert response.status == 200 and "v2:suspend:chain-b" in body
        status, _ = await sec.get("/console/audit?lang=en")
        assert status == 403
        with Session(staff.engine) as session:  # someone edits a record behind the log's back
            row = session.exec(select(AuditRecord).where(AuditRecord.action == "org.draft")).one()
            row.outcome = "refused:forbidden"
            session.add(row)
            session.commit()
        _, text = await aud.get("/console/audit?lang=en")
        assert 'data-verification="failed"' in text

    run(org, scenario)


def test_without_the_online_key_no_complaint_is_referred(org: dict[str, Any]) -> None:
    """``gov serve`` without ``--witness-key`` has nothing to sign a referral with: no form, and the
    form's POST is refused (``no_referral_key``), audited, with nothing written."""

    async def scenario(browser: Callable[[], Awaitable[Browser]], staff: OrgStaff) -> None:
        public = await browser()
        complaint = {"category": "notice", "summary": "No sign at B's door", "about_member": "chain-b"}
        reference = (await (await public.client.post("/v1/complaints", json=complaint)).json())["reference"]
        sec = await browser()
        await sec.login("sec1")
        status, text = await sec.get("/console/complaints?lang=ja")
        assert status == 200 and 'id="no-referral-key"' in text and f'id="refer-{reference}"' not in text
        status, text = await sec.post(
            f"/console/complaints/{reference}/refer?lang=en", {"days": "14", "summary": ""}
        )
        assert status == 403 and 'data-code="no_referral_key"' in text
        held = json.loads((org["dir"] / "complaints" / f"{reference}.json").read_text(encoding="utf-8"))
        assert "referral" not in held

    run(org, scenario)


def test_a_referral_is_signed_with_the_witness_key_kept_undelivered_and_refused_twice(tmp_path: Path) -> None:
    """With the witness key: the secretariat refers a complaint about chain-b, whose endpoint does
    not answer; the referral is signed with the key the manifest names, kept with its error, shown
    "not yet delivered", and offered again; a second referral and one of a complaint naming no
    member are refused; an auditor may not refer."""
    from governance.manifest import OrganisationWitness as NamedWitness
    from node.org.witness import OrganisationWitness
    from protocol.complaint import ComplaintReferral

    witness_key = SigningKey(b"\x77" * 32)
    manifest = make_manifest(now=NOW)
    policy = replace(
        manifest.policy,
        witness=replace(
            manifest.policy.witness, organisation=NamedWitness(witness_key.public, "http://127.0.0.1:9")
        ),
    )
    members = tuple(
        replace(m, endpoint="http://127.0.0.1:9") if m.node_id == "chain-b" else m
        for m in manifest.joint_use.members
    )
    manifest = manifest.with_changes(policy=policy, joint_use=replace(manifest.joint_use, members=members))
    path = tmp_path / "manifest.json"
    path.write_bytes(signed_manifest(manifest, KEYS[0], KEYS[1]).to_bytes())
    staff = OrgStaff.open(database_url(tmp_path))
    for username, role in STAFF.items():
        staff.accounts.add(username, role, PASSWORD, NOW)

    async def go() -> None:
        witness = OrganisationWitness(tmp_path / "witness", witness_key)
        app = build_gov_app(
            path, tmp_path / "reports", staff=staff, member_poll=3600, witness=witness, referral_retry=3600
        )
        async with TestServer(app) as server:
            sec, aud, public = (Browser(str(server.make_url(""))) for _ in range(3))
            try:
                about = {
                    "category": "misidentification",
                    "summary": "Stopped at B",
                    "about_member": "chain-b",
                    "contact": "me@example.org",
                }
                reference = (await (await public.client.post("/v1/complaints", json=about)).json())[
                    "reference"
                ]
                nameless = {"category": "other", "summary": "Someone somewhere"}
                unnamed = (await (await public.client.post("/v1/complaints", json=nameless)).json())[
                    "reference"
                ]
                await aud.login("aud1")
                await aud.get("/console/complaints?lang=en")
                status, _ = await aud.post(f"/console/complaints/{reference}/refer?lang=en", {"days": "14"})
                assert status == 403
                await sec.login("sec1")
                status, text = await sec.get("/console/complaints?lang=en")
                assert f'id="refer-{reference}"' in text and f'id="refer-{unnamed}"' not in text
                status, text = await sec.post(
                    f"/console/complaints/{reference}/refer?lang=en",
                    {"days": "7", "summary": "A summary for B"},
                )
                assert status == 200 and "has not reached the member yet" in text
                assert f'id="deliver-{reference}"' in text and 'data-undelivered="yes"' in text
                held = json.loads((tmp_path / "complaints" / f"{reference}.json").read_text(encoding="utf-8"))
                referral = held["referral"]
                assert (
                    referral["attempts"] == 1 and referral["delivered_at"] is None and referral["last_error"]
                )
                document = SignedDocument.from_dict(referral["document"], ComplaintReferral)
                document.verify([witness_key.public], threshold=1)
                assert document.payload.summary == "A summary for B" and referral["summary_sent"]
                assert "me@example.org" not in json.dumps(referral["document"])
                status, text = await sec.post(f"/console/complaints/{reference}/refer?lang=en", {"days": "7"})
                assert status == 409 and 'data-code="already_referred"' in text
                status, text = await sec.post(f"/console/complaints/{unnamed}/refer?lang=en", {"days": "7"})
                assert status == 400
                status, text = await sec.post(f"/console/complaints/{reference}/deliver?lang=en", {})
                assert status == 200 and "has not reached the member yet" in text
                held = json.loads((tmp_path / "complaints" / f"{reference}.json").read_text(encoding="utf-8"))
                assert held["referral"]["attempts"] == 2
                records = audit_records(staff)
                assert ("org.complaint.refer", reference, "ok:chain-b") in records
                assert any(
                    r[:2] == ("org.complaint.deliver", reference) and r[2].startswith("pending:")
                    for r in records
                )
            finally:
                for b in (sec, aud, public):
                    await b.client.close()

    try:
        asyncio.run(go())
    finally:
        staff.close()


def test_manifest_fetches_survive_a_restart_and_a_damaged_file_starts_afresh(tmp_path: Path) -> None:
    from node.org.members import FetchLog

    path = tmp_path / "manifest-fetches.json"
    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    log = FetchLog(max_sources=2, path=path)
    log.record("127.0.0.1", 3, now)
    log.record("127.0.0.1", 4, now + timedelta(minutes=1))  # within SAVE_EVERY: written at save
    log.record("10.0.0.7", 4, now)
    log.record("10.0.0.8", 4, now)  # past max_sources: the oldest address is forgotten
    log.save()
    again = FetchLog(max_sources=2, path=path)
    assert again.get("127.0.0.1") is None
    assert again.get("10.0.0.7") == log.get("10.0.0.7") and again.get("10.0.0.8") is not None
    log = FetchLog(path=path)
    log.record("127.0.0.1", 4, now)
    log.record("127.0.0.1", 5, now + timedelta(minutes=2))
    log.save()
    fetch = FetchLog(path=path).get("127.0.0.1")
    assert fetch is not None and (fetch.version, fetch.count, fetch.at) == (5, 2, now + timedelta(minutes=2))
    path.write_text("{not json")
    assert FetchLog(path=path).get("127.0.0.1") is None
