"""The console for tests: the bot assembled by `bot.factory` (as `tidepool run` assembles it),
Telegram played by the in-process emulator (so "is this person an admin?" gets Telegram's
answer), the console's web application built by `Console`, and browsers as aiohttp clients."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.types import Chat, User
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.clock import ManualClock
from bot.console._web import Console
from bot.db import MemberStatus
from bot.emulator import EmulatorClient, EmulatorServer
from bot.factory import Tidepool
from bot.session import Session
from tests.sop_harness import OWNER, ROOT, START, assembled

TOKEN = "123456:TEST-token"
URL = "http://console.test"
Browser = TestClient[web.Request, web.Application]
CSRF = re.compile(r'<meta name="csrf" content="([^"]*)">')


@dataclass
class ConsoleHarness:
    app: Tidepool
    console: Console
    ctl: EmulatorClient
    clock: ManualClock
    outbox: Any
    server: TestServer
    clients: list[TestClient[web.Request, web.Application]] = field(default_factory=list)

    async def person(self, name: str, user_id: int | None = None) -> User:
        made = await self.ctl.create_user(name, id=user_id, username=name.lower())
        return User(id=made["id"], is_bot=False, first_name=name, username=name.lower())

    async def group(
        self,
        title: str,
        *,
        admins: list[User] = (),  # type: ignore[assignment]
        members: list[User] = (),  # type: ignore[assignment]
        tags: list[str] | None = None,
    ) -> int:
        """A group Telegram and the bot both know, the bot an admin of it, with its people."""
        chat = await self.ctl.create_chat(title)
        chat_id = int(chat["id"])
        await self.ctl.set_member(chat_id, self.app.me.id, "administrator")
        await self.app.registry.save_group(
            Chat(id=chat_id, type="supergroup", title=title), bot_status="administrator"
        )
        if tags:
            await self.app.registry.set_group(chat_id, tags=tags)
        for user, status in [
            *((a, "administrator") for a in admins),
            *((m, "member") for m in members),
        ]:
            await self.ctl.set_member(chat_id, user.id, status)  # type: ignore[arg-type]
            await self.app.registry.member_joined(
                chat_id, user, self.clock.now(), status=MemberStatus(status), source="test"
            )
        return chat_id

    async def client(self) -> Browser:
        """A browser with no session."""
        client = TestClient(self.server)
        await client.start_server()
        self.clients.append(client)
        return client

    async def signed_in(self, user_id: int = OWNER) -> Browser:
        """A browser signed in as `user_id` through a fresh sign-in link."""
        client = await self.client()
        token = await self.console.sign_in.issue_link(user_id)
        answer = await client.post(f"/signin/{token}", allow_redirects=False)
        assert answer.status == 303, await answer.text()
        return client

    async def csrf(self, client: Browser) -> str:
        page = await client.get("/")
        found = CSRF.search(await page.text())
        assert found is not None
        return found.group(1)

    async def send(self, client: Browser, method: str, path: str, body: Any = None) -> Any:
        """A change through the API as the page's script makes it (with the CSRF token)."""
        headers = {"X-CSRF-Token": await self.csrf(client)}
        return await client.request(method, path, json=body, headers=headers)

    def later(self, **delta: float) -> None:
        self.clock.set(self.clock.now() + timedelta(**delta))


@contextlib.asynccontextmanager
async def console_harness(
    db: AsyncEngine, tmp_path: Path, *, sops: Path | None = None, **settings: Any
) -> AsyncIterator[ConsoleHarness]:
    async with EmulatorServer(token=TOKEN) as emulator:
        bot = Bot(
            TOKEN,
            session=Session(emulator.base_url),
            default=DefaultBotProperties(parse_mode="HTML"),
        )
        try:
            me = await bot.get_me()
            clock = ManualClock(START)
            await emulator.client.set_clock(START.timestamp())
            async with assembled(
                db, sops or ROOT / "sops", clock=clock, bot=(bot, me), **settings
            ) as (app, outbox, clock):
                console = Console(app, URL)
                server = TestServer(console.application())
                await server.start_server()
                harness = ConsoleHarness(app, console, emulator.client, clock, outbox, server)
                try:
                    yield harness
                finally:
                    for client in harness.clients:
                        await client.close()
                    await server.close()
        finally:
            await bot.session.close()


__all__ = ["OWNER", "ConsoleHarness", "console_harness"]
