"""Moderation: actions in the log and through the outbox, the groups' modes (off, dry), the
missing right told once, warnings that add up to a mute, newcomers' approval, the first-message
checks on the message path (spam deleted, its sender restricted, admins asked; "Not spam" teaches
the checks), edits checked again, the false-positive figures and dry mode's daily summary.

The bot is assembled by `bot.factory`; Telegram's answers to "who is an admin" come from the
in-process emulator, moderation's requests are recorded by the test outbox, the clock is manual.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from aiogram.types import Chat, Message, MessageOriginChannel, Update, User
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.db import MODERATION_VERDICTS, BotUser
from bot.moderation.protocol import RIGHTS
from bot.moderation.review import parse_review
from tests.console_harness import OWNER, ConsoleHarness, console_harness

pytestmark = pytest.mark.asyncio

SPAM = "💰💰 兼职日结,加微信 abc123 领取福利,刷单返利 https://spam.example/x 💰💰💰💰"
UPDATES = count(1)
MESSAGES = count(100)


@pytest.fixture
async def h(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[ConsoleHarness]:
    async with console_harness(engine, tmp_path) as harness:
        yield harness


async def setup(h: ConsoleHarness) -> tuple[int, User, User]:
    admin = await h.person("Ada", 501)
    old = await h.person("Olga", 502)
    chat_id = await h.group("Readers", admins=[admin])
    await h.ctl.set_member(chat_id, old.id, "member")  # there before the bot: never seen joining
    return chat_id, admin, old


async def join(h: ConsoleHarness, chat_id: int, person: User, added_by: int | None = None) -> None:
    await h.ctl.join(chat_id, person.id)
    await h.app.registry.member_joined(
        chat_id, person, h.clock.now(), source="test", added_by=added_by
    )


def chat_of(h: ConsoleHarness, chat_id: int) -> Chat:
    return Chat(id=chat_id, type="supergroup", title="Readers")


async def say(h: ConsoleHarness, chat_id: int, person: User, text: str, **fields: Any) -> Message:
    """A member's message, through the dispatcher as Telegram would deliver it."""
    message = Message(
        message_id=next(MESSAGES),
        date=h.clock.now(),
        chat=chat_of(h, chat_id),
        from_user=person,
        text=text,
        **fields,
    )
    await h.app.dispatcher.feed_update(h.app.bot, Update(update_id=next(UPDATES), message=message))
    return message


async def edit(h: ConsoleHarness, message: Message, text: str) -> None:
    edited = message.model_copy(update={"text": text, "edit_date": int(h.clock.now().timestamp())})
    await h.app.dispatcher.feed_update(
        h.app.bot, Update(update_id=next(UPDATES), edited_message=edited)
    )


def moderated(h: ConsoleHarness, method: str | None = None) -> list[tuple[str, int, int, Any]]:
    return [m for m in h.outbox.moderated if method is None or m[0] == method]


async def verdicts(h: ConsoleHarness, chat_id: int) -> list[Any]:
    """The verdicts stored, those of passing messages (written in batches) included."""
    await h.app.screening.flush()
    async with h.app.db.connect() as conn:
        rows = await conn.execute(
            select(MODERATION_VERDICTS)
            .where(MODERATION_VERDICTS.c.chat_id == chat_id)
            .order_by(MODERATION_VERDICTS.c.id)
        )
        return list(rows)


async def started(h: ConsoleHarness, person: User) -> None:
    async with h.app.db.begin() as conn:
        await conn.execute(
            BotUser.__table__.insert().values(user_id=person.id, started_at=h.clock.now())  # type: ignore[attr-defined]
        )


# -- actions ----------------------------------------------------------------------------------


async def test_actions_go_through_the_outbox_and_into_the_log(h: ConsoleHarness) -> None:
    chat_id, _admin, old = await setup(h)
    mod = h.app.moderation
    done = await mod.mute(chat_id, old.id, duration=timedelta(hours=1), by="sop:flood")
    assert done.ok and not done.dry and done.action_id is not None
    ((method, chat, user, (perms, until)),) = moderated(h)
    assert (method, chat, user) == ("restrictChatMember", chat_id, old.id)
    assert not perms.can_send_messages and until == h.clock.now() + timedelta(hours=1)
    kicked = await mod.kick(chat_id, old.id, by="sop:join_check", check="join_check")
    assert kicked.ok
    assert [m[0] for m in moderated(h)][1:] == ["banChatMember", "unbanChatMember"]
    log = await mod.store.latest(chat_id)
    assert [(a.action, a.by, a.check) for a in log] == [
        ("kick", "sop:join_check", "join_check"),
        ("mute", "sop:flood", None),
    ]


