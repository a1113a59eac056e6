"""Dry mode's daily summary: what moderation would have done in a group the day before, told to
its admins once a day at the group's `summary_at`, and only when there was anything."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta

from loguru import logger

from bot.moderation.service import Moderation
from bot.periodic import Background

LOOK_EVERY = timedelta(minutes=15)  # by the clock: a moved clock is noticed at once


class DrySummaries(Background):
    """Sends each dry-mode group's summary when it falls due (see the module's doc)."""

    name = "moderation summaries"

    def __init__(self, moderation: Moderation) -> None:
        super().__init__()
        self.moderation = moderation
        self.store = moderation.store
        self.clock = moderation.clock
        self._wake = asyncio.Event()

    async def _run(self) -> None:
        while True:
            try:
                await self.send_due(self.clock.now())
            except Exception:
                logger.exception("moderation: dry summaries failed; trying again later")
            self._wake.clear()
            await self.clock.wait(self._wake, LOOK_EVERY.total_seconds())

    def due_at(self, chat_id: int, now: datetime) -> datetime:
        """The latest summary moment of the group at or before `now`."""
        zone = self.moderation.zones(chat_id)
        local = now.astimezone(zone)
        at = self.moderation.rules(chat_id).summary_at
        moment = local.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
        if moment > local:
            moment -= timedelta(days=1)
        return moment

    async def send_due(self, now: datetime) -> int:
        """Send the summaries due by `now`; how many went."""
        sent = 0
        for chat_id in self.moderation.dry_groups():
            due = self.due_at(chat_id, now)
            last, _told = await self.store.group_marks(chat_id)
            if last is not None and last >= due:
                continue
            actions = await self.store.between(chat_id, due - timedelta(days=1), due)
            counts = Counter(action.action for action in actions if action.dry)
            await self.store.mark_summary(chat_id, now)
            if not counts:
                continue
            lines = ", ".join(f"{action} × {count}" for action, count in sorted(counts.items()))
            members = len({action.user_id for action in actions if action.dry and action.user_id})
            await self.moderation.tell_admins(
                chat_id,
                "moderation.dry_summary",
                {"actions": lines, "total": sum(counts.values()), "members": members},
            )
            sent += 1
        return sent
