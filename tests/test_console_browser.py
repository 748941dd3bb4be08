"""The console in a real browser against a real node process: registrar proposes, officer approves.

Debian's Chromium, driven by Playwright, on tablet-sized viewports: a registrar signs in (in
Japanese, from the browser's language), uploads a sample photo, sees the face crop and the
quality checks, proposes; an officer signs in (in English), sees the crop and the rules'
verdict in the queue, approves; the node's JSON API then lists the entry as active. Each page
is saved as a screenshot in ``tests/artifacts/`` for a person to look at. No script runs in
the pages, so what is tested is the plain HTML forms a tablet would submit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import pytest

from node.demo.story import photo_path
from tests.browser import chromium, require_chromium, screenshots
from tests.nodeproc import PASSWORD, NodeProcess

PHOTO = photo_path("yaoming.jpg")

require_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402

shot = screenshots("console")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess.create(tmp_path_factory.mktemp("console-browser"))
    n.start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def sign_in(page: Page, url: str, username: str) -> None:
    page.goto(f"{url}/console")
    expect(page.locator("#username")).to_be_visible()
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.locator("main form button[type=submit]").click()


def image_width(page: Page, selector: str) -> Any:
    """The decoded width of an image, 0 if the browser could not load or decode it."""
    return page.eval_on_selector(selector, "img => img.complete ? img.naturalWidth : 0")


def test_registrar_proposes_from_a_photo_and_officer_approves(
    node: NodeProcess, browser: Browser, tmp_path: Path
) -> None:
    registrar = browser.new_context(locale="ja-JP", viewport={"width": 820, "height": 1180})
    page = registrar.new_page()
    page.set_default_timeout(20_000)
    page.goto(f"{node.url}/console")
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.locator("h1")).to_have_text("ログイン")
    shot(page, "1-login-ja")
    sign_in(page, node.url, "reg1")
    page.wait_for_url("**/console/registrar?lang=ja")
    cookie = next(c for c in registrar.cookies() if c["name"] == "watchnet_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    shot(page, "2-registrar-ja")

    page.set_input_files("#photo", str(PHOTO))
    page.get_by_role("button", name="顔を確認する").click()
    page.wait_for_url("**/console/registrar/preview?lang=ja")
    expect(page.locator("#quality-checks tbody tr[data-passed=yes]")).to_have_count(4)
    assert image_width(page, "figure.crop img") == 112
    shot(page, "3-preview-ja")
    page.select_option("#category", "shoplifting")
    page.select_option("#evidence_kind", "police-report")
    page.fill("#evidence_reference", "TKY-2026-0888")
    page.fill("#incident_date", "2026-11-01")
    page.fill("#site", "shibuya-01")
    page.get_by_role("button", name="この内容で申請する").click()
    page.wait_for_url("**/console/registrar?lang=ja")
    expect(page.locator("p.notice")).to_contain_text("申請しました")
    row = page.locator("#my-proposals tbody tr[data-status=proposed]")
    expect(row).to_have_count(1)
    entry_id = row.get_attribute("data-entry")
    assert entry_id and entry_id.startswith("ent-")
    assert "embedding" not in page.content().lower()
    shot(page, "4-registrar-proposed-ja")

    officer = browser.new_context(locale="en-US", viewport={"width": 1180, "height": 820})
    page = officer.new_page()
    page.set_default_timeout(20_000)
    sign_in(page, node.url, "off1")
    page.wait_for_url("**/console/officer?lang=en")
    card = page.locator(f"#entry-{entry_id}")
    expect(card).to_have_attribute("data-status", "proposed")
    expect(card.locator(".rules")).to_have_attribute("data-rules", "ok")
    expect(card).to_contain_text("TKY-2026-0888")
    assert image_width(page, f"#entry-{entry_id} figure.crop img") == 112
    shot(page, "5-officer-queue-en")
    card.get_by_role("button", name="Approve").click()
    page.wait_for_url("**/console/officer?lang=en")
    expect(page.locator("p.notice")).to_have_text("Approved: the entry is now active.")
    expect(page.locator(f"#entry-{entry_id}")).to_have_attribute("data-status", "active")
    correct = page.locator(f"#entry-{entry_id} summary", has_text="Correct")
    marker = correct.evaluate("s => getComputedStyle(s, '::before').content")
    border = correct.evaluate("s => getComputedStyle(s).borderTopStyle")
    assert marker == '"▶"' and border == "solid", (marker, border)  # it looks like a control
    correct.click()
    assert correct.evaluate("s => getComputedStyle(s, '::before').content") == '"▼"'
    shot(page, "6-officer-approved-en")
    page.get_by_role("link", name="日本語").click()
    expect(page.locator("html")).to_have_attribute("lang", "ja")
    expect(page.locator("#active-heading")).to_contain_text("登録中のエントリー")
    expect(page.locator("#business")).to_contain_text("chain-a")  # which node the officer acts on
    shot(page, "7-officer-ja")

    page.get_by_role("button", name="ログアウト").click()
    page.wait_for_url("**/console/login?lang=ja&reason=logged_out")
    expect(page.locator("p.notice")).to_have_text("ログアウトしました。")

    page = registrar.new_page()
    response = page.goto(f"{node.url}/console/officer?lang=en")
    assert response is not None and response.status == 403
    expect(page.locator("[data-code=forbidden]")).to_have_text("Your role may not do this")
    shot(page, "8-forbidden-en")
    small = tmp_path / "small.jpg"
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(PHOTO)), (60, 80)))
    page.goto(f"{node.url}/console/registrar?lang=en")
    page.set_input_files("#photo", str(small))
    page.get_by_role("button", name="Check the face").click()
    expect(page.locator("#refused")).to_contain_text("does not meet the quality")
    expect(page.locator("#quality-checks tr[data-check=face_pixels]")).to_have_attribute("data-passed", "no")
    expect(page.locator("#propose")).to_have_count(0)
    shot(page, "9-preview-refused-en")

    status, listing = node.call("GET", "/v1/entries?status=active", "off1")
    assert status == 200
    assert [(e["entry_id"], e["registrar"] != e["officer"]) for e in listing["entries"]] == [(entry_id, True)]
    registrar.close()
    officer.close()
