"""A group's metrics as one PNG: daily messages and actives, joins and leaves, the hour heatmap.

Drawn with matplotlib's Agg canvas on a `Figure` of its own (never pyplot's global state), so
calls from several threads do not share anything and each figure is freed with its last
reference. Fonts are chosen once, at import: the first installed font of `CJK_FONTS`, with
matplotlib's default font (DejaVu Sans) for the characters it lacks. Without a CJK font the
labels are English whatever the language asked. Characters that none of these fonts can draw
(Chinese without a CJK font; emoji always) are left out of the group's title, rather than drawn
as empty boxes with a "Glyph missing" warning each.
"""

from __future__ import annotations

import io
import math
from collections.abc import Container
from typing import Any

from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from bot.stats.metrics import GroupMetrics

CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Noto Sans CJK JP",  # older matplotlib names the Noto CJK .ttc after its first face
)
SIZE = (10.0, 11.0)  # inches; at DPI, 1000 × 1100 px
DPI = 100
GRID = {"left": 0.08, "right": 0.91, "top": 0.91, "bottom": 0.05, "hspace": 0.3}
LEGEND: dict[str, Any] = {
    "loc": "lower right",
    "bbox_to_anchor": (1.0, 1.0),
    "ncols": 2,
    "frameon": False,
}
MAX_DATE_TICKS = 12
MAX_TITLE = 60  # characters of the group's title; Telegram allows 128
LABELS = {
    "zh": {
        "daily": "每日消息与活跃成员",
        "messages": "消息",
        "active": "活跃成员",
        "members": "加入与离开",
        "joins": "加入",
        "leaves": "离开",
        "heatmap": "按星期与小时的消息",
        "hour": "小时",
        "weekdays": "周一 周二 周三 周四 周五 周六 周日",
        "empty": "这段时间没有消息",
    },
    "en": {
        "daily": "Messages and active members per day",
        "messages": "Messages",
        "active": "Active members",
        "members": "Joins and leaves per day",
        "joins": "Joins",
        "leaves": "Leaves",
        "heatmap": "Messages by weekday and hour",
        "hour": "Hour",
        "weekdays": "Mon Tue Wed Thu Fri Sat Sun",
        "empty": "No messages in this window",
    },
}


def _fonts() -> tuple[str | None, list[str], list[Container[int]]]:
    """The CJK font found (or None), the font families to draw with, and the characters of each."""
    installed = set(font_manager.fontManager.get_font_names())
    cjk = next((name for name in CJK_FONTS if name in installed), None)
    fonts = [font_manager.FontProperties(family=name) for name in [cjk] if name is not None]
    fonts.append(font_manager.FontProperties())  # matplotlib's default, DejaVu Sans
    paths = [font_manager.findfont(font) for font in fonts]
    charmaps: list[Container[int]] = [font_manager.get_font(path).get_charmap() for path in paths]
    return cjk, [font.get_name() for font in fonts], charmaps


CJK_FONT, FAMILY, _CHARMAPS = _fonts()


def drawable(text: str) -> str:
    """`text` without the characters none of our fonts can draw, spaces squeezed."""
    kept = "".join(c for c in text if any(ord(c) in charmap for charmap in _CHARMAPS))
    return " ".join(kept.split())


def render(metrics: GroupMetrics, *, title: str, language: str | None) -> bytes:
    """The chart of `metrics` as PNG bytes; `language` "zh" (also None) or "en"."""
    lang = "zh" if CJK_FONT is not None and (language or "zh").startswith("zh") else "en"
    text = LABELS[lang]
    figure = Figure(figsize=SIZE, dpi=DPI)  # fixed margins: a layout engine doubles the time
    FigureCanvasAgg(figure)
    daily, members, heatmap = figure.subplots(3, 1, height_ratios=(3.0, 2.0, 2.4), gridspec_kw=GRID)
    span = f"{metrics.first:%Y-%m-%d} – {metrics.last:%Y-%m-%d}"
    heading = drawable(title)
    heading = heading if len(heading) <= MAX_TITLE else heading[: MAX_TITLE - 1] + "…"
    figure.suptitle(f"{heading}\n{span}" if heading else span, parse_math=False, fontfamily=FAMILY)
    _draw_daily(daily, metrics, text)
    _draw_members(members, metrics, text)
    _draw_heatmap(figure, heatmap, metrics, text)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _counts(axis: Axis) -> None:
    """Whole numbers on `axis`, without a sign, shortened from 10,000 up (12k)."""
    axis.set_major_locator(MaxNLocator(integer=True))
    axis.set_major_formatter(FuncFormatter(_count))


