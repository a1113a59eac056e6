"""Delivery benchmark: many messages to many groups through `Delivery`, against the emulator with
Telegram's flood limits on, compared with the most those limits allow.

    python -m bench.delivery [--groups 100] [--messages 1000] [--per-second 28]

The bot runs as `tidepool run` assembles it (bot.factory), with no SOP that could send anything
of its own, and the messages go through its delivery service. They are spread evenly over the
groups and all asked for at once. The best possible rate is min(per_second, groups × 20 / 60)
messages a second; a good run comes close to it with no 429 at all. The run stops by itself
after a generous deadline. `--per-second` other than the bot's own pace times a delivery
service with that pace, over the bot's own Bot, registry and database.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench._app import TOKEN, running, seed_chats
from bot.clock import SystemClock
from bot.delivery import Delivered, Delivery
from bot.emulator import EmulatorServer


async def run(groups: int, messages: int, per_second: float | None, folder: Path) -> None:
    chats = [(-1001000000000 - n, f"Group {n}") for n in range(groups)]
    chat_ids = [chat_id for chat_id, _ in chats]
    async with EmulatorServer(token=TOKEN) as server:
        ctl = server.client
        seed_chats(server, chats, bot_status="member")
        await ctl.set_rate_limits(True)
        async with running(
            server,
            folder,
            SystemClock(),
            sops={},
            groups=chats,
            group_columns={"bot_status": "member"},
        ) as app:
            assert app.delivery is not None  # Telegram is the emulator: the real service
            delivery = app.delivery
            if per_second is not None and per_second != delivery.per_second:
                delivery = Delivery(app.bot, app.registry, app.db, per_second=per_second)
            limit = min(delivery.per_second, groups * delivery.per_group_minute / 60)
            deadline = messages / limit * 2 + 60
            delivery.start()
            began = time.perf_counter()
            sends = [
                asyncio.ensure_future(
                    delivery.send_message(chat_ids[i % groups], f"message {i}", source="bench")
                )
                for i in range(messages)
            ]
            done, late = await asyncio.wait(sends, timeout=deadline)
            elapsed = time.perf_counter() - began
            await delivery.close(grace=0)  # what is still queued at the deadline fails
            results: list[Delivered] = [task.result() for task in (*done, *late)]
            calls = await ctl.calls(method="sendMessage")

    sent = sum(r.ok for r in results)
    retried = sum(r.attempts > 1 for r in results)
    rejected = sum(call.get("error_code") == 429 for call in calls)
    rate = sent / elapsed
    print(f"load:             {messages:,} messages to {groups} groups, emulator limits on")
    print(
        f"sent:             {sent:,} in {elapsed:.1f}s ({len(late)} still queued at the deadline)"
    )
    print(f"achieved:         {rate:.1f} messages/s")
    print(
        f"limit:            {limit:.1f} messages/s = min({delivery.per_second:g}/s, "
        f"{groups} × 20/min)"
    )
    print(f"ratio:            {rate / limit:.2f} of the limit")
    print(f"429 answers:      {rejected} ({retried} messages needed more than one attempt)")
    print(f"recorded:         {delivery.recorded:,} deliveries")


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument(
        "--per-second", type=float, default=None, help="default: the bot's own pace (28)"
    )
    args = parser.parse_args()

    from bot.logs import setup_logging

    setup_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        await run(args.groups, args.messages, args.per_second, Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
