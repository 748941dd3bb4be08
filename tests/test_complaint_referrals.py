"""A complaint about a member, referred to it by the organisation and answered (issue #20), on
real processes: the organisation's ``watchnet gov serve`` (console and witness key) and the
member nodes chain-a and chain-b of a ``LocalNetwork``.

The public complains about chain-b on the group notice's form. The secretariat refers it while
chain-b is down: the organisation's page says "not yet delivered" and its delivery loop gets it
there once chain-b is back. chain-b's complaints page shows it with the organisation's deadline;
forged, misaddressed, replayed, unsigned and oversized referrals are refused with their codes.
The organisation goes down, chain-b's officer answers (signed with chain-b's key): the page says
the answer is not yet delivered, and so does sending it again by hand; the organisation comes
back, chain-b's ``complaint_answers`` duty delivers it unattended, the organisation's page
shows it and the secretariat closes the complaint. Answers that are not
chain-b's, or about a complaint not referred to their sender, are refused by the organisation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from node.demo.network import LocalNetwork, LocalNode, wait_for
from node.records.keystore import load_signing_key
from protocol.complaint import ComplaintAnswer, ComplaintReferral
from protocol.signed import SignedDocument
from tests.nodeproc import cli
from tests.test_federation import audit

CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


class Console:
    """A browser without script on a console: cookies, the CSRF token of the last page, forms."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.base = base
        self.session = requests.Session()
        self.csrf = ""
        self.get("/console/login?lang=en")
        response = self.session.post(
            base + "/console/login?lang=en",
            data={"csrf": self.csrf, "username": username, "password": password},
            timeout=30,
        )
        self._keep(response)
        assert response.status_code == 200 and "/console/login" not in response.url, response.text[:400]

    def _keep(self, response: requests.Response) -> tuple[int, str]:
        if m := CSRF_RE.search(response.text):
            self.csrf = m.group(1)
        return response.status_code, response.text

    def get(self, path: str) -> tuple[int, str]:
        return self._keep(self.session.get(self.base + path, timeout=30))

    def post(self, path: str, data: dict[str, str]) -> tuple[int, str]:
        return self._keep(self.session.post(self.base + path, data={"csrf": self.csrf, **data}, timeout=30))


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with LocalNetwork(
        tmp_path_factory.mktemp("referrals"), ["chain-a", "chain-b"], org_console=True, referral_retry="1s"
    ).running() as network:
        yield network


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def org_file(group: LocalNetwork, reference: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (group.root / "org" / "complaints" / f"{reference}.json").read_text("utf-8")
    )
    return data


