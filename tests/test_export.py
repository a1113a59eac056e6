"""Export: formats, filters, and dates read in the configured time zone; the referrals."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.export import export, parse_since
from bot.registry import Registry
from tests.conftest import at
from tests.test_stats import GROUP as REFERRING
from tests.test_stats import OTHER, add_link, add_referral, add_referrals, local
from tests.updates import GROUP, group_message, user

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_since_is_read_in_the_time_zone() -> None:
    assert parse_since("2026-11-02", SHANGHAI) == datetime(2026, 11, 1, 16, tzinfo=UTC)
    assert parse_since("2026-11-02T08:30", SHANGHAI) == datetime(2026, 11, 2, 0, 30, tzinfo=UTC)
    assert parse_since("2026-11-02T08:30+00:00", SHANGHAI) == datetime(
        2026, 11, 2, 8, 30, tzinfo=UTC
    )
    with pytest.raises(ValueError, match="not a date"):
        parse_since("yesterday", SHANGHAI)


async def fill(registry: Registry, activity: ActivityLog) -> None:
    await registry.group_seen(GROUP)
    await registry.member_joined(
        GROUP.id, user(11, "Alice"), at(0), invite_link="https://t.me/+x", source="chat_member"
    )
    activity.message(group_message(1, user(11, "Alice"), at(1, hour=10)))
    activity.message(group_message(2, user(11, "Alice"), at(1, hour=14), text="/top week"))
    await activity.flush()


async def test_events_as_csv_and_jsonl(
    engine: AsyncEngine, registry: Registry, activity: ActivityLog
) -> None:
    await fill(registry, activity)
    out = io.StringIO()
    assert await export(engine, "events", out, fmt="csv") == 3
    lines = out.getvalue().splitlines()
    assert (
        lines[0]
        == "id,chat_id,user_id,at,type,kind,message_id,text_length,is_reply,is_forward,text,data"
    )
    assert lines[1].endswith(
        ',false,false,,"{""source"":""chat_member"",""invite_link"":""https://t.me/+x""}"'
    )
    assert "2026-11-02T10:01:00+00:00,message,text,1,5,false,false,," in lines[2]

    out = io.StringIO()
    since = datetime(2026, 11, 2, 12, 30, tzinfo=UTC)
    assert await export(engine, "events", out, fmt="jsonl", since=since) == 1
    row = json.loads(out.getvalue())
    assert (row["type"], row["data"], row["at"]) == (
        "command",
        {"command": "top"},
        "2026-11-02T14:01:00+00:00",
    )


async def test_members_and_groups_filters(
    engine: AsyncEngine, registry: Registry, activity: ActivityLog
) -> None:
    await fill(registry, activity)
    out = io.StringIO()
    assert await export(engine, "members", out, fmt="jsonl", group=GROUP.id) == 1
    member = json.loads(out.getvalue())
    assert (member["message_count"], member["invite_link"]) == (2, "https://t.me/+x")
    assert await export(engine, "members", io.StringIO(), group=-5) == 0
    late = datetime(2026, 11, 3, tzinfo=UTC)
    assert await export(engine, "members", io.StringIO(), since=late) == 0
    out = io.StringIO()
    assert await export(engine, "groups", out, fmt="jsonl") == 1
    assert json.loads(out.getvalue())["tags"] == []


async def test_referrals_with_their_states_and_links(engine: AsyncEngine) -> None:
    await add_referrals(engine)
    elsewhere = await add_link(engine, "member", "U9", 9, chat=OTHER)
    await add_referral(engine, 2, elsewhere, 9, local(3), chat=OTHER)
    out = io.StringIO()
    assert await export(engine, "invites", out) == 7
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "chat_id,invitee_id,inviter_id,link_kind,link_name,joined_at,via_request,state,reason,"
        "qualified_at,decided_at,left_at"
    )
    assert lines[1] == (
        "-1001,2,1,member,U1,2026-11-05T01:00:00+00:00,false,qualified,,2026-11-10T01:00:00+00:00,,"
    )
    assert lines[3] == (
        "-1001,5,,campaign,spring,2026-11-22T04:00:00+00:00,false,qualified,,"
        "2026-11-26T04:00:00+00:00,,"
    )
    assert lines[5] == (
        "-1001,7,1,member,U1,2026-11-12T04:00:00+00:00,false,void,left_quickly,,"
        "2026-11-12T05:00:00+00:00,"
    )
    assert lines[7].startswith("-1002,2,9,member,U9,")

    # One group's, joined or changed since the 25th (Shanghai): 3 qualified that morning,
    # 5 qualified on the 26th, 6 joined on the 29th.
    out = io.StringIO()
    since = local(25, 0)
    assert await export(engine, "invites", out, fmt="jsonl", group=REFERRING, since=since) == 3
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(r["invitee_id"], r["state"], r["link_kind"], r["link_name"]) for r in rows] == [
        (3, "qualified", "member", "U1"),
        (5, "qualified", "campaign", "spring"),
        (6, "pending", "member", "U1"),
    ]
    assert rows[1]["inviter_id"] is None and rows[2]["via_request"] is True
    assert rows[0]["qualified_at"] == "2026-11-25T01:00:00+00:00"
    assert await export(engine, "invites", io.StringIO(), group=OTHER) == 1
