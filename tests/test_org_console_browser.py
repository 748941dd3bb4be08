"""The organisation's console in a real browser on a real group (issue #20): an admission walked
from a draft to a published manifest that the member nodes pick up.

A ``LocalNetwork``: the organisation's ``watchnet gov serve`` (with its console), the member
node chain-a, and chain-b, a node made and running but not yet a member. In Debian's Chromium
the secretariat (Japanese) drafts chain-b's admission; two key holders
(English and Japanese) each download the draft, sign it offline with ``watchnet gov sign`` and
their own key file, and upload the signed file. Publishing is refused at one signature and
succeeds at two; then both nodes, chain-b included, trusts version 2, and the members page, once
the organisation asks them, shows each running it. Screenshots: ``tests/artifacts/org-*.png``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from node.console.i18n import Translator
from node.demo.network import LocalNetwork, wait_for
from protocol.signed import SignedDocument
from protocol.treehead import TreeHead
from tests.browser import chromium, require_chromium, screenshots
from tests.nodeproc import cli

require_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402

WAIT_MS = 20_000
shot = screenshots("org")
NODES = ("chain-a", "chain-b")


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    network = LocalNetwork(
        tmp_path_factory.mktemp("org-console"),
        ["chain-a"],
        outsiders=["chain-b"],
        database_server=None,
        org_console=True,
    )
    try:
        network.create()
        network.start()
        yield network
    finally:
        network.destroy()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def signed_in(browser: Browser, group: LocalNetwork, username: str, locale: str) -> Page:
    url = group.org_url
    context = browser.new_context(
        locale=locale, viewport={"width": 1180, "height": 900}, accept_downloads=True
    )
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{url}/console")
    page.fill("#username", username)
    page.fill("#password", group.password)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{url}/console/*")
    return page


def sign_and_upload(page: Page, url: str, key: Path, work: Path, name: str, *, held: int) -> None:
    """A key holder's round: download the draft, sign it offline with the CLI, upload the file."""
    page.goto(f"{url}/console/drafts/2?lang={'ja' if 'ja' in name else 'en'}")
    with page.expect_download() as download:
        page.locator("#download").click()
    draft = work / f"{name}.json"
    download.value.save_as(draft)
    assert draft.read_text(encoding="utf-8").count('"keyid"') == held  # the signatures collected so far
    cli("gov", "sign", str(draft), "--key", str(key))  # on the key holder's own machine
    page.set_input_files("#signature", str(draft))
    page.locator("#upload-form button[type=submit]").click()
    page.wait_for_url("**/console/drafts/2?lang=*")


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def node_version(network: LocalNetwork, node_id: str) -> int:
    status, body = network.node(node_id).call("GET", "/v1/manifest", timeout=5)
    return int(body["signed"]["version"]) if status == 200 else 0


