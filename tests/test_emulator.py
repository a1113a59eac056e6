"""Tests of the Telegram Bot API emulator, driven by a real aiogram Bot."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.filters import CommandStart
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    ChatMemberAdministrator,
    ChatMemberBanned,
    ChatMemberMember,
    ChatMemberOwner,
    ChatMemberRestricted,
    ChatPermissions,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

from bot.emulator import EmulatorClient, EmulatorError, EmulatorServer, World

#: Pydantic serializer warnings mean a result would not validate like Telegram's: fail on them.
pytestmark = pytest.mark.filterwarnings("error::UserWarning")

TOKEN = "123456:TEST-token"
BOT_ID = 123456


def make_bot(base_url: str, token: str = TOKEN) -> Bot:
    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(base_url)))


async def close_bot(b: Bot) -> None:
    """Close the HTTP session without aiogram's fixed 250 ms grace sleep (keeps tests fast)."""
    inner = b.session._session  # type: ignore[attr-defined]
    if inner is not None:
        await inner.close()


@pytest.fixture
async def srv() -> AsyncIterator[EmulatorServer]:
    async with EmulatorServer(token=TOKEN) as server:
        yield server


@pytest.fixture
async def bot(srv: EmulatorServer) -> AsyncIterator[Bot]:
    b = make_bot(srv.base_url)
    yield b
    await close_bot(b)


@pytest.fixture
def ctl(srv: EmulatorServer) -> EmulatorClient:
    return srv.client


async def make_group(
    ctl: EmulatorClient, *, chat_type: str = "supergroup", bot_status: str = "administrator"
) -> tuple[int, int, int]:
    """A chat with an owner, a member and the bot; returns (chat_id, owner_id, member_id)."""
    owner = await ctl.create_user("Olga", username="olga")
    member = await ctl.create_user("Max")
    chat = await ctl.create_chat("Tidepool HQ", type=chat_type)  # type: ignore[arg-type]
    await ctl.set_member(chat["id"], owner["id"], "creator")
    await ctl.set_member(chat["id"], member["id"], "member")
    await ctl.set_bot_status(chat["id"], bot_status)  # type: ignore[arg-type]
    return chat["id"], owner["id"], member["id"]


async def drain(bot: Bot) -> int:
    """Confirm everything pending; returns the next offset."""
    updates = await bot.get_updates(timeout=0)
    offset = updates[-1].update_id + 1 if updates else 0
    if offset:
        await bot.get_updates(offset=offset, timeout=0)
    return offset


async def test_get_me(bot: Bot, ctl: EmulatorClient) -> None:
    me = await bot.get_me()
    assert me.id == BOT_ID
    assert me.username == "tidepool_test_bot"
    assert me.can_join_groups is True
    assert me.can_read_all_group_messages is False
    await ctl.set_bot(privacy_mode=False)
    assert (await bot.get_me()).can_read_all_group_messages is True