async def test_dry_mode_records_and_changes_nothing_off_mode_skips(h: ConsoleHarness) -> None:
    chat_id, admin, old = await setup(h)
    mod = h.app.moderation
    await mod.set_mode(chat_id, "dry", admin.id)
    done = await mod.ban(chat_id, old.id, by="sop:x")
    assert done.ok and done.dry and moderated(h) == []
    (row,) = await mod.store.latest(chat_id)
    assert row.dry and row.action == "ban"
    by_admin = await mod.ban(chat_id, old.id, by=f"admin:{admin.id}")  # admins always act
    assert by_admin.ok and not by_admin.dry and len(moderated(h, "banChatMember")) == 1
    await mod.set_mode(chat_id, "off", admin.id)
    skipped = await mod.restrict(chat_id, old.id, by="checks")
    assert skipped.skipped and not skipped.ok and len(await mod.store.latest(chat_id)) == 2
    await h.app.moderation.load()  # the mode survives a restart
    assert mod.mode(chat_id) == "off"


async def test_a_missing_right_is_told_once_and_again_after_it_came_back(
    h: ConsoleHarness,
) -> None:
    chat_id, _admin, old = await setup(h)
    mod = h.app.moderation
    h.outbox.unrestrictable.add(chat_id)
    before = len(h.outbox.sent)
    first = await mod.restrict(chat_id, old.id, by="sop:join_check")
    second = await mod.kick(chat_id, old.id, by="sop:join_check")
    assert first.error == RIGHTS and second.error == RIGHTS and not first.ok
    told = [s for s in h.outbox.sent[before:] if "Ban users" in s.text]
    assert sorted(s.chat_id for s in told) == sorted([501, OWNER])  # the admin and owners
    h.outbox.unrestrictable.clear()
    assert (await mod.restrict(chat_id, old.id, by="sop:join_check")).ok
    h.outbox.unrestrictable.add(chat_id)
    h.later(days=2)
    await mod.restrict(chat_id, old.id, by="sop:join_check")
    assert len([s for s in h.outbox.sent[before:] if "Ban users" in s.text]) == 4


async def test_three_warnings_within_the_window_mute_for_a_day(h: ConsoleHarness) -> None:
    chat_id, admin, old = await setup(h)
    mod = h.app.moderation
    by = f"admin:{admin.id}"
    first = await mod.warn(chat_id, old.id, by=by, reason="off topic")
    assert first.count == 1 and first.muted is None
    h.later(days=31)  # the first has expired
    assert (await mod.warn(chat_id, old.id, by=by)).count == 1
    assert (await mod.warn(chat_id, old.id, by=by)).count == 2
    third = await mod.warn(chat_id, old.id, by=by)
    assert third.count == 3 and third.muted is not None and third.muted.ok
    ((_m, _c, _u, (_perms, until)),) = moderated(h, "restrictChatMember")
    assert until == h.clock.now() + timedelta(days=1)


# -- newcomers --------------------------------------------------------------------------------


async def test_who_is_a_newcomer_to_check(h: ConsoleHarness) -> None:
    chat_id, admin, old = await setup(h)
    mod = h.app.moderation
    new, added = await h.person("Nina", 601), await h.person("Adam", 602)
    await join(h, chat_id, new)
    await join(h, chat_id, added, added_by=admin.id)
    users = [admin.id, old.id, new.id, added.id]
    assert await mod.approved_among(chat_id, users) == {admin.id, old.id, added.id}
    assert h.app.screening.wants(chat_id, new.id)
    assert not h.app.screening.wants(chat_id, old.id)


async def test_three_substantive_messages_approve_greetings_do_not_count(
    h: ConsoleHarness,
) -> None:
    chat_id, _admin, _old = await setup(h)
    new = await h.person("Nina", 601)
    await join(h, chat_id, new)
    await say(h, chat_id, new, "你好")
    await say(h, chat_id, new, "hi!")
    await say(h, chat_id, new, "请问这门课的作业什么时候交?")
    await say(h, chat_id, new, "I joined from the workshop last week, glad to be here")
    assert h.app.screening.wants(chat_id, new.id)
    await say(h, chat_id, new, "老师讲得很清楚,第二章的例子我跑通了")
    assert not h.app.screening.wants(chat_id, new.id)
    assert [row.spam for row in await verdicts(h, chat_id)] == [False, False, False]
    await say(h, chat_id, new, SPAM)  # approved: no longer checked
    assert moderated(h) == [] and len(await verdicts(h, chat_id)) == 3


