"""The built documentation as a reader sees it: served locally, opened in Chromium, in both
languages; the language switch leads to the same page, search is there, nothing comes from
another host. Screenshots of the first page and the first-SOP guide go to `test-artifacts/docs/`
(and to TIDEPOOL_DOCS_SHOTS when set)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page

from .conftest import ARTIFACTS, ROOT, free_port

SHOTS = [ARTIFACTS / "docs"]
if os.environ.get("TIDEPOOL_DOCS_SHOTS"):
    SHOTS.append(Path(os.environ["TIDEPOOL_DOCS_SHOTS"]))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("docs") / "site"
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=True,
        timeout=120,
    )
    return site


@pytest.fixture
async def served(built: Path) -> AsyncIterator[str]:
    """The built site on a local port."""
    app = web.Application()
    app.router.add_static("/", built, show_index=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


async def open_page(browser: Browser, url: str, requested: list[str]) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(30_000)
    page.on("request", lambda request: requested.append(request.url))
    await page.goto(url)
    await page.wait_for_load_state("networkidle")
    return page


async def shoot(page: Page, name: str) -> None:
    for folder in SHOTS:
        folder.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(folder / name))


async def heading(page: Page) -> str:
    """The page's title as shown (without the ¶ permalink beside it)."""
    return (await page.locator("article h1").first.inner_text()).rstrip("¶").strip()


def elsewhere(requested: list[str], base: str) -> list[str]:
    host = urlsplit(base).netloc
    return [url for url in requested if urlsplit(url).netloc not in (host, "")]


@pytest.mark.parametrize(
    ("language", "path", "title", "other", "other_title"),
    [
        ("zh", "index.html", "快速上手", "en/index.html", "Getting started"),
        ("en", "en/index.html", "Getting started", "index.html", "快速上手"),
        ("zh", "first-sop.html", "写第一个 SOP", "en/first-sop.html", "Your first SOP"),
        ("en", "en/first-sop.html", "Your first SOP", "first-sop.html", "写第一个 SOP"),
    ],
)
async def test_a_reader_sees_the_page_and_switches_language(
    browser: Browser,
    served: str,
    language: str,
    path: str,
    title: str,
    other: str,
    other_title: str,
) -> None:
    requested: list[str] = []
    page = await open_page(browser, served + path, requested)

    assert await heading(page) == title
    assert await page.locator("html").get_attribute("lang") == language
    assert await page.locator("input.md-search__input").count() == 1
    name = "home" if path.endswith("index.html") else "guide"
    await shoot(page, f"docs-{name}-{language}.png")

    # The language switch (the globe in the header) leads to the same page in the other language.
    await page.locator(".md-header__option .md-select").first.hover()
    await page.locator(
        f'a.md-select__link[hreflang="{"en" if language == "zh" else "zh"}"]'
    ).click()
    await page.wait_for_load_state("networkidle")
    assert page.url == served + other
    assert await heading(page) == other_title

    assert elsewhere(requested, served) == []
    await page.context.close()
