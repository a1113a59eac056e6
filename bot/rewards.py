"""Rewards: the catalogue in content/rewards.yaml, redeeming with points, and orders to fulfil.

Redeeming is one write transaction: the member's points are spent (a conditional UPDATE of the
balance, see bot.points), the per-member limit is counted, one of the stock is taken (a
conditional UPDATE of `reward_stock.taken`) and the order is written. A refusal rolls back all
of it, so two members redeeming the last one at once get one order between them, and a member
is never charged for an order that was not made.

The catalogue is read again whenever the file changes. A broken file makes the catalogue
unavailable (with every problem in the log, named by key path) until it is fixed; orders
already made are not touched by it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from loguru import logger
from pydantic import Field, PlainValidator, StrictInt, ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot import points
from bot.db import MEMBERS, ORDERS, REWARD_STOCK, OrderStatus, insert_for, writing
from bot.sop.check import Problem, describe, locate, schema_message
from bot.sop.format import Strict
from bot.texts import LANGUAGES

REWARD_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
# A second redemption of the same reward by the same member this soon is taken for a double tap.
DOUBLE_TAP = timedelta(seconds=5)


# --- The catalogue ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wording:
    """A text of the catalogue: the same in every language, or one per language."""

    by_language: tuple[tuple[str, str], ...]  # ("", text) for a text in every language

    def in_language(self, language: str | None) -> str:
        """The text in `language`, else in the first language the file gives."""
        texts = dict(self.by_language)
        return texts.get(language or "") or texts.get("") or self.by_language[0][1]


def _wording(value: object) -> Wording:
    if isinstance(value, Wording):
        return value
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("must not be empty")
        return Wording((("", value.strip()),))
    if isinstance(value, dict):
        if not value:
            raise ValueError(f"needs a text for {' or '.join(LANGUAGES)}")
        for language, text in value.items():
            if language not in LANGUAGES:
                raise ValueError(
                    f"'{language}' is not a language here; use {' and '.join(LANGUAGES)}"
                )
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"'{language}' must be a text, not {describe(text)}")
        return Wording(tuple((language, text.strip()) for language, text in value.items()))
    raise ValueError(f"must be a text or a mapping such as {{zh: …, en: …}}, not {describe(value)}")


def _reward_id(value: object) -> str:
    if not isinstance(value, str) or not REWARD_ID.fullmatch(value):
        raise ValueError(
            f"must be 1-32 lowercase letters, digits, - or _ (it goes into the button), "
            f"not {describe(value)}"
        )
    return value


Text = Annotated[Wording, PlainValidator(_wording)]


class Reward(Strict):
    """One reward members can redeem with their points."""

    id: Annotated[str, PlainValidator(_reward_id)]
    name: Text
    cost: Annotated[StrictInt, Field(gt=0)]
    stock: Annotated[StrictInt, Field(ge=0)] | None  # in all, across groups; None: no limit
    per_member: Annotated[StrictInt, Field(ge=1)] | None  # per member of a group; None: no limit
    description: Text | None = None


class _CatalogueFile(Strict):
    rewards: list[Reward]


@dataclass(frozen=True, slots=True)
class Catalogue:
    """The rewards, in the order of the file."""

    rewards: tuple[Reward, ...] = ()

    def get(self, reward_id: str) -> Reward | None:
        return next((reward for reward in self.rewards if reward.id == reward_id), None)


class CatalogueError(Exception):
    """The catalogue file cannot be used; `problems` say where and why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        more = len(self.problems) - 1
        super().__init__(f"{self.problems[0]}" + (f" (and {more} more)" if more else ""))

    def summary(self, limit: int = 5) -> str:
        """The first `limit` problems, one a line, the file named without its folder."""
        lines = [
            str(replace(problem, file=Path(problem.file.name))) for problem in self.problems[:limit]
        ]
        if len(self.problems) > limit:
            lines.append(f"… and {len(self.problems) - limit} more")
        return "\n".join(lines)


