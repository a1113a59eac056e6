"""The emulator under moderation, as an aiogram bot and its tests meet it: restrictions refuse
what they forbid and end on time, a kick (ban then unban) lets the user come back, users edit
their messages, forward channel posts, and their texts carry Telegram's entities."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import (
    ChatMemberBanned,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberRestricted,
    ChatPermissions,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageOriginChannel,
    Update,
)

from bot.emulator import EmulatorClient, EmulatorError, EmulatorServer
from tests.test_emulator import TOKEN, close_bot, drain, make_bot, make_group

pytestmark = pytest.mark.filterwarnings("error::UserWarning")

ALLOWED = ["message", "edited_message", "chat_member", "callback_query"]
EVERYTHING = ChatPermissions(**dict.fromkeys(ChatPermissions.model_fields, True))
NOW = 1_700_000_000


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


async def fetch(bot: Bot, offset: int) -> list[Update]:
    """Everything pending from ``offset`` on (edits and chat_member included)."""
    return await bot.get_updates(offset=offset, timeout=0, allowed_updates=ALLOWED)


async def refused(ctl: EmulatorClient, chat_id: int, user_id: int, **message: object) -> str:
    """Post a message that must be refused; the refusal's text, after checking nothing was
    posted and no update queued."""
    before = (len(await ctl.messages(chat_id)), len(await ctl.updates()))
    with pytest.raises(EmulatorError) as caught:
        await ctl.send_message(chat_id, user_id, **message)  # type: ignore[arg-type]
    assert caught.value.status == 403
    assert (len(await ctl.messages(chat_id)), len(await ctl.updates())) == before
    return caught.value.message


# ----- restrictions ------------------------------------------------------------------------
async def test_a_muted_member_is_refused_until_all_permissions_come_back(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, max_id = await make_group(ctl)
    await bot.restrict_chat_member(chat_id, max_id, ChatPermissions(can_send_messages=False))

    text = await refused(ctl, chat_id, max_id, text="still here?")
    assert text == f"user {max_id} is restricted in chat {chat_id}: can't send messages"
    assert "can't send photos" in await refused(ctl, chat_id, max_id, kind="photo")
    view = await ctl.member(chat_id, max_id)
    assert (view["status"], view["is_member"], view["until_date"]) == ("restricted", True, 0)
    assert view["permissions"]["can_send_messages"] is False

    assert await bot.restrict_chat_member(chat_id, max_id, EVERYTHING)
    assert isinstance(await bot.get_chat_member(chat_id, max_id), ChatMemberMember)
    assert (await ctl.member(chat_id, max_id))["status"] == "member"
    sent = await ctl.send_message(chat_id, max_id, "back again")
    assert sent["message"]["text"] == "back again" and sent["update_id"] is not None


async def test_a_member_allowed_only_text_cannot_send_media(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, _, max_id = await make_group(ctl)
    await bot.restrict_chat_member(chat_id, max_id, ChatPermissions(can_send_messages=True))

    assert (await ctl.send_message(chat_id, max_id, "text is fine"))["message"]["text"]
    photo = await refused(ctl, chat_id, max_id, kind="photo", caption="look")
    assert photo == f"user {max_id} is restricted in chat {chat_id}: can't send photos"
    assert photo.endswith("photos")
    assert (await refused(ctl, chat_id, max_id, kind="sticker")).endswith("can't send stickers")
    assert (await refused(ctl, chat_id, max_id, kind="poll")).endswith("can't send polls")


async def test_other_messages_imply_media_unless_permissions_are_independent(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, max_id = await make_group(ctl)
    stickers_only = ChatPermissions(can_send_other_messages=True)
    await bot.restrict_chat_member(chat_id, max_id, stickers_only)
    # The Bot API: can_send_other_messages implies text and every media kind.
    assert (await ctl.send_message(chat_id, max_id, kind="photo"))["message"]["photo"]
    assert (await ctl.send_message(chat_id, max_id, "words"))["message"]["text"] == "words"

    await bot.restrict_chat_member(
        chat_id, max_id, stickers_only, use_independent_chat_permissions=True
    )
    assert (await ctl.send_message(chat_id, max_id, kind="sticker"))["message"]["sticker"]
    assert (await refused(ctl, chat_id, max_id, kind="photo")).endswith("can't send photos")
    assert (await refused(ctl, chat_id, max_id, text="hi")).endswith("can't send messages")


async def test_a_restriction_ends_at_its_until_date_by_the_emulator_clock(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, max_id = await make_group(ctl)
    await ctl.set_clock(NOW)
    await bot.restrict_chat_member(
        chat_id, max_id, ChatPermissions(can_send_messages=False), until_date=NOW + 600
    )
    member = await bot.get_chat_member(chat_id, max_id)
    assert isinstance(member, ChatMemberRestricted)
    assert int(member.until_date.timestamp()) == NOW + 600
    assert (await ctl.member(chat_id, max_id))["until_date"] == NOW + 600

    await ctl.advance_clock(599)
    await refused(ctl, chat_id, max_id, text="now?")
    await ctl.advance_clock(1)
    assert isinstance(await bot.get_chat_member(chat_id, max_id), ChatMemberMember)
    assert (await ctl.get_chat(chat_id))["members"][str(max_id)]["status"] == "member"
    assert (await ctl.send_message(chat_id, max_id, "free"))["message"]["text"] == "free"


async def test_an_until_date_under_30_seconds_away_means_for_good(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, max_id = await make_group(ctl)
    await ctl.set_clock(NOW)
    await bot.restrict_chat_member(
        chat_id, max_id, ChatPermissions(can_send_messages=False), until_date=NOW + 20
    )
    await ctl.advance_clock(86_400)
    assert (await ctl.member(chat_id, max_id))["until_date"] == 0
    await refused(ctl, chat_id, max_id, text="a day later")


async def test_a_restricted_member_who_leaves_comes_back_restricted(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, max_id = await make_group(ctl)
    await bot.restrict_chat_member(chat_id, max_id, ChatPermissions(can_send_messages=False))
    await ctl.leave(chat_id, max_id)
    gone = await ctl.member(chat_id, max_id)
    assert (gone["status"], gone["is_member"]) == ("restricted", False)
    left = await bot.get_chat_member(chat_id, max_id)
    assert isinstance(left, ChatMemberRestricted) and left.is_member is False

    await ctl.join(chat_id, max_id)
    back = await bot.get_chat_member(chat_id, max_id)
    assert isinstance(back, ChatMemberRestricted) and back.is_member is True
    await refused(ctl, chat_id, max_id, text="fresh start?")


# ----- bans and kicks ----------------------------------------------------------------------
async def test_a_kick_is_a_ban_then_an_unban_after_which_the_user_may_join_again(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, max_id = await make_group(ctl)
    offset = await drain(bot)
    await bot.ban_chat_member(chat_id, max_id)
    with pytest.raises(EmulatorError) as caught:
        await ctl.join(chat_id, max_id)
    assert caught.value.status == 403
    assert caught.value.message.startswith(f"user {max_id} is banned in chat {chat_id}")
    assert (await ctl.member(chat_id, max_id))["status"] == "kicked"

    await bot.unban_chat_member(chat_id, max_id, only_if_banned=True)
    assert isinstance(await bot.get_chat_member(chat_id, max_id), ChatMemberLeft)
    assert (await ctl.member(chat_id, max_id))["status"] == "left"
    joined = await ctl.join(chat_id, max_id)
    assert joined["message"]["new_chat_members"][0]["id"] == max_id
    assert isinstance(await bot.get_chat_member(chat_id, max_id), ChatMemberMember)

    changes = [u.chat_member for u in await fetch(bot, offset) if u.chat_member is not None]
    assert [c.new_chat_member.status for c in changes] == ["kicked", "left", "member"]


async def test_a_ban_with_an_until_date_stops_blocking_once_it_passed(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, max_id = await make_group(ctl)
    await ctl.set_clock(NOW)
    await bot.ban_chat_member(chat_id, max_id, until_date=NOW + 3600)
    banned = await bot.get_chat_member(chat_id, max_id)
    assert isinstance(banned, ChatMemberBanned)
    with pytest.raises(EmulatorError, match="banned"):
        await ctl.join(chat_id, max_id)

    await ctl.advance_clock(3600)
    assert isinstance(await bot.get_chat_member(chat_id, max_id), ChatMemberLeft)
    await ctl.join(chat_id, max_id)
    assert (await ctl.member(chat_id, max_id))["status"] == "member"


async def test_an_admin_may_add_a_banned_user_back(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, owner_id, max_id = await make_group(ctl)
    await bot.ban_chat_member(chat_id, max_id)
    await ctl.join(chat_id, max_id, by=owner_id)
    assert (await ctl.member(chat_id, max_id))["status"] == "member"


# ----- edits -------------------------------------------------------------------------------
async def test_a_users_edit_changes_the_message_and_reaches_the_bot(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, max_id = await make_group(ctl)
    await ctl.set_clock(NOW)
    posted = (await ctl.send_message(chat_id, max_id, "hello all"))["message"]
    offset = await drain(bot)
    await ctl.advance_clock(90)

    edited = await ctl.edit_message(chat_id, posted["message_id"], "cheap coins at spam.io")
    updates = await fetch(bot, offset)
    assert [u.update_id for u in updates] == [edited["update_id"]]
    message = updates[0].edited_message
    assert message is not None and message.message_id == posted["message_id"]
    assert message.text == "cheap coins at spam.io" and message.edit_date == NOW + 90
    assert message.from_user is not None and message.from_user.id == max_id
    assert [(e.type, e.extract_from(message.text)) for e in message.entities or []] == [
        ("url", "spam.io")
    ]
    [row] = [r for r in await ctl.messages(chat_id) if r["message_id"] == posted["message_id"]]
    assert (row["text"], row["edit_count"], row["edit_date"]) == (message.text, 1, NOW + 90)

    with pytest.raises(EmulatorError, match="message is not modified"):
        await ctl.edit_message(chat_id, posted["message_id"], "cheap coins at spam.io")


async def test_a_restricted_member_may_still_edit_and_a_caption_is_edited_too(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, max_id = await make_group(ctl)
    text = (await ctl.send_message(chat_id, max_id, "before"))["message"]
    photo = (await ctl.send_message(chat_id, max_id, kind="photo", caption="a cat"))["message"]
    await bot.restrict_chat_member(chat_id, max_id, ChatPermissions(can_send_messages=False))
    offset = await drain(bot)

    await ctl.edit_message(chat_id, text["message_id"], "after")
    await ctl.edit_message(chat_id, photo["message_id"], caption="join t.me/spamchat")
    edits = [u.edited_message for u in await fetch(bot, offset)]
    assert [e.text or e.caption for e in edits if e is not None] == [
        "after",
        "join t.me/spamchat",
    ]
    caption = edits[1]
    assert caption is not None and caption.caption_entities is not None
    assert caption.caption_entities[0].type == "url"

    with pytest.raises(EmulatorError, match="has no text; edit its caption"):
        await ctl.edit_message(chat_id, photo["message_id"], "text on a photo")
    mine = await bot.send_message(chat_id, "the bot's own")
    with pytest.raises(EmulatorError, match="was not written by a user"):
        await ctl.edit_message(chat_id, mine.message_id, "hijacked")


async def test_a_user_who_left_can_no_longer_edit(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, _, max_id = await make_group(ctl)
    posted = (await ctl.send_message(chat_id, max_id, "bye"))["message"]
    await ctl.leave(chat_id, max_id)
    with pytest.raises(EmulatorError, match="not a member"):
        await ctl.edit_message(chat_id, posted["message_id"], "edited from outside")


# ----- forwards ----------------------------------------------------------------------------
async def test_a_forward_from_a_channel_carries_a_channel_origin(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, max_id = await make_group(ctl)
    await ctl.set_clock(NOW)
    offset = await drain(bot)
    await ctl.send_message(
        chat_id,
        max_id,
        "今日暴涨",
        forward_from_chat_id=-1001234567890,
        forward_from_chat_title="Crypto Signals",
        forward_from_chat_username="signals",
        forward_from_message_id=42,
    )
    message = (await fetch(bot, offset))[0].message
    assert message is not None and message.text == "今日暴涨"
    origin = message.forward_origin
    assert isinstance(origin, MessageOriginChannel)
    assert (origin.chat.id, origin.chat.type) == (-1001234567890, "channel")
    assert (origin.chat.title, origin.chat.username, origin.message_id) == (
        "Crypto Signals",
        "signals",
        42,
    )
    assert int(origin.date.timestamp()) < NOW

    with pytest.raises(EmulatorError, match="a channel id"):
        await ctl.send_message(chat_id, max_id, "x", forward_from_chat_id=5)
    with pytest.raises(EmulatorError, match="not both"):
        await ctl.send_message(
            chat_id, max_id, "x", forward_from_chat_id=-1001, forward_from_user_id=max_id
        )
    with pytest.raises(EmulatorError, match="not a channel"):
        await ctl.send_message(chat_id, max_id, "x", forward_from_chat_id=chat_id)


# ----- entities ----------------------------------------------------------------------------
def found(message: Message) -> list[tuple[str, str]]:
    """(type, the text it covers) of each entity, cut out in UTF-16 units by aiogram."""
    text = message.text or message.caption or ""
    entities = message.entities or message.caption_entities or []
    return [(e.type, e.extract_from(text)) for e in entities]


async def test_users_texts_carry_the_entities_telegram_finds(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, _, max_id = await make_group(ctl)
    offset = await drain(bot)
    texts = [
        "课程链接：https://example.com/a 欢迎加入",
        "😀😀 加群 www.spam-group.cn 或 t.me/spamchat，联系 @spam_admin",
        "/start@tidepool_test_bot 看 example.com",
        "联系@spam_admin 或 看example.com课程",
    ]
    for text in texts:
        await ctl.send_message(chat_id, max_id, text)
    messages = [u.message for u in await fetch(bot, offset) if u.message is not None]
    assert [found(m) for m in messages] == [
        [("url", "https://example.com/a")],
        [("url", "www.spam-group.cn"), ("url", "t.me/spamchat，联系"), ("mention", "@spam_admin")],
        [("bot_command", "/start@tidepool_test_bot"), ("url", "example.com")],
        [],  # glued to Chinese words: neither a mention nor a link, as in Telegram
    ]
    # Offsets count UTF-16 units: each emoji is two, each Chinese character one.
    second = messages[1].entities or []
    assert (second[0].offset, second[0].length) == (8, len("www.spam-group.cn"))


async def test_entities_a_user_passes_are_kept_and_win_over_found_ones(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, max_id = await make_group(ctl)
    offset = await drain(bot)
    text = "点这里 领取 example.com 奖励"
    hidden = {"type": "text_link", "offset": 0, "length": 3, "url": "https://spam.example/x"}
    covering = {"type": "text_link", "offset": 7, "length": 11, "url": "https://other.example"}
    bold = {"type": "bold", "offset": 4, "length": 2}
    await ctl.send_message(chat_id, max_id, text, entities=[hidden, bold, covering])
    await ctl.send_message(
        chat_id, max_id, kind="photo", caption="see example.com", entities=[bold]
    )
    first, second = [u.message for u in await fetch(bot, offset) if u.message is not None]
    assert first is not None and first.entities is not None
    assert [(e.type, e.extract_from(text), e.url) for e in first.entities] == [
        ("text_link", "点这里", "https://spam.example/x"),
        ("bold", "领取", None),
        ("text_link", "example.com", "https://other.example"),
    ]
    # Formatting may overlap a found link; the longer entity comes first at one offset.
    assert second is not None and found(second) == [("url", "example.com"), ("bold", "ex")]

    with pytest.raises(EmulatorError, match="outside the text"):
        await ctl.send_message(
            chat_id, max_id, "short", entities=[{"type": "bold", "offset": 3, "length": 9}]
        )
    with pytest.raises(EmulatorError, match="needs its url"):
        await ctl.send_message(
            chat_id, max_id, "short", entities=[{"type": "text_link", "offset": 0, "length": 5}]
        )


# ----- what the bot does about it --------------------------------------------------------
async def test_a_callback_answered_with_an_alert_is_visible_to_tests(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, max_id = await make_group(ctl)
    other = await ctl.create_user("Nosy")
    await ctl.set_member(chat_id, other["id"])
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="我是人", callback_data=f"pass:{max_id}")]]
    )
    prompt = await bot.send_message(chat_id, "请点按钮", reply_markup=markup)
    offset = await drain(bot)
    pressed = await ctl.press(chat_id, other["id"], prompt.message_id, f"pass:{max_id}")
    query = (await fetch(bot, offset))[0].callback_query
    assert query is not None and query.id == pressed["callback_query_id"]
    assert query.from_user.id == other["id"]

    await bot.answer_callback_query(query.id, text="这个按钮不是给你的", show_alert=True)
    answer = await ctl.callback_answer(query.id)
    assert answer is not None
    assert (answer["text"], answer["show_alert"]) == ("这个按钮不是给你的", True)


async def test_deleting_a_users_message_needs_the_right_and_removes_it(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, max_id = await make_group(ctl)
    spam = (await ctl.send_message(chat_id, max_id, "buy followers"))["message"]["message_id"]
    await ctl.set_bot_status(chat_id, "administrator", rights={"can_delete_messages": False})
    with pytest.raises(TelegramBadRequest, match="not enough rights to delete"):
        await bot.delete_message(chat_id, spam)
    assert spam in [r["message_id"] for r in await ctl.messages(chat_id)]

    await ctl.set_bot_status(chat_id, "administrator", rights={"can_delete_messages": True})
    assert await bot.delete_message(chat_id, spam)
    assert spam not in [r["message_id"] for r in await ctl.messages(chat_id)]
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(chat_id, spam)
    with pytest.raises(EmulatorError, match="not found"):
        await ctl.edit_message(chat_id, spam, "edited after deletion")
