"""Group chatter for the benchmarks: prebuilt message updates, and feeding them as polling does.

The same updates bench/ingest.py has always timed (several kinds of message from 40 members per
group, a /checkin among them now and then), so that the benches that put them beside other work
measure against the same load.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import Chat, Message, MessageEntity, PhotoSize, Update, User

BATCH = 100  # updates one getUpdates returns


def make_updates(count: int, groups: int, bot: Bot) -> list[Update]:
    """Messages of several kinds from 40 members per group, one second apart.

    They are bound to `bot`, as updates from getUpdates are; otherwise aiogram would copy every
    update through a JSON round trip inside feed_update.
    """
    chats = [
        Chat(id=-1001000000000 - g, type="supergroup", title=f"Group {g}") for g in range(groups)
    ]
    users = [
        User(id=10_000 + u, is_bot=False, first_name=f"Member {u}") for u in range(groups * 40)
    ]
    photo = [PhotoSize(file_id="AgAC", file_unique_id="AQAD", width=800, height=600)]
    start = datetime(2026, 11, 1, tzinfo=UTC)
    updates = []
    for i in range(count):
        chat = chats[i % groups]
        sender = users[(i * 7919) % len(users)]
        when = start + timedelta(seconds=i)
        fields: dict[str, Any] = {"text": f"message number {i} in the group"}
        if i % 10 == 3:
            fields = {"photo": photo, "caption": "look at this"}
        elif i % 25 == 5:
            fields = {
                "text": "/checkin",
                "entities": [MessageEntity(type="bot_command", offset=0, length=8)],
            }
        message = Message(message_id=i + 1, date=when, chat=chat, from_user=sender, **fields)
        update = Update(update_id=i + 1, message=message)
        updates.append(Update.model_validate(update.model_dump(), context={"bot": bot}))
    return updates


def chats_of(updates: list[Update]) -> list[tuple[int, str]]:
    """The groups (id, title) the updates' messages come from."""
    chats = {u.message.chat.id: u.message.chat.title or "" for u in updates if u.message}
    return sorted(chats.items())


async def feed(dispatcher: Dispatcher, bot: Bot, updates: list[Update]) -> None:
    """Hand the updates to the dispatcher one by one, yielding to the event loop after each
    batch of BATCH as polling does, so the background writers run while updates stream in."""
    for start in range(0, len(updates), BATCH):
        for update in updates[start : start + BATCH]:
            await dispatcher.feed_update(bot, update)
        await asyncio.sleep(0)