async def test_auth_and_routing(srv: EmulatorServer) -> None:
    other = make_bot(srv.base_url, "999:other-token")
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await other.get_me()
    finally:
        await close_bot(other)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{srv.base_url}/bot{TOKEN}/noSuchMethod") as resp:
            assert resp.status == 404
            assert await resp.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
        async with http.get(f"{srv.base_url}/botnot-a-token/getMe") as resp:
            assert resp.status == 404
            assert (await resp.json())["description"] == "Not Found"
        # JSON body, urlencoded body and query string are all accepted.
        async with http.post(f"{srv.base_url}/bot{TOKEN}/getMe", json={}) as resp:
            assert (await resp.json())["result"]["id"] == BOT_ID
        async with http.get(f"{srv.base_url}/bot{TOKEN}/getUpdates?timeout=0&limit=5") as resp:
            assert (await resp.json()) == {"ok": True, "result": []}
        url = f"{srv.base_url}/bot{TOKEN}/sendMessage"
        async with http.post(url, data={"chat_id": "42", "text": "x"}) as resp:
            assert resp.status == 400
            assert (await resp.json())["description"] == "Bad Request: chat not found"
        async with http.post(url, json={"text": "x"}) as resp:
            assert (await resp.json())["description"] == "Bad Request: chat_id is empty"
        async with http.post(
            url, data=b"{bad json", headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 400
            assert (await r.json())["ok"] is False


async def test_invite_link_join_visible_to_admin_bot(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, owner_id, _ = await make_group(ctl)
    allowed = ["message", "chat_member", "my_chat_member", "callback_query"]
    first = await bot.get_updates(allowed_updates=allowed, timeout=0)
    assert [u.event_type for u in first] == ["my_chat_member", "message"]
    my = first[0].my_chat_member
    assert my is not None and my.from_user.id == owner_id
    assert isinstance(my.new_chat_member, ChatMemberAdministrator)
    assert my.new_chat_member.can_invite_users and not my.new_chat_member.can_promote_members
    service = first[1].message
    assert service is not None and service.new_chat_members is not None
    assert service.new_chat_members[0].id == BOT_ID

    link = await bot.create_chat_invite_link(chat_id, name="spring", member_limit=10)
    assert link.invite_link.startswith("https://t.me/+")
    assert link.creator.id == BOT_ID and link.name == "spring" and link.member_limit == 10
    newcomer = await ctl.create_user("Nina", username="nina")
    joined = await ctl.join(chat_id, newcomer["id"], invite_link=link.invite_link)
    assert len(joined["update_ids"]) == 2

    # allowed_updates persists: omitted here, chat_member still delivered.
    updates = await bot.get_updates(offset=first[-1].update_id + 1, timeout=0)
    assert [u.event_type for u in updates] == ["chat_member", "message"]
    cm = updates[0].chat_member
    assert cm is not None
    assert cm.old_chat_member.status == "left"
    assert isinstance(cm.new_chat_member, ChatMemberMember)
    assert cm.invite_link is not None and cm.invite_link.invite_link == link.invite_link
    assert cm.via_join_request is False
    msg = updates[1].message
    assert msg is not None and msg.new_chat_members is not None
    assert msg.new_chat_members[0].id == newcomer["id"]
    assert msg.from_user is not None and msg.from_user.id == newcomer["id"]

    stats = await ctl.stats()
    assert stats["confirmed"] == 2 and stats["pending"] == 2
    await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0)
    stats = await ctl.stats()
    assert stats == {
        "pending": 0,
        "delivered": 4,
        "confirmed": 4,
        "dropped": 0,
        "last_confirmed_update_id": updates[-1].update_id,
    }
    assert await bot.get_chat_member_count(chat_id) == 4


async def test_chat_member_needs_allowed_updates_and_admin(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, _, member_id = await make_group(ctl)
    await drain(bot)
    await ctl.leave(chat_id, member_id)
    updates = await bot.get_updates(timeout=0)  # default allowed_updates: no chat_member
    assert [u.event_type for u in updates] == ["message"]
    assert updates[0].message is not None and updates[0].message.left_chat_member is not None
    assert [u["dropped"] for u in await ctl.updates()][-2:] == [True, False]

    # A non-admin bot gets no chat_member updates at all.
    chat2, _, member2 = await make_group(ctl, bot_status="member")
    result = await ctl.kick(chat2, member2)
    assert len(result["update_ids"]) == 1  # only the left_chat_member service message


async def test_a_promotion_that_is_not_silent_reaches_an_admin_bot(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, owner_id, member_id = await make_group(ctl)
    offset = await drain(bot)
    assert await ctl.set_member(chat_id, member_id, "administrator") is None  # seeding: silent
    update_id = await ctl.set_member(
        chat_id, member_id, "member", silent=False, by=owner_id
    )  # demoted again, as its owner would
    assert update_id is not None
    update_id = await ctl.set_member(chat_id, member_id, "administrator", silent=False)
    updates = await bot.get_updates(offset=offset, timeout=0, allowed_updates=["chat_member"])
    changes = [u.chat_member for u in updates if u.chat_member is not None]
    assert [(c.old_chat_member.status, c.new_chat_member.status) for c in changes] == [
        ("administrator", "member"),
        ("member", "administrator"),
    ]
    assert changes[0].from_user.id == owner_id and changes[1].from_user.id == owner_id
    assert updates[-1].update_id == update_id


async def test_long_poll_wakes_up(bot: Bot, ctl: EmulatorClient) -> None:
    user = await ctl.create_user("Pat")
    started = time.monotonic()
    task = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    assert not task.done()
    await ctl.start(user["id"], payload="ref42")
    updates = await asyncio.wait_for(task, 2)
    assert time.monotonic() - started < 2
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None and message.text == "/start ref42"
    assert message.entities is not None and message.entities[0].type == "bot_command"
    assert message.entities[0].length == len("/start")
    assert message.chat.type == "private"
    # Empty long poll returns [] after the timeout.
    t0 = time.monotonic()
    assert await bot.get_updates(offset=updates[0].update_id + 1, timeout=1) == []
    assert time.monotonic() - t0 >= 0.9


async def test_concurrent_get_updates_conflict(bot: Bot, ctl: EmulatorClient) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=5))
    await asyncio.sleep(0.1)
    second = asyncio.create_task(bot.get_updates(timeout=0))
    with pytest.raises(TelegramConflictError, match="terminated by other getUpdates"):
        await asyncio.wait_for(first, 2)
    assert await second == []


async def test_webhook_conflict(bot: Bot, ctl: EmulatorClient) -> None:
    user = await ctl.create_user("Wes")
    await ctl.start(user["id"])
    assert await bot.set_webhook("https://example.org/hook")
    with pytest.raises(TelegramConflictError, match="webhook is active"):
        await bot.get_updates(timeout=0)
    assert (await bot.get_webhook_info()).pending_update_count == 1
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.get_updates(timeout=0) == []


async def test_inline_keyboard_press_and_answer(bot: Bot, ctl: EmulatorClient) -> None:
    user = await ctl.create_user("Kai")
    with pytest.raises(TelegramForbiddenError, match="can't initiate conversation"):
        await bot.send_message(user["id"], "hi")
    await ctl.start(user["id"])
    offset = await drain(bot)
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Yes", callback_data="vote:yes")]]
    )
    sent = await bot.send_message(user["id"], "Vote?", reply_markup=markup, parse_mode="HTML")
    assert sent.reply_markup is not None
    assert sent.reply_markup.model_dump() == markup.model_dump()
    pressed = await ctl.press(user["id"], user["id"], sent.message_id, "vote:yes")
    with pytest.raises(EmulatorError):
        await ctl.press(user["id"], user["id"], sent.message_id, "vote:no")
    updates = await bot.get_updates(offset=offset, timeout=0)
    query = updates[0].callback_query
    assert query is not None and query.id == pressed["callback_query_id"]
    assert query.data == "vote:yes" and query.from_user.id == user["id"]
    assert query.message is not None and query.message.message_id == sent.message_id
    assert await ctl.callback_answer(query.id) is None
    assert await bot.answer_callback_query(query.id, text="Counted", show_alert=True)
    answer = await ctl.callback_answer(query.id)
    assert answer is not None and answer["text"] == "Counted" and answer["show_alert"] is True
    with pytest.raises(TelegramBadRequest, match="query ID is invalid"):
        await bot.answer_callback_query(query.id)
    sent_rows = await ctl.sent(user["id"])
    assert sent_rows[0]["parse_mode"] == "HTML"
    assert sent_rows[0]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "vote:yes"


