"""Builds the whole application from settings, a Bot and a clock: the one assembly.

`tidepool run`, `tidepool simulate`, the test harnesses and the benchmarks all build the bot
here, so what a test exercises is the production wiring; they replace only Telegram (a Bot
pointed at the emulator, or a recording outbox in place of the delivery service) and the clock.
On a manual clock the caller runs what falls due itself (`loops=False`), step by step.
Every service gets its collaborators in its constructor. Services that act on what another one
saw (joins, reloads, lottery winners) share one `Bus`. Shutdown is one `AsyncExitStack`: the
last thing started is the first stopped, and each step runs even when an earlier one failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError, TelegramMigrateToChat
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import Chat, ErrorEvent, User
from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.activity import ActivityLog
from bot.admins import Admins
from bot.checkin.boards import Leaderboards
from bot.clock import Clock
from bot.console._access import Access
from bot.console._auth import SignIn
from bot.db import GroupStatus, PushKind, create_engine, upgrade, utcnow
from bot.deletions import Deletions
from bot.delivery import Delivery
from bot.events import Bus
from bot.handlers import (
    boards,
    broadcasts,
    console,
    invites,
    lives,
    lottery,
    membership,
    points,
    rewards,
    sops,
)
from bot.handlers import moderation as moderation_handlers
from bot.handlers import stats as stats_handlers
from bot.handlers.activity import RecordMessages, RecordPresses, handled_commands
from bot.invites import InviteLinks, Invites, JoinRequests, Referrals
from bot.lottery.service import Lotteries
from bot.moderation.checks import load_checks
from bot.moderation.review import Review
from bot.moderation.screening import Screening
from bot.moderation.service import Moderation
from bot.moderation.store import ModerationStore
from bot.moderation.summary import DrySummaries
from bot.outbox import Outbox
from bot.points import Ledger
from bot.polling import chat_of
from bot.push.lives import LIVE_KINDS, Lives
from bot.push.queue import PushQueue
from bot.push.rows import Courier, Doorbell
from bot.push.wire import WireNotes, wire_notes_path
from bot.registry import Registry
from bot.rewards import Rewards
from bot.rights import RightsCheck
from bot.session import Session
from bot.settings import Settings
from bot.sop.admin import SopAdmin
from bot.sop.calendar import Calendar
from bot.sop.engine import Engine
from bot.sop.library import Library, LoadReport
from bot.stats.review import Reviews
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
    outbox: Outbox  # what every service sends through: `delivery`, or a fake passed in
    delivery: Delivery | None  # the delivery service; None when Telegram's side is a fake
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
    invites: Invites  # invite links, referrals and requests to join
    moderation: Moderation  # actions, modes, newcomers' approval
    screening: Screening  # newcomers' first messages through the checks
    summaries: DrySummaries  # dry mode's daily summary to the admins
    sign_in: SignIn  # the console's sign-in links, sessions and API tokens
    console_access: Access  # who may see which group in the console
    dispatcher: Dispatcher


def create_bot(settings: Settings) -> Bot:
    """The aiogram Bot, talking to Telegram or to TELEGRAM_API_BASE (an emulator or own server)."""
    return Bot(
        settings.require_token(),
        session=Session(settings.telegram_api_base),
        default=DefaultBotProperties(parse_mode="HTML"),
    )


async def open_database(settings: Settings) -> AsyncEngine:
    """The database, migrated to the newest schema."""
    db = create_engine(settings.database_url)
    await upgrade(db)
    return db


@contextlib.asynccontextmanager
async def assemble(
    settings: Settings,
    bot: Bot,
    clock: Clock,
    me: User,
    *,
    db: AsyncEngine | None = None,
    outbox: Outbox | None = None,
    loops: bool = True,
) -> AsyncIterator[Tidepool]:
    """Build, open and start the application; stop everything in order on the way out.

    `me` is the bot's own user (getMe). `db`, when given, is an open, migrated database that
    the caller keeps (a benchmark that filled it beforehand); otherwise one is opened from
    `settings.database_url` and disposed of at the end. `outbox`, when given, plays Telegram's
    outbound side in place of the delivery service (`tidepool simulate`, unit tests); `bot`
    still answers what services ask Telegram. With `loops=False` nothing runs in the
    background (timer, push queue, lotteries, analytics, calendar, writers): the caller moves
    its manual clock and runs what falls due itself, so a dry run is the same every time.
    """
    async with contextlib.AsyncExitStack() as stack:
        if db is None:
            db = await open_database(settings)
            _on_stop(stack, "database", db.dispose)
        app = await _build(settings, bot, clock, me, db, outbox)
        await _start(app, stack, loops)
        yield app


async def _build(
    settings: Settings, bot: Bot, clock: Clock, me: User, db: AsyncEngine, fake: Outbox | None
) -> Tidepool:
    zone = settings.tz
    bus = Bus()
    texts = Texts.load(settings.content_dir, settings.language)
    activity = ActivityLog(db, store_text=settings.store_text)
    registry = Registry(db, activity, bus)
    await registry.load()
    delivery: Delivery | None = None
    outbox: Outbox
    if fake is None:
        outbox = delivery = Delivery(bot, registry, db)
    else:
        outbox = fake
    rights = RightsCheck(bot, outbox, registry, texts, settings.owner_ids, bus)
    admins = Admins(bot, settings.owner_ids)
    notify = owner_notices(outbox, texts, settings.owner_ids)
    deletions = Deletions(db, outbox, clock)
    doorbell = Doorbell()  # rung by whoever adds pushes: the push queue looks at once
    tell_admins = admin_notice(outbox, texts, registry, admins, notify)
    zones = partial(_zone_of, registry, zone)
    # Before the engine, so a joiner's approval is known when the join check starts. Its rule
    # is the groups' SOPs' (`moderation` sections), read when asked: the engine is built next.
    moderation = Moderation(
        ModerationStore(db),
        outbox,
        clock,
        admins,
        bus,
        rules=lambda chat_id: engine.moderation_rule(chat_id),
        zones=zones,
        tell_admins=tell_admins,
    )
    review = Review(moderation, load_checks(settings.content_dir), registry, texts, deletions)
    screening = Screening(moderation, review.checks, review, me.username or "")
    lotteries = Lotteries(
        db,
        registry,
        activity,
        outbox,
        texts,
        clock,
        bus=bus,
        pushes=doorbell,
        ask_member=member_status(bot),
        default_timezone=zone,
    )
    live_sessions = Lives(
        db,
        registry,
        activity,
        outbox,
        texts,
        doorbell,
        clock,
        default_zone=zone,
        bot_username=me.username or "",
    )
    rollup = Rollup(db, lambda chat_id: registry.zone(chat_id, zone), flush=activity.flush)
    engine = Engine(
        db,
        Library(settings.sops_dir, settings.content_dir),
        registry,
        activity,
        outbox,
        clock,
        bus=bus,
        lotteries=lotteries,
        lives=live_sessions,
        pushes=doorbell,
        deletions=deletions,
        admins=admins,
        reviews=Reviews(db, rollup),
        moderation=moderation,
        notify=notify,
        default_timezone=zone,
        default_language=settings.language,
    )
    pushes = PushQueue(
        db,
        registry,
        outbox,
        clock,
        couriers=couriers(outbox, settings, engine, lotteries, live_sessions),
        wire=WireNotes(wire_notes_path(settings.database_url, settings.data_dir)),
        doorbell=doorbell,
        notify=notify,
        default_zone=zone,
        quiet_hours=settings.quiet_hours,
        daily_cap=settings.daily_cap,
    )
    analytics = Analytics(
        db,
        registry,
        rollup,
        clock,
        bus=bus,
        alert=health_alert(tell_admins),
        moderation_log=moderation.store,
        default_zone=zone,
        tiers_path=settings.sops_dir / "tiers.yaml",
        health_drop=settings.health_drop,
        silent_days=settings.health_silent_days,
    )
    invitations = invite_service(
        db,
        bot,
        clock,
        bus,
        activity,
        engine,
        zones,
        tell_admins,
    )
    catalogue = Rewards(db, settings.content_dir / "rewards.yaml", timezone=zone)
    calendar = Calendar(engine, settings.database_url, clock, bus)
    say = sops.Say(outbox, texts, registry)
    sign_in = SignIn(db, clock, bot.token)
    access = Access(db, bot, settings.owner_ids)
    dispatcher = create_dispatcher(
        registry,
        activity,
        me,
        rights=rights,
        engine=engine,
        admins=admins,
        sop_admin=SopAdmin(engine),
        say=say,
        delivery=outbox,
        lives=live_sessions,
        broadcasting=broadcasts.Broadcasting(pushes, say, clock),
        analytics=analytics,
        rewards=catalogue,
        lotteries=lotteries,
        ledger=Ledger(db),
        leaderboards=Leaderboards(db),
        console_links=console.Links(sign_in, access, settings.console_public_url),
        invites=invitations,
        deletions=deletions,
        moderation=moderation,
        screening=screening,
        review=review,
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
        outbox=outbox,
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
        invites=invitations,
        moderation=moderation,
        screening=screening,
        summaries=DrySummaries(moderation),
        sign_in=sign_in,
        console_access=access,
        dispatcher=dispatcher,
    )


async def _start(app: Tidepool, stack: contextlib.AsyncExitStack, loops: bool) -> None:
    """Open what needs the database, then start every loop (`loops`); push each stop.

    The exit stack runs them backwards: the calendar and the loops that start work stop first,
    then the engine finishes what it has in hand, the delivery service sends what it holds,
    and the activity log writes every event last. Each stop step has a deadline (`STOPS`), so
    the whole stop takes at most their sum.
    """
    on_stop = partial(_on_stop, stack)
    on_stop("activity log", _close_activity, app.activity)
    await report_broken(await app.engine.open(), app.notify)
    await app.pushes.recover()  # after the engine: runs whose message was interrupted go on
    await app.moderation.load()
    await app.screening.load()
    on_stop("deletions", app.deletions.close)
    on_stop("engine", app.engine.close, 1.0)
    on_stop("push queue", app.pushes.close, PUSH_GRACE)
    if app.delivery is not None:
        on_stop("delivery", _close_delivery, app.delivery)
    on_stop("engine drain", app.engine.drain, ENGINE_GRACE)
    on_stop("push queue halt", app.pushes.halt)
    on_stop("bus", app.bus.settle)
    on_stop("rollup", app.rollup.close)
    on_stop("analytics", app.analytics.close)
    on_stop("lotteries", app.lotteries.close)
    on_stop("calendar", app.calendar.close)
    on_stop("referrals", app.invites.referrals.close)
    on_stop("moderation summaries", app.summaries.close)
    on_stop("moderation verdicts", app.screening.close)
    if loops:
        app.activity.start()
        app.deletions.start()
        app.engine.start()
        app.pushes.start()
        if app.delivery is not None:
            app.delivery.start()
        app.rollup.start()
        app.analytics.start()
        app.lotteries.start()
        app.calendar.start()
        app.invites.referrals.start()
        app.summaries.start()
        app.screening.start()


# Seconds each step of a stop may take: at most their sum (46 s) in all, after the poller's
# wait for the updates in hand (`bot.app.UPDATES_GRACE`). A step that overruns is cut short
# and named in the log; what it left is what a crash leaves, and the next start recovers it:
# untried pushes go back to pending, runs resume where they were, a send on the wire is
# marked interrupted. Steps that only stop a loop get a second; those that finish work more.
ENGINE_GRACE = 3.0  # for the runs in hand (and again for the owners' notices of failures)
DELIVERY_GRACE = 5.0  # for the messages the delivery service holds (28 a second)
PUSH_GRACE = 3.0  # for pushes to record how they ended, once the delivery service has closed
STOPS = {
    "moderation verdicts": 2.0,  # the verdicts in hand, in one write
    "moderation summaries": 1.0,
    "referrals": 1.0,
    "calendar": 2.0,  # fires in hand
    "lotteries": 1.0,
    "analytics": 1.0,
    "rollup": 1.0,
    "bus": 2.0,  # joins and leaves in hand
    "push queue halt": 1.0,
    "engine drain": 2 * ENGINE_GRACE + 1.0,
    "delivery": DELIVERY_GRACE + 3.0,  # then its records are written
    "push queue": PUSH_GRACE + 1.0,
    "engine": 3.0,  # what the drain left: waited for a second more, then cancelled
    "deletions": 1.0,
    "activity log": 10.0,  # every event, in one write
    "database": 1.0,
}


def _on_stop(
    stack: contextlib.AsyncExitStack, name: str, stop: Callable[..., Awaitable[Any]], *args: Any
) -> None:
    stack.push_async_callback(_stopping, name, stop, *args)


async def _stopping(name: str, stop: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """One step of the stop, cut short after its deadline.

    Not `asyncio.wait_for`: it waits for the step to end after cancelling it, and a step that
    swallows the cancellation (closes that await their own cancelled loop) would hold it."""
    began = time.monotonic()
    step = asyncio.ensure_future(stop(*args))
    await asyncio.wait({step}, timeout=STOPS[name])
    if not step.done():
        step.cancel()
        logger.error("stopping: {} did not finish within {:.0f} s; cut short", name, STOPS[name])
        return
    took = time.monotonic() - began
    if took >= 0.5:
        logger.info("stopping: {} took {:.1f} s", name, took)
    step.result()  # a step that failed fails the stop, as before (the stack runs the rest)


async def _close_delivery(delivery: Delivery) -> None:
    await delivery.close(DELIVERY_GRACE)
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
    # No FSM: no handler keeps a conversation state, and its middleware would look one up for
    # every update.
    dispatcher = Dispatcher(activity=activity, registry=registry, disable_fsm=True, **services)
    # Handlers sit on the dispatcher itself: every sub-router costs each update a pass through
    # it (about 7 µs here). Plain group messages stop at RecordMessages, on the update; handlers
    # see the commands they take.
    membership.register(dispatcher)
    moderation_handlers.register(dispatcher)  # its buttons, before rewards takes every other one
    rewards.register(dispatcher)  # before sops: its handler takes every other button
    lottery.register(dispatcher)
    lives.register(dispatcher)
    broadcasts.register(dispatcher)
    stats_handlers.register(dispatcher)
    sops.register(dispatcher)
    points.register(dispatcher)
    boards.register(dispatcher)
    console.register(dispatcher)
    invites.register(dispatcher)
    dispatcher.update.outer_middleware(
        RecordMessages(
            registry,
            activity,
            me.id,
            engine=services["engine"],
            screening=services.get("screening"),
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


def couriers(
    outbox: Outbox, settings: Settings, engine: Engine, lotteries: Lotteries, lives: Lives
) -> dict[str, Courier]:
    """Who sends each kind of push, and hears how it went."""
    text = Courier(outbox, settings.content_dir)
    return {
        PushKind.TEXT: text,
        PushKind.SOP: engine.courier,
        PushKind.LOTTERY_POST: lotteries.courier,
        PushKind.LOTTERY_ANNOUNCE: lotteries.courier,
        **dict.fromkeys(LIVE_KINDS, lives.courier),
    }


def owner_notices(outbox: Outbox, texts: Texts, owner_ids: list[int]) -> Notify:
    """notify(text_key, **values): a private message to every owner (who started the bot)."""

    async def notify(key: str, **values: Any) -> None:
        text = texts(key, None, **values)
        for owner in owner_ids:
            await outbox.send_message(owner, text, source="sop")

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


def admin_notice(
    outbox: Outbox, texts: Texts, registry: Registry, admins: Admins, notify: Notify
) -> Callable[[int, str, dict[str, Any]], Awaitable[None]]:
    """tell(chat, text_key, values): privately to each admin of the group (who started the
    bot) and to the owners, in the group's language, the group's title in `title`."""

    async def tell(chat_id: int, key: str, details: dict[str, Any]) -> None:
        known = registry.groups.get(chat_id)
        title = known.title if known is not None and known.title else str(chat_id)
        language = known.language if known is not None else None
        values = {"title": title, **details}
        text = texts(key, language, **values)
        people = set(await admins.people_of(chat_id)) - set(admins.owner_ids)
        for person in sorted(people):
            await outbox.send_message(person, text, source="health")
        await notify(key, **values)

    return tell


def _zone_of(registry: Registry, default: Any, chat_id: int) -> Any:
    """A group's time zone (`default` unless it has its own)."""
    return registry.zone(chat_id, default)


def health_alert(
    tell: Callable[[int, str, dict[str, Any]], Awaitable[None]],
) -> Callable[[int, str, dict[str, Any]], Awaitable[None]]:
    """A health alert (`stats.alert_<kind>`), told to the group's admins and the owners."""

    async def alert(chat_id: int, kind: str, details: dict[str, Any]) -> None:
        await tell(chat_id, f"stats.alert_{kind}", details)

    return alert


def invite_service(
    db: AsyncEngine,
    bot: Bot,
    clock: Clock,
    bus: Bus,
    activity: ActivityLog,
    engine: Engine,
    zones: Callable[[int], Any],
    tell_admins: Callable[[int, str, dict[str, Any]], Awaitable[None]],
) -> Invites:
    """Invite links, referrals (ruled by the groups' SOPs) and requests to join."""
    links = InviteLinks(db, bot, clock)
    rules = engine.referral_rule
    referrals = Referrals(
        db,
        links,
        clock,
        bus,
        rules=rules,
        zones=zones,
        tell_admins=tell_admins,
        flush=activity.flush,
        listens=engine.listens,
    )
    requests = JoinRequests(db, bot, links, referrals, activity, rules)
    return Invites(db, clock, links, referrals, requests, rules, zones)
