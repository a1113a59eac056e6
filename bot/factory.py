"""Builds the whole application from settings, a Bot and a clock: the one assembly.

`tidepool run`, `tidepool simulate`, the test harnesses and the benchmarks all build the bot
here, so what a test exercises is the production wiring; they replace only Telegram (a Bot
pointed at the emulator, or a recording outbox in place of the delivery service) and the clock.
Every service gets its collaborators in its constructor. Services that act on what another one
saw (joins, reloads, lottery winners) share one `Bus`. Shutdown is one `AsyncExitStack`: the
last thing started is the first stopped, and each step runs even when an earlier one failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError, TelegramMigrateToChat
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import Chat, ErrorEvent, User
from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.admins import Admins
from bot.checkin.boards import Leaderboards
from bot.clock import Clock
from bot.db import GroupStatus, create_engine, upgrade, utcnow
from bot.deletions import Deletions
from bot.delivery import Delivery
from bot.events import Bus
from bot.handlers import boards, broadcasts, lives, lottery, membership, points, rewards, sops
from bot.handlers import stats as stats_handlers
from bot.handlers.activity import RecordMessages, RecordPresses, handled_commands
from bot.lottery.service import Lotteries
from bot.points import Ledger
from bot.polling import chat_of
from bot.push.lives import Lives
from bot.push.queue import Doorbell, PushQueue
from bot.registry import Registry
from bot.rewards import Rewards
from bot.rights import RightsCheck
from bot.settings import Settings
from bot.sop.admin import SopAdmin
from bot.sop.calendar import Calendar
from bot.sop.engine import Engine
from bot.sop.library import Library, LoadReport
from bot.stats.rollup import Rollup
from bot.stats.service import Analytics
from bot.texts import Texts

Notify = Callable[..., Awaitable[None]]  # notify(text_key, **values): tell the owners


@dataclass(frozen=True)
class Tidepool:
    """The assembled application: every service, and the dispatcher that feeds them updates."""

    settings: Settings
    bot: Bot
    me: User
    clock: Clock
    db: AsyncEngine
    bus: Bus
    texts: Texts
    activity: ActivityLog
    registry: Registry
    delivery: Delivery
    rights: RightsCheck
    admins: Admins
    notify: Notify
    engine: Engine
    deletions: Deletions
    lotteries: Lotteries
    pushes: PushQueue
    lives: Lives
    rollup: Rollup
    analytics: Analytics
    rewards: Rewards
    calendar: Calendar
    dispatcher: Dispatcher


def create_bot(settings: Settings) -> Bot:
    """The aiogram Bot, talking to Telegram or to TELEGRAM_API_BASE (an emulator or own server)."""
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base))
    return Bot(
        settings.require_token(), session=session, default=DefaultBotProperties(parse_mode="HTML")
    )


async def open_database(settings: Settings) -> AsyncEngine:
    """The database, migrated to the newest schema."""
    db = create_engine(settings.database_url)
    await upgrade(db)
    return db


@contextlib.asynccontextmanager
async def assemble(
    settings: Settings, bot: Bot, clock: Clock, me: User, *, db: AsyncEngine | None = None
) -> AsyncIterator[Tidepool]:
    """Build, open and start the application; stop everything in order on the way out.

    `me` is the bot's own user (getMe). `db`, when given, is an open, migrated database that
    the caller keeps (a benchmark that filled it beforehand); otherwise one is opened from
    `settings.database_url` and disposed of at the end.
    """
    async with contextlib.AsyncExitStack() as stack:
        if db is None:
            db = await open_database(settings)
            stack.push_async_callback(db.dispose)
        app = await _build(settings, bot, clock, me, db)
        await _start(app, stack)
        yield app


async def _build(settings: Settings, bot: Bot, clock: Clock, me: User, db: AsyncEngine) -> Tidepool:
    zone = settings.tz
    bus = Bus()
    texts = Texts.load(settings.content_dir, settings.language)
    activity = ActivityLog(db, store_text=settings.store_text)
    registry = Registry(db, activity, bus)
    await registry.load()
    delivery = Delivery(bot, registry, db)
    rights = RightsCheck(delivery, registry, texts, settings.owner_ids, bus)
    admins = Admins(bot, settings.owner_ids)
    notify = owner_notices(delivery, texts, settings.owner_ids)
    deletions = Deletions(db, delivery, clock)
    lotteries = Lotteries(
        db,
        registry,
        activity,
        delivery,
        texts,
        clock,
        bus=bus,
        ask_member=member_status(bot),
        default_timezone=zone,
    )
    doorbell = Doorbell()
    live_sessions = Lives(
        db,
        registry,
        activity,
        delivery,
        texts,
        doorbell,
        clock,
        default_zone=zone,
        bot_username=me.username or "",
    )
    pushes = PushQueue(
        db,
        registry,
        delivery,
        clock,
        lives=live_sessions,
        doorbell=doorbell,
        notify=notify,
        default_zone=zone,
        quiet_hours=settings.quiet_hours,
        daily_cap=settings.daily_cap,
    )
    engine = Engine(
        db,
        Library(settings.sops_dir, settings.content_dir),
        registry,
        activity,
        delivery,
        clock,
        bus=bus,
        lotteries=lotteries,
        lives=live_sessions,
        pushes=pushes,
        deletions=deletions,
        notify=notify,
        default_timezone=zone,
        default_language=settings.language,
    )
    rollup = Rollup(db, lambda chat_id: registry.zone(chat_id, zone), flush=activity.flush)
    analytics = Analytics(
        db,
        registry,
        rollup,
        clock,
        bus=bus,
        alert=health_alert(delivery, texts, registry, admins, notify),
        default_zone=zone,
        tiers_path=settings.sops_dir / "tiers.yaml",
        health_drop=settings.health_drop,
        silent_days=settings.health_silent_days,
    )
    catalogue = Rewards(db, settings.content_dir / "rewards.yaml", timezone=zone)
    calendar = Calendar(engine, settings.database_url, bus)
    say = sops.Say(delivery, texts, registry)
    dispatcher = create_dispatcher(
        registry,
        activity,
        me,
        rights=rights,
        engine=engine,
        admins=admins,
        sop_admin=SopAdmin(engine),
        say=say,
        delivery=delivery,
        lives=live_sessions,
        broadcasting=broadcasts.Broadcasting(pushes, say, clock),
        analytics=analytics,
        rewards=catalogue,
        lotteries=lotteries,
        ledger=Ledger(db),
        leaderboards=Leaderboards(db),
    )
    return Tidepool(
        settings=settings,
        bot=bot,
        me=me,
        clock=clock,
        db=db,
        bus=bus,
        texts=texts,
        activity=activity,
        registry=registry,
        delivery=delivery,
        rights=rights,
        admins=admins,
        notify=notify,
        engine=engine,
        deletions=deletions,
        lotteries=lotteries,
        pushes=pushes,
        lives=live_sessions,
        rollup=rollup,
        analytics=analytics,
        rewards=catalogue,
        calendar=calendar,
        dispatcher=dispatcher,
    )


async def _start(app: Tidepool, stack: contextlib.AsyncExitStack) -> None:
    """Open what needs the database, then start every loop; each stop is pushed as it starts.

    The exit stack runs them backwards: the calendar and the loops that start work stop first,
    then the engine finishes what it has in hand, the delivery service sends what it holds,
    and the activity log writes every event last.
    """
    stack.push_async_callback(_close_activity, app.activity)
    app.activity.start()
    await app.pushes.recover()
    await report_broken(await app.engine.open(), app.notify)
    app.deletions.start()
    stack.push_async_callback(app.deletions.close)
    app.engine.start()
    stack.push_async_callback(app.engine.close, 5.0)
    app.pushes.start()
    stack.push_async_callback(app.pushes.close)
    app.delivery.start()
    stack.push_async_callback(_close_delivery, app.delivery)
    stack.push_async_callback(app.engine.drain, 5.0)
    stack.push_async_callback(app.pushes.halt)
    stack.push_async_callback(app.bus.settle)
    app.rollup.start()
    stack.push_async_callback(app.rollup.close)
    app.analytics.start()
    stack.push_async_callback(app.analytics.close)
    app.lotteries.start()
    stack.push_async_callback(app.lotteries.close)
    app.calendar.start()
    stack.push_async_callback(app.calendar.close)


async def _close_delivery(delivery: Delivery) -> None:
    await delivery.close()
    logger.info("delivery closed: {} sent, {} failed", delivery.sent, delivery.failed)


async def _close_activity(activity: ActivityLog) -> None:
    await activity.close()
    logger.info("activity log closed: {} events written", activity.written)


def create_dispatcher(
    registry: Registry, activity: ActivityLog, me: User, **services: Any
) -> Dispatcher:
    """The dispatcher with every router, the activity middlewares and error handlers.

    `services` become the handlers' workflow data (`engine`, `say`, `rights`, …); aiogram hands
    each handler those it names.
    """
    dispatcher = Dispatcher(activity=activity, registry=registry, **services)
    # Handlers sit on the dispatcher itself: every sub-router costs each update a pass through
    # it (about 7 µs here). Plain group messages stop at RecordMessages; handlers see the
    # commands they take.
    membership.register(dispatcher)
    rewards.register(dispatcher)  # before sops: its handler takes every other button
    lottery.register(dispatcher)
    lives.register(dispatcher)
    broadcasts.register(dispatcher)
    stats_handlers.register(dispatcher)
    sops.register(dispatcher)
    points.register(dispatcher)
    boards.register(dispatcher)
    dispatcher.message.outer_middleware(
        RecordMessages(
            registry,
            activity,
            me.id,
            engine=services["engine"],
            bot_username=me.username or "",
            commands=handled_commands(dispatcher),
        )
    )
    dispatcher.callback_query.outer_middleware(RecordPresses(activity))

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


def owner_notices(delivery: Delivery, texts: Texts, owner_ids: list[int]) -> Notify:
    """notify(text_key, **values): a private message to every owner (who started the bot)."""

    async def notify(key: str, **values: Any) -> None:
        text = texts(key, None, **values)
        for owner in owner_ids:
            await delivery.send_message(owner, text, source="sop")

    return notify


async def report_broken(report: LoadReport, notify: Notify) -> None:
    """Tell the owners of every SOP file that could not be loaded, and what is wrong with it."""
    for broken in report.broken:
        await notify(
            "sop.broken_owner",
            file=str(broken.file),
            kept=broken.sop_id,
            problems=broken.summary(10),
        )


def member_status(bot: Bot) -> Callable[[int, int], Awaitable[str | None]]:
    """A user's status in a group as Telegram says it (None when it cannot say)."""

    async def status(chat_id: int, user_id: int) -> str | None:
        try:
            member = await bot.get_chat_member(chat_id, user_id)
        except TelegramAPIError as exc:
            logger.bind(chat_id=chat_id).warning("getChatMember {} failed: {}", user_id, exc)
            return None
        return str(getattr(member.status, "value", member.status))  # an enum in aiogram

    return status


def health_alert(
    delivery: Delivery, texts: Texts, registry: Registry, admins: Admins, notify: Notify
) -> Callable[[int, str, dict[str, Any]], Awaitable[None]]:
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