async def test_edit_delete_pin(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, _, member_id = await make_group(ctl)
    user_msg = await ctl.send_message(chat_id, member_id, "question?")
    reply = await bot.send_message(
        chat_id, "answer", reply_to_message_id=user_msg["message"]["message_id"]
    )
    assert reply.reply_to_message is not None
    assert reply.reply_to_message.text == "question?"
    msg = await bot.send_message(chat_id, "v1")
    edited = await bot.edit_message_text("v2", chat_id=chat_id, message_id=msg.message_id)
    assert not isinstance(edited, bool) and edited.text == "v2" and edited.edit_date is not None
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_text("v2", chat_id=chat_id, message_id=msg.message_id)
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Go", url="https://example.org")]]
    )
    await bot.edit_message_reply_markup(
        chat_id=chat_id, message_id=msg.message_id, reply_markup=markup
    )
    with pytest.raises(TelegramBadRequest, match="message is not modified"):
        await bot.edit_message_reply_markup(
            chat_id=chat_id, message_id=msg.message_id, reply_markup=markup
        )
    with pytest.raises(TelegramBadRequest, match="message can't be edited"):
        await bot.edit_message_text(
            "x", chat_id=chat_id, message_id=user_msg["message"]["message_id"]
        )
    assert await bot.pin_chat_message(chat_id, msg.message_id)
    pinned = (await bot.get_chat(chat_id)).pinned_message
    assert pinned is not None and pinned.message_id == msg.message_id
    row = next(r for r in await ctl.sent(chat_id) if r["message_id"] == msg.message_id)
    assert row["pinned"] and row["edit_count"] == 2 and row["text"] == "v2"
    assert row["reply_markup"]["inline_keyboard"][0][0]["url"] == "https://example.org"
    assert await bot.unpin_chat_message(chat_id)
    assert await bot.delete_message(chat_id, msg.message_id)
    assert await bot.delete_message(chat_id, user_msg["message"]["message_id"])  # admin right
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(chat_id, msg.message_id)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("v3", chat_id=chat_id, message_id=msg.message_id)
    with pytest.raises(TelegramBadRequest, match="message text is empty"):
        await bot.send_message(chat_id, "")
    row = next(r for r in await ctl.sent(chat_id) if r["message_id"] == msg.message_id)
    assert row["deleted"] and not row["pinned"]


