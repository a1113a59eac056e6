"""Assembles the bot: settings, database, dispatcher and routers, polling, and a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import Chat, ErrorEvent, User
from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.admins import Admins
from bot.checkin.boards import Leaderboards
from bot.clock import Clock, ShiftedClock, SystemClock
from bot.db import GroupStatus, create_engine, upgrade, utcnow
from bot.deletions import Deletions
from bot.delivery import Delivery
from bot.handlers import (
    boards,
    broadcasts,
    lives,
    lottery,
    membership,
    points,
    rewards,
    sops,
    stats,
)
from bot.handlers.activity import RecordMessages, RecordPresses
from bot.lottery.service import Lotteries
from bot.points import Ledger
from bot.polling import Poller, TokenRejected, chat_of
from bot.push.lives import Lives
from bot.push.queue import PushQueue
from bot.registry import Registry
from bot.rewards import Rewards
from bot.rights import RightsCheck
from bot.settings import Settings, SettingsError
from bot.sop.admin import SopAdmin
from bot.sop.calendar import Calendar
from bot.sop.engine import Engine
from bot.sop.library import Library, LoadReport
from bot.stats.rollup import Rollup
from bot.stats.service import Analytics
from bot.texts import Texts

ALWAYS_ALLOWED = ["message", "callback_query", "chat_member", "my_chat_member"]


@dataclass
class Services:
    """What handlers need, handed to them through the dispatcher's workflow data."""

    settings: Settings
    engine: AsyncEngine
    activity: ActivityLog
    registry: Registry
    texts: Texts

    def workflow_data(self) -> dict[str, Any]:
        """Only what handlers use: aiogram copies this into every update's context."""
        return {"activity": self.activity, "registry": self.registry}


async def open_services(settings: Settings) -> Services:
    """Open the database (applying migrations), the activity log and the registry."""
    texts = Texts.load(settings.content_dir, settings.language)
    engine = create_engine(settings.database_url)
    await upgrade(engine)
    activity = ActivityLog(engine, store_text=settings.store_text)
    registry = Registry(engine, activity)
    await registry.load()
    return Services(settings, engine, activity, registry, texts)


