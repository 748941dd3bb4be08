"""Every console page as every role sees it, in Japanese and in English, in a real browser.

A two-member group (``LocalNetwork``) with one entry registered from a phone-size photo through
the registrar's page and approved by an officer, so that the pages have rows to show. Then each
demo account signs in with a Japanese and an English browser and opens every page its header
links to; each is saved as ``tests/artifacts/tour-{lang}-{account}-{page}.png`` for a person to
look at. On a Japanese page no English sentence may show: text marked ``lang="en"`` (technical
details folded away for the system's staff), codes and identifiers are not sentences.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.demo.network import CHAIN_NAMES, LocalNetwork
from tests.browser import chromium, require_chromium, screenshots
from tests.test_console import phone_photo
from tests.test_console_story import signed_in

require_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402

ACCOUNTS = ("reg1", "off1", "op1", "aud1", "adm1")
shot = screenshots("tour")

ENGLISH = re.compile(r"\b[A-Za-z]{3,}(?:[ ,'-]+[A-Za-z]{2,}){2,}")
"""Three or more English words in a row: a sentence or a phrase, not a code or a name."""

VISIBLE_TEXT = """() => {
  const copy = document.body.cloneNode(true);
  copy.querySelectorAll('[lang=en], code, pre, kbd, samp, script, style, [hidden], .ident')
      .forEach(e => e.remove());
  return copy.innerText;
}"""
"""What a reader of the page sees, less what is marked English or is a code or identifier."""


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    with LocalNetwork(
        tmp_path_factory.mktemp("tour"), ["chain-a", "chain-b"], sync_interval="1s"
    ).running() as n:
        yield n


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture(scope="module")
def registered(group: LocalNetwork, browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One entry proposed from a phone-size photo at the registrar's page and approved: its id."""
    a = group.node("chain-a")
    photo = tmp_path_factory.mktemp("photo") / "IMG_0001.jpg"
    photo.write_bytes(phone_photo())
    assert 3_000_000 <= photo.stat().st_size <= 5_500_000
    registrar = signed_in(browser, a, "reg1", group.password, "ja-JP")
    registrar.set_input_files("#photo", str(photo))
    registrar.get_by_role("button", name="顔を確認する").click()
    registrar.wait_for_url("**/console/registrar/preview?lang=ja")
    expect(registrar.locator("#quality-checks tbody tr[data-passed=yes]")).to_have_count(4)
    registrar.select_option("#category", "shoplifting")
    registrar.select_option("#evidence_kind", "police-report")
    registrar.fill("#evidence_reference", "TKY-2026-1201")
    registrar.fill("#incident_date", "2026-11-20")
    registrar.select_option("#site", "shinjuku")
    registrar.get_by_role("button", name="この内容で申請する").click()
    row = registrar.locator("#my-proposals tbody tr[data-status=proposed]")
    expect(row).to_have_count(1)
    entry_id = row.get_attribute("data-entry")
    assert entry_id
    registrar.context.close()

    officer = signed_in(browser, a, "off1", group.password, "ja-JP")
    card = officer.locator(f"[data-entry='{entry_id}']").first
    card.get_by_role("button", name="承認する").click()
    expect(officer.locator("p.notice")).to_be_visible()
    officer.context.close()
    return entry_id


COMMAND = re.compile(r"\bwatchnet(?: [a-z][a-z-]*)+")
"""A command to type (``watchnet audit verify``) is named as it is typed, in any language."""


def _english_on(page: Page) -> list[str]:
    return ENGLISH.findall(COMMAND.sub("", page.evaluate(VISIBLE_TEXT)))


@pytest.mark.parametrize("lang", ["ja", "en"])
@pytest.mark.parametrize("account", ACCOUNTS)
def test_every_page_of_every_role_in_both_languages(
    group: LocalNetwork, browser: Browser, registered: str, account: str, lang: str
) -> None:
    a = group.node("chain-a")
    page = signed_in(browser, a, account, group.password, "ja-JP" if lang == "ja" else "en-US")
    links = page.locator("nav.pages a")
    paths = [Path(str(href).split("?")[0]).name for href in links.evaluate_all("a => a.map(e => e.href)")]
    assert paths, f"{account} sees no pages"
    business = CHAIN_NAMES["chain-a"][0 if lang == "ja" else 1]
    english: dict[str, list[str]] = {}
    for name in paths:
        page.goto(f"{a.url}/console/{name}?lang={lang}")
        expect(page.locator("main h1").first).to_be_visible()
        expect(page.locator("#business")).to_contain_text(business)
        assert page.locator("html").get_attribute("lang") == lang
        shot(page, f"{lang}-{account}-{name}")
        if name == "officer":  # the store is named as staff know it, not by its site id
            expect(page.locator(f"[data-entry='{registered}']").first).to_contain_text(
                "新宿店" if lang == "ja" else "Shinjuku store"
            )
        if lang == "ja" and (found := _english_on(page)):
            english[name] = found
    assert not english, f"English on {account}'s Japanese pages: {english}"
    page.context.close()
