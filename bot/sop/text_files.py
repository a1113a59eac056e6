"""Where SOP texts come from: the SOP's own (`texts:` or `<id>.texts.yaml`) and `content/texts`.

Each text keeps the file, language and line it was written on, so a problem with it names them.
An SOP's own texts come first; the bot's catalogue (`content/texts/<lang>.yaml`) after them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bot.sop.format import flat_texts
from bot.sop.yaml_files import Problem, SopLoader, yaml_problem

LANGUAGES = ("en", "zh")
TEXTS_SUFFIX = ".texts.yaml"  # sops/<id>.texts.yaml: an SOP's texts beside its file


@dataclass(frozen=True)
class Text:
    """One text as written: its Jinja2 source, and where."""

    source: str
    language: str
    file: Path
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


Texts = dict[str, dict[str, Text]]  # language -> key -> text


@dataclass
class TextFile:
    """The texts read from one file, and what is wrong in it."""

    file: Path
    texts: Texts = field(default_factory=lambda: {language: {} for language in LANGUAGES})
    problems: list[Problem] = field(default_factory=list)
    broken: set[str] = field(default_factory=set)  # languages that could not be read


def texts_file_of(sop_file: Path, sop_id: str) -> Path:
    """Where the texts of SOP `sop_id` may live beside its file."""
    return sop_file.parent / f"{sop_id}{TEXTS_SUFFIX}"


def from_node(node: yaml.Node | None, language: str, file: Path, into: TextFile, at: str) -> None:
    """Add the texts under `node` (a mapping, nested allowed) in `language`; `at` is the key
    path shown in problems (`texts.zh` in an SOP file, `zh` in a texts file)."""
    if node is None:
        return
    try:
        flat_texts(SopLoader("").construct_object(node, deep=True))
    except ValueError as exc:
        mark = node.start_mark
        message = f"({language}) {exc}"
        into.problems.append(Problem(file, mark.line + 1, mark.column + 1, at, message))
        into.broken.add(language)
        return
    for key, value in _leaves(node, ""):
        line = value.start_mark.line + 1
        into.texts[language][key] = Text(str(value.value), language, file, line)


def _leaves(node: yaml.Node, prefix: str) -> list[tuple[str, yaml.ScalarNode]]:
    found: list[tuple[str, yaml.ScalarNode]] = []
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = f"{prefix}{key.value}"
            if isinstance(value, yaml.MappingNode):
                found += _leaves(value, f"{name}.")
            elif isinstance(value, yaml.ScalarNode):
                found.append((name, value))
    return found


def read_catalogue(content_dir: Path) -> TextFile:
    """The bot's catalogue: `content_dir/texts/<lang>.yaml`, a language a file."""
    catalogue = TextFile(content_dir / "texts")
    for language in LANGUAGES:
        path = content_dir / "texts" / f"{language}.yaml"
        root = _compose(path, catalogue, language)
        if root is not None:
            from_node(root, language, path, catalogue, "")
    return catalogue


def read_texts_file(path: Path) -> TextFile:
    """An SOP's `<id>.texts.yaml`: `zh:` and/or `en:`, each a mapping of keys to texts."""
    texts = TextFile(path)
    root = _compose(path, texts, None)
    if root is None:
        return texts
    if not isinstance(root, yaml.MappingNode):
        texts.problems.append(
            Problem(path, 1, 1, "", "a texts file needs 'zh:' and/or 'en:', each with its texts")
        )
        texts.broken.update(LANGUAGES)
        return texts
    for key, value in root.value:
        if key.value not in LANGUAGES:
            texts.problems.append(
                Problem(
                    path,
                    key.start_mark.line + 1,
                    key.start_mark.column + 1,
                    str(key.value),
                    f"'{key.value}' is not a language: a texts file has 'zh:' and/or 'en:'",
                )
            )
            continue
        from_node(value, key.value, path, texts, key.value)
    return texts


def _compose(path: Path, into: TextFile, language: str | None) -> yaml.Node | None:
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if language is not None:  # the bot's catalogue must be there; a texts file need not
            into.problems.append(Problem(path, 1, 1, "", f"({language}) the file is missing"))
            into.broken.add(language)
        return None
    except (OSError, UnicodeDecodeError) as exc:
        into.problems.append(Problem(path, 1, 1, "", f"cannot read the file: {exc}"))
        into.broken.update([language] if language else LANGUAGES)
        return None
    loader = SopLoader(source)
    try:
        return loader.get_single_node()
    except yaml.YAMLError as exc:
        problem = yaml_problem(path, exc, source)
        if language is not None:
            message = f"({language}) {problem.message}"
            problem = Problem(path, problem.line, problem.column, "", message)
        into.problems.append(problem)
        into.broken.update([language] if language else LANGUAGES)
        return None
    finally:
        loader.dispose()


def sources(texts: Mapping[str, Mapping[str, Text]]) -> dict[str, dict[str, str]]:
    """Texts as the engine keeps them: language -> key -> source."""
    return {
        language: {key: text.source for key, text in by_key.items()}
        for language, by_key in texts.items()
        if by_key
    }
