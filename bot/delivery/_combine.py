"""Texts sent with a `combine` key that go out as one message when they queue up together."""

from __future__ import annotations

import asyncio
import html
import re
from collections import deque

from aiogram import Bot
from aiogram.types import Message

from ._jobs import _Job, _Lane, _Text

TEXT_LIMIT = 4096  # Telegram's limit of a message's text, counted after parsing its markup
_TAG = re.compile(r"<[^>]*>")
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#[0-9]+|#x[0-9a-f]+);", re.IGNORECASE)  # as Telegram's


def combine_texts(bot: Bot, lane: _Lane, job: _Job, first: _Text) -> _Job:
    """`job`, or one message for it and the texts alike queued behind it that fit."""
    parts, texts = [job], [first.text]
    length = _length(first.text, first.parse_mode)
    for other in lane.jobs:
        if other.text is None or other.given_up or not other.text.alike(first):
            continue
        length += 1 + _length(other.text.text, first.parse_mode)
        if length > TEXT_LIMIT:
            break
        parts.append(other)
        texts.append(other.text.text)
    if len(parts) == 1:
        return job
    taken = set(parts)
    lane.jobs = deque(other for other in lane.jobs if other not in taken)
    text = "\n".join(texts)
    befores = [part.text.before for part in parts if part.text and part.text.before]

    async def request(target: int) -> Message:
        if befores:
            await asyncio.gather(*(before() for before in befores))
        return await bot.send_message(
            target,
            text,
            parse_mode=first.parse_mode,
            reply_markup=first.reply_markup,
            disable_notification=first.disable_notification,
        )

    return _Job(
        job.method,
        job.requested_chat_id,
        job.chat_id,
        f"{len(parts)} combined as {first.combine}",
        request,
        job.paced,
        asyncio.get_running_loop().create_future(),
        job.queued_at,
        parts=parts,
    )


def _length(text: str, parse_mode: str | None) -> int:
    """The length Telegram limits, in UTF-16 units: in HTML, without tags, entities decoded.

    Other markup is counted as written, which can only overestimate.
    """
    if parse_mode is not None and parse_mode.upper() == "HTML":
        text = _ENTITY.sub(lambda entity: html.unescape(entity.group()), _TAG.sub("", text))
    return len(text.encode("utf-16-le")) // 2
