"""The `tag` step: add and remove member tags, in the transaction that moves the runs on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import bindparam, delete

from bot.db import MEMBER_TAGS, insert_for
from bot.sop.format import TagStep
from bot.sop.runs import Run
from bot.sop.steps._base import Cohort, Seen, StepType

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection
    from sqlalchemy.sql import ClauseElement

    from bot.sop.steps._base import Tools

TAG_COLUMNS = ("chat_id", "user_id", "tag", "source", "added_at")

REMOVE_TAG = delete(MEMBER_TAGS).where(
    MEMBER_TAGS.c.chat_id == bindparam("chat_id"),
    MEMBER_TAGS.c.user_id == bindparam("user_id"),
    MEMBER_TAGS.c.tag == bindparam("tag"),
)


def add_tags(conn: AsyncConnection) -> ClauseElement:
    """Tags added to members, a tag already there left as it is."""
    return insert_for(conn, MEMBER_TAGS).values(dict.fromkeys(TAG_COLUMNS)).on_conflict_do_nothing()


class Tag(StepType[TagStep]):
    model = TagStep
    needs_member = "tags need a member; this run is for the whole group"

    async def run(self, cohort: Cohort[TagStep], tools: Tools) -> list[Run]:
        tag, now = cohort.step.tag, cohort.now
        members = [(run.chat_id, run.user_id) for run in cohort.runs]
        source = f"sop:{cohort.procedure.id}"
        bulk = tools.runs.bulk

        async def effects(conn: AsyncConnection) -> None:
            if tag.add and members:
                add = bulk.get("add tags", conn, lambda: add_tags(conn), TAG_COLUMNS)
                rows = [
                    (chat, user, name, source, now) for chat, user in members for name in tag.add
                ]
                await add.execute(conn, rows)
            if tag.remove and members:
                remove = bulk.get(
                    "remove tags", conn, lambda: REMOVE_TAG, ("chat_id", "user_id", "tag")
                )
                gone = [(chat, user, name) for chat, user in members for name in tag.remove]
                await remove.execute(conn, gone)

        return await tools.done(cohort, effects=effects)

    def describe(self, step: TagStep, seen: Seen) -> str:
        tags = step.tag
        return " ".join([*(f"+{t}" for t in tags.add), *(f"-{t}" for t in tags.remove)])
