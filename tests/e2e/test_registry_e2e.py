"""End to end: the real bot records groups, members and every message, through the emulator."""

from __future__ import annotations

import signal
from collections import Counter

import pytest
from sqlalchemy import text

from bot.db import create_engine
from bot.emulator import EmulatorClient, masked_invite_link
from tests.conftest import POSTGRES_URL
from tests.e2e.conftest import BOT_ID, Tidepool, all_confirmed, wait_until
from tests.e2e.test_sop_e2e import sops_without


async def make_people(ctl: EmulatorClient) -> dict[str, int]:
    people = {}
    for name in ("Olga", "Alice", "Bob", "Carol", "Dan"):
        people[name] = (await ctl.create_user(name, username=name.lower()))["id"]
    return people


async def test_two_groups_joins_messages_and_a_leave(ctl: EmulatorClient, tidepool: Tidepool):
    await two_groups_scenario(ctl, tidepool)


@pytest.mark.skipif(POSTGRES_URL is None, reason="set TIDEPOOL_TEST_POSTGRES_URL to run")
async def test_two_groups_on_postgresql(ctl: EmulatorClient, tidepool: Tidepool):
    assert POSTGRES_URL is not None
    engine = create_engine(POSTGRES_URL)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    tidepool.extra_env["DATABASE_URL"] = POSTGRES_URL
    await two_groups_scenario(ctl, tidepool)


async def two_groups_scenario(ctl: EmulatorClient, tidepool: Tidepool) -> None:
    p = await make_people(ctl)
    await ctl.start(p["Olga"])  # the owner has started the bot, so it can write to her
    tidepool.extra_env["OWNER_IDS"] = str(p["Olga"])
    tea = (await ctl.create_chat("Tea lovers", type="supergroup"))["id"]
    books = (await ctl.create_chat("Book club", type="group"))["id"]
    for chat in (tea, books):
        await ctl.set_member(chat, p["Olga"], "creator")
    await tidepool.start(ctl)

    await ctl.set_bot_status(tea, "administrator", by=p["Olga"])
    await ctl.set_bot_status(books, "administrator", by=p["Olga"])
    link = (await ctl.create_invite_link(tea, name="spring campaign"))["invite_link"]
    await ctl.join(tea, p["Alice"], invite_link=link)
    shown = masked_invite_link(link)  # an admin made it: Telegram shows the bot half of it
    await ctl.join(tea, p["Bob"])
    await ctl.join(books, p["Carol"])
    hello = await ctl.send_message(tea, p["Alice"], "大家好，我是 Alice")
    await ctl.send_message(tea, p["Alice"], kind="photo", caption="my tea")
    await ctl.send_message(tea, p["Alice"], kind="sticker")
    await ctl.send_message(tea, p["Bob"], kind="voice")
    reply_to = hello["message"]["message_id"]
    await ctl.send_message(tea, p["Bob"], "welcome!", reply_to_message_id=reply_to)
    await ctl.send_message(tea, p["Bob"], "look", forward_from_user_id=p["Dan"])
    await ctl.send_message(books, p["Carol"], kind="document", caption="chapter 1")
    await ctl.send_message(books, p["Carol"], kind="poll")
    await ctl.send_message(books, p["Carol"], "/checkin")
    await ctl.leave(tea, p["Bob"])
    await wait_until(lambda: all_confirmed(ctl), what="the bot to fetch every update")
    assert await tidepool.stop() == 0

    groups = {g["id"]: g for g in await tidepool.export("groups")}
    assert groups[tea]["title"] == "Tea lovers" and groups[books]["type"] == "group"
    assert {g["status"] for g in groups.values()} == {"active"}
    assert {g["bot_status"] for g in groups.values()} == {"administrator"}
    assert all(g["missing_rights"] == [] for g in groups.values())

    members = {(m["chat_id"], m["user_id"]): m for m in await tidepool.export("members")}
    alice, bob, carol = members[tea, p["Alice"]], members[tea, p["Bob"]], members[books, p["Carol"]]
    assert (alice["status"], alice["invite_link"], alice["message_count"]) == ("member", shown, 3)
    assert alice["joined_at"] is not None and alice["last_activity_at"] is not None
    assert (bob["status"], bob["message_count"]) == ("left", 3)
    assert bob["left_at"] is not None
    assert (carol["status"], carol["message_count"]) == ("member", 3)

    events = await tidepool.export("events")
    by_chat = Counter((e["chat_id"], e["type"]) for e in events)
    # A join arrives twice (chat_member and the service message) and is counted once.
    assert by_chat[tea, "member_joined"] == 2 and by_chat[books, "member_joined"] == 1
    assert by_chat[tea, "member_left"] == 1
    assert by_chat[tea, "bot_added"] == 1 and by_chat[books, "bot_added"] == 1
    assert by_chat[tea, "message"] == 6
    assert by_chat[books, "message"] == 2 and by_chat[books, "command"] == 1
    kinds = [e["kind"] for e in events if e["chat_id"] == tea and e["type"] == "message"]
    assert kinds == ["text", "photo", "sticker", "voice", "text", "text"]
    messages = [e for e in events if e["type"] == "message" and e["chat_id"] == tea]
    assert [e["is_reply"] for e in messages] == [False, False, False, False, True, False]
    assert [e["is_forward"] for e in messages] == [False] * 5 + [True]
    assert messages[0]["text_length"] == len("大家好，我是 Alice")
    assert all(e["text"] is None for e in events), "no message text without STORE_TEXT"
    joined = next(e for e in events if e["type"] == "member_joined" and e["user_id"] == p["Alice"])
    assert joined["data"]["invite_link"] == shown

    # Filters of the export: one group, and a CSV header.
    only_books = await tidepool.export("events", "--group", str(books))
    assert {e["chat_id"] for e in only_books} == {books}
    code, csv_text, _ = await tidepool.command("export", "members", "--format", "csv")
    assert code == 0 and csv_text.splitlines()[0].startswith("chat_id,user_id,first_name")
    assert len(csv_text.splitlines()) == 1 + len(members)
    assert "TEST-token" not in tidepool.logs(), "the token never reaches the logs"


