"""Stage 6 of `tidepool check`: the texts an SOP sends, in each language, as Telegram reads them.

A text is looked up as the engine will (`bot.sop.messages.TextCatalogue`): the SOP's own texts
first, then the bot's catalogue. It is rendered with sample values for every variable, and what
comes out must be HTML that Telegram accepts, within its lengths. A problem names the text's
language and the file and line it is written on.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError

from bot.sop.telegram_html import CAPTION_LIMIT, MESSAGE_LIMIT, html_problems, visible_length
from bot.sop.templates import render
from bot.sop.text_files import (
    LANGUAGES,
    Text,
    TextFile,
    Texts,
    from_node,
    read_catalogue,
    read_texts_file,
    texts_file_of,
)
from bot.sop.yaml_files import Problem

KeyPath = tuple[str | int, ...]
TextKind = Literal["message", "caption", "button"]
Report = Callable[..., None]  # report(at, message, note=False)

_LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}


def own_texts(file: Path, sop_id: str, root: yaml.Node | None) -> TextFile:
    """An SOP's own texts: its `texts:` key and `<id>.texts.yaml` beside it, merged; a key
    written in both places for one language is a problem."""
    texts = read_texts_file(texts_file_of(file, sop_id))
    inline = TextFile(file)
    if isinstance(root, yaml.MappingNode):
        node = next((value for key, value in root.value if key.value == "texts"), None)
        if isinstance(node, yaml.MappingNode):
            for language, tree in node.value:
                if language.value in LANGUAGES:
                    from_node(tree, language.value, file, inline, f"texts.{language.value}")
    for language in LANGUAGES:
        for key, text in inline.texts[language].items():
            other = texts.texts[language].get(key)
            if other is not None:
                texts.problems.append(
                    Problem(
                        other.file,
                        other.line,
                        1,
                        f"{language}.{key}",
                        f"text '{key}' ({language}) is also in {file.name} (line {text.line}); "
                        "keep one",
                    )
                )
            texts.texts[language][key] = text
    texts.problems += inline.problems
    texts.broken |= inline.broken
    return texts


class TextChecks:
    """The bot's text catalogue under CONTENT_DIR, read once per check, and the text checks."""

    def __init__(self, content_dir: Path) -> None:
        self.content_dir = content_dir
        self._catalogue: TextFile | None = None
        self.problems: list[Problem] = []  # of the catalogue itself, reported once

    @property
    def catalogue(self) -> TextFile:
        if self._catalogue is None:
            self._catalogue = read_catalogue(self.content_dir)
            self.problems += self._catalogue.problems
        return self._catalogue

    def text(
        self,
        report: Report,
        own: Texts,
        context: Mapping[str, Any],
        at: KeyPath,
        key: str,
        kind: TextKind = "message",
    ) -> None:
        """Check text `key` where step `at` sends it (as a message, a caption or a button)."""
        catalogue = self.catalogue
        found: dict[str, Text] = {}
        for language in LANGUAGES:
            text = own.get(language, {}).get(key) or catalogue.texts[language].get(key)
            if text is not None:
                found[language] = text
        unread = [lang for lang in LANGUAGES if lang not in found and lang in catalogue.broken]
        if unread:
            path = self.content_dir / "texts" / f"{unread[0]}.yaml"
            report(at, f"text '{key}' cannot be checked in {unread[0]}: {path} cannot be read")
            return
        if not found:
            report(at, self._unknown(own, key))
            return
        if len(found) < len(LANGUAGES):
            (language, text), *_ = found.items()
            others = ", ".join(lang for lang in LANGUAGES if lang not in found)
            report(
                at,
                f"text '{key}' is written in {language} only ({text.where}): groups in "
                f"{others} get it in {_LANGUAGE_NAMES[language]} too",
                note=True,
            )
        for text in found.values():
            if not self._renders(report, text, key, context, at, kind):
                return

    def _renders(
        self,
        report: Report,
        text: Text,
        key: str,
        context: Mapping[str, Any],
        at: KeyPath,
        kind: TextKind,
    ) -> bool:
        named = f"text '{key}' ({text.language}, {text.where})"
        try:
            rendered = render(text.source, context)
        except UndefinedError as exc:
            names = ", ".join(sorted(context))
            variables = ", ".join(sorted(context.get("vars", {}))) or "none"
            report(
                at,
                f"{named} uses an unknown variable: {exc.message}; texts can use {names} "
                f"(this SOP's vars: {variables})",
            )
            return False
        except TemplateSyntaxError as exc:
            report(
                at,
                f"{named} is not a valid template: {exc.message} (line {exc.lineno} of the text)",
            )
            return False
        except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
            report(at, f"{named} cannot render: {exc}")
            return False
        if kind == "button":
            if "<" in rendered or "&" in text.source:
                report(at, f"{named}: a button shows its text as written, without HTML")
                return False
            return True
        refused = html_problems(rendered)
        if refused:
            more = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
            report(at, f"{named}: Telegram would refuse it: {refused[0]}{more}")
            return False
        limit = CAPTION_LIMIT if kind == "caption" else MESSAGE_LIMIT
        length = visible_length(rendered)
        if length > limit:
            what = "a photo's caption" if kind == "caption" else "a message"
            report(
                at,
                f"{named} is {length} characters with sample values; Telegram allows {limit} "
                f"in {what}: shorten it or split it into two steps",
            )
            return False
        return True

    def _unknown(self, own: Texts, key: str) -> str:
        known = {k for by_key in own.values() for k in by_key} | {
            k for by_key in self.catalogue.texts.values() for k in by_key
        }
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        files = " or ".join(f"{language}.yaml" for language in LANGUAGES)
        return (
            f"text key '{key}' is in neither this SOP's texts nor {self.content_dir}/texts/"
            f"{files}{hint}; add it under `texts:` in the SOP file or in its .texts.yaml"
        )

    def photo(self, report: Report, at: KeyPath, photo: str) -> None:
        base = self.content_dir.resolve()
        target = (base / photo).resolve()
        if not target.is_relative_to(base) or not target.is_file():
            report(
                at,
                f"photo '{photo}' is not a file under {self.content_dir} (CONTENT_DIR); "
                "use a path inside it or an https:// URL",
            )
