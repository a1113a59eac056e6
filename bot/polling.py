"""Long polling that keeps each chat's updates in order and stops without losing any.

aiogram's own polling cancels updates that are still being handled when it stops, and never
confirms the last batch, so a restart would see it again. Here every update fetched is handled
to the end before the offset is confirmed to Telegram, updates of one chat run one after the
other (a join is stored before that member's first message), and different chats run side by side.

Presses of a lottery's Enter button are the exception within a chat: such a press waits for
the chat's updates before it, and for the same member's earlier presses, but nothing waits for
it. Thousands of members entering within seconds are then handled side by side (and admitted
in batches) instead of one after the other. Other buttons keep the chat's order: a flow's
buttons rely on it (two members pressing a group-wide flow's button start one run).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.exceptions import (
    TelegramConflictError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.methods import GetUpdates
from aiogram.types import Update
from loguru import logger

SIDE_BY_SIDE = ("lottery:enter:",)  # button data whose presses need no chat order


class TokenRejected(Exception):
    """Telegram says the bot token is not valid."""


def chat_of(update: Update) -> int | None:
    """The chat an update belongs to, if any."""
    event = update.message or update.edited_message or update.chat_member or update.my_chat_member
    if event is not None:
        return event.chat.id
    query = update.callback_query
    if query is not None and query.message is not None:
        return query.message.chat.id
    return None


class Poller:
    """Fetches updates with getUpdates and feeds them to the dispatcher."""

    def __init__(
        self,
        bot: Bot,
        dispatcher: Dispatcher,
        *,
        allowed_updates: list[str],
        timeout: int = 30,
        drain_timeout: float = 30.0,
        **workflow_data: Any,
    ) -> None:
        self.bot = bot
        self.dispatcher = dispatcher
        self.allowed_updates = allowed_updates
        self.timeout = timeout
        self.drain_timeout = drain_timeout
        self.workflow_data = workflow_data
        self.offset: int | None = None
        self.handled = 0
        # The last task of each chat, and of each member's presses in a chat.
        self._tails: dict[int | tuple[int, int], asyncio.Task[None]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set, then finish what was fetched and confirm it."""
        delay = 1.0
        try:
            while not stop.is_set():
                try:
                    updates = await self._fetch(stop)
                except TelegramUnauthorizedError as exc:
                    raise TokenRejected(exc.message) from None
                except TelegramRetryAfter as exc:
                    await _sleep_unless(stop, exc.retry_after)
                    continue
                except (TelegramNetworkError, TelegramServerError, TelegramConflictError) as exc:
                    logger.error("getUpdates failed ({}); retrying in {:.0f}s", exc, delay)
                    await _sleep_unless(stop, delay)
                    delay = min(delay * 2, 60.0)
                    continue
                delay = 1.0
                if updates is None:
                    break
                for update in updates:
                    self._submit(update)
                    self.offset = update.update_id + 1
        finally:
            await self._drain()
        await self._confirm()

    async def _fetch(self, stop: asyncio.Event) -> list[Update] | None:
        """One getUpdates call, abandoned (returning None) as soon as `stop` is set."""
        method = GetUpdates(
            offset=self.offset, timeout=self.timeout, allowed_updates=self.allowed_updates
        )
        fetch = asyncio.ensure_future(self.bot(method, request_timeout=self.timeout + 30))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # stopping at once: the request must not outlive us
            fetch.cancel()
            raise
        finally:
            stopped.cancel()
        if not fetch.done():
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await fetch
            return None
        return fetch.result()

    def _submit(self, update: Update) -> None:
        key = chat_of(update)
        tail: int | tuple[int, int] | None = key
        waits_for: list[asyncio.Task[None]] = []
        if key is not None:
            if key in self._tails:
                waits_for.append(self._tails[key])
            query = update.callback_query
            if query is not None and (query.data or "").startswith(SIDE_BY_SIDE):
                tail = (key, query.from_user.id)  # see the module docstring
                if tail in self._tails:
                    waits_for.append(self._tails[tail])
        task = asyncio.create_task(self._handle(update, key, tail, waits_for))
        if tail is not None:
            self._tails[tail] = task
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _handle(
        self,
        update: Update,
        key: int | None,
        tail: int | tuple[int, int] | None,
        waits_for: list[asyncio.Task[None]],
    ) -> None:
        if waits_for:
            await asyncio.wait(waits_for)
        try:
            with logger.contextualize(chat_id=key):
                await self.dispatcher.feed_update(self.bot, update, **self.workflow_data)
        except Exception:
            logger.bind(chat_id=key).exception("update {} failed", update.update_id)
        finally:
            self.handled += 1
            current = asyncio.current_task()
            if tail is not None and self._tails.get(tail) is current:
                del self._tails[tail]

    async def _drain(self) -> None:
        """Wait for updates still being handled."""
        if not self._running:
            return
        logger.info("finishing {} updates in progress", len(self._running))
        _, pending = await asyncio.wait(set(self._running), timeout=self.drain_timeout)
        if pending:
            logger.error(
                "{} updates did not finish within {:.0f}s", len(pending), self.drain_timeout
            )

    async def _confirm(self) -> None:
        """Confirm every fetched update to Telegram, so none is sent again after a restart."""
        if self.offset is None:
            return
        try:
            await self.bot(GetUpdates(offset=self.offset, limit=1, timeout=0), request_timeout=3)
        except Exception as exc:  # the updates come again on the next start: logged, not fatal
            logger.warning("could not confirm handled updates: {}", exc)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