async def test_missing_rights_are_reported_once(ctl: EmulatorClient, tidepool: Tidepool):
    p = await make_people(ctl)
    await ctl.start(p["Olga"])
    tidepool.extra_env.update(OWNER_IDS=str(p["Olga"]), LANGUAGE="en")
    chat = (await ctl.create_chat("Shop fans"))["id"]
    await ctl.set_member(chat, p["Olga"], "creator")
    await tidepool.start(ctl)

    await ctl.set_bot_status(chat, "member", by=p["Olga"])

    async def notice_sent() -> bool:
        return any("administrator" in m.get("text", "") for m in await ctl.sent(chat))

    await wait_until(notice_sent, what="the missing-rights notice in the group")

    async def owner_told() -> bool:
        return any("Shop fans" in m.get("text", "") for m in await ctl.sent(p["Olga"]))

    await wait_until(owner_told, what="the owner to be told privately too")

    # A restart does not repeat the notice; promoting the bot with all rights thanks the group.
    assert await tidepool.stop() == 0
    await tidepool.start(ctl)
    await ctl.set_bot_status(chat, "administrator", by=p["Olga"])

    async def thanked() -> bool:
        return any("all the rights" in m.get("text", "") for m in await ctl.sent(chat))

    await wait_until(thanked, what="the all-rights message")
    notices = [m for m in await ctl.sent(chat) if "administrator" in m.get("text", "")]
    assert len(notices) == 1
    assert await tidepool.stop() == 0
    [group] = await tidepool.export("groups")
    assert (group["bot_status"], group["missing_rights"]) == ("administrator", [])


