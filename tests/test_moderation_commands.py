"""Admins' moderation commands in the chat, through the dispatcher as Telegram delivers them:
/moderation, /warn, /mute, /ban, /unban, /modlog; members may not use them, and a command
without the member's message to reply to says how to use it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from aiogram.types import Chat, Message, Update, User
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.console_harness import ConsoleHarness, console_harness

pytestmark = pytest.mark.asyncio

UPDATES = count(1)
MESSAGES = count(500)


@pytest.fixture
async def h(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[ConsoleHarness]:
    async with console_harness(engine, tmp_path) as harness:
        yield harness


async def setup(h: ConsoleHarness) -> tuple[int, User, User]:
    admin = await h.person("Ada", 501)
    member = await h.person("Mo", 502)
    chat_id = await h.group("Readers", admins=[admin], members=[member])
    return chat_id, admin, member


async def say(
    h: ConsoleHarness, chat_id: int, person: User, text: str, reply_to: Message | None = None
) -> Message:
    message = Message(
        message_id=next(MESSAGES),
        date=h.clock.now(),
        chat=Chat(id=chat_id, type="supergroup", title="Readers"),
        from_user=person,
        text=text,
        reply_to_message=reply_to,
    )
    await h.app.dispatcher.feed_update(h.app.bot, Update(update_id=next(UPDATES), message=message))
    return message


def replies(h: ConsoleHarness, chat_id: int, since: int) -> list[str]:
    return [s.text for s in h.outbox.sent[since:] if s.chat_id == chat_id]


def moderated(h: ConsoleHarness, method: str) -> list[tuple[str, int, int, Any]]:
    return [m for m in h.outbox.moderated if m[0] == method]


async def test_modes_are_switched_and_shown_by_admins_only(h: ConsoleHarness) -> None:
    chat_id, admin, member = await setup(h)
    before = len(h.outbox.sent)
    await say(h, chat_id, member, "/moderation off")
    assert h.app.moderation.mode(chat_id) == "on"
    await say(h, chat_id, admin, "/moderation dry")
    assert h.app.moderation.mode(chat_id) == "dry"
    await say(h, chat_id, admin, "/moderation sideways")
    await say(h, chat_id, admin, "/moderation")
    shown = replies(h, chat_id, before)
    assert "admins" in shown[0].lower()  # the member was refused
    assert "dry mode" in shown[1]
    assert shown[2].startswith("/moderation on | off | dry")
    assert "dry mode" in shown[3] and "Last 30 days: 0 actions" in shown[3]


async def test_warnings_add_up_to_a_mute(h: ConsoleHarness) -> None:
    chat_id, admin, member = await setup(h)
    said = await say(h, chat_id, member, "buy my course!!!")
    before = len(h.outbox.sent)
    for _ in range(3):
        await say(h, chat_id, admin, "/warn off topic", reply_to=said)
    texts = replies(h, chat_id, before)
    assert "(1 of 3)" in texts[0] and "Reason: off topic" in texts[0]
    assert "(3 of 3)" in texts[2] and "muted for 1d" in texts[2]
    ((_m, _c, user, (perms, until)),) = moderated(h, "restrictChatMember")
    assert user == member.id and not perms.can_send_messages
    assert until == h.clock.now() + timedelta(days=1)


async def test_mute_ban_and_unban(h: ConsoleHarness) -> None:
    chat_id, admin, member = await setup(h)
    said = await say(h, chat_id, member, "spam spam")
    before = len(h.outbox.sent)
    await say(h, chat_id, admin, "/mute", reply_to=said)  # no duration
    await say(h, chat_id, admin, "/mute 2h too loud", reply_to=said)
    await say(h, chat_id, admin, "/ban", reply_to=said)
    await say(h, chat_id, admin, "/unban @mo")
    await say(h, chat_id, admin, "/unban @nobody")
    texts = replies(h, chat_id, before)
    assert texts[0].startswith("Usage, in reply")
    assert "muted for 2h" in texts[1]
    assert "Mo is banned" in texts[2] and (chat_id, said.message_id) in h.outbox.deleted
    assert "@mo may join again" in texts[3]
    assert "I do not know @nobody" in texts[4]
    assert [m[2] for m in moderated(h, "banChatMember")] == [member.id]
    assert [m[2] for m in moderated(h, "unbanChatMember")] == [member.id]
    log = await h.app.moderation.store.latest(chat_id)
    assert [a.action for a in log] == ["unban", "delete", "ban", "mute"]
    assert all(a.by == f"admin:{admin.id}" for a in log)


async def test_commands_need_a_reply_and_spare_admins(h: ConsoleHarness) -> None:
    chat_id, admin, _member = await setup(h)
    own = await say(h, chat_id, admin, "hello")
    before = len(h.outbox.sent)
    await say(h, chat_id, admin, "/warn")
    await say(h, chat_id, admin, "/ban", reply_to=own)
    texts = replies(h, chat_id, before)
    assert texts[0].startswith("Send this command in reply")
    assert "Ada is an admin" in texts[1]
    assert moderated(h, "banChatMember") == []


async def test_modlog_lists_the_latest_actions(h: ConsoleHarness) -> None:
    chat_id, admin, member = await setup(h)
    before = len(h.outbox.sent)
    await say(h, chat_id, admin, "/modlog")
    said = await say(h, chat_id, member, "hey")
    await say(h, chat_id, admin, "/warn be nice", reply_to=said)
    await h.app.moderation.mute(chat_id, member.id, duration=timedelta(minutes=10), by="sop:flood")
    await say(h, chat_id, admin, "/modlog")
    texts = replies(h, chat_id, before)
    assert texts[0] == "Nothing in the moderation log yet."
    log = texts[-1].splitlines()
    assert log[0] == "Latest 2 moderation actions:"
    assert "mute Mo by sop:flood" in log[1] and "[done]" in log[1]
    assert "warn Mo by admin:501: be nice" in log[2]