def load_catalogue(path: Path) -> Catalogue:
    """Read and check a catalogue file; CatalogueError names every problem by key path."""
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogueError([Problem(path, 1, 1, "", f"cannot read the file: {exc}")]) from None
    loader = yaml.SafeLoader(source)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = Problem(path, line, column, "", f"invalid YAML: {exc.problem or exc.context}")
        raise CatalogueError([problem]) from None
    except yaml.YAMLError as exc:
        raise CatalogueError([Problem(path, 1, 1, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        message = "must be a mapping with the key 'rewards' (a list of rewards)"
        raise CatalogueError([Problem(path, 1, 1, "", f"the file {message}")])
    try:
        parsed = _CatalogueFile.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(path, root, error) for error in exc.errors(include_url=False)]
        raise CatalogueError(sorted(problems, key=lambda p: (p.line, p.column))) from None
    seen: dict[str, int] = {}
    duplicates = []
    for index, reward in enumerate(parsed.rewards):
        if reward.id in seen:
            message = f"'{reward.id}' is already the id of reward {seen[reward.id]}"
            duplicates.append(_at(path, root, ("rewards", index, "id"), message))
        seen.setdefault(reward.id, index)
    if duplicates:
        raise CatalogueError(duplicates)
    return Catalogue(tuple(parsed.rewards))


_NULL_MEANS = {"stock": "null for no limit", "per_member": "null for no limit"}


def _problem(path: Path, root: yaml.Node | None, error: ErrorDetails) -> Problem:
    where = tuple(error["loc"])
    if error["type"] == "unknown_key":
        key = str(error.get("ctx", {})["key"])
        return _at(path, root, (*where, key), error["msg"], at_key=True)
    if error["type"] == "missing":
        key = str(where[-1])
        hint = f" ({_NULL_MEANS[key]})" if key in _NULL_MEANS else ""
        return _at(path, root, where[:-1], f"missing required key '{key}'{hint}")
    return _at(path, root, where, schema_message(error))


def _at(
    path: Path,
    root: yaml.Node | None,
    where: tuple[int | str, ...],
    message: str,
    *,
    at_key: bool = False,
) -> Problem:
    """A problem at the key path `where`, with the line and column of that key in the file."""
    node = locate(root, where, at_key=at_key)
    line, column = (node.start_mark.line + 1, node.start_mark.column + 1) if node else (1, 1)
    return Problem(path, line, column, ".".join(str(part) for part in where), message)


# --- Orders -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Order:
    """A member's redemption of a reward, and where it stands."""

    id: int
    chat_id: int
    user_id: int
    reward_id: str
    reward_name: str  # as the catalogue named it when ordered
    cost: int
    status: OrderStatus
    created_at: datetime
    closed_at: datetime | None = None
    closed_by: int | None = None
    member_name: str | None = None  # the member's name, when the bot knows them
    member_username: str | None = None
    closer_name: str | None = None  # the admin who closed it, when the bot knows them


class Refused(StrEnum):
    """Why a redemption, or closing an order, did not happen."""

    UNAVAILABLE = "unavailable"  # the catalogue file is broken
    UNKNOWN_REWARD = "unknown_reward"
    OUT_OF_STOCK = "out_of_stock"
    LIMIT_REACHED = "limit_reached"
    JUST_REDEEMED = "just_redeemed"  # a double tap
    NOT_ENOUGH_POINTS = "not_enough_points"
    UNKNOWN_ORDER = "unknown_order"  # no such order in this group
    CLOSED = "closed"  # the order is fulfilled or cancelled already


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refusal, with what the member or admin needs to understand it."""

    reason: Refused
    reward: Reward | None = None
    balance: int | None = None  # NOT_ENOUGH_POINTS: what the member has
    order: Order | None = None  # CLOSED: the order as it stands; JUST_REDEEMED: the first one


class _Refuse(Exception):
    """Raised inside a transaction to roll it back with a refusal."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.reason.value)
        self.refusal = refusal


_MEMBER = MEMBERS.alias("member")
_CLOSER = MEMBERS.alias("closer")
_ORDERS_WITH_NAMES = (
    select(
        ORDERS,
        _MEMBER.c.first_name.label("member_first"),
        _MEMBER.c.last_name.label("member_last"),
        _MEMBER.c.username.label("member_username"),
        _CLOSER.c.first_name.label("closer_first"),
        _CLOSER.c.last_name.label("closer_last"),
    )
    .outerjoin(
        _MEMBER,
        and_(_MEMBER.c.chat_id == ORDERS.c.chat_id, _MEMBER.c.user_id == ORDERS.c.user_id),
    )
    .outerjoin(
        _CLOSER,
        and_(_CLOSER.c.chat_id == ORDERS.c.chat_id, _CLOSER.c.user_id == ORDERS.c.closed_by),
    )
)


def _name(first: str | None, last: str | None) -> str | None:
    return " ".join(part for part in (first, last) if part) or None


def _order(row: Row[Any]) -> Order:
    return Order(
        id=int(row.id),
        chat_id=int(row.chat_id),
        user_id=int(row.user_id),
        reward_id=row.reward_id,
        reward_name=row.reward_name,
        cost=int(row.cost),
        status=OrderStatus(row.status),
        created_at=row.created_at,
        closed_at=row.closed_at,
        closed_by=row.closed_by,
        member_name=_name(row.member_first, row.member_last),
        member_username=row.member_username,
        closer_name=_name(row.closer_first, row.closer_last),
    )


# --- The service --------------------------------------------------------------------------------


class Rewards:
    """The catalogue, the stock left, redemptions and the orders admins fulfil or cancel."""

    def __init__(self, engine: AsyncEngine, path: Path, *, timezone: tzinfo = UTC) -> None:
        self.engine = engine
        self.path = path
        self.timezone = timezone  # order times are shown in it where a group has none of its own
        self._version: tuple[int, int] | None = None  # (mtime, size) of the file last read
        self._catalogue = Catalogue()
        self._error: CatalogueError | None = None
        self._load(self._stat())  # a broken file is in the log from the start

    def catalogue(self) -> Catalogue:
        """The catalogue as the file is now (read again when it changed); no file, no rewards.

        Raises CatalogueError while the file is broken."""
        version = self._stat()
        if version != self._version:
            self._load(version)
        if self._error is not None:
            raise self._error
        return self._catalogue

    def _stat(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError:
            return (-1, -1)  # load_catalogue says why it cannot be read
        return (stat.st_mtime_ns, stat.st_size)

    def _load(self, version: tuple[int, int] | None) -> None:
        self._version = version
        if version is None:
            self._catalogue, self._error = Catalogue(), None
            logger.info("no rewards: {} does not exist", self.path)
            return
        try:
            self._catalogue, self._error = load_catalogue(self.path), None
        except CatalogueError as exc:
            self._catalogue, self._error = Catalogue(), exc
            logger.error(
                "the rewards catalogue is unavailable until {} is fixed:\n{}",
                self.path,
                exc.summary(20),
            )
            return
        logger.info("rewards: {} in {}", len(self._catalogue.rewards), self.path)

    async def left(self, reward: Reward) -> int | None:
        """How many of a reward can still be redeemed (None: no limit)."""
        return (await self.stock_left([reward]))[reward.id]

    async def stock_left(self, rewards: Sequence[Reward]) -> dict[str, int | None]:
        """How many of each reward can still be redeemed (None: no limit)."""
        async with self.engine.connect() as conn:
            taken = await _taken(conn, [reward.id for reward in rewards])
        return {
            reward.id: None
            if reward.stock is None
            else max(0, reward.stock - taken.get(reward.id, 0))
            for reward in rewards
        }

    async def balance(self, chat_id: int, user_id: int) -> int:
        async with self.engine.connect() as conn:
            return await points.balance(conn, chat_id, user_id)

    async def redeemed(self, chat_id: int, user_id: int) -> dict[str, int]:
        """How many of each reward a member has redeemed in a group (orders not cancelled)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(ORDERS.c.reward_id, func.count())
                .where(
                    ORDERS.c.chat_id == chat_id,
                    ORDERS.c.user_id == user_id,
                    ORDERS.c.status != OrderStatus.CANCELLED.value,
                )
                .group_by(ORDERS.c.reward_id)
            )
            return {reward_id: int(count) for reward_id, count in rows}

    async def redeem(
        self,
        chat_id: int,
        user_id: int,
        reward_id: str,
        at: datetime,
        *,
        language: str | None = None,
    ) -> Order | Refusal:
        """Spend a member's points on a reward: the order, or why not (then nothing changed)."""
        try:
            reward = self.catalogue().get(reward_id)
        except CatalogueError:
            return Refusal(Refused.UNAVAILABLE)
        if reward is None:
            return Refusal(Refused.UNKNOWN_REWARD)
        name = reward.name.in_language(language)
        try:
            async with writing(self.engine) as conn:
                # Read first, so that a member told "no" hears the most useful reason.
                if reward.stock is not None:
                    taken = (await _taken(conn, [reward.id])).get(reward.id, 0)
                    if taken >= reward.stock:
                        raise _Refuse(Refusal(Refused.OUT_OF_STOCK, reward))
                await self._check_member(conn, chat_id, user_id, reward, at)
                spend = points.Change(
                    chat_id, user_id, -reward.cost, f"redeemed {name}", f"reward:{reward.id}", at
                )
                await points.apply(conn, [spend])
                # The spend holds the member's balance row (PostgreSQL) until this commits, so
                # the same member's other redemptions wait here: count again, serialised.
                await self._check_member(conn, chat_id, user_id, reward, at)
                await self._take_one(conn, reward)
                added = await conn.execute(
                    ORDERS.insert()
                    .values(
                        chat_id=chat_id,
                        user_id=user_id,
                        reward_id=reward.id,
                        reward_name=name,
                        cost=reward.cost,
                        status=OrderStatus.OPEN.value,
                        created_at=at,
                    )
                    .returning(ORDERS.c.id)
                )
                order_id = int(added.scalar_one())
        except points.NotEnoughPoints as short:
            return Refusal(Refused.NOT_ENOUGH_POINTS, reward, balance=short.balance)
        except _Refuse as refused:
            return refused.refusal
        logger.bind(chat_id=chat_id).info(
            "order #{}: {} redeemed {} for {} points", order_id, user_id, reward.id, reward.cost
        )
        return Order(order_id, chat_id, user_id, reward.id, name, reward.cost, OrderStatus.OPEN, at)

    async def _check_member(
        self, conn: AsyncConnection, chat_id: int, user_id: int, reward: Reward, at: datetime
    ) -> None:
        """Refuse when the member reached the reward's limit or redeemed it a moment ago."""
        mine = and_(
            ORDERS.c.chat_id == chat_id,
            ORDERS.c.user_id == user_id,
            ORDERS.c.reward_id == reward.id,
            ORDERS.c.status != OrderStatus.CANCELLED.value,
        )
        count = (await conn.execute(select(func.count()).where(mine))).scalar_one()
        if reward.per_member is not None and count >= reward.per_member:
            raise _Refuse(Refusal(Refused.LIMIT_REACHED, reward))
        if count:
            last = (
                await conn.execute(_ORDERS_WITH_NAMES.where(mine).order_by(ORDERS.c.id.desc()))
            ).first()
            if last is not None and abs(at - last.created_at) < DOUBLE_TAP:
                raise _Refuse(Refusal(Refused.JUST_REDEEMED, reward, order=_order(last)))

    async def _take_one(self, conn: AsyncConnection, reward: Reward) -> None:
        """Take one of the stock, or refuse: one conditional UPDATE, so never below nothing."""
        await conn.execute(
            insert_for(conn, REWARD_STOCK)
            .values(reward_id=reward.id, taken=0)
            .on_conflict_do_nothing(index_elements=["reward_id"])
        )
        take = update(REWARD_STOCK).where(REWARD_STOCK.c.reward_id == reward.id)
        if reward.stock is not None:
            take = take.where(REWARD_STOCK.c.taken < reward.stock)
        moved = await conn.execute(take.values(taken=REWARD_STOCK.c.taken + 1))
        if moved.rowcount != 1:
            raise _Refuse(Refusal(Refused.OUT_OF_STOCK, reward))

    async def order(self, order_id: int) -> Order | None:
        """One order, in whichever group it was made."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(_ORDERS_WITH_NAMES.where(ORDERS.c.id == order_id))).first()
        return _order(row) if row is not None else None

    async def orders(
        self,
        chat_id: int,
        status: OrderStatus | Literal["closed"] = OrderStatus.OPEN,
        *,
        limit: int | None = None,
    ) -> list[Order]:
        """A group's orders: open ones oldest first (the queue to work through); closed ones
        (fulfilled, cancelled, or both: "closed") most recently closed first."""
        query = _ORDERS_WITH_NAMES.where(ORDERS.c.chat_id == chat_id)
        if status == OrderStatus.OPEN:
            query = query.where(ORDERS.c.status == OrderStatus.OPEN.value).order_by(ORDERS.c.id)
        else:
            closed = (
                [OrderStatus.FULFILLED.value, OrderStatus.CANCELLED.value]
                if status == "closed"
                else [status.value]
            )
            query = query.where(ORDERS.c.status.in_(closed)).order_by(
                ORDERS.c.closed_at.desc(), ORDERS.c.id.desc()
            )
        if limit is not None:
            query = query.limit(limit)
        async with self.engine.connect() as conn:
            return [_order(row) for row in await conn.execute(query)]

    async def fulfil(
        self, order_id: int, chat_id: int, admin_id: int, at: datetime
    ) -> Order | Refusal:
        """Mark an open order of the group as handed over."""
        return await self._close(order_id, chat_id, admin_id, at, OrderStatus.FULFILLED)

    async def cancel(
        self, order_id: int, chat_id: int, admin_id: int, at: datetime
    ) -> Order | Refusal:
        """Cancel an open order of the group: its points go back to the member through the
        ledger, and its reward back to the stock."""
        return await self._close(order_id, chat_id, admin_id, at, OrderStatus.CANCELLED)

    async def _close(
        self, order_id: int, chat_id: int, admin_id: int, at: datetime, status: OrderStatus
    ) -> Order | Refusal:
        try:
            async with writing(self.engine) as conn:
                row = (
                    await conn.execute(_ORDERS_WITH_NAMES.where(ORDERS.c.id == order_id))
                ).first()
                if row is None or row.chat_id != chat_id:
                    raise _Refuse(Refusal(Refused.UNKNOWN_ORDER))
                order = _order(row)
                moved = await conn.execute(
                    update(ORDERS)
                    .where(ORDERS.c.id == order_id, ORDERS.c.status == OrderStatus.OPEN.value)
                    .values(status=status.value, closed_at=at, closed_by=admin_id)
                )
                if moved.rowcount != 1:  # closed already (perhaps a moment ago, by another admin)
                    now = (
                        await conn.execute(_ORDERS_WITH_NAMES.where(ORDERS.c.id == order_id))
                    ).one()
                    raise _Refuse(Refusal(Refused.CLOSED, order=_order(now)))
                if status == OrderStatus.CANCELLED:
                    refund = points.Change(
                        chat_id,
                        order.user_id,
                        order.cost,
                        f"refund: {order.reward_name} (order #{order.id} cancelled)",
                        f"reward:{order.reward_id}",
                        at,
                    )
                    await points.apply(conn, [refund])
                    await conn.execute(
                        update(REWARD_STOCK)
                        .where(
                            REWARD_STOCK.c.reward_id == order.reward_id, REWARD_STOCK.c.taken > 0
                        )
                        .values(taken=REWARD_STOCK.c.taken - 1)
                    )
                closed = _order(
                    (await conn.execute(_ORDERS_WITH_NAMES.where(ORDERS.c.id == order_id))).one()
                )
        except _Refuse as refused:
            return refused.refusal
        logger.bind(chat_id=chat_id).info("order #{} {} by {}", order_id, status.value, admin_id)
        return closed


async def _taken(conn: AsyncConnection, reward_ids: Sequence[str]) -> dict[str, int]:
    rows = await conn.execute(
        select(REWARD_STOCK.c.reward_id, REWARD_STOCK.c.taken).where(
            REWARD_STOCK.c.reward_id.in_(list(reward_ids))
        )
    )
    return {reward_id: int(taken) for reward_id, taken in rows}