@pytest.mark.timeout(180)
def test_the_secretariat_drafts_an_admission_two_key_holders_sign_and_every_node_follows(
    group: LocalNetwork, browser: Browser, tmp_path: Path
) -> None:
    started = time.monotonic()
    org = group.org_url
    newcomer = group.node("chain-b")

    sec = signed_in(browser, group, "sec1", "ja-JP")
    expect(sec.locator("h1")).to_have_text("加盟事業者")
    expect(sec.locator("#member-list tbody tr")).to_have_count(1)
    shot(sec, "1-members-ja")

    sec.get_by_role("link", name="マニフェストの改訂と署名").click()
    sec.wait_for_url("**/console/drafts?lang=ja")
    sec.fill("#admit-node-id", "chain-b")
    sec.fill("#admit-name-ja", "シー商店")
    sec.fill("#admit-name-en", "Sea Stores")
    sec.fill("#admit-signing-key", newcomer.signing_key().public.to_str())
    sec.fill("#admit-encryption-key", newcomer.encryption_key().public.to_str())
    sec.fill("#admit-endpoint", newcomer.url)
    shot(sec, "2-draft-form-ja")
    sec.get_by_role("button", name="改訂案を作成する").first.click()
    sec.wait_for_url("**/console/drafts/2?lang=ja")
    expect(sec.locator("p.notice")).to_contain_text("改訂案を作成しました")
    expect(sec.locator("#change-list li[data-kind=member-added]")).to_contain_text(
        f"事業者の加盟: シー商店（chain-b、接続先 {newcomer.url}）"
    )
    expect(sec.locator("#collected")).to_have_attribute("data-signed", "0")
    shot(sec, "3-draft-ja")

    kh1 = signed_in(browser, group, "kh1", "en-GB")
    expect(kh1.locator("h1")).to_have_text("Manifest drafts and signing")
    sign_and_upload(kh1, org, group.root / "org" / "org1.key", tmp_path, "kh1-en", held=0)
    expect(kh1.locator("p.notice")).to_have_text("The signature was added.")
    expect(kh1.locator("#collected")).to_have_text("Signatures collected: 1 of 3 (threshold 2)")
    expect(kh1.locator(f"tr[data-keyid='{group.org_keys[0].keyid}']")).to_have_attribute("data-signed", "yes")
    expect(kh1.locator("#change-list li")).to_have_text(
        f"Member added: Sea Stores (chain-b, endpoint {newcomer.url})"
    )
    shot(kh1, "4-one-signature-en")

    sec.reload()
    expect(sec.locator("#publish-button")).to_have_attribute("data-publishable", "no")
    expect(sec.locator("#problems li[data-code=threshold_not_met]")).to_contain_text(
        "必要な数の署名がありません"
    )
    sec.locator("#publish-button").click()
    expect(sec.locator("p.problem")).to_have_attribute("data-code", "threshold_not_met")
    expect(sec.locator("p.problem")).to_have_text(Translator("ja").label("error", "threshold_not_met"))
    shot(sec, "5-publish-refused-ja")
    sec.get_by_role("link", name="戻る").click()
    sec.wait_for_url("**/console/drafts/2?lang=ja")
    assert node_version(group, "chain-a") == 1 and node_version(group, "chain-b") == 1

    kh2 = signed_in(browser, group, "kh2", "ja-JP")
    sign_and_upload(kh2, org, group.root / "org" / "org2.key", tmp_path, "kh2-ja", held=1)
    expect(kh2.locator("#collected")).to_have_text("集まった署名: 2 / 3（必要数 2）")
    shot(kh2, "6-two-signatures-ja")

    sec.goto(f"{org}/console/drafts/2?lang=ja")
    expect(sec.locator("#publish-button")).to_have_attribute("data-publishable", "yes")
    sec.locator("#publish-button").click()
    sec.wait_for_url("**/console/drafts/2?lang=ja")
    expect(sec.locator("#draft")).to_have_attribute("data-state", "published")
    expect(sec.locator("p.notice").first).to_contain_text("公開しました")
    shot(sec, "7-published-ja")

    def everyone_on_2() -> bool:
        return all(node_version(group, n) == 2 for n in NODES)

    assert wait_for(everyone_on_2, 30, interval=0.5), {n: node_version(group, n) for n in NODES}

    sec.goto(f"{org}/console/members?lang=en")
    sec.locator("#check-now").click()
    sec.wait_for_url("**/console/members?lang=en")
    rows = sec.locator("#member-list tbody tr")
    expect(rows).to_have_count(2)
    for node_id in NODES:
        row = sec.locator(f"tr[data-member={node_id}]")
        expect(row).to_have_attribute("data-runs", "2")
        expect(row).to_have_attribute("data-reach", "ok")
    expect(sec.locator("#in-force-version")).to_have_text("Version 2")
    shot(sec, "8-members-after-en")

    # a fork report made from two conflicting heads of chain-a, and a complaint about it
    key = group.node("chain-a").signing_key()
    heads = []
    for root in (1, 2):
        head = SignedDocument(
            TreeHead(log_id="chain-a", tree_size=5, root_hash=bytes([root]) * 32, timestamp=now())
        )
        head.sign(key)
        heads.append(head.to_dict())
    report = {
        "type": "fork-report",
        "peer": "chain-a",
        "verified_head": heads[0],
        "conflicting_head": heads[1],
    }
    answer = requests.post(f"{org}/v1/reports", json=report, timeout=10)
    assert answer.status_code == 201, answer.text
    complaint = {
        "category": "misidentification",
        "summary": "stopped at the door by mistake",
        "about_member": "chain-a",
    }
    assert requests.post(f"{org}/v1/complaints", json=complaint, timeout=10).status_code == 201
    sec.goto(f"{org}/console/forks?lang=en")
    expect(sec.locator(f"#fork-{answer.json()['received']} [data-check]")).to_have_attribute(
        "data-check", "ok"
    )
    shot(sec, "9-fork-report-en")
    sec.goto(f"{org}/console/complaints?lang=ja")
    expect(sec.locator("td[data-about=chain-a]")).to_have_count(1)
    shot(sec, "10-complaints-ja")
    sec.goto(f"{org}/rules?lang=ja")
    expect(sec.locator("h1")).to_have_text("個人情報保護指針（共同利用のルール）")
    expect(sec.locator("main")).to_contain_text("シー商店 (chain-b)")  # the admitted member, from version 2
    shot(sec, "11-rules-ja")
    sec.goto(f"{org}/console/report?lang=en&period=2026-Q3")
    expect(sec.locator("#missing-list li")).to_have_count(2)  # neither node has sent its report
    shot(sec, "12-group-report-en")

    # every page in both languages, for a person to look at (tests/artifacts/org-page-*.png)
    auditor = signed_in(browser, group, "oaud1", "en-GB")
    admin = signed_in(browser, group, "oadm1", "ja-JP")
    pages = {
        sec: ("members", "drafts", "drafts/2", "forks", "complaints", "report?period=2026-Q3"),
        auditor: ("audit",),
        admin: ("accounts",),
    }
    for page, paths in pages.items():
        for path in paths:
            for lang in ("ja", "en"):
                joiner = "&" if "?" in path else "?"
                response = page.goto(f"{org}/console/{path}{joiner}lang={lang}")
                assert response is not None and response.status == 200, (path, lang)
                expect(page.locator("html")).to_have_attribute("lang", lang)
                shot(page, f"page-{path.split('?')[0].replace('/', '-')}-{lang}")
    for path in ("rules", "notice"):
        for lang in ("ja", "en"):
            sec.goto(f"{org}/{path}?lang={lang}")
            expect(sec.locator("html")).to_have_attribute("lang", lang)
            shot(sec, f"page-{path}-{lang}")
    assert time.monotonic() - started < 90