async def test_rights_errors_for_plain_member_bot(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, _, member_id = await make_group(ctl, bot_status="member")
    user_msg = await ctl.send_message(chat_id, member_id, "/help")
    msg = await bot.send_message(chat_id, "hello")
    with pytest.raises(TelegramBadRequest, match="not enough rights to manage pinned"):
        await bot.pin_chat_message(chat_id, msg.message_id)
    with pytest.raises(TelegramBadRequest, match="not enough rights"):
        await bot.delete_message(chat_id, user_msg["message"]["message_id"])
    with pytest.raises(TelegramBadRequest, match="not enough rights to restrict"):
        await bot.ban_chat_member(chat_id, member_id)
    with pytest.raises(TelegramBadRequest, match="not enough rights to manage chat invite link"):
        await bot.create_chat_invite_link(chat_id)
    assert await bot.delete_message(chat_id, msg.message_id)  # own message: fine


async def test_ban_restrict_and_members(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, owner_id, member_id = await make_group(ctl)
    await bot.get_updates(allowed_updates=["message", "chat_member"], timeout=0)
    offset = await drain(bot)
    await bot.restrict_chat_member(
        chat_id, member_id, ChatPermissions(can_send_messages=False), until_date=0
    )
    restricted = await bot.get_chat_member(chat_id, member_id)
    assert isinstance(restricted, ChatMemberRestricted)
    assert restricted.is_member is True and restricted.can_send_messages is False
    assert await bot.ban_chat_member(chat_id, member_id)
    banned = await bot.get_chat_member(chat_id, member_id)
    assert isinstance(banned, ChatMemberBanned)
    updates = await bot.get_updates(offset=offset, timeout=0)
    assert [u.event_type for u in updates] == ["chat_member", "chat_member"]
    last = updates[-1].chat_member
    assert last is not None and last.new_chat_member.status == "kicked"
    assert last.from_user.id == BOT_ID
    with pytest.raises(TelegramBadRequest, match="can't remove chat owner"):
        await bot.ban_chat_member(chat_id, owner_id)
    with pytest.raises(TelegramBadRequest, match="user not found"):
        await bot.get_chat_member(chat_id, 987654)
    owner = await bot.get_chat_member(chat_id, owner_id)
    assert isinstance(owner, ChatMemberOwner)
    admins = await bot.get_chat_administrators(chat_id)
    assert {a.user.id for a in admins} == {owner_id, BOT_ID}
    chat = await bot.get_chat(chat_id)
    assert chat.type == "supergroup" and chat.title == "Tidepool HQ"
    group_id, _, group_member = await make_group(ctl, chat_type="group")
    with pytest.raises(TelegramBadRequest, match="only for supergroups"):
        await bot.restrict_chat_member(group_id, group_member, ChatPermissions())


async def test_kicked_bot_and_not_member(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, _, _ = await make_group(ctl)
    await bot.send_message(chat_id, "hi")
    await drain(bot)
    ids = await ctl.set_bot_status(chat_id, "kicked")
    assert len(ids) == 1
    updates = await bot.get_updates(timeout=0)
    my = updates[0].my_chat_member
    assert my is not None and my.new_chat_member.status == "kicked"
    with pytest.raises(TelegramForbiddenError, match="bot was kicked from the supergroup chat"):
        await bot.send_message(chat_id, "still there?")
    group_id, _, _ = await make_group(ctl, chat_type="group", bot_status="left")
    with pytest.raises(TelegramForbiddenError, match="bot is not a member of the group chat"):
        await bot.send_message(group_id, "hi")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(-100999, "hi")


async def test_migrate(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, owner_id, member_id = await make_group(ctl, chat_type="group")
    assert -5000000000 < chat_id < -4000000000
    offset = await drain(bot)
    result = await ctl.migrate(chat_id)
    new_id = result["new_chat_id"]
    assert new_id < -1000000000000
    updates = await bot.get_updates(offset=offset, timeout=0)
    assert len(updates) == 2
    first, second = updates[0].message, updates[1].message
    assert first is not None and first.chat.id == chat_id and first.migrate_to_chat_id == new_id
    assert second is not None and second.chat.id == new_id
    assert second.migrate_from_chat_id == chat_id
    with pytest.raises(TelegramMigrateToChat) as info:
        await bot.send_message(chat_id, "hi")
    assert info.value.migrate_to_chat_id == new_id
    sent = await bot.send_message(new_id, "hi again")
    assert sent.chat.type == "supergroup"
    member = await bot.get_chat_member(new_id, member_id)
    assert member.status == "member"
    assert (await bot.get_chat_member(new_id, owner_id)).status == "creator"


async def test_fault_injection(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, _, _ = await make_group(ctl)
    await ctl.add_fault("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    with pytest.raises(TelegramRetryAfter) as info:
        await bot.send_message(chat_id, "hi")
    assert info.value.retry_after == 7
    await bot.send_message(chat_id, "hi")  # fault consumed
    await ctl.add_fault("getChat", 400, "Bad Request: boom", chat_id=-1, times=2)
    await bot.get_chat(chat_id)  # other chat: unaffected
    await ctl.add_fault("getMe", 502, "Bad Gateway", times=2)
    await ctl.clear_faults()
    await bot.get_me()
    calls = await ctl.calls(method="sendMessage")
    assert [c["ok"] for c in calls] == [False, True]
    assert calls[0]["error_code"] == 429 and calls[1]["params"]["text"] == "hi"
    assert await ctl.calls(since=calls[-1]["seq"], method="sendMessage") == []


async def test_rate_limits(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, _, _ = await make_group(ctl)
    await bot.send_message(chat_id, "one")
    await bot.send_message(chat_id, "two")  # off by default
    await ctl.set_rate_limits(True)
    await bot.send_message(chat_id, "three")
    with pytest.raises(TelegramRetryAfter) as info:
        await bot.send_message(chat_id, "four")
    assert info.value.retry_after == 1
    await bot.send_chat_action(chat_id, "typing")  # not rate limited
    await ctl.set_rate_limits(False)
    await bot.send_message(chat_id, "five")


async def test_privacy_mode(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, _, member_id = await make_group(ctl, bot_status="member")
    await drain(bot)
    plain = await ctl.send_message(chat_id, member_id, "just chatting")
    assert plain["update_id"] is None
    command = await ctl.send_message(chat_id, member_id, "/report@tidepool_test_bot spam")
    assert command["update_id"] is not None
    entity = command["message"]["entities"][0]
    assert entity == {
        "type": "bot_command",
        "offset": 0,
        "length": len("/report@tidepool_test_bot"),
    }
    other_bot = await ctl.send_message(chat_id, member_id, "/report@other_bot")
    assert other_bot["update_id"] is None
    mine = await bot.send_message(chat_id, "I am a bot")
    reply = await ctl.send_message(chat_id, member_id, "ok", reply_to_message_id=mine.message_id)
    assert reply["update_id"] is not None
    photo = await ctl.send_message(chat_id, member_id, kind="photo", caption="look")
    assert photo["update_id"] is None and len(photo["message"]["photo"]) == 3
    updates = await bot.get_updates(timeout=0)
    assert [u.message.message_id for u in updates if u.message] == [
        command["message"]["message_id"],
        reply["message"]["message_id"],
    ]
    await ctl.set_bot(privacy_mode=False)
    assert (await ctl.send_message(chat_id, member_id, "now visible"))["update_id"] is not None
    await ctl.set_bot(privacy_mode=True)
    await ctl.set_bot_status(chat_id, "administrator")
    assert (await ctl.send_message(chat_id, member_id, "admin sees all"))["update_id"] is not None
    await ctl.set_bot_status(chat_id, "left")
    assert (await ctl.send_message(chat_id, member_id, "/gone"))["update_id"] is None


async def test_message_kinds_validate(bot: Bot, ctl: EmulatorClient) -> None:
    await ctl.set_bot(privacy_mode=False)
    chat_id, owner_id, member_id = await make_group(ctl)
    await drain(bot)
    kinds = ["text", "photo", "video", "sticker", "voice", "audio", "document", "animation"]
    kinds += ["video_note", "poll", "location", "contact", "dice"]
    for kind in kinds:
        await ctl.send_message(chat_id, member_id, kind=kind)  # type: ignore[arg-type]
    await ctl.send_message(chat_id, member_id, "fwd", forward_from_user_id=owner_id)
    await ctl.send_message(chat_id, sender_chat_id=chat_id, text="anon admin")
    await ctl.send_message(chat_id, sender_chat_id=-1001234, text="channel")
    updates = await bot.get_updates(timeout=0)
    assert len(updates) == len(kinds) + 3
    assert updates[1].message is not None and updates[1].message.photo is not None
    fwd = updates[-3].message
    assert fwd is not None and fwd.forward_origin is not None
    anon = updates[-2].message
    assert anon is not None and anon.sender_chat is not None and anon.sender_chat.id == chat_id


async def test_photo_commands_and_misc(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, _, _ = await make_group(ctl)
    uploaded = await bot.send_photo(
        chat_id, BufferedInputFile(b"\x89PNG....", filename="a.png"), caption="pic"
    )
    assert uploaded.photo is not None and uploaded.caption == "pic"
    by_id = await bot.send_photo(chat_id, uploaded.photo[-1].file_id)
    assert by_id.photo is not None and by_id.photo[-1].file_id == uploaded.photo[-1].file_id
    by_url = await bot.send_photo(chat_id, "https://example.org/cat.jpg")
    assert by_url.photo is not None
    calls = await ctl.calls(method="sendPhoto")
    assert calls[0]["params"]["photo"]["upload"] == "a.png"
    commands = [BotCommand(command="start", description="Start")]
    assert await bot.set_my_commands(commands)
    assert [c.model_dump() for c in await bot.get_my_commands()] == [commands[0].model_dump()]
    assert await bot.send_chat_action(chat_id, "typing")


async def test_clock(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, _, _ = await make_group(ctl)
    assert await ctl.set_clock(1_700_000_000) == 1_700_000_000
    assert await ctl.advance_clock(60) == 1_700_000_060
    msg = await bot.send_message(chat_id, "tick")
    assert int(msg.date.timestamp()) == 1_700_000_060
    link = await bot.create_chat_invite_link(chat_id, expire_date=1_700_000_100)
    assert link.expire_date is not None and int(link.expire_date.timestamp()) == 1_700_000_100
    assert abs(await ctl.real_clock() - time.time()) < 5


async def test_control_errors(srv: EmulatorServer, ctl: EmulatorClient) -> None:
    with pytest.raises(EmulatorError) as info:
        await ctl.join(-100123, 1000)
    assert info.value.status == 404
    user = await ctl.create_user("Ada")
    assert user["id"] == 1000 and user["is_bot"] is False
    chat = await ctl.create_chat("Room")
    with pytest.raises(EmulatorError) as info:
        await ctl.send_message(chat["id"], user["id"], "not a member")
    assert info.value.status == 400
    with pytest.raises(EmulatorError) as info:
        await ctl.set_bot_status(chat["id"], "owner")  # type: ignore[arg-type]
    assert info.value.status == 400
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{srv.base_url}/control/users", data=b"[1,") as resp:
            assert resp.status == 400 and "error" in await resp.json()
        async with http.post(f"{srv.base_url}/control/chats/abc/join", json={}) as resp:
            assert resp.status == 400
        async with http.get(f"{srv.base_url}/control/nothing") as resp:
            assert resp.status == 404 and "error" in await resp.json()
    await ctl.reset()
    assert await ctl.list_users() == []


async def test_not_found_exception_class(bot: Bot, srv: EmulatorServer) -> None:
    await srv.client.add_fault("getMe", 404, "Not Found")
    with pytest.raises(TelegramNotFound):
        await bot.get_me()


async def test_dispatcher_polling_end_to_end(bot: Bot, ctl: EmulatorClient) -> None:
    """An unmodified aiogram Dispatcher polls the emulator and answers /start."""
    dp = Dispatcher()
    replied = asyncio.Event()

    @dp.message(CommandStart())
    async def on_start(message: Message) -> None:
        await message.answer(f"Welcome, {message.from_user.first_name}!")  # type: ignore[union-attr]
        replied.set()

    user = await ctl.create_user("Eve")
    await ctl.start(user["id"])
    polling = asyncio.create_task(
        dp.start_polling(bot, polling_timeout=1, handle_signals=False, close_bot_session=False)
    )
    try:
        await asyncio.wait_for(replied.wait(), 3)
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 3)
    sent = await ctl.sent(user["id"])
    assert [row["text"] for row in sent] == ["Welcome, Eve!"]


async def test_version_counts_what_a_viewer_sees(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, owner_id, member_id = await make_group(ctl)
    seen = await ctl.changes()

    async def bumped() -> bool:
        nonlocal seen
        before, seen = seen, await ctl.changes(seen)
        return seen > before

    await ctl.send_message(chat_id, member_id, "hello")
    assert await bumped()
    sent = await bot.send_message(chat_id, "hi all")
    assert await bumped()
    await bot.edit_message_text("hi everyone", chat_id=chat_id, message_id=sent.message_id)
    assert await bumped()
    await bot.pin_chat_message(chat_id, sent.message_id)
    assert await bumped()
    await bot.delete_message(chat_id, sent.message_id)
    assert await bumped()
    newcomer = await ctl.create_user("Nia")
    assert await bumped()
    await ctl.join(chat_id, newcomer["id"])
    assert await bumped()
    await ctl.set_member(chat_id, member_id, "administrator")
    assert await bumped()
    await ctl.advance_clock(60)
    assert await bumped()
    await bot.get_chat(chat_id)
    await bot.get_chat_member(chat_id, owner_id)
    await ctl.get_chat(chat_id)
    assert not await bumped()  # reading changes nothing


async def test_changes_wait_for_the_next_change(srv: EmulatorServer, ctl: EmulatorClient) -> None:
    user = await ctl.create_user("Ola")
    version = await ctl.changes()
    waiting = asyncio.create_task(ctl.changes(version, timeout=10))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    started = time.monotonic()
    await ctl.start(user["id"])
    assert await asyncio.wait_for(waiting, 2) > version
    assert time.monotonic() - started < 1
    version = await ctl.changes()
    started = time.monotonic()
    assert await srv.emulator.world.changed(version, 0.2) == version
    assert time.monotonic() - started >= 0.2
    assert await ctl.changes(version + 100) == version  # a viewer of another world starts over


async def world_view(ctl: EmulatorClient, chat_id: int) -> dict[str, object]:
    """What a viewer of the world sees through the control API."""
    return {
        "bot": await ctl.get_bot(),
        "users": await ctl.list_users(),
        "chat": await ctl.get_chat(chat_id),
        "sent": await ctl.sent(),
        "updates": await ctl.updates(),
        "now": await ctl.now(),
        "calls": await ctl.calls(),
    }


async def test_snapshot_carries_the_world_over_a_restart() -> None:
    async with EmulatorServer(token=TOKEN) as first:
        bot, ctl = make_bot(first.base_url), first.client
        try:
            chat_id, owner_id, member_id = await make_group(ctl)
            await ctl.set_clock(1_700_000_000)
            await ctl.advance_clock(3600)
            await ctl.send_message(chat_id, member_id, "hello")
            markup = InlineKeyboardMarkup(
                inline_keyboard=[[InlineKeyboardButton(text="Join", callback_data="join")]]
            )
            keyboard = await bot.send_message(chat_id, "<b>Lottery</b>", reply_markup=markup)
            edited = await bot.send_message(chat_id, "v1", parse_mode="HTML")
            await bot.edit_message_text("v2", chat_id=chat_id, message_id=edited.message_id)
            gone = await bot.send_message(chat_id, "oops")
            await bot.delete_message(chat_id, gone.message_id)
            await bot.pin_chat_message(chat_id, keyboard.message_id)
            pressed = await ctl.press(chat_id, member_id, keyboard.message_id, "join")
            await bot.answer_callback_query(pressed["callback_query_id"], text="In!")
            link = await ctl.create_invite_link(chat_id, name="friends")
            await ctl.start(member_id)
            await drain(bot)
            pending = await ctl.send_message(chat_id, owner_id, "/lottery")
            before = await world_view(ctl, chat_id)
            data = first.emulator.world.snapshot()
            version = first.emulator.world.version
        finally:
            await close_bot(bot)

    world = World.from_snapshot(data)
    assert world.version > version
    again_saved, saved = json.loads(world.snapshot()), json.loads(data)
    assert again_saved.pop("version") > saved.pop("version")
    assert again_saved == saved  # every record round-trips, the users' messages too
    async with EmulatorServer(world=world) as second:
        bot, ctl = make_bot(second.base_url), second.client
        try:
            assert await world_view(ctl, chat_id) == before
            updates = await bot.get_updates(timeout=0)
            assert [u.update_id for u in updates] == [pending["update_id"]]
            assert updates[0].message is not None and updates[0].message.text == "/lottery"
            answer = await ctl.callback_answer(pressed["callback_query_id"])
            assert answer is not None and answer["text"] == "In!"
            newcomer = await ctl.create_user("Nia")
            assert newcomer["id"] not in (owner_id, member_id)
            await ctl.join(chat_id, newcomer["id"], invite_link=link["invite_link"])
            again = await bot.send_message(chat_id, "welcome")
            assert again.message_id > gone.message_id
            assert int(again.date.timestamp()) == 1_700_003_600
            await ctl.press(chat_id, newcomer["id"], keyboard.message_id, "join")
            await bot.send_message(member_id, "you started me before the restart")
        finally:
            await close_bot(bot)


def test_corrupt_snapshot_is_refused() -> None:
    world = World(TOKEN, "tidepool_test_bot", "Tidepool")
    world.add_user({"first_name": "Ada"})
    data = world.snapshot()
    with pytest.raises(ValueError, match="not valid JSON"):
        World.from_snapshot(data[: len(data) // 2])
    with pytest.raises(ValueError, match="no format version"):
        world.restore(b"[1, 2, 3]")
    with pytest.raises(ValueError, match="format 99 is not supported"):
        world.restore(data.replace(b'"format":1', b'"format":99'))
    with pytest.raises(ValueError, match="damaged: KeyError: 'chats'"):
        world.restore(data.replace(b'"chats"', b'"chatz"'))
    assert [u.first_name for u in world.users.values()] == ["Ada"]  # unchanged
