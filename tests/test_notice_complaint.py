"""The public complaint form on the notice page (Art. 40), against a real node process.

A person at the store posts the notice page's form without an account: the complaint lands in
the staff's complaints list and in the audit log; what is too long, missing or not offered, and a
body above the public door's bound, are answered with the notice's own page in the reader's
language (never the API's JSON or English), and nothing is recorded for them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from node.app.access import FORM_BODY_BYTES
from tests.nodeproc import NodeProcess

ENGLISH = re.compile(r"\b[A-Za-z]{2,}(?:[ ,.'-]+[A-Za-z]{2,}){2,}")
"""Three or more English words in a row: what a Japanese page must not show."""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> NodeProcess:
    process = NodeProcess.create(Path(tmp_path_factory.mktemp("complaint")))
    request.addfinalizer(process.stop)
    process.start()
    return process


def _visible(html: str) -> str:
    """The page's text as a reader sees it (tags, the style sheet and attribute values removed)."""
    html = re.sub(r"<style>.*?</style>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def _post(node: NodeProcess, fields: dict[str, str], **kwargs: object) -> requests.Response:
    return requests.post(f"{node.url}/notice/complaint", data=fields, timeout=30, **kwargs)  # type: ignore[arg-type]


def _complaints(node: NodeProcess) -> list[dict[str, object]]:
    status, listed = node.call("GET", "/v1/complaints", "aud1")
    assert status == 200, listed
    return list(listed["complaints"])


def test_the_notice_page_has_the_form(node: NodeProcess) -> None:
    page = requests.get(f"{node.url}/notice?lang=ja", timeout=30)
    assert page.status_code == 200
    assert '<form method="post" action="notice/complaint"' in page.text
    assert 'name="summary"' in page.text and 'maxlength="2000"' in page.text
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    assert not ENGLISH.search(_visible(page.text)), ENGLISH.findall(_visible(page.text))
    assert "苦情の申出" in page.text and "請求の方法" in page.text


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_a_complaint_from_the_form_reaches_the_staff_list_and_the_audit_log(
    node: NodeProcess, lang: str
) -> None:
    summary = f"入口の掲示が見えにくい ({lang})"
    answer = _post(node, {"lang": lang, "category": "notice", "summary": summary, "contact": "090-0000-0000"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"].startswith("text/html")
    assert answer.headers["Cache-Control"] == "no-store"
    reference = re.search(r"cmp-[0-9a-z-]+", answer.text)
    assert reference is not None, answer.text
    assert ("受付番号" if lang == "ja" else "Reference") in answer.text
    if lang == "ja":
        assert not ENGLISH.search(_visible(answer.text)), _visible(answer.text)
    listed = {c["id"]: c for c in _complaints(node)}
    assert reference.group(0) in listed
    got = listed[reference.group(0)]
    assert got["summary"] == summary and got["channel"] == "public" and got["category"] == "notice"
    status, audit = node.call("GET", "/v1/audit?limit=1000", "aud1")
    assert status == 200
    records = [r for r in audit["records"] if r.get("target") == reference.group(0)]
    assert {r["action"] for r in records} == {"complaint.record", "POST /notice/complaint"}
    post = next(r for r in records if r["action"] == "POST /notice/complaint")
    assert post["actor"] == "public:127.0.0.1" and post["outcome"] == "ok:200"


BAD = [
    (
        {"category": "notice", "summary": ""},
        400,
        "苦情の内容を1字以上2000字以内",
        "write your complaint in 1 to 2000",
    ),
    (
        {"category": "notice", "summary": "x" * 2001},
        400,
        "苦情の内容を1字以上2000字以内",
        "1 to 2000 characters",
    ),
    (
        {"category": "marketing", "summary": "abc"},
        400,
        "内容の種類を一覧から",
        "choose what the complaint is about",
    ),
    ({"summary": "abc"}, 400, "内容の種類を一覧から", "choose what the complaint is about"),
    (
        {"category": "other", "summary": "abc", "contact": "c" * 201},
        400,
        "連絡先は200字以内",
        "200 characters",
    ),
    ({"category": "other", "summary": "x" * (FORM_BODY_BYTES + 10)}, 413, "大きすぎます", "too large"),
]


@pytest.mark.parametrize("lang", ["ja", "en"])
@pytest.mark.parametrize(("fields", "status", "ja", "en"), BAD)
def test_bad_input_gets_the_pages_own_error_and_records_nothing(
    node: NodeProcess, fields: dict[str, str], status: int, ja: str, en: str, lang: str
) -> None:
    before = len(_complaints(node))
    answer = _post(node, {"lang": lang, **fields}, headers={"Accept-Language": lang})
    assert answer.status_code == status, answer.text[:300]
    assert answer.headers["Content-Type"].startswith("text/html"), answer.text[:300]
    assert not answer.text.lstrip().startswith("{")
    assert (ja if lang == "ja" else en) in answer.text
    if lang == "ja":
        assert not ENGLISH.search(_visible(answer.text)), _visible(answer.text)
    assert len(_complaints(node)) == before
