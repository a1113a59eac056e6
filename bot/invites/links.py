"""The invite links of groups: members' personal links, admins' campaigns, and the links of
others that members joined through.

The bot makes its links with `createChatInviteLink` under a name one recognises in Telegram's
list of links ("Tidepool · Alice", "Tidepool # spring"; Telegram allows 32 characters) and
keeps each, so a restart changes nothing and a member asking again gets the same link. Telegram
shows the bot its own links in full in a join, and another admin's with its second half hidden:
such a link is recorded as it was shown, as "another link", and never credited.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import User
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import Clock
from bot.db import INVITE_LINKS, LinkKind, insert_for, writing

NAME_LIMIT = 32  # characters Telegram allows in a link's name
MEMBER_PREFIX = "Tidepool · "
CAMPAIGN_PREFIX = "Tidepool # "
CAMPAIGN_NAME = re.compile(r"^[\w-]{1,20}$")  # letters (any script), digits, _ and -
MEMBER_LIMIT = 99_999  # Telegram's most for a link


@dataclass(frozen=True, slots=True)
class Link:
    """One stored link."""

    id: int
    chat_id: int
    link: str
    kind: LinkKind
    owner_id: int | None
    name: str
    member_limit: int | None
    expires_at: datetime | None
    approval: bool
    created_at: datetime
    revoked_at: datetime | None
    joins: int

    @property
    def credited(self) -> bool:
        """Whether joins through it are referrals (the bot's own links)."""
        return self.kind is not LinkKind.OTHER

    @classmethod
    def of(cls, row: Any) -> Link:
        return cls(
            id=row.id,
            chat_id=row.chat_id,
            link=row.link,
            kind=LinkKind(row.kind),
            owner_id=row.owner_id,
            name=row.name,
            member_limit=row.member_limit,
            expires_at=row.expires_at,
            approval=bool(row.approval),
            created_at=row.created_at,
            revoked_at=row.revoked_at,
            joins=row.joins,
        )


class CampaignError(Exception):
    """A campaign that cannot be made or revoked as asked; `key` is the text that says why."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key, self.values = key, values


def link_name(prefix: str, label: str) -> str:
    """A link's name as Telegram lists it, cut to its 32 characters."""
    name = prefix + " ".join(label.split())
    return name if len(name) <= NAME_LIMIT else name[: NAME_LIMIT - 1] + "…"


class InviteLinks:
    """Makes, finds and revokes the invite links of groups."""

    def __init__(self, engine: AsyncEngine, bot: Bot, clock: Clock) -> None:
        self.engine = engine
        self.bot = bot
        self.clock = clock
        self._making: defaultdict[tuple[int, int], asyncio.Lock] = defaultdict(asyncio.Lock)

    async def personal(self, chat_id: int, user: User) -> Link:
        """The member's own link to the group: the same one each time, made the first time.

        Raises aiogram's TelegramAPIError when Telegram refuses (the bot may not invite)."""
        async with self._making[chat_id, user.id]:
            found = await self.of_member(chat_id, user.id)
            if found is not None:
                return found
            made = await self.bot.create_chat_invite_link(
                chat_id, name=link_name(MEMBER_PREFIX, user.full_name)
            )
            return await self._store(
                chat_id, made.invite_link, LinkKind.MEMBER, user.id, user.full_name
            )

    async def of_member(self, chat_id: int, user_id: int) -> Link | None:
        """The member's own link to the group, if they asked for one."""
        return await self._one(
            INVITE_LINKS.c.chat_id == chat_id,
            INVITE_LINKS.c.kind == LinkKind.MEMBER.value,
            INVITE_LINKS.c.owner_id == user_id,
            INVITE_LINKS.c.revoked_at.is_(None),
        )

    async def campaign(
        self,
        chat_id: int,
        name: str,
        by: int,
        *,
        limit: int | None = None,
        lasts: timedelta | None = None,
        approval: bool = False,
    ) -> Link:
        """Make campaign `name`'s link. Raises CampaignError (a bad or taken name, a limit with
        approval) or aiogram's TelegramAPIError."""
        if not CAMPAIGN_NAME.fullmatch(name):
            raise CampaignError("invite.campaign_bad_name", name=name)
        if limit is not None and not 1 <= limit <= MEMBER_LIMIT:
            raise CampaignError("invite.campaign_bad_limit", most=MEMBER_LIMIT)
        if limit is not None and approval:
            raise CampaignError("invite.campaign_limit_and_approval")
        async with self._making[chat_id, 0]:
            if await self.find_campaign(chat_id, name) is not None:
                raise CampaignError("invite.campaign_exists", name=name)
            expires = self.clock.now() + lasts if lasts is not None else None
            made = await self.bot.create_chat_invite_link(
                chat_id,
                name=link_name(CAMPAIGN_PREFIX, name),
                expire_date=expires,
                member_limit=limit,
                creates_join_request=approval or None,
            )
            return await self._store(
                chat_id,
                made.invite_link,
                LinkKind.CAMPAIGN,
                by,
                name,
                member_limit=limit,
                expires_at=expires,
                approval=approval,
            )

    async def revoke_campaign(self, chat_id: int, name: str) -> Link:
        """Revoke campaign `name` in Telegram and here; CampaignError when there is none."""
        found = await self.find_campaign(chat_id, name)
        if found is None:
            raise CampaignError("invite.campaign_unknown", name=name)
        try:
            await self.bot.revoke_chat_invite_link(chat_id, found.link)
        except TelegramBadRequest as exc:
            # Telegram no longer knows the link (revoked in the app, or expired): it lets
            # nobody in already, so it is revoked here too. Anything else is raised.
            if "INVITE_HASH_EXPIRED" not in str(exc):
                raise
        async with writing(self.engine) as conn:
            await conn.execute(
                update(INVITE_LINKS)
                .where(INVITE_LINKS.c.id == found.id)
                .values(revoked_at=self.clock.now())
            )
        return found

    async def find_campaign(self, chat_id: int, name: str) -> Link | None:
        """The campaign of that name not revoked yet (names compare without case)."""
        links = await self.campaigns(chat_id, revoked=False)
        return next((link for link in links if link.name.casefold() == name.casefold()), None)

    async def campaigns(self, chat_id: int, *, revoked: bool = True) -> list[Link]:
        """The group's campaigns, newest first (with `revoked`, those revoked too)."""
        query = select(INVITE_LINKS).where(
            INVITE_LINKS.c.chat_id == chat_id, INVITE_LINKS.c.kind == LinkKind.CAMPAIGN.value
        )
        if not revoked:
            query = query.where(INVITE_LINKS.c.revoked_at.is_(None))
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(INVITE_LINKS.c.id.desc()))
            return [Link.of(row) for row in rows]

    async def find(self, chat_id: int, link: str) -> Link | None:
        """The stored link a member joined through, as Telegram showed it."""
        return await self._one(INVITE_LINKS.c.chat_id == chat_id, INVITE_LINKS.c.link == link)

    async def joined_through(self, chat_id: int, link: str, name: str | None) -> Link:
        """Count a join through `link`; a link the bot does not know is recorded as another's."""
        counted = (
            update(INVITE_LINKS)
            .where(INVITE_LINKS.c.chat_id == chat_id, INVITE_LINKS.c.link == link)
            .values(joins=INVITE_LINKS.c.joins + 1)
            .returning(*INVITE_LINKS.c)
        )
        recorded = (
            insert_for(self.engine, INVITE_LINKS)
            .values(
                chat_id=chat_id,
                link=link,
                kind=LinkKind.OTHER.value,
                name=name or "",
                approval=False,
                created_at=self.clock.now(),
                joins=1,
            )
            .on_conflict_do_nothing()
            .returning(*INVITE_LINKS.c)
        )
        async with writing(self.engine) as conn:
            row = (await conn.execute(counted)).first() or (await conn.execute(recorded)).first()
            if row is None:  # recorded by another join at the same moment: count this one
                row = (await conn.execute(counted)).one()
        return Link.of(row)

    async def _one(self, *where: Any) -> Link | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(INVITE_LINKS).where(*where).limit(1))).first()
        return Link.of(row) if row is not None else None

    async def _store(
        self,
        chat_id: int,
        link: str,
        kind: LinkKind,
        owner_id: int,
        name: str,
        *,
        member_limit: int | None = None,
        expires_at: datetime | None = None,
        approval: bool = False,
    ) -> Link:
        values = {
            "chat_id": chat_id,
            "link": link,
            "kind": kind.value,
            "owner_id": owner_id,
            "name": name,
            "member_limit": member_limit,
            "expires_at": expires_at,
            "approval": approval,
            "created_at": self.clock.now(),
            "joins": 0,
        }
        async with writing(self.engine) as conn:
            row = (
                await conn.execute(
                    INVITE_LINKS.insert().values(**values).returning(*INVITE_LINKS.c)
                )
            ).one()
        return Link.of(row)