async def test_spam_from_a_newcomer_is_deleted_restricted_and_reported(h: ConsoleHarness) -> None:
    chat_id, admin, _old = await setup(h)
    await started(h, admin)
    new = await h.person("Spammy", 601)
    await join(h, chat_id, new)
    before = len(h.outbox.sent)
    message = await say(h, chat_id, new, SPAM)
    assert (chat_id, message.message_id) in h.outbox.deleted
    ((method, _chat, user, (perms, _until)),) = moderated(h)
    assert method == "restrictChatMember" and user == new.id and not perms.can_send_messages
    (report,) = h.outbox.sent[before:]
    assert report.chat_id == admin.id and "加微信" in report.text  # privately, with the text
    buttons = [b.callback_data for row in report.markup.inline_keyboard for b in row]
    assert [parse_review(b)[0] for b in buttons] == ["ok", "ban"]  # type: ignore[index]
    (row,) = await verdicts(h, chat_id)
    assert row.spam and "stop_words" in [v["check"] for v in row.judgement["verdicts"] if v["spam"]]


async def test_without_a_reachable_admin_the_report_goes_to_the_group_without_the_text(
    h: ConsoleHarness,
) -> None:
    chat_id, _admin, _old = await setup(h)
    new = await h.person("Spammy", 601)
    await join(h, chat_id, new)
    before = len(h.outbox.sent)
    await say(h, chat_id, new, SPAM)
    (report,) = h.outbox.sent[before:]
    assert report.chat_id == chat_id and "加微信" not in report.text and report.markup


async def test_not_spam_restores_the_member_and_lets_the_text_through(h: ConsoleHarness) -> None:
    chat_id, admin, _old = await setup(h)
    new, other = await h.person("Nina", 601), await h.person("Omar", 602)
    await join(h, chat_id, new)
    await join(h, chat_id, other)
    text = "Join our study group at https://notes.example/course and t.me/coursechat"
    await say(h, chat_id, new, text)
    (deleted,) = await h.app.moderation.store.latest(chat_id, 1)
    restricted = await h.app.moderation.store.latest(chat_id, 2)
    assert deleted.action == "restrict" and restricted[1].action == "delete"
    admin_user = User(id=admin.id, is_bot=False, first_name="Ada")
    stranger = User(id=other.id, is_bot=False, first_name="Omar")
    key, _ = await h.app.screening.review.decide("ok", restricted[1].id, stranger)
    assert key == "moderation.decide_not_admin"
    key, _ = await h.app.screening.review.decide("ok", restricted[1].id, admin_user)
    assert key == "moderation.decided_ok"
    assert not h.app.screening.wants(chat_id, new.id)  # approved
    lifted = moderated(h, "restrictChatMember")[-1]
    assert lifted[2] == new.id and lifted[3][0].can_send_messages
    again, _ = await h.app.screening.review.decide("ban", restricted[1].id, admin_user)
    assert again == "moderation.decided_already"
    figures = (await h.app.moderation.store.honesty([chat_id], h.clock.now() - timedelta(1)))[
        chat_id
    ]
    assert (figures.actions, figures.undone) == (2, 2) and figures.false_positive_rate == 1.0
    await say(h, chat_id, other, text)  # the same text from another newcomer passes now
    assert len(moderated(h, "restrictChatMember")) == 2
    (*_, last) = await verdicts(h, chat_id)
    assert not last.spam and last.judgement["known_good"]


async def test_ban_from_a_report_bans(h: ConsoleHarness) -> None:
    chat_id, admin, _old = await setup(h)
    new = await h.person("Spammy", 601)
    await join(h, chat_id, new)
    await say(h, chat_id, new, SPAM)
    delete = next(a for a in await h.app.moderation.store.latest(chat_id) if a.action == "delete")
    admin_user = User(id=admin.id, is_bot=False, first_name="Ada")
    key, _ = await h.app.screening.review.decide("ban", delete.id, admin_user)
    assert key == "moderation.decided_ban"
    assert moderated(h, "banChatMember")[-1][2] == new.id


async def test_an_edit_into_spam_is_checked_again(h: ConsoleHarness) -> None:
    chat_id, _admin, _old = await setup(h)
    new = await h.person("Nina", 601)
    await join(h, chat_id, new)
    message = await say(h, chat_id, new, "大家好,我是做设计的,很高兴认识大家")
    assert moderated(h) == []
    await edit(h, message, SPAM)
    assert (chat_id, message.message_id) in h.outbox.deleted
    rows = await verdicts(h, chat_id)
    assert sorted((row.edited, row.spam) for row in rows) == [(False, False), (True, True)]


async def test_a_channel_forward_from_a_newcomer_is_caught(h: ConsoleHarness) -> None:
    chat_id, _admin, _old = await setup(h)
    new = await h.person("Nina", 601)
    await join(h, chat_id, new)
    origin = MessageOriginChannel(
        date=h.clock.now(), chat=Chat(id=-1009, type="channel", title="Deals"), message_id=5
    )
    await say(h, chat_id, new, "看看这个", forward_origin=origin)
    (row,) = await verdicts(h, chat_id)
    assert row.spam and row.judgement["verdicts"]


