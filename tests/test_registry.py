"""The registry: joins and leaves counted once whatever the source, and migrations keep history."""

from __future__ import annotations

from typing import Any

from aiogram.types import Chat
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.db import EVENTS, GROUPS, MEMBERS, GroupStatus, MemberStatus
from bot.events import Bus, GroupDiscovered
from bot.registry import Registry
from tests.conftest import at
from tests.updates import GROUP, group_message, user


async def table(engine: AsyncEngine, t, *order) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(select(t).order_by(*order))).mappings()]


async def test_join_seen_twice_is_counted_once(engine, registry: Registry, activity: ActivityLog):
    bob = user(21, "Bob")
    assert await registry.member_joined(GROUP.id, bob, at(0), source="service_message")
    link = "https://t.me/+abc"
    assert not await registry.member_joined(
        GROUP.id, bob, at(0), invite_link=link, source="chat_member"
    )
    await activity.flush()
    joins = [e for e in await table(engine, EVENTS, EVENTS.c.id) if e["type"] == "member_joined"]
    assert len(joins) == 1
    [member] = await table(engine, MEMBERS)
    assert (member["status"], member["invite_link"], member["joined_at"]) == ("member", link, at(0))


async def test_leave_then_rejoin_counts_both(engine, registry: Registry, activity: ActivityLog):
    bob = user(21, "Bob")
    await registry.member_joined(GROUP.id, bob, at(0), source="chat_member")
    assert await registry.member_left(GROUP.id, bob, at(5), source="chat_member")
    assert not await registry.member_left(GROUP.id, bob, at(5), source="service_message")
    assert await registry.member_joined(GROUP.id, bob, at(9), source="chat_member")
    await activity.flush()
    kinds = [e["type"] for e in await table(engine, EVENTS, EVENTS.c.id)]
    assert kinds == ["member_joined", "member_left", "member_joined"]
    [member] = await table(engine, MEMBERS)
    assert (member["status"], member["left_at"], member["joined_at"]) == ("member", None, at(9))


async def test_leave_of_member_from_before_the_bot(
    engine, registry: Registry, activity: ActivityLog
):
    carol = user(31, "Carol")
    assert await registry.member_left(
        GROUP.id, carol, at(1), kicked=True, by=1, source="chat_member"
    )
    await activity.flush()
    [event] = await table(engine, EVENTS)
    assert (event["type"], event["data"]) == ("member_kicked", {"source": "chat_member", "by": 1})
    [member] = await table(engine, MEMBERS)
    assert member["status"] == MemberStatus.KICKED


async def test_message_from_unknown_group_registers_it(engine, registry: Registry):
    discovered: list[int] = []

    async def note(event: GroupDiscovered) -> None:
        discovered.append(event.chat_id)

    registry.bus.subscribe(GroupDiscovered, note)
    await registry.group_seen(GROUP)
    await registry.group_seen(GROUP)
    await registry.bus.settle()
    assert discovered == [GROUP.id], "a new group is announced once"
    [group] = await table(engine, GROUPS)
    assert (group["id"], group["title"], group["status"]) == (GROUP.id, "Tea lovers", "active")
    assert registry.is_active(GROUP.id)


async def test_migration_moves_members_and_history(
    engine, registry: Registry, activity: ActivityLog
):
    old = Chat(id=-4001, type="group", title="Tea lovers")
    new = Chat(id=-1004001, type="supergroup", title="Tea lovers")
    await registry.save_group(
        old, status=GroupStatus.ACTIVE, bot_status="administrator", tags=["tea"]
    )
    alice = user(11, "Alice")
    await registry.member_joined(old.id, alice, at(0), source="chat_member")
    activity.message(group_message(1, alice, at(1), chat=old))
    activity.message(group_message(2, alice, at(2), chat=old))  # still buffered
    assert await registry.migrate(old.id, new, at(3))
    assert not await registry.migrate(old.id, new, at(3))  # the second service message
    activity.message(group_message(3, alice, at(4), chat=new))
    await activity.flush()

    events = await table(engine, EVENTS, EVENTS.c.id)
    assert {e["chat_id"] for e in events} == {new.id}
    assert [e["type"] for e in events] == [
        "member_joined",
        "message",
        "message",
        "group_migrated",
        "message",
    ]
    [member] = await table(engine, MEMBERS)
    assert (member["chat_id"], member["message_count"], member["joined_at"]) == (new.id, 3, at(0))
    groups = {g["id"]: g for g in await table(engine, GROUPS)}
    assert groups[old.id]["status"] == "migrated" and groups[old.id]["migrated_to_id"] == new.id
    assert groups[new.id]["migrated_from_id"] == old.id
    assert groups[new.id]["tags"] == ["tea"] and groups[new.id]["bot_status"] == "administrator"
    assert registry.is_active(new.id) and not registry.is_active(old.id)


async def test_registry_reloads_groups(engine, registry: Registry, activity: ActivityLog):
    await registry.save_group(GROUP, status=GroupStatus.KICKED, bot_status="kicked")
    again = Registry(engine, activity, Bus())
    await again.load()
    assert again.groups[GROUP.id].status is GroupStatus.KICKED