def create_bot(settings: Settings) -> Bot:
    """The aiogram Bot, talking to Telegram or to TELEGRAM_API_BASE (an emulator or own server)."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base))
    return Bot(
        settings.require_token(), session=session, default=DefaultBotProperties(parse_mode="HTML")
    )


@dataclass
class Operations:
    """The SOP side of the bot, once it is connected: engine, admin commands and replies."""

    engine: Engine
    admins: Admins
    say: sops.Say
    bot_username: str
    rewards: Rewards | None = None  # the catalogue and orders; None: no /rewards, /orders
    lotteries: Lotteries | None = None  # None: no lottery commands
    lives: Lives | None = None  # None: no live or broadcast commands
    broadcasting: broadcasts.Broadcasting | None = None
    analytics: Analytics | None = None  # None: no /stats, /tiers, /forgetme

    def workflow_data(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "admins": self.admins,
            "sop_admin": SopAdmin(self.engine),
            "say": self.say,
            "delivery": self.say.delivery,
            **({"lives": self.lives} if self.lives is not None else {}),
            **({"broadcasting": self.broadcasting} if self.broadcasting is not None else {}),
            **({"analytics": self.analytics} if self.analytics is not None else {}),
            **({"rewards": self.rewards} if self.rewards is not None else {}),
            **({"lotteries": self.lotteries} if self.lotteries is not None else {}),
        }


def create_dispatcher(
    services: Services, rights: RightsCheck, operations: Operations | None = None
) -> Dispatcher:
    """The dispatcher with every router, the activity middlewares and error handlers."""
    extra = operations.workflow_data() if operations is not None else {}
    dispatcher = Dispatcher(
        **services.workflow_data(),
        rights=rights,
        ledger=Ledger(services.engine),
        leaderboards=Leaderboards(services.engine),
        **extra,
    )
    dispatcher.message.outer_middleware(
        RecordMessages(
            services.registry,
            services.activity,
            rights.bot.id,
            engine=operations.engine if operations is not None else None,
            bot_username=operations.bot_username if operations is not None else "",
        )
    )
    dispatcher.callback_query.outer_middleware(RecordPresses(services.activity))
    # Handlers sit on the dispatcher itself: every sub-router costs each update a pass through
    # it (about 7 µs here). Plain group messages stop at RecordMessages; handlers see commands.
    membership.register(dispatcher)
    if operations is not None:
        if operations.rewards is not None:
            rewards.register(dispatcher)  # before sops: its handler takes every other button
        if operations.lotteries is not None:
            lottery.register(dispatcher)
        if operations.lives is not None and operations.broadcasting is not None:
            lives.register(dispatcher)
            broadcasts.register(dispatcher)
        if operations.analytics is not None:
            stats.register(dispatcher)
        sops.register(dispatcher)
        points.register(dispatcher)
        boards.register(dispatcher)

    registry = services.registry

    @dispatcher.errors(ExceptionTypeFilter(TelegramForbiddenError))
    async def forbidden(event: ErrorEvent) -> bool:
        chat_id = chat_of(event.update)
        if chat_id is not None and chat_id < 0:
            await registry.bot_removed(chat_id, GroupStatus.KICKED, str(event.exception))
        return True

    @dispatcher.errors(ExceptionTypeFilter(TelegramMigrateToChat))
    async def migrated(event: ErrorEvent) -> bool:
        exc = event.exception
        chat_id = chat_of(event.update)
        if isinstance(exc, TelegramMigrateToChat) and chat_id is not None:
            new_chat = Chat(id=exc.migrate_to_chat_id, type="supergroup")
            await registry.migrate(chat_id, new_chat, utcnow())
        return True

    @dispatcher.errors()
    async def unexpected(event: ErrorEvent) -> bool:
        logger.bind(chat_id=chat_of(event.update)).opt(exception=event.exception).error(
            "update {} failed: {}", event.update.update_id, event.exception
        )
        return True

    return dispatcher


def allowed_updates(dispatcher: Dispatcher) -> list[str]:
    """Update types to ask Telegram for; `chat_member` must be asked for explicitly."""
    return sorted({*ALWAYS_ALLOWED, *dispatcher.resolve_used_update_types()})


def freeze_startup_heap() -> None:
    """Keep the garbage collector from walking what start-up built, again and again.

    Modules, texts, SOP files and the registry live as long as the process; left to the
    collector, each full collection would walk all of them and stall the loop for a tenth of
    a second or more, just when thousands of runs fall due at once.
    """
    gc.collect()
    gc.freeze()


async def run(settings: Settings) -> None:
    """Run the bot until SIGINT or SIGTERM; then finish handled updates and write every event."""
    stop = asyncio.Event()
    _on_signals(stop)
    services = await open_services(settings)
    bot = create_bot(settings)
    delivery: Delivery | None = None
    engine: Engine | None = None
    deletions: Deletions | None = None
    calendar: Calendar | None = None
    lotteries: Lotteries | None = None
    pushes: PushQueue | None = None
    rollup: Rollup | None = None
    analytics: Analytics | None = None
    review: asyncio.Task[None] | None = None
    try:
        me = await _connect(bot, stop)
        if me is None:
            return
        delivery = Delivery(bot, services.registry, services.engine)
        rights = RightsCheck(delivery, services.registry, services.texts, settings.owner_ids)
        services.registry.discovered = rights.review_group
        clock: Clock = ShiftedClock(settings.clock_file) if settings.clock_file else SystemClock()
        notify = _owner_notices(delivery, services.texts, settings.owner_ids)
        engine = Engine(
            services.engine,
            Library(settings.sops_dir, settings.content_dir),
            services.registry,
            services.activity,
            delivery,
            clock,
            default_timezone=settings.tz,
            default_language=settings.language,
            notify=notify,
        )
        deletions = Deletions(services.engine, delivery, clock)
        engine.on_deletion = deletions.wake
        services.registry.on_member = _member_triggers(engine)
        lotteries = Lotteries(
            services.engine,
            services.registry,
            services.activity,
            delivery,
            services.texts,
            clock,
            default_timezone=settings.tz,
        )
        engine.lotteries = lotteries
        lotteries.on_won = _lottery_won(engine)
        lotteries.ask_member = _member_status(bot)
        pushes = PushQueue(
            services.engine,
            services.registry,
            delivery,
            clock,
            default_zone=settings.tz,
            quiet_hours=settings.quiet_hours,
            daily_cap=settings.daily_cap,
            notify=notify,
        )
        live_sessions = Lives(
            services.engine,
            services.registry,
            services.activity,
            delivery,
            services.texts,
            pushes,
            clock,
            default_zone=settings.tz,
            bot_username=me.username or "",
        )
        pushes.lives = live_sessions
        engine.lives = live_sessions
        await pushes.recover()
        rollup = Rollup(
            services.engine,
            lambda chat_id: services.registry.zone(chat_id, settings.tz),
            flush=services.activity.flush,
        )
        admins = Admins(bot, settings.owner_ids)
        analytics = Analytics(
            services.engine,
            services.registry,
            rollup,
            clock,
            default_zone=settings.tz,
            tiers_path=settings.sops_dir / "tiers.yaml",
            health_drop=settings.health_drop,
            silent_days=settings.health_silent_days,
            emit=_tier_changed(engine),
            alert=_health_alert(delivery, services.texts, services.registry, admins, notify),
        )
        await _report_broken(await engine.open(), notify)
        say = sops.Say(delivery, services.texts, services.registry)
        operations = Operations(
            engine,
            admins,
            say,
            me.username or "",
            Rewards(services.engine, settings.content_dir / "rewards.yaml", timezone=settings.tz),
            lotteries,
            live_sessions,
            broadcasts.Broadcasting(pushes, say, clock),
            analytics,
        )
        dispatcher = create_dispatcher(services, rights, operations)
        _on_reload(engine, notify)
        services.activity.start()
        delivery.start()
        engine.start()
        deletions.start()
        lotteries.start()
        pushes.start()
        rollup.start()
        analytics.start()
        calendar = Calendar(engine, settings.database_url)
        calendar.start()
        services.registry.on_groups_changed = calendar.replan
        logger.info(
            "running as @{} (id {}), {} active groups",
            me.username,
            me.id,
            len(services.registry.active_group_ids()),
        )
        if not me.can_read_all_group_messages:
            logger.warning(
                "privacy mode is on: the bot sees every message only in groups where it is an "
                "administrator (turn it off with @BotFather → Bot Settings → Group Privacy)"
            )
        freeze_startup_heap()
        review = asyncio.create_task(rights.review_all(), name="rights-review")
        poller = Poller(bot, dispatcher, allowed_updates=allowed_updates(dispatcher))
        await poller.run(stop)
        logger.info("stopped after {} updates", poller.handled)
    finally:
        if review is not None:  # also when a second signal cut the stop short
            review.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await review
        if calendar is not None:
            await calendar.close()
        if lotteries is not None:
            await lotteries.close()
        if analytics is not None:
            await analytics.close()
        if rollup is not None:
            await rollup.close()
        if pushes is not None:
            await pushes.halt()
        if engine is not None:
            await engine.drain(grace=5.0)
        if delivery is not None:
            await delivery.close()
            logger.info("delivery closed: {} sent, {} failed", delivery.sent, delivery.failed)
        if pushes is not None:
            await pushes.close()
        if engine is not None:
            await engine.close(grace=5.0)
        if deletions is not None:
            await deletions.close()
        await services.activity.close()
        logger.info("activity log closed: {} events written", services.activity.written)
        await bot.session.close()
        await services.engine.dispose()


async def _connect(bot: Bot, stop: asyncio.Event) -> Any:
    """getMe, retried while Telegram is unreachable; a rejected token is fatal."""
    delay = 1.0
    while not stop.is_set():
        try:
            me = await bot.get_me()
            webhook = await bot.get_webhook_info()
            if webhook.url:
                logger.warning("removing webhook {} to receive updates by polling", webhook.url)
                await bot.delete_webhook()
            return me
        except TelegramUnauthorizedError:
            raise TokenRejected("Unauthorized") from None
        except (TelegramNetworkError, TelegramServerError) as exc:
            logger.error("cannot reach the Bot API ({}); retrying in {:.0f}s", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, 60.0)
    return None


def _owner_notices(delivery: Delivery, texts: Texts, owner_ids: list[int]) -> Any:
    """notify(text_key, **values): a private message to every owner (who started the bot)."""

    async def notify(key: str, **values: Any) -> None:
        text = texts(key, None, **values)
        for owner in owner_ids:
            await delivery.send_message(owner, text, source="sop")

    return notify


async def _report_broken(report: LoadReport, notify: Any) -> None:
    for broken in report.broken:
        await notify(
            "sop.broken_owner",
            file=str(broken.file),
            kept=broken.sop_id,
            problems=broken.summary(10),
        )


def _member_triggers(engine: Engine) -> Any:
    """The registry's news of counted joins and leaves, passed to the SOP engine."""

    async def on_member(change: str, chat_id: int, user: User, _at: datetime) -> None:
        if change == "joined":
            await engine.member_joined(chat_id, user.id)
        else:
            await engine.member_left(chat_id, user.id)

    return on_member


