"""The operator's alert page in a real browser, in Japanese (#18: the decision needs faces).

A two-member group whose manifest lists ``face-image`` (real ``watchnet serve`` processes).
chain-a registers a photo; chain-b's camera sees the person at two gates of its Ikebukuro store.
chain-b's operator, in Chromium with a Japanese locale, follows the live list's link to the alert
and must see the camera's face beside the face chain-a registered (both decoded images), the two
sightings with Japanese times and the store's name, the group's procedure numbered beside the
two buttons, and no English sentence. Judged a false match, the page then says the camera image
was erased. Screenshots: ``tests/artifacts/alert-faces-*.png``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest

from node.config import AlertSettings, NodeConfig
from node.demo.network import LocalNetwork
from node.files import PRIVATE_FILE, write_atomic
from protocol.canonical import b64url_encode
from tests.browser import chromium, require_chromium, screenshots
from tests.test_alert_faces import PROCEDURE, register, share_face_images
from tests.test_console import photo
from tests.test_notice_complaint import ENGLISH

require_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402

WAIT_MS = 15_000
shot = screenshots("alert-faces")


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    network = LocalNetwork(
        tmp_path_factory.mktemp("faces-browser"), ["chain-a", "chain-b"], sync_interval="1s"
    )
    try:
        network.create()
        network.publish(share_face_images(network.current_manifest()))  # before any node has read it
        b = network.node("chain-b")
        config = NodeConfig.load(b.directory)
        alerts = AlertSettings(erase_interval=timedelta(seconds=1), procedure=PROCEDURE)
        write_atomic(
            b.directory / "config.toml", replace(config, alerts=alerts).to_toml().encode(), mode=PRIVATE_FILE
        )
        network.start()
        yield network
    finally:
        network.destroy()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def decoded(page: Page, selector: str) -> bool:
    """Whether the image at ``selector`` decoded to a picture (a broken image has no natural size)."""
    return bool(page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0"))


def test_the_operator_decides_by_the_two_faces_in_japanese(group: LocalNetwork, browser: Browser) -> None:
    a, b = group.node("chain-a"), group.node("chain-b")
    entry_id = register(a, photo(), "TKY-2026-1220")
    context = browser.new_context(locale="ja-JP", viewport={"width": 1180, "height": 820})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{b.url}/console")
    page.fill("#username", "op1")
    page.fill("#password", group.password)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/console/operator?lang=ja")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "connected")

    for gate in ("gate-1", "gate-2"):
        status, found = b.call(
            "POST", "/v1/query", "op1", {"image": b64url_encode(photo()), "site": "ikebukuro", "gate": gate}
        )
        assert status == 200 and [m["entry_id"] for m in found["matches"]] == [entry_id], found
    alert_id = found["matches"][0]["alert_id"]
    row = page.locator(f"#open-alerts tr[data-alert='{alert_id}']")
    expect(row).to_have_count(1)
    row.get_by_role("link", name="顔を見て確認する").click()
    page.wait_for_url(f"**/console/operator/alerts/{alert_id}?lang=ja")

    expect(page.locator("h1")).to_have_text("運用担当: アラートの確認")
    expect(page.locator("#camera-face")).to_have_attribute("data-state", "shown")
    expect(page.locator("#reference-face")).to_have_attribute("data-state", "shown")
    assert decoded(page, "#camera-face img") and decoded(page, "#reference-face img")
    expect(page.locator("#reference-face figcaption")).to_contain_text("株式会社Aマート")
    rows = page.locator("#sightings tbody tr")
    expect(rows).to_have_count(2)
    for i, gate in enumerate(("gate-1", "gate-2")):
        cells = rows.nth(i).locator("td")
        assert re.fullmatch(
            r"\d{4}年\d{1,2}月\d{1,2}日 \d{1,2}:\d{2}:\d{2} JST", cells.nth(1).inner_text()
        ), cells.nth(1)
        expect(cells.nth(2)).to_have_text("池袋店 ikebukuro")
        expect(cells.nth(3)).to_have_text(gate)
    steps = page.locator("#procedure li")
    expect(steps).to_have_text([step.ja for step in PROCEDURE])
    next_steps = page.locator("section[aria-labelledby=next-heading]")
    expect(next_steps.get_by_role("button", name="本人と確認")).to_be_visible()
    expect(next_steps.get_by_role("button", name="誤検知")).to_be_visible()
    expect(page.locator("#erase-note")).to_contain_text("72時間")
    visible = page.inner_text("main")
    assert not ENGLISH.search(visible), ENGLISH.findall(visible)
    shot(page, "1-alert-two-faces-ja")

    next_steps.get_by_role("button", name="誤検知").click()
    page.wait_for_url("**/console/operator?lang=ja")
    expect(page.locator("p.notice").first).to_contain_text("誤検知として記録しました。")
    page.goto(f"{b.url}/console/operator/alerts/{alert_id}?lang=ja")
    expect(page.locator("#camera-face")).to_have_attribute("data-state", "false-match")
    expect(page.locator("#camera-face")).to_contain_text("誤検知と判断されたため、カメラ画像は消去されました")
    expect(page.locator("#reference-face")).to_have_attribute("data-state", "judged")
    expect(page.locator("#sightings tbody tr img")).to_have_count(0)
    expect(page.locator("section[aria-labelledby=next-heading] button")).to_have_count(0)
    shot(page, "2-alert-false-match-erased-ja")
    context.close()


def test_the_page_is_in_english_too(group: LocalNetwork, browser: Browser) -> None:
    """The same page in English for head office (every key has both texts)."""
    b = group.node("chain-b")
    status, listed = b.call("GET", "/v1/alerts", "op1")
    assert status == 200 and listed["alerts"], listed
    context = browser.new_context(locale="en-GB", viewport={"width": 1180, "height": 820})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{b.url}/console?lang=en")
    page.fill("#username", "op1")
    page.fill("#password", group.password)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url("**/console/operator?lang=en")
    page.goto(f"{b.url}/console/operator/alerts/{listed['alerts'][0]['alert_id']}?lang=en")
    expect(page.locator("h1")).to_have_text("Operator: check an alert")
    expect(page.locator("#camera-face")).to_contain_text("judged a false match")
    expect(page.locator("#procedure li")).to_have_text([step.en for step in PROCEDURE])
    shot(page, "3-alert-en")
    context.close()
