"""The emulator's invite links and join requests, as an aiogram bot sees them: links other
administrators made are masked, a link that asks for approval files a join request, and the
bot approves or declines it as Telegram lets it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import ChatMemberLeft, ChatMemberMember, Update

from bot.emulator import EmulatorClient, EmulatorError, EmulatorServer, World, masked_invite_link
from tests.test_emulator import BOT_ID, TOKEN, close_bot, drain, make_bot, make_group

pytestmark = pytest.mark.filterwarnings("error::UserWarning")

ALLOWED = ["message", "chat_member", "chat_join_request"]


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
    """Everything pending from ``offset`` on (chat_member and join requests included)."""
    return await bot.get_updates(offset=offset, timeout=0, allowed_updates=ALLOWED)


def test_a_masked_link_keeps_five_characters_of_its_secret() -> None:
    assert masked_invite_link("https://t.me/+AbCdEfGhIjKlMnOp") == "https://t.me/+AbCdE…"
    assert masked_invite_link("https://t.me/joinchat/AAAAAEx") == "https://t.me/joinchat/AAAAA…"


async def test_the_bot_sees_its_own_link_in_full_and_another_admins_masked(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, owner_id, _ = await make_group(ctl)
    offset = await drain(bot)
    own = (await bot.create_chat_invite_link(chat_id, name="bot's")).invite_link
    human = await ctl.create_invite_link(chat_id, name="owner's")
    assert human["invite_link"].startswith("https://t.me/+")  # its creator sees it in full
    assert human["creator"]["id"] == owner_id and "…" not in human["invite_link"]
    nina, omar = await ctl.create_user("Nina"), await ctl.create_user("Omar")
    await ctl.join(chat_id, nina["id"], invite_link=own)
    await ctl.join(chat_id, omar["id"], invite_link=human["invite_link"])

    changes = [u.chat_member for u in await fetch(bot, offset) if u.chat_member is not None]
    links = [c.invite_link for c in changes]
    assert links[0] is not None and links[0].invite_link == own
    assert links[0].creator.id == BOT_ID
    masked = masked_invite_link(human["invite_link"])
    assert links[1] is not None and links[1].invite_link == masked
    assert masked == human["invite_link"][: len("https://t.me/+") + 5] + "…"
    assert links[1].creator.id == owner_id and links[1].name == "owner's"
    assert [c.via_join_request for c in changes] == [False, False]


async def test_a_link_that_asks_for_approval_files_a_request_the_bot_approves(
    bot: Bot, ctl: EmulatorClient, srv: EmulatorServer
) -> None:
    chat_id, _, _ = await make_group(ctl)
    offset = await drain(bot)
    link = await bot.create_chat_invite_link(chat_id, name="vetted", creates_join_request=True)
    nina = await ctl.create_user("Nina", username="nina")
    await ctl.set_clock(1_700_000_000)

    asked = await ctl.join(chat_id, nina["id"], invite_link=link.invite_link, bio="tea lover")
    assert asked["requested"] is True and asked["message"] is None
    assert asked["join_request"] == {
        "chat_id": chat_id,
        "user_id": nina["id"],
        "user_chat_id": nina["id"],
        "date": 1_700_000_000,
        "invite_link": link.invite_link,
        "bio": "tea lover",
    }
    assert await ctl.join_requests(chat_id) == [asked["join_request"]]
    assert isinstance(await bot.get_chat_member(chat_id, nina["id"]), ChatMemberLeft)

    updates = await fetch(bot, offset)
    assert [u.update_id for u in updates] == asked["update_ids"]
    request = updates[0].chat_join_request
    assert request is not None and request.chat.id == chat_id
    assert (request.from_user.id, request.user_chat_id) == (nina["id"], nina["id"])
    assert int(request.date.timestamp()) == 1_700_000_000 and request.bio == "tea lover"
    assert request.invite_link is not None and request.invite_link.invite_link == link.invite_link
    assert request.invite_link.creates_join_request is True

    assert await bot.approve_chat_join_request(chat_id, nina["id"]) is True
    updates = await fetch(bot, updates[-1].update_id + 1)
    assert [u.event_type for u in updates] == ["chat_member", "message"]
    change = updates[0].chat_member
    assert change is not None and change.from_user.id == BOT_ID
    assert isinstance(change.new_chat_member, ChatMemberMember)
    assert change.new_chat_member.user.id == nina["id"]
    assert change.invite_link is not None and change.invite_link.invite_link == link.invite_link
    assert change.via_join_request is False
    service = updates[1].message
    assert service is not None and service.new_chat_members is not None
    assert service.new_chat_members[0].id == nina["id"]
    assert service.from_user is not None and service.from_user.id == nina["id"]
    assert isinstance(await bot.get_chat_member(chat_id, nina["id"]), ChatMemberMember)
    assert await ctl.join_requests(chat_id) == []
    assert srv.emulator.world.invites[link.invite_link].join_count == 1


async def test_a_request_through_another_admins_link_shows_it_masked(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, _ = await make_group(ctl)
    offset = await drain(bot)
    link = (await ctl.create_invite_link(chat_id, creates_join_request=True))["invite_link"]
    nina = await ctl.create_user("Nina")
    asked = await ctl.join(chat_id, nina["id"], invite_link=link)
    assert asked["join_request"]["invite_link"] == link  # the control API shows it in full

    updates = await fetch(bot, offset)
    request = updates[0].chat_join_request
    assert request is not None and request.invite_link is not None
    assert request.invite_link.invite_link == masked_invite_link(link)
    await bot.approve_chat_join_request(chat_id, nina["id"])
    change = (await fetch(bot, updates[-1].update_id + 1))[0].chat_member
    assert change is not None and change.invite_link is not None
    assert change.invite_link.invite_link == masked_invite_link(link)


async def test_a_declined_request_leaves_the_user_out(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, _, _ = await make_group(ctl)
    link = await bot.create_chat_invite_link(chat_id, creates_join_request=True)
    nina = await ctl.create_user("Nina")
    await ctl.join(chat_id, nina["id"], invite_link=link.invite_link)
    offset = await drain(bot)

    assert await bot.decline_chat_join_request(chat_id, nina["id"]) is True
    assert await fetch(bot, offset) == []  # nobody hears of a decline
    assert isinstance(await bot.get_chat_member(chat_id, nina["id"]), ChatMemberLeft)
    assert await ctl.join_requests(chat_id) == []
    with pytest.raises(TelegramBadRequest, match="HIDE_REQUESTER_MISSING"):
        await bot.approve_chat_join_request(chat_id, nina["id"])
    with pytest.raises(TelegramBadRequest, match="HIDE_REQUESTER_MISSING"):
        await bot.decline_chat_join_request(chat_id, nina["id"])
    again = await ctl.join(chat_id, nina["id"], invite_link=link.invite_link)
    assert again["requested"] is True  # a declined user may ask again


async def test_approving_without_a_pending_request_is_refused(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, member_id = await make_group(ctl)
    stranger = await ctl.create_user("Sam")
    with pytest.raises(TelegramBadRequest, match="HIDE_REQUESTER_MISSING"):
        await bot.approve_chat_join_request(chat_id, stranger["id"])
    with pytest.raises(TelegramBadRequest, match="USER_ALREADY_PARTICIPANT"):
        await bot.approve_chat_join_request(chat_id, member_id)
    assert isinstance(await bot.get_chat_member(chat_id, stranger["id"]), ChatMemberLeft)


async def test_a_request_without_a_link_is_approved_via_join_request(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, _ = await make_group(ctl)
    offset = await drain(bot)
    nina = await ctl.create_user("Nina")
    asked = await ctl.request_join(chat_id, nina["id"])
    assert asked["requested"] is True and asked["join_request"]["invite_link"] is None
    updates = await fetch(bot, offset)
    request = updates[0].chat_join_request
    assert request is not None and request.invite_link is None and request.bio is None

    await bot.approve_chat_join_request(chat_id, nina["id"])
    change = (await fetch(bot, updates[-1].update_id + 1))[0].chat_member
    assert change is not None and change.invite_link is None
    assert change.via_join_request is True
    raw = (await ctl.updates())[-2]["update"]["chat_member"]
    assert raw["via_join_request"] is True and "invite_link" not in raw


async def test_only_a_bot_that_may_invite_users_hears_of_and_decides_requests(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, owner_id, _ = await make_group(ctl)
    await ctl.set_bot_status(chat_id, "administrator", rights={"can_invite_users": False})
    nina = await ctl.create_user("Nina")
    asked = await ctl.request_join(chat_id, nina["id"])
    assert asked["update_ids"] == []  # Telegram sends join requests to admins who may invite
    assert [r["user_id"] for r in await ctl.join_requests(chat_id)] == [nina["id"]]
    denied = "not enough rights to manage chat join requests"
    with pytest.raises(TelegramBadRequest, match=denied):
        await bot.approve_chat_join_request(chat_id, nina["id"])
    with pytest.raises(TelegramBadRequest, match=denied):
        await bot.decline_chat_join_request(chat_id, nina["id"])

    plain, _, _ = await make_group(ctl, bot_status="member")
    await ctl.request_join(plain, nina["id"])
    with pytest.raises(TelegramBadRequest, match=denied):
        await bot.approve_chat_join_request(plain, nina["id"])
    assert len(await ctl.join_requests(plain)) == 1

    # A human admin who may invite decides instead; the bot is told of the new member.
    await ctl.set_bot_status(chat_id, "administrator")
    offset = await drain(bot)
    approved = await ctl.approve_join_request(chat_id, nina["id"], by=owner_id)
    updates = await fetch(bot, offset)
    assert [u.update_id for u in updates] == approved["update_ids"]
    change = updates[0].chat_member
    assert change is not None and change.from_user.id == owner_id
    assert change.via_join_request is True
    await ctl.decline_join_request(plain, nina["id"])
    assert await ctl.join_requests(plain) == []
    with pytest.raises(EmulatorError) as info:
        await ctl.decline_join_request(plain, nina["id"])
    assert info.value.status == 404


async def test_a_bot_that_did_not_ask_for_join_requests_never_gets_them(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, _ = await make_group(ctl)
    await drain(bot)
    nina, omar = await ctl.create_user("Nina"), await ctl.create_user("Omar")
    await ctl.request_join(chat_id, nina["id"])
    only_messages = await bot.get_updates(timeout=0, allowed_updates=["message"])
    assert only_messages == []
    assert (await ctl.updates())[-1]["dropped"] is True
    await ctl.request_join(chat_id, omar["id"])
    by_default = await bot.get_updates(timeout=0, allowed_updates=[])
    assert [u.event_type for u in by_default] == ["chat_join_request"]  # not opt-in


async def test_the_bot_may_write_to_a_requester_for_five_minutes(
    bot: Bot, ctl: EmulatorClient
) -> None:
    chat_id, _, _ = await make_group(ctl)
    await ctl.set_clock(1_700_000_000)
    nina, omar = await ctl.create_user("Nina"), await ctl.create_user("Omar")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(nina["id"], "hello")
    await ctl.request_join(chat_id, nina["id"])
    await ctl.request_join(chat_id, omar["id"])
    sent = await bot.send_message(nina["id"], "Tell us about yourself?")
    assert sent.chat.id == nina["id"]
    await bot.decline_chat_join_request(chat_id, nina["id"])
    with pytest.raises(TelegramForbiddenError):  # the request is processed
        await bot.send_message(nina["id"], "one more thing")
    await ctl.advance_clock(300)
    with pytest.raises(TelegramForbiddenError):  # five minutes are up
        await bot.send_message(omar["id"], "still there?")


async def test_requests_that_cannot_be_made(bot: Bot, ctl: EmulatorClient) -> None:
    chat_id, owner_id, member_id = await make_group(ctl)
    link = await bot.create_chat_invite_link(chat_id, creates_join_request=True)
    nina = await ctl.create_user("Nina")
    await ctl.request_join(chat_id, nina["id"])
    refusals = [
        ctl.request_join(chat_id, nina["id"]),  # already asked
        ctl.join(chat_id, nina["id"], invite_link=link.invite_link),  # already asked
        ctl.request_join(chat_id, member_id),  # already in
        ctl.join(chat_id, owner_id, invite_link=link.invite_link),  # already in
        ctl.create_invite_link(chat_id, creates_join_request=True, member_limit=5),
    ]
    for refused in refusals:
        with pytest.raises(EmulatorError) as info:
            await refused
        assert info.value.status == 400
    omar = await ctl.create_user("Omar")
    with pytest.raises(EmulatorError, match="asks for approval"):
        await ctl.join(chat_id, omar["id"], invite_link=link.invite_link, by=owner_id)

    # Once banned, or once in by another way, a user has no pending request.
    await ctl.set_member(chat_id, nina["id"], "kicked")
    await ctl.request_join(chat_id, omar["id"])
    await ctl.join(chat_id, omar["id"], by=owner_id)
    assert await ctl.join_requests(chat_id) == []
    with pytest.raises(EmulatorError, match="banned"):
        await ctl.request_join(chat_id, nina["id"])


async def test_pending_requests_survive_a_snapshot_and_go_with_a_reset(
    srv: EmulatorServer, ctl: EmulatorClient
) -> None:
    chat_id, owner_id, _ = await make_group(ctl)
    link = (await ctl.create_invite_link(chat_id, creates_join_request=True))["invite_link"]
    nina, omar = await ctl.create_user("Nina"), await ctl.create_user("Omar")
    await ctl.join(chat_id, nina["id"], invite_link=link, bio="hi")
    await ctl.request_join(chat_id, omar["id"])
    pending = await ctl.join_requests(chat_id)
    data = srv.emulator.world.snapshot()
    assert len(json.loads(data)["join_requests"]) == 2

    async with EmulatorServer(world=World.from_snapshot(data)) as second:
        assert await second.client.join_requests(chat_id) == pending
        approved = await second.client.approve_join_request(chat_id, nina["id"], by=owner_id)
        assert approved["message"]["new_chat_members"][0]["id"] == nina["id"]
        assert second.emulator.world.invites[link].join_count == 1

    without = json.loads(data)
    del without["join_requests"]  # a snapshot from before join requests
    assert World.from_snapshot(json.dumps(without).encode()).join_requests == {}
    await ctl.reset()
    assert srv.emulator.world.join_requests == {}
