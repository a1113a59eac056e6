"""Lists of content a group works through in turn (the daily tip): one file, a position per group.

`content/rotations/<name>.yaml` is a YAML list; each entry is a text, or one text per language
(`{zh: …, en: …}`). Entries are trusted HTML, like the text catalogue. Each group keeps its own
position in `rotations`, so a group that joined later starts at the first entry, and after the
last entry it starts over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.db import ROTATIONS, insert_for

LANGUAGES = ("zh", "en")


class RotationError(Exception):
    """The rotation's file is missing or malformed; the message names the file and the fault."""


def path_of(content_dir: Path, name: str) -> Path:
    return content_dir / "rotations" / f"{name}.yaml"


def load(content_dir: Path, name: str) -> list[str | dict[str, str]]:
    """The entries of rotation `name`; RotationError when the file cannot be used."""
    path = path_of(content_dir, name)
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RotationError(f"{path} does not exist") from None
    except yaml.YAMLError as exc:
        raise RotationError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(raw, list) or not raw:
        raise RotationError(f"{path} must be a non-empty list of entries")
    for number, entry in enumerate(raw, 1):
        if isinstance(entry, str) and entry.strip():
            continue
        if (
            isinstance(entry, dict)
            and entry
            and all(lang in LANGUAGES for lang in entry)
            and all(isinstance(text, str) and text.strip() for text in entry.values())
        ):
            continue
        raise RotationError(
            f"{path}: entry {number} must be a text, or texts by language ({', '.join(LANGUAGES)})"
        )
    return raw


def in_language(entry: str | dict[str, str], language: str | None, default: str) -> Markup:
    """An entry's text in `language` (else the default language, else any)."""
    if isinstance(entry, str):
        return Markup(entry.strip())
    for lang in (language, default, *LANGUAGES):
        if lang in entry:
            return Markup(entry[lang].strip())
    raise AssertionError("load() accepts only entries with a text")


async def position(conn: AsyncConnection, chat_id: int, name: str) -> int:
    """The group's next entry (its index may run past the end: take it modulo the length)."""
    found = await conn.execute(
        select(ROTATIONS.c.position).where(ROTATIONS.c.chat_id == chat_id, ROTATIONS.c.name == name)
    )
    return int(found.scalar() or 0)


async def advance(conn: AsyncConnection, chat_id: int, name: str, to: int) -> None:
    stmt = insert_for(conn, ROTATIONS).values(chat_id=chat_id, name=name, position=to)
    await conn.execute(
        stmt.on_conflict_do_update(index_elements=["chat_id", "name"], set_={"position": to})
    )