def post_referral(node: LocalNode, body: bytes) -> tuple[int, dict[str, Any]]:
    response = requests.post(
        node.url + "/v1/org/complaint-referral",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    return response.status_code, response.json()


def post_answer(group: LocalNetwork, document: SignedDocument[ComplaintAnswer]) -> tuple[int, dict[str, Any]]:
    response = requests.post(
        group.org_url + "/v1/complaint-answers",
        data=document.to_bytes(),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    return response.status_code, response.json()


def node_complaints(node: LocalNode) -> list[dict[str, Any]]:
    status, body = node.call("GET", "/v1/complaints", "off1")
    assert status == 200, body
    return list(body["complaints"] if isinstance(body, dict) else body)


def row(text: str, reference: str) -> str:
    match = re.search(rf'<tr data-complaint="{reference}".*?</tr>', text, re.S)
    assert match, f"no row of {reference}"
    return match.group(0)


@pytest.mark.timeout(300)
def test_a_public_complaint_is_referred_answered_and_closed(group: LocalNetwork) -> None:
    a, b = group.node("chain-a"), group.node("chain-b")
    org = group.org_url

    # the public complains about chain-b on the group notice's form
    form = {
        "lang": "en",
        "category": "misidentification",
        "summary": "Stopped at B's door; never stole",
        "contact": "me@example.org",
    }
    response = requests.post(org + "/notice/complaint", data={**form, "about_member": "chain-b"}, timeout=30)
    assert response.status_code == 201
    reference = re.search(r"cmp-[0-9a-f]+", response.text).group(0)  # type: ignore[union-attr]

    # the secretariat refers it while chain-b is down: not yet delivered, then delivered by the loop
    b.stop()
    sec = Console(org, "sec1", group.password)
    status, text = sec.get("/console/complaints?lang=en")
    assert status == 200 and f'id="refer-{reference}"' in text
    status, text = sec.post(f"/console/complaints/{reference}/refer?lang=en", {"days": "10", "summary": ""})
    assert status == 200 and "has not reached the member yet" in text
    assert 'data-referral="pending"' in row(text, reference) and "Not yet delivered" in row(text, reference)
    held = org_file(group, reference)["referral"]
    assert held["delivered_at"] is None and held["last_error"].startswith("unreachable")
    assert "contact" not in json.dumps(held["document"]["signed"])  # the complainant's contact stays here
    b.start()
    assert wait_for(lambda: org_file(group, reference)["referral"]["delivered_at"] is not None, 60)
    status, text = sec.get("/console/complaints?lang=ja")
    assert 'data-referral="delivered"' in row(text, reference) and "に事業者が受領" in row(text, reference)
    document = org_file(group, reference)["referral"]["document"]
    referral = SignedDocument.from_dict(document, ComplaintReferral).payload
    assert referral.member == "chain-b" and referral.summary == form["summary"]
    assert timedelta(days=9) < referral.answer_by - now() <= timedelta(days=10)

    # chain-b holds it as a complaint from the organisation, due by the organisation's deadline
    held_b = next(c for c in node_complaints(b) if c["id"] == reference)
    assert held_b["channel"] == "organisation" and held_b["referred"] and held_b["contact"] is None
    assert held_b["answer_by"] == document["signed"]["answer_by"]
    off = Console(b.url, "off1", group.password)
    status, text = off.get("/console/complaints?lang=ja")
    assert (
        status == 200 and 'data-referred="yes"' in row(text, reference) and f'id="answer-{reference}"' in text
    )
    assert "認定個人情報保護団体から" in row(text, reference) and "団体へ未回答" in row(text, reference)
    assert f'id="close-{reference}"' not in text  # a referred complaint is closed by answering it
    assert ("complaint.referral", reference, "ok:misidentification") in [
        (r["action"], r["target"], r["outcome"]) for r in audit(b)
    ]

    # refusals: another member, a forgery, unsigned, a second referral of one id, too large
    body = json.dumps(document).encode()
    assert post_referral(a, body)[0] == 401 and post_referral(a, body)[1]["error"] == "misaddressed"
    status, answer = post_referral(b, body)  # the same document again: held, nothing changes
    assert status == 200 and answer == {
        "held": reference,
        "answer_by": referral.answer_by.isoformat().replace("+00:00", "Z"),
        "duplicate": True,
    }
    forged = json.loads(body)
    forged["signed"]["summary"] = "Something else entirely"
    assert post_referral(b, json.dumps(forged).encode())[1]["error"] in ("bad_signature", "threshold_not_met")
    unsigned = {**json.loads(body), "signatures": []}
    status, answer = post_referral(b, json.dumps(unsigned).encode())
    assert status == 401 and answer["error"] == "threshold_not_met"
    by_manifest_key = SignedDocument(replace(referral, complaint_id="cmp-00000000000000000001"))
    by_manifest_key.sign(group.org_keys[0])  # a key of the organisation, but not its online one
    status, answer = post_referral(b, by_manifest_key.to_bytes())
    assert status == 401 and answer["error"] in ("bad_signature", "threshold_not_met")
    witness = load_signing_key(group.witness_key_path)
    again = SignedDocument(replace(referral, answer_by=referral.answer_by + timedelta(days=30)))
    again.sign(witness)
    status, answer = post_referral(b, again.to_bytes())
    assert status == 409 and answer["error"] == "replay"
    status, answer = post_referral(b, b'{"signed": "' + b"x" * (20 << 10) + b'"}')
    assert status == 413 and answer["error"] == "oversized"
    assert [c["id"] for c in node_complaints(b)].count(reference) == 1
    assert not any(c["id"] == "cmp-00000000000000000001" for c in node_complaints(b))

    # the organisation is down when chain-b answers: not yet delivered; sent again once it is back
    group.stop_org()
    status, text = off.post(
        f"/console/complaints/{reference}/answer?lang=en",
        {"outcome": "resolved", "answer": "A false match, judged so the same day; we apologised."},
    )
    assert status == 200 and "has not reached the organisation yet" in text
    assert 'data-answer="pending"' in row(text, reference) and 'data-outcome="resolved"' in row(
        text, reference
    )
    status, text = off.post(f"/console/complaints/{reference}/deliver?lang=en", {})  # still down
    assert status == 200 and "has not reached the organisation yet" in text
    assert "2 attempt(s)" in row(text, reference) and "unreachable" in row(text, reference)
    group.start_org()  # chain-b's complaint_answers duty sends it again, unattended

    def delivered() -> bool:
        return bool(next(c for c in node_complaints(b) if c["id"] == reference)["answer_delivered_at"])

    assert wait_for(delivered, 90, interval=1)
    status, text = off.get("/console/complaints?lang=en")
    assert 'data-answer="delivered"' in row(text, reference)
    records = [(r["action"], r["target"], r["outcome"]) for r in audit(b)]
    assert ("complaint.answer", reference, "resolved") in records
    assert any(
        a == "complaint.answer_delivered" and t == reference and o.startswith("ok:attempt-")
        for a, t, o in records
    )
    assert f'id="deliver-{reference}"' not in text

    # the organisation's page shows the answer; the secretariat closes the complaint
    sec = Console(org, "sec1", group.password)  # a new session: the server was restarted
    status, text = sec.get("/console/complaints?lang=en")
    cell = row(text, reference)
    assert 'data-referral="answered"' in cell and 'data-answer-outcome="resolved"' in cell
    assert "we apologised" in cell
    status, text = sec.post(
        f"/console/complaints/{reference}/close?lang=en",
        {"outcome": "resolved", "note": "B answered; told the complainant"},
    )
    assert status == 200 and 'data-outcome="resolved"' in row(text, reference)
    assert org_file(group, reference)["status"] == "closed"
    listed = cli("gov", "complaints", "list", "--dir", str(group.root / "org" / "complaints"))
    line = next(x for x in listed.splitlines() if x.startswith(reference))
    assert "closed" in line and "answered" in line

    # answers the organisation refuses: not chain-b's signature, not referred to the sender, a second one
    kept = SignedDocument.from_dict(org_file(group, reference)["answer"]["document"], ComplaintAnswer)
    assert post_answer(group, kept) == (200, {"received": reference, "duplicate": True})
    other = replace(kept.payload, answer="Actually nothing happened")
    forged_answer = SignedDocument(other)
    forged_answer.sign(a.signing_key())
    assert post_answer(group, forged_answer)[0] == 401
    from_a = SignedDocument(replace(kept.payload, member="chain-a"))
    from_a.sign(a.signing_key())
    assert post_answer(group, from_a)[1]["error"] == "not_referred"
    second = SignedDocument(other)
    second.sign(b.signing_key())
    status, answer = post_answer(group, second)
    assert status == 409 and answer["error"] == "already_answered"
    stranger = SignedDocument(replace(kept.payload, complaint_id="cmp-ffffffffffffffffffff"))
    stranger.sign(b.signing_key())
    assert post_answer(group, stranger)[0] == 404