def _count(value: float, _: object) -> str:
    value = abs(value)
    return f"{value / 1000:g}k" if value >= 10_000 else f"{value:g}"


def _dates(axes: Axes, metrics: GroupMetrics) -> None:
    """Short dates under the bars, at most MAX_DATE_TICKS of them."""
    count = len(metrics.days)
    step = max(1, math.ceil(count / MAX_DATE_TICKS))
    ticks = list(range(0, count, step))
    axes.set_xticks(ticks, [f"{metrics.days[i].day:%m-%d}" for i in ticks])
    axes.set_xlim(-0.5, max(count, 1) - 0.5)


def _draw_daily(axes: Axes, metrics: GroupMetrics, text: dict[str, str]) -> None:
    x = range(len(metrics.days))
    messages = [day.messages for day in metrics.days]
    bars = axes.bar(x, messages, color="#6baed6", label=text["messages"])
    axes.set_ylim(0, max([*messages, 1]) * 1.1)
    axes.set_ylabel(text["messages"], fontfamily=FAMILY)
    axes.set_title(text["daily"], loc="left", fontfamily=FAMILY)
    active = axes.twinx()
    (line,) = active.plot(
        x, [day.active for day in metrics.days], color="#e6550d", marker=".", label=text["active"]
    )
    active.set_ylim(0, max([*(day.active for day in metrics.days), 1]) * 1.1)
    active.set_ylabel(text["active"], fontfamily=FAMILY)
    for scale in (axes, active):
        _counts(scale.yaxis)
    axes.legend(handles=[bars, line], **LEGEND, prop={"family": FAMILY})
    if not any(messages):
        note = axes.text(0.5, 0.5, text["empty"], transform=axes.transAxes, ha="center")
        note.set(color="grey", fontfamily=FAMILY)
    _dates(axes, metrics)


def _draw_members(axes: Axes, metrics: GroupMetrics, text: dict[str, str]) -> None:
    x = range(len(metrics.days))
    joins = [day.joins for day in metrics.days]
    leaves = [-day.leaves for day in metrics.days]
    axes.bar(x, joins, color="#31a354", label=text["joins"])
    axes.bar(x, leaves, color="#de2d26", label=text["leaves"])
    axes.axhline(0, color="black", linewidth=0.8)
    reach = max([*joins, *(day.leaves for day in metrics.days), 1]) * 1.1
    axes.set_ylim(-reach, reach)
    _counts(axes.yaxis)  # leaves are drawn below zero but counted as positive
    axes.set_title(text["members"], loc="left", fontfamily=FAMILY)
    axes.legend(**LEGEND, prop={"family": FAMILY})
    _dates(axes, metrics)


def _draw_heatmap(figure: Figure, axes: Axes, metrics: GroupMetrics, text: dict[str, str]) -> None:
    peak = max((count for row in metrics.heatmap for count in row), default=0)
    image = axes.imshow(metrics.heatmap, aspect="auto", cmap="YlGnBu", vmin=0, vmax=max(peak, 1))
    axes.set_yticks(range(7), text["weekdays"].split(), fontfamily=FAMILY)
    axes.set_xticks(range(24))
    axes.set_xlabel(text["hour"], fontfamily=FAMILY)
    axes.set_title(text["heatmap"], loc="left", fontfamily=FAMILY)
    bar = figure.colorbar(image, cax=axes.inset_axes((1.01, 0.0, 0.02, 1.0)))
    bar.set_label(text["messages"], fontfamily=FAMILY)
    _counts(bar.ax.yaxis)