async def test_dry_mode_checks_records_and_sums_up_daily(h: ConsoleHarness) -> None:
    chat_id, admin, _old = await setup(h)
    await h.app.moderation.set_mode(chat_id, "dry", admin.id)
    new = await h.person("Spammy", 601)
    await join(h, chat_id, new)
    before = len(h.outbox.sent)
    message = await say(h, chat_id, new, SPAM)
    assert moderated(h) == [] and (chat_id, message.message_id) not in h.outbox.deleted
    assert h.outbox.sent[before:] == []  # no report: the summary tells
    summaries = h.app.summaries
    assert await summaries.send_due(h.clock.now()) == 0  # the day's summary is later
    h.later(days=1)
    assert await summaries.send_due(h.clock.now()) == 1
    (told, _owner) = [s for s in h.outbox.sent[before:] if "Dry run" in s.text]
    assert "2 actions" in told.text and "delete × 1" in told.text
    assert await summaries.send_due(h.clock.now()) == 0  # once a day


# -- what review found ------------------------------------------------------------------------


async def test_a_join_the_bot_approved_on_request_is_still_checked(h: ConsoleHarness) -> None:
    chat_id, admin, _old = await setup(h)
    asked, added = await h.person("Rae", 601), await h.person("Sid", 602)
    await h.ctl.join(chat_id, asked.id)
    await h.app.registry.member_joined(  # Telegram names the approver: here the bot itself
        chat_id, asked, h.clock.now(), source="test", added_by=h.app.me.id, via_request=True
    )
    await join(h, chat_id, added, added_by=admin.id)
    assert h.app.screening.wants(chat_id, asked.id)
    assert not h.app.screening.wants(chat_id, added.id)


async def test_a_restriction_whose_deletion_failed_still_reaches_the_admins(
    h: ConsoleHarness,
) -> None:
    chat_id, admin, _old = await setup(h)
    await started(h, admin)
    new = await h.person("Spammy", 601)
    await join(h, chat_id, new)

    async def refused(chat: int, message_id: int, *, source: str) -> Any:
        from bot.delivery import Delivered

        return Delivered(False, None, chat, "Bad Request: message can't be deleted", 1)

    h.outbox.delete = refused
    before = len(h.outbox.sent)
    await say(h, chat_id, new, SPAM)
    (report,) = h.outbox.sent[before:]
    assert report.chat_id == admin.id and moderated(h, "restrictChatMember")
    data = report.markup.inline_keyboard[0][0].callback_data
    parsed = parse_review(data)
    assert parsed is not None
    admin_user = User(id=admin.id, is_bot=False, first_name="Ada")
    key, _ = await h.app.screening.review.decide("ok", parsed[1], admin_user)
    assert key == "moderation.decided_ok"
    assert moderated(h, "restrictChatMember")[-1][3][0].can_send_messages


async def test_not_spam_undoes_only_what_the_checks_did(h: ConsoleHarness) -> None:
    chat_id, admin, _old = await setup(h)
    new = await h.person("Nina", 601)
    await join(h, chat_id, new)
    mod = h.app.moderation
    await mod.restrict(chat_id, new.id, by="sop:join_check", check="join_check")
    await mod.unrestrict(chat_id, new.id, by="sop:join_check")
    await say(h, chat_id, new, SPAM)
    delete = next(a for a in await mod.store.latest(chat_id) if a.action == "delete")
    admin_user = User(id=admin.id, is_bot=False, first_name="Ada")
    await h.app.screening.review.decide("ok", delete.id, admin_user)
    undone = {(a.action, a.by) for a in await mod.store.latest(chat_id) if a.undone_at}
    assert undone == {("delete", "checks"), ("restrict", "checks")}


async def test_the_bots_own_messages_are_tidied_in_every_mode(h: ConsoleHarness) -> None:
    chat_id, admin, _old = await setup(h)
    mod = h.app.moderation
    await mod.set_mode(chat_id, "dry", admin.id)
    assert (await mod.tidy(chat_id, 77)).ok
    assert (chat_id, 77) in h.outbox.deleted and await mod.store.latest(chat_id) == []


async def test_forgetme_keeps_the_figures_without_the_person(h: ConsoleHarness) -> None:
    from bot.stats.forget import forget

    chat_id, _admin, _old = await setup(h)
    new = await h.person("Spammy", 601)
    await join(h, chat_id, new)
    await say(h, chat_id, new, SPAM)
    await h.app.screening.flush()
    await forget(h.app.db, new.id)
    log = await h.app.moderation.store.latest(chat_id)
    assert log and all(a.user_id != new.id and a.text is None for a in log)
    assert all(row.user_id != new.id for row in await verdicts(h, chat_id))
    figures = await h.app.moderation.store.honesty([chat_id], h.clock.now() - timedelta(1))
    assert figures[chat_id].actions == 2
