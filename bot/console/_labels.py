"""The console's words in Chinese and English: `labels/*.yaml`, one file per page.

Each key holds both languages (`key: {zh: …, en: …}`); loading fails on a key given twice or
missing a language, so no page shows a bare key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

LANGUAGES = ("zh", "en")


class LabelError(Exception):
    """A labels file is broken; the message names the file and key."""


class Labels:
    def __init__(self, words: dict[str, dict[str, str]]) -> None:
        self.words = words

    @classmethod
    def load(cls, folder: Path) -> Labels:
        words: dict[str, dict[str, str]] = {}
        for path in sorted(folder.glob("*.yaml")):
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            for key, both in data.items():
                if key in words:
                    raise LabelError(f"{path.name}: {key} is also in another labels file")
                if not isinstance(both, dict) or set(both) != set(LANGUAGES):
                    raise LabelError(f"{path.name}: {key} needs exactly zh: and en:")
                words[key] = {language: str(both[language]) for language in LANGUAGES}
        return cls(words)

    def __call__(self, key: str, language: str, **values: Any) -> str:
        both = self.words.get(key)
        if both is None:
            raise KeyError(f"no console label {key!r}")
        text = both.get(language) or both["en"]
        return text.format(**values) if values else text

    def language(self, language: str) -> dict[str, str]:
        """Every label in one language (what the page scripts read)."""
        return {key: both[language] for key, both in self.words.items()}
