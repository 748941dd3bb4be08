"""The whole story in real browsers on a real two-member group: register, alert live, delete, receipts.

chain-a and chain-b are ``watchnet serve`` processes (``LocalNetwork``). On chain-a a
registrar proposes from a photo and an officer approves, in Chromium. chain-b's operator has
the operator page open; a camera's query from chain-b (``POST /v1/query`` with the same photo)
must make the alert appear on that page without a reload. Then chain-a's officer deletes the
entry in the browser: the alert must leave chain-b's open page, again without a reload, and
chain-a's network page must show chain-b's signed receipt for the deletion. Each page is saved
in ``tests/artifacts/`` (``story-*.png``) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from node.demo.network import LocalNetwork, LocalNode
from protocol.canonical import b64url_encode
from tests.browser import chromium, require_chromium, screenshots
from tests.test_console_browser import PHOTO

require_chromium()

from playwright.sync_api import Browser, BrowserContext, Page, expect  # noqa: E402

WAIT_MS = 15_000
shot = screenshots("story")


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with LocalNetwork(
        tmp_path_factory.mktemp("story"), ["chain-a", "chain-b"], sync_interval="1s"
    ).running() as network:
        yield network


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def signed_in(
    browser: Browser, node: LocalNode, username: str, password: str, locale: str, *, script: bool = True
) -> Page:
    """A tablet-sized browser of its own, signed in to ``node``'s console as ``username``."""
    context: BrowserContext = browser.new_context(
        locale=locale, viewport={"width": 1180, "height": 820}, java_script_enabled=script
    )
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{node.url}/console")
    page.fill("#username", username)
    page.fill("#password", password)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{node.url}/console/*")
    return page


def test_an_alert_appears_live_and_leaves_when_the_owner_deletes(
    group: LocalNetwork, browser: Browser
) -> None:
    a, b = group.node("chain-a"), group.node("chain-b")

    registrar = signed_in(browser, a, "reg1", group.password, "ja-JP")
    registrar.set_input_files("#photo", str(PHOTO))
    registrar.get_by_role("button", name="顔を確認する").click()
    registrar.wait_for_url("**/console/registrar/preview?lang=ja")
    registrar.select_option("#category", "shoplifting")
    registrar.select_option("#evidence_kind", "police-report")
    registrar.fill("#evidence_reference", "TKY-2026-0999")
    registrar.fill("#incident_date", "2026-11-01")
    registrar.select_option("#site", "shibuya")
    registrar.get_by_role("button", name="この内容で申請する").click()
    row = registrar.locator("#my-proposals tbody tr[data-status=proposed]")
    expect(row).to_have_count(1)
    entry_id = row.get_attribute("data-entry")
    assert entry_id and entry_id.startswith("ent-")
    shot(registrar, "1-chain-a-registrar-proposed-ja")

    officer = signed_in(browser, a, "off1", group.password, "en-US")
    card = officer.locator(f"#entry-{entry_id}")
    card.get_by_role("button", name="Approve").click()
    expect(officer.locator(f"#entry-{entry_id}")).to_have_attribute("data-status", "active")
    shot(officer, "2-chain-a-officer-approved-en")

    operator = signed_in(browser, b, "op1", group.password, "ja-JP")
    operator.wait_for_url("**/console/operator?lang=ja")
    expect(operator.locator("#live-status")).to_have_attribute("data-state", "connected")
    expect(operator.locator("#live-text")).to_contain_text("自動更新中")
    operator.evaluate("window.sameDocument = true")
    shot(operator, "3-chain-b-operator-waiting-ja")

    status, found = b.call(
        "POST", "/v1/query", "op1", {"image": b64url_encode(PHOTO.read_bytes()), "site": "gate-1"}
    )
    assert status == 200 and [m["entry_id"] for m in found["matches"]] == [entry_id], found
    alert = operator.locator(f"#open-alerts tr[data-entry='{entry_id}']")
    expect(alert).to_have_attribute("data-status", "open")
    expect(alert).to_contain_text("株式会社Aマート")
    expect(alert).to_contain_text("万引き")
    expect(alert.locator(".band")).to_have_text("強い一致")
    assert operator.evaluate("window.sameDocument") is True
    assert "embedding" not in operator.content().lower()
    shot(operator, "4-chain-b-operator-alert-live-ja")
    plain = signed_in(browser, b, "op1", group.password, "en-US", script=False)
    expect(plain.locator(f"#open-alerts tr[data-entry='{entry_id}']")).to_have_attribute(
        "data-status", "open"
    )
    expect(plain.locator("#live-text")).to_have_text("Reload the page to see new alerts.")
    shot(plain, "4b-chain-b-operator-without-script-en")

    officer.goto(f"{a.url}/console/officer?lang=en")
    card = officer.locator(f"#entry-{entry_id}")
    card.locator("summary", has_text="Delete").click()
    card.locator(f"#dr-{entry_id}").select_option("data-subject-request")
    card.locator("form[action*='/delete'] button[type=submit]").click()
    expect(officer.locator("p.notice")).to_have_text("Deleted: the face data was erased.")
    shot(officer, "5-chain-a-officer-deleted-en")

    expect(operator.locator(f"#open-alerts tr[data-entry='{entry_id}']")).to_have_count(0)
    withdrawn = operator.locator(f"#closed-alerts tr[data-entry='{entry_id}']")
    expect(withdrawn).to_have_attribute("data-status", "withdrawn")
    expect(withdrawn.locator(".band")).to_have_text("—")
    expect(withdrawn.locator(".category")).to_have_text("—")
    assert operator.evaluate("window.sameDocument") is True
    shot(operator, "6-chain-b-operator-withdrawn-ja")
    plain.get_by_role("link", name="Reload").click()
    expect(plain.locator(f"#closed-alerts tr[data-entry='{entry_id}']")).to_have_attribute(
        "data-status", "withdrawn"
    )
    expect(plain.locator("#open-alerts")).to_have_count(0)

    officer.get_by_role("link", name="Network status").click()
    officer.wait_for_url("**/console/network?lang=en")
    deletion = officer.locator(f"#propagation-events tr[data-entry='{entry_id}'][data-kind=deleted]")
    for _ in range(30):
        if deletion.get_attribute("data-complete") == "yes":
            break
        officer.wait_for_timeout(300)
        officer.reload()
    expect(deletion).to_have_attribute("data-complete", "yes")
    expect(deletion.locator(".receipts li[data-member=chain-b]")).to_contain_text("B-Store Inc.")
    expect(officer.locator("#peer-states tr[data-peer=chain-b]")).to_have_attribute("data-sync", "ok")
    expect(officer.locator("#manifest-version")).to_have_text("1")
    shot(officer, "7-chain-a-network-receipts-en")
