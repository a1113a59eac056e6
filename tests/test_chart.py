"""The metrics chart: a PNG of the promised size for any window, language and group title."""

from __future__ import annotations

import random
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest

from bot.stats.chart import CJK_FONT, drawable, render
from bot.stats.metrics import Day, GroupMetrics

PNG = b"\x89PNG\r\n\x1a\n"
LAST = date(2026, 11, 30)


def metrics(days: int, *, seed: int = 1) -> GroupMetrics:
    """`days` days of made-up activity ending on LAST."""
    rng = random.Random(seed)
    first = LAST - timedelta(days=days - 1)
    found = GroupMetrics(chat_id=-100123, first=first, last=LAST)
    for offset in range(days):
        messages = rng.randint(0, 400)
        found.days.append(
            Day(
                first + timedelta(days=offset),
                messages,
                min(messages, rng.randint(0, 60)),
                rng.randint(0, 12),
                rng.randint(0, 5),
            )
        )
    found.heatmap = [[rng.randint(0, 50) for _ in range(24)] for _ in range(7)]
    found.messages = sum(day.messages for day in found.days)
    return found


def empty(days: int = 30) -> GroupMetrics:
    first = LAST - timedelta(days=days - 1)
    found = GroupMetrics(chat_id=-100123, first=first, last=LAST)
    found.days = [Day(first + timedelta(days=n), 0, 0, 0, 0) for n in range(days)]
    return found


def size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking it is a PNG."""
    assert png.startswith(PNG)
    assert png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


@pytest.mark.parametrize("language", ["zh", "en", None])
@pytest.mark.parametrize(
    "window",
    [metrics(30), metrics(90), empty(), GroupMetrics(1, LAST, LAST)],
    ids=["30", "90", "empty", "no-days"],
)
def test_renders_a_png_of_the_promised_size(window: GroupMetrics, language: str | None) -> None:
    png = render(window, title="潮汐社区 Tidepool", language=language)
    assert size(png) == (1000, 1100)
    assert len(png) > 10_000  # drawn, not a blank page


def test_rendering_again_gives_an_image_again() -> None:
    window = metrics(30)
    first = render(window, title="Tidepool", language="en")
    second = render(window, title="Tidepool", language="en")
    assert size(first) == size(second) == (1000, 1100)


@pytest.mark.parametrize(
    "title", ["潮汐 🌊 Tidepool", "Earn $5 – $10 a day", "$\\frac{", "", "🌊🌊"]
)
def test_any_group_title_renders_without_missing_glyphs(title: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)"
        png = render(metrics(7), title=title, language="zh")
    assert size(png) == (1000, 1100)


def test_titles_keep_what_the_fonts_can_draw() -> None:
    assert drawable("Tidepool  Café – Ελλάδα") == "Tidepool Café – Ελλάδα"
    assert drawable("潮汐 Tidepool") == ("潮汐 Tidepool" if CJK_FONT else "Tidepool")
    assert drawable("\U0001fae7") == ""  # bubbles: in no font we pick


def test_threads_render_side_by_side() -> None:
    with ThreadPoolExecutor(4) as pool:
        pngs = list(
            pool.map(lambda n: render(metrics(n), title="Tidepool", language="en"), [7, 30, 60, 90])
        )
    assert [size(png) for png in pngs] == [(1000, 1100)] * 4
