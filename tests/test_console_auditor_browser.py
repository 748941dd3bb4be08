"""The auditor's pages in a real browser against a real node process: audit log, event log, report.

Debian's Chromium, driven by Playwright, on a tablet-sized viewport: an auditor signs in (in
Japanese, from the browser's language), follows the page links to the audit log and the event
log, each verified, then to the transparency report, whose charts must be drawn with their
styles (the page allows inline style for them and nothing else: a style or script the content
security policy blocked would show as a "Refused to ..." console message). An officer then takes
a request at the counter from a sample photo, runs the search (the other member of the test
group is not running, which the page must say) and refuses the request on a legal ground. Each
page is saved as a screenshot in ``tests/artifacts/`` for a person to look at.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.demo.story import photo_path
from tests.browser import ARTIFACTS, chromium, require_chromium, screenshots
from tests.factories import embedding
from tests.nodeproc import PASSWORD, NodeProcess

require_chromium()

from playwright.sync_api import Browser, expect  # noqa: E402

shot = screenshots("console-auditor")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess.create(tmp_path_factory.mktemp("console-auditor-browser"))
    n.start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def activity(node: NodeProcess) -> None:
    """Something to count: three entries registered, one deleted, a refused request, a complaint."""
    ids = []
    for seed in (301, 302, 303):
        status, made = node.call(
            "POST",
            "/v1/entries",
            "reg1",
            {
                "embedding": embedding(seed).to_str(),
                "category": "shoplifting" if seed % 2 else "theft",
                "evidence": {"kind": "police-report", "reference": f"TKY-2026-{seed:04d}"},
                "incident_date": "2026-11-01",
                "site": "shibuya-01",
            },
        )
        assert status == 201, made
        assert node.call("POST", f"/v1/entries/{made['entry_id']}/approve", "off1")[0] == 200
        ids.append(made["entry_id"])
    assert node.call("POST", f"/v1/entries/{ids[0]}/delete", "off2", {"reason": "error"})[0] == 200
    assert node.call("GET", "/v1/entries", "op1")[0] == 403
    for _ in range(30):  # enough records for more than one page of 25
        assert node.call("GET", "/v1/audit?limit=1", "aud1")[0] == 200
    status, _ = node.call(
        "POST", "/v1/complaints", None, {"category": "notice", "summary": "The sign is hard to read."}
    )
    assert status == 201


def test_auditor_reads_the_verified_logs_and_the_report_with_charts(
    node: NodeProcess, browser: Browser
) -> None:
    activity(node)
    context = browser.new_context(locale="ja-JP", viewport={"width": 820, "height": 1180})
    page = context.new_page()
    page.set_default_timeout(20_000)
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text) if "Refused" in message.text else None)
    page.goto(f"{node.url}/console")
    page.fill("#username", "aud1")
    page.fill("#password", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/console/audit?lang=ja")

    page.get_by_role("link", name="監査ログ").click()
    page.wait_for_url("**/console/audit?lang=ja")
    expect(page.locator("[data-verification]")).to_have_attribute("data-verification", "verified")
    expect(page.locator("#audit-records caption")).to_contain_text("新しい順")
    assert page.locator("#audit-records tbody tr[data-intact=no]").count() == 0
    shot(page, "1-audit-ja")
    # filter: refused requests only, then a page size of 10 and the next page, then the CSV
    page.select_option("#f-outcome", "refused")
    page.locator("#audit-filter button[type=submit]").click()
    page.wait_for_url("**/console/audit?*outcome=refused*")
    outcomes = page.locator("#audit-records tbody tr[data-seq] td:last-child").all_inner_texts()
    assert outcomes and all(o.startswith("refused:") for o in outcomes), outcomes
    listed = page.locator("#audit-records tbody tr[data-seq]").evaluate_all(
        "rows => rows.map(r => r.dataset.seq)"
    )
    shot(page, "1b-audit-refused-ja")
    with page.expect_download() as download:
        page.locator("#audit-csv").click()
    assert download.value.suggested_filename.startswith("watchnet-audit-chain-a-")
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:4] == ["seq", "at_utc", "at_local", "actor"]
    assert all(r[7].startswith("refused:") for r in rows[1:])  # the browser may have added a favicon's
    assert set(listed) <= {r[0] for r in rows[1:]}
    page.get_by_role("link", name="条件を消す").click()
    page.select_option("#f-size", "25")
    page.locator("#audit-filter button[type=submit]").click()
    page.wait_for_url("**/console/audit?*size=25*")
    first = page.locator("#audit-records tbody tr[data-seq]").evaluate_all(
        "rows => rows.map(r => +r.dataset.seq)"
    )
    assert len(first) == 25 and first == sorted(first, reverse=True)
    page.locator("a[rel=next]").click()
    page.wait_for_url("**/console/audit?*upto=*")
    second = page.locator("#audit-records tbody tr[data-seq]").evaluate_all(
        "rows => rows.map(r => +r.dataset.seq)"
    )
    assert second and max(second) < min(first)
    shot(page, "1c-audit-page2-ja")

    page.get_by_role("link", name="イベントログ").click()
    page.wait_for_url("**/console/log?lang=ja")
    expect(page.locator("[data-verification]")).to_have_attribute("data-verification", "verified")
    expect(page.locator("#tree-head")).to_have_attribute("data-size", "4")
    expect(page.locator("#log-events tbody tr")).to_have_count(4)
    shot(page, "2-eventlog-ja")

    page.get_by_role("link", name="透明性レポート").click()
    page.wait_for_url("**/console/report/*?lang=ja")
    charts = page.locator("#report figure svg")
    assert charts.count() >= 3
    box = charts.first.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 50
    figures = page.locator("#report #key-figures tbody tr")
    assert figures.count() >= 15
    assert all(d.strip() for d in page.locator("#report #key-figures td.def").all_inner_texts())
    expect(page.locator("#report")).to_contain_text("登録した件数")
    expect(page.locator("#report #effect")).to_contain_text("担当者が確認した件数")
    expect(page.locator("#report")).not_to_contain_text("entries registered")
    shot(page, "3-report-ja")
    page.emulate_media(media="print")
    assert page.eval_on_selector("header.bar", "e => getComputedStyle(e).display") == "none"
    assert page.eval_on_selector("nav.pages", "e => getComputedStyle(e).display") == "none"
    expect(page.locator("#report #key-figures")).to_be_visible()
    shot(page, "3b-report-ja-print")
    page.pdf(path=str(ARTIFACTS / "console-auditor-report-ja.pdf"), format="A4")
    page.emulate_media(media="screen")
    page.get_by_role("link", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("h1").first).to_contain_text("Transparency report")
    expect(page.locator("#report")).to_contain_text("entries registered")
    expect(page.locator("#report")).to_contain_text("hits answered for members")
    shot(page, "4-report-en")
    page.locator("#printable").click()
    page.wait_for_url("**/console/report/*/print?lang=en")
    assert page.locator("nav").count() == 0 and page.locator("form").count() == 0
    expect(page.locator("h2", has_text="Effect on the purpose")).to_be_visible()
    page.emulate_media(media="print")
    shot(page, "4b-report-en-printable")
    page.emulate_media(media="screen")
    page.go_back()
    with page.expect_download() as download:
        page.locator("#signed-json").click()
    assert download.value.suggested_filename.startswith("watchnet-report-chain-a-")

    page.get_by_role("link", name="Data-subject requests").click()
    page.wait_for_url("**/console/requests?lang=en")
    expect(page.locator("#read-only")).to_be_visible()
    expect(page.locator("#record-form")).to_have_count(0)
    shot(page, "5-requests-en")
    assert blocked == [], blocked
    context.close()


def test_officer_records_searches_and_refuses_a_request_on_a_legal_ground(
    node: NodeProcess, browser: Browser
) -> None:
    """The request pages on a tablet: the counter form, the search report, a refusal with its ground."""
    context = browser.new_context(locale="ja-JP", viewport={"width": 820, "height": 1180})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{node.url}/console")
    page.fill("#username", "off1")
    page.fill("#password", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/console/officer?lang=ja")
    page.get_by_role("link", name="本人からの請求").click()
    page.wait_for_url("**/console/requests?lang=ja")
    page.select_option("#kind", "disclosure")
    page.select_option("#identity_check", "passport")
    page.set_input_files("#photo", str(photo_path("yaoming.jpg")))
    page.get_by_role("button", name="受け付ける").click()
    page.wait_for_url("**/console/requests/req-*?lang=ja")
    expect(page.locator("#request-facts")).to_have_attribute("data-status", "open")
    expect(page.locator("#request-facts")).to_contain_text("暗号化して保存中")
    assert page.locator("main img").count() == 0
    page.get_by_role("button", name="検索する").click()
    expect(page.locator("#peer-answers")).to_be_visible()
    expect(page.locator("#peer-answers tr[data-member=chain-b]:not([data-answer=ok])")).to_have_count(1)
    expect(page.locator("#search-incomplete")).to_be_visible()
    shot(page, "6-request-searched-ja")
    page.select_option("#outcome", "refused")
    page.select_option("#ground", "cabinet-order-5-iv")
    page.get_by_role("button", name="完了する").click()
    page.wait_for_url("**/console/requests/req-*?lang=ja")
    expect(page.locator("#request-outcome")).to_have_attribute("data-outcome", "refused")
    expect(page.locator("#request-outcome")).to_contain_text("施行令第5条第4号")
    expect(page.locator("#request-facts")).to_contain_text("保存していません")
    shot(page, "7-request-refused-ja")
    page.get_by_role("link", name="苦情").click()
    expect(page.locator("#open-complaints caption")).to_contain_text("対応中の苦情 1 件")
    shot(page, "8-complaints-ja")
    context.close()