async def test_kicked_from_one_group_the_other_goes_on(ctl: EmulatorClient, tidepool: Tidepool):
    p = await make_people(ctl)
    tea = (await ctl.create_chat("Tea lovers"))["id"]
    books = (await ctl.create_chat("Book club"))["id"]
    for chat in (tea, books):
        await ctl.set_member(chat, p["Olga"], "creator")
        await ctl.set_member(chat, p["Alice"], "member")
    await tidepool.start(ctl)
    await ctl.set_bot_status(tea, "administrator", by=p["Olga"])
    await ctl.set_bot_status(books, "administrator", by=p["Olga"])
    await ctl.send_message(tea, p["Alice"], "before the kick")
    await ctl.set_bot_status(tea, "kicked", by=p["Olga"])
    for n in range(3):
        await ctl.send_message(books, p["Alice"], f"still here {n}")
    await wait_until(lambda: all_confirmed(ctl), what="the bot to fetch every update")
    assert tidepool.alive()
    assert await tidepool.stop() == 0

    groups = {g["id"]: g for g in await tidepool.export("groups")}
    assert groups[tea]["status"] == "kicked" and groups[books]["status"] == "active"
    events = await tidepool.export("events")
    assert Counter(e["chat_id"] for e in events if e["type"] == "message") == {tea: 1, books: 3}
    assert [e["type"] for e in events if e["chat_id"] == tea][-1] == "bot_kicked"

    # Started again, it checks its groups: the kicked one stays kicked and is not written to.
    await tidepool.start(ctl)
    await ctl.send_message(books, p["Alice"], "after restart")
    await wait_until(lambda: all_confirmed(ctl), what="the bot to fetch every update")
    assert await tidepool.stop() == 0
    assert not [m for m in await ctl.sent(tea)]
    assert "Traceback" not in tidepool.logs()


async def test_migration_to_supergroup_keeps_history(ctl: EmulatorClient, tidepool: Tidepool):
    p = await make_people(ctl)
    old = (await ctl.create_chat("Tea lovers", type="group"))["id"]
    await ctl.set_member(old, p["Olga"], "creator")
    await tidepool.start(ctl)
    await ctl.set_bot_status(old, "administrator", by=p["Olga"])
    await ctl.join(old, p["Alice"])
    await ctl.send_message(old, p["Alice"], "in the old group")
    new = (await ctl.migrate(old, by=p["Olga"]))["new_chat_id"]
    await ctl.send_message(new, p["Alice"], "in the supergroup")
    await ctl.join(new, p["Bob"])
    await wait_until(lambda: all_confirmed(ctl), what="the bot to fetch every update")
    assert await tidepool.stop() == 0

    history = await tidepool.export("events", "--group", str(new))
    assert [e["type"] for e in history if e["type"] != "bot_added"] == [
        "member_joined",
        "message",
        "group_migrated",
        "message",
        "member_joined",
    ]
    assert await tidepool.export("events", "--group", str(old)) == []
    members = {m["user_id"]: m for m in await tidepool.export("members", "--group", str(new))}
    assert members[p["Alice"]]["message_count"] == 2
    assert p["Bob"] in members
    groups = {g["id"]: g for g in await tidepool.export("groups")}
    assert groups[old]["status"] == "migrated" and groups[old]["migrated_to_id"] == new
    assert groups[new]["migrated_from_id"] == old and groups[new]["status"] == "active"
    assert groups[new]["bot_status"] == "administrator"


async def test_service_messages_count_joins_when_not_admin(ctl: EmulatorClient, tidepool: Tidepool):
    p = await make_people(ctl)
    await ctl.set_bot(privacy_mode=False)
    chat = (await ctl.create_chat("Open chat"))["id"]
    await ctl.set_member(chat, p["Olga"], "creator")
    await tidepool.start(ctl)
    await ctl.set_bot_status(chat, "member", by=p["Olga"])
    await ctl.join(chat, p["Alice"])
    await ctl.send_message(chat, p["Alice"], "hi")
    await ctl.kick(chat, p["Alice"], by=p["Olga"])
    await wait_until(lambda: all_confirmed(ctl), what="the bot to fetch every update")
    assert await tidepool.stop() == 0
    events = await tidepool.export("events", "--group", str(chat))
    assert [e["type"] for e in events if e["user_id"] == p["Alice"]] == [
        "member_joined",
        "message",
        "member_kicked",
    ]
    [alice] = [m for m in await tidepool.export("members") if m["user_id"] == p["Alice"]]
    assert alice["status"] == "kicked"
    assert BOT_ID not in {m["user_id"] for m in await tidepool.export("members")}


