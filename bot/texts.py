"""Member- and admin-facing texts, in Chinese and English, rendered from `content/texts/*.yaml`."""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from bot.settings import SettingsError

LANGUAGES = ("zh", "en")
POPUP = 200  # characters Telegram shows in a button's answer


def popup(text: str) -> str:
    """A rendered text as a button's answer shows it: plain text (texts are rendered as HTML,
    with names escaped), at most POPUP characters."""
    plain = html.unescape(text)
    return plain if len(plain) <= POPUP else plain[: POPUP - 1] + "…"


class Texts:
    """Every text the bot says, by key and language; a text written in one language only is
    said in that language to every group."""

    def __init__(self, catalogues: dict[str, dict[str, str]], default_language: str = "zh") -> None:
        self.catalogues = catalogues
        self.default_language = default_language
        self._env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)
        self._templates = {
            (lang, key): self._env.from_string(source)
            for lang, catalogue in catalogues.items()
            for key, source in catalogue.items()
        }

    @classmethod
    def load(cls, content_dir: Path, default_language: str = "zh") -> Texts:
        """Read `content_dir/texts/<lang>.yaml` of every language; SettingsError if broken."""
        catalogues: dict[str, dict[str, str]] = {}
        for lang in LANGUAGES:
            path = content_dir / "texts" / f"{lang}.yaml"
            try:
                raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise SettingsError(
                    f"CONTENT_DIR is invalid: {path} is missing; point CONTENT_DIR at the "
                    "project's content/ folder"
                ) from None
            except yaml.YAMLError as exc:
                raise SettingsError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None
            catalogues[lang] = flatten_keys(raw or {})
        try:
            return cls(catalogues, default_language)
        except TemplateError as exc:
            raise SettingsError(
                f"a text in {content_dir}/texts has a template error: {exc}"
            ) from None

    def __call__(self, key: str, language: str | None = None, **values: Any) -> str:
        """Render text `key` in `language` (the default when None or unknown)."""
        lang = language if language in self.catalogues else self.default_language
        for other in (lang, *LANGUAGES):  # a text in one language only serves every group
            template = self._templates.get((other, key))
            if template is not None:
                return template.render(**values).strip()
        raise KeyError(f"text '{key}' is in no language of the catalogue")


def flatten_keys(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested text keys as dotted names: {"a": {"b": "x"}} -> {"a.b": "x"}."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_keys(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat
