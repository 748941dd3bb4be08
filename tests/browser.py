"""Debian's Chromium driven by Playwright, for the tests that use the console in a real browser.

A test module calls ``require_chromium()`` before it imports Playwright: without
``/usr/bin/chromium`` the module is skipped with the reason, except under CI=true, where the
browser's launch then fails the tests (CI installs Chromium, so its tests must run there).
``chromium()`` launches it headless with the flags every such test uses, and
``screenshots(prefix)`` makes the function that saves a full page as
``tests/artifacts/{prefix}-{name}.png`` for a person to look at.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking")


def require_chromium() -> None:
    """Skip the calling test module, at import, if Chromium is missing and this is not CI."""
    __tracebackhide__ = True  # the skip is reported at the test module's line that called this
    if not CHROMIUM.exists() and os.environ.get("CI") != "true":
        pytest.skip(
            f"{CHROMIUM} not installed (apt-get install chromium); CI installs it", allow_module_level=True
        )


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, launched by Playwright with ``FLAGS``; closed on the way out."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=list(FLAGS))
        yield b
        b.close()


def screenshots(prefix: str) -> Callable[[Page, str], None]:
    """``shot(page, name)``: save the whole of ``page`` as ``tests/artifacts/{prefix}-{name}.png``."""

    def shot(page: Page, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{prefix}-{name}.png"), full_page=True)

    return shot