def node_signed_in(browser: Browser, node_url: str, password: str, username: str, locale: str) -> Page:
    context = browser.new_context(locale=locale, viewport={"width": 1180, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{node_url}/console")
    page.fill("#username", username)
    page.fill("#password", password)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{node_url}/console/*")
    return page


@pytest.mark.timeout(180)
def test_a_complaint_from_the_notice_form_is_referred_to_chain_a_answered_and_closed(
    group: LocalNetwork, browser: Browser
) -> None:
    """Clicked through in both languages: the public's form, the secretariat's referral (Japanese),
    chain-a's officer's answer (English, then the page in Japanese), the answer on the
    organisation's page and the closing. Screenshots ``tests/artifacts/org-referral-*.png``."""
    org = group.org_url
    a = group.node("chain-a")

    public = browser.new_context(locale="ja-JP", viewport={"width": 1180, "height": 900}).new_page()
    public.set_default_timeout(WAIT_MS)
    public.goto(f"{org}/notice?lang=ja")
    public.select_option("#c-about", "chain-a")
    public.select_option("#c-category", "misidentification")
    public.fill("#c-summary", "入口で呼び止められ、登録されていると言われましたが、心当たりがありません。")
    public.locator("#complaint button[type=submit]").click()
    expect(public.locator("main")).to_contain_text("苦情を受け付けました")
    reference = re.search(r"cmp-[0-9a-f]+", public.content()).group(0)  # type: ignore[union-attr]
    shot(public, "referral-1-filed-ja")

    sec = signed_in(browser, group, "sec1", "ja-JP")
    sec.goto(f"{org}/console/complaints?lang=ja")
    form = sec.locator(f"#refer-{reference}")
    expect(form).to_contain_text("chain-a")
    form.locator("input[name=days]").fill("7")
    shot(sec, "referral-2-refer-form-ja")
    form.locator("button[type=submit]").click()
    sec.wait_for_url("**/console/complaints?lang=ja")
    expect(sec.locator("p.notice")).to_contain_text("事業者が受領しました")
    expect(sec.locator(f"tr[data-complaint='{reference}'] [data-referral]")).to_have_attribute(
        "data-referral", "delivered"
    )
    shot(sec, "referral-3-referred-ja")

    officer = node_signed_in(browser, a.url, group.password, "off1", "en-GB")
    officer.goto(f"{a.url}/console/complaints?lang=en")
    expect(officer.locator(f"tr[data-complaint='{reference}']")).to_have_attribute("data-referred", "yes")
    answer = officer.locator(f"#answer-{reference}")
    expect(answer).to_contain_text("Referred by the organisation: answer by")
    answer.locator("select[name=outcome]").select_option("resolved")
    answer.locator("textarea[name=answer]").fill("The alert was a false match; the store manager apologised.")
    shot(officer, "referral-4-answer-form-en")
    answer.locator("button[type=submit]").click()
    officer.wait_for_url("**/console/complaints?lang=en")
    expect(officer.locator("p.notice")).to_contain_text("the organisation received it")
    expect(officer.locator(f"tr[data-complaint='{reference}'] [data-answer]")).to_have_attribute(
        "data-answer", "delivered"
    )
    shot(officer, "referral-5-answered-en")
    officer.goto(f"{a.url}/console/complaints?lang=ja")
    expect(officer.locator(f"tr[data-complaint='{reference}'] [data-answer]")).to_contain_text("団体が受領")
    shot(officer, "referral-6-answered-ja")

    sec.goto(f"{org}/console/complaints?lang=en")
    cell = sec.locator(f"tr[data-complaint='{reference}'] [data-answer-outcome]")
    expect(cell).to_have_attribute("data-answer-outcome", "resolved")
    expect(cell).to_contain_text("the store manager apologised")
    shot(sec, "referral-7-answer-shown-en")
    close = sec.locator(f"#close-{reference}")
    close.locator("select[name=outcome]").select_option("resolved")
    close.locator("textarea[name=note]").fill("chain-a answered; the complainant was told.")
    close.locator("button[type=submit]").click()
    sec.wait_for_url("**/console/complaints?lang=en")
    expect(sec.locator(f"#closed-complaints tr[data-complaint='{reference}']")).to_have_attribute(
        "data-outcome", "resolved"
    )
    shot(sec, "referral-8-closed-en")
    sec.goto(f"{org}/console/complaints?lang=ja")
    expect(sec.locator(f"#closed-complaints tr[data-complaint='{reference}']")).to_contain_text(
        "事業者の回答"
    )
    shot(sec, "referral-9-closed-ja")