async def test_sigterm_while_messages_stream_loses_nothing(ctl: EmulatorClient, tidepool: Tidepool):
    p = await make_people(ctl)
    chats = []
    for title in ("Stream A", "Stream B"):
        chat = (await ctl.create_chat(title))["id"]
        await ctl.set_member(chat, p["Olga"], "creator")
        for name in ("Alice", "Bob", "Carol"):
            await ctl.set_member(chat, p[name], "member")
        chats.append(chat)
    # Three members writing as fast as the test can post are a flood: flood control would mute
    # them (and Telegram refuse their messages), which is not what this test is about.
    tidepool.extra_env["SOPS_DIR"] = str(sops_without(tidepool.folder, "flood"))
    await tidepool.start(ctl)
    for chat in chats:
        await ctl.set_bot_status(chat, "administrator", by=p["Olga"])

    import asyncio

    async def stream() -> None:
        n = 0
        while True:
            await ctl.send_message(chats[n % 2], p[("Alice", "Bob", "Carol")[n % 3]], f"msg {n}")
            n += 1
            if n % 20 == 0:
                await asyncio.sleep(0)

    streaming = asyncio.create_task(stream())
    await wait_until(lambda: _confirmed_at_least(ctl, 300), what="a few hundred messages")
    assert await tidepool.stop(signal.SIGTERM) == 0
    streaming.cancel()
    await asyncio.gather(streaming, return_exceptions=True)

    confirmed = {key for key, done in await _text_messages(ctl) if done}
    stored = [
        (e["chat_id"], e["message_id"])
        for e in await tidepool.export("events")
        if e["type"] == "message"
    ]
    assert len(confirmed) >= 300
    assert confirmed <= set(stored), "every update the bot confirmed is in the events table"
    assert len(stored) == len(set(stored)), "nothing stored twice"

    # What was sent but not yet fetched arrives after a restart, still exactly once.
    await tidepool.start(ctl)
    await wait_until(lambda: all_confirmed(ctl), what="the rest of the stream")
    assert await tidepool.stop() == 0
    stored = [
        (e["chat_id"], e["message_id"])
        for e in await tidepool.export("events")
        if e["type"] == "message"
    ]
    assert sorted(stored) == sorted(key for key, _ in await _text_messages(ctl))


async def _text_messages(ctl: EmulatorClient) -> list[tuple[tuple[int, int], bool]]:
    """(chat id, message id) of each text message the emulator made; whether it is confirmed."""
    return [
        (
            (u["update"]["message"]["chat"]["id"], u["update"]["message"]["message_id"]),
            u["confirmed"],
        )
        for u in await ctl.updates()
        if "message" in u["update"] and "text" in u["update"]["message"]
    ]


async def _confirmed_at_least(ctl: EmulatorClient, count: int) -> bool:
    return int((await ctl.stats())["confirmed"]) >= count


async def test_rejected_token_is_one_clear_line(ctl: EmulatorClient, tidepool: Tidepool):
    code, _, err = await tidepool.command("run", BOT_TOKEN="999:not-this-bot")
    assert code == 2
    last = err.strip().splitlines()[-1]
    assert last.startswith("tidepool: error: BOT_TOKEN was rejected by Telegram")
    assert "not-this-bot" not in err and "Traceback" not in err


async def test_emulator_command_serves_the_bot_api(tidepool: Tidepool, unused_tcp_port: int):
    import asyncio
    import sys

    import aiohttp

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "emulator",
        "--port",
        str(unused_tcp_port),
        env=tidepool.env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{unused_tcp_port}/bot123456:TEST-token/getMe"
    try:
        async with aiohttp.ClientSession() as http:

            async def answers() -> bool:
                try:
                    async with http.get(url) as response:
                        return bool((await response.json())["result"]["id"] == BOT_ID)
                except aiohttp.ClientConnectionError:
                    return False

            await wait_until(answers, 20, "the emulator to answer getMe")
    finally:
        process.terminate()
        await process.wait()


async def test_second_signal_stops_at_once_without_a_traceback(
    ctl: EmulatorClient, tidepool: Tidepool
):
    p = await make_people(ctl)
    chat = (await ctl.create_chat("Tea lovers"))["id"]
    await ctl.set_member(chat, p["Olga"], "creator")
    await tidepool.start(ctl)
    await ctl.set_bot_status(chat, "administrator", by=p["Olga"])
    await ctl.join(chat, p["Alice"])
    await wait_until(lambda: all_confirmed(ctl), what="the bot to fetch every update")
    assert tidepool.process is not None
    tidepool.process.send_signal(signal.SIGTERM)  # as `timeout` or a supervisor may, twice
    code = await tidepool.stop(signal.SIGTERM)
    assert code in (0, 1)
    logs = tidepool.logs()
    assert "Traceback" not in logs
    joined = [e for e in await tidepool.export("events") if e["type"] == "member_joined"]
    assert len(joined) == 1, "what was handled is still written"