def _member_status(bot: Bot) -> Any:
    """A user's status in a group as Telegram says it (None when it cannot say)."""

    async def status(chat_id: int, user_id: int) -> str | None:
        try:
            member = await bot.get_chat_member(chat_id, user_id)
        except TelegramAPIError as exc:
            logger.bind(chat_id=chat_id).warning("getChatMember {} failed: {}", user_id, exc)
            return None
        return str(getattr(member.status, "value", member.status))  # an enum in aiogram

    return status


def _tier_changed(engine: Engine) -> Any:
    """A member's new tier, passed to the SOP engine as the event `tier.changed`."""

    async def changed(chat_id: int, user_id: int, data: dict[str, Any]) -> None:
        await engine.emit("tier.changed", chat_id, user_id, data)

    return changed


def _health_alert(
    delivery: Delivery, texts: Texts, registry: Registry, admins: Admins, notify: Any
) -> Any:
    """A health alert: privately to each admin of the group (who started the bot) and owner."""

    async def alert(chat_id: int, kind: str, details: dict[str, Any]) -> None:
        known = registry.groups.get(chat_id)
        title = known.title if known is not None and known.title else str(chat_id)
        language = known.language if known is not None else None
        values = {"title": title, **details}
        text = texts(f"stats.alert_{kind}", language, **values)
        people = set(await admins.people_of(chat_id)) - set(admins.owner_ids)
        for person in sorted(people):
            await delivery.send_message(person, text, source="health")
        await notify(f"stats.alert_{kind}", **values)

    return alert


def _lottery_won(engine: Engine) -> Any:
    """Each winner of a draw, passed to the SOP engine as the event `lottery.won`."""

    async def won(chat_id: int, user_id: int, data: dict[str, Any]) -> None:
        await engine.emit("lottery.won", chat_id, user_id, data)

    return won


def _on_reload(engine: Engine, notify: Any) -> None:
    """SIGHUP reloads the SOP files, as /reload does; broken files are reported to owners."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()

    def reload() -> None:
        logger.info("SIGHUP received: reloading SOP files")
        task = loop.create_task(_report_broken(engine.reload_files(), notify))
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)


def _on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def handle(name: str) -> None:
        if stop.is_set():
            logger.warning("{} again: stopping now", name)
            if main is not None:
                main.cancel()
            return
        logger.info("{} received: finishing work in progress, then stopping", name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handle, sig.name)


__all__ = ["SettingsError", "TokenRejected", "allowed_updates", "create_dispatcher", "run"]
