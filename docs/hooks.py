"""MkDocs hooks: the SOP reference page is generated at build time from the format models.

`docs/reference.zh.md` and `docs/reference.en.md` hold the page's title and introduction and the
marker below; the rest comes from `bot.sop.reference` with the descriptions in
`docs/reference.yaml`. A model, field, variable or event without its descriptions and examples
fails the build, so a new option cannot go undocumented.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.sop import reference  # noqa: E402

MARKER = "<!-- reference -->"
DESCRIPTIONS = Path(__file__).with_name("reference.yaml")


def _descriptions() -> dict[str, Any]:
    loaded = yaml.safe_load(DESCRIPTIONS.read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise PluginError(f"{DESCRIPTIONS}: expected a mapping")
    return loaded


def on_config(config: Any) -> Any:
    found = reference.problems(_descriptions())
    if found:
        listed = "\n  ".join(found)
        raise PluginError(f"the SOP reference is incomplete ({DESCRIPTIONS.name}):\n  {listed}")
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    language = page.file.src_uri.split(".")[-2]
    if language not in reference.LANGUAGES:
        raise PluginError(f"{page.file.src_uri}: no language in the file name")
    generated = reference.reference_markdown(_descriptions(), language)
    return markdown.replace(MARKER, generated)
