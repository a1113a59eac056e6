"""/rewards: members redeem rewards with their points; /orders: admins fulfil or cancel orders.

/rewards            the catalogue, the member's points, a button per reward (`reward:<id>`)
/orders             open orders of the group, oldest first, with Fulfilled / Cancel buttons
                    (`order:done:<id>`, `order:cancel:<id>`)
/orders all         … and the recently closed ones
/orders done 12     mark order 12 handed over; /orders cancel 12 cancels it and refunds the points

A redemption is announced in the group, and the group's admins are told privately (with the
same buttons) when they have started the bot; when none of them can be reached, the group
announcement asks the admins to hand it over. A pressed button leaves the message showing the
order's state as it is now.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiogram import Router
from aiogram.filters import Command, CommandObject, Filter
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    User,
)

from bot.admins import Admins
from bot.db import OrderStatus, utcnow
from bot.handlers.filters import AdminsOnly, InGroup
from bot.handlers.sops import Say
from bot.rewards import CatalogueError, Order, Refusal, Refused, Reward, Rewards
from bot.sop.templates import mention

LISTED = 20  # open orders shown with buttons in one /orders message
CLOSED_LISTED = 10  # closed orders shown by /orders all
DONE_WORDS = frozenset({"done", "fulfil", "fulfill", "fulfilled"})
CANCEL_WORDS = frozenset({"cancel", "refund"})


class Pressed(Filter):
    """A press of a button whose data starts with `prefix`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    async def __call__(self, query: CallbackQuery) -> bool:
        return query.data is not None and query.data.startswith(self.prefix)


class RewardsChat:
    """Texts and times in the language and time zone of one group."""

    def __init__(self, say: Say, rewards: Rewards, chat_id: int) -> None:
        registry = say.registry
        self.say, self.chat_id = say, chat_id
        self.language = registry.language(chat_id, say.texts.default_language)
        self.title = registry.title(chat_id)
        self.timezone = registry.zone(chat_id, rewards.timezone)

    def __call__(self, key: str, **values: Any) -> str:
        return self.say.texts(key, self.language, **values)

    async def send(
        self, chat_id: int, text: str, *, markup: InlineKeyboardMarkup | None = None, **kw: Any
    ) -> bool:
        sent = await self.say.delivery.send_message(
            chat_id, text, source="rewards", reply_markup=markup, **kw
        )
        return sent.ok

    def order_line(self, order: Order) -> dict[str, Any]:
        at = order.closed_at or order.created_at
        return {
            "id": order.id,
            "reward": order.reward_name,
            "cost": order.cost,
            "member": _who(order),
            "at": at.astimezone(self.timezone).strftime("%m-%d %H:%M"),
            "state": self(f"orders.state_{order.status.value}"),
            "by": self._closer(order),
        }

    def _closer(self, order: Order) -> str:
        if order.closed_by is None:
            return ""
        if order.closed_by == order.chat_id:  # an admin posting as the group
            return self("orders.anonymous_admin")
        return order.closer_name or str(order.closed_by)


async def reward_commands(
    message: Message, command: CommandObject, rewards: Rewards, admins: Admins, say: Say
) -> None:
    """/rewards and /orders: one handler, so other commands pay for one filter, not two."""
    if command.command == "orders":
        await orders_command(message, command, rewards, say)
    else:
        await list_rewards(message, rewards, admins, say)


async def list_rewards(message: Message, rewards: Rewards, admins: Admins, say: Say) -> None:
    chat = RewardsChat(say, rewards, message.chat.id)
    try:
        catalogue = rewards.catalogue()
    except CatalogueError as broken:
        replies: list[tuple[str, dict[str, Any]]] = [("rewards.unavailable", {})]
        if await admins.may_command(message):
            replies.append(("rewards.unavailable_problems", {"problems": broken.summary()}))
        await say(message, *replies)
        return
    if not catalogue.rewards:
        await say(message, ("rewards.empty", {}))
        return
    left = await rewards.stock_left(catalogue.rewards)
    member = message.from_user if message.sender_chat is None else None
    lines = []
    if member is not None:
        balance = await rewards.balance(chat.chat_id, member.id)
        lines.append(chat("rewards.list_header", member=member.full_name, balance=balance))
    else:
        lines.append(chat("rewards.list_header_anonymous"))
    buttons = []
    for reward in catalogue.rewards:
        name = reward.name.in_language(chat.language)
        description = reward.description.in_language(chat.language) if reward.description else ""
        lines.append(
            chat(
                "rewards.list_line",
                name=name,
                cost=reward.cost,
                left=left[reward.id],
                per_member=reward.per_member,
                description=description,
            )
        )
        if left[reward.id] != 0:
            label = chat("rewards.button", name=name, cost=reward.cost)
            buttons.append([InlineKeyboardButton(text=label, callback_data=f"reward:{reward.id}")])
    lines.append(chat("rewards.list_footer" if buttons else "rewards.all_gone"))
    markup = InlineKeyboardMarkup(inline_keyboard=buttons) if buttons else None
    await chat.send(
        chat.chat_id, "\n".join(lines), markup=markup, reply_to_message_id=message.message_id
    )


async def reward_pressed(query: CallbackQuery, rewards: Rewards, admins: Admins, say: Say) -> None:
    """A reward button in a group: redeem the reward."""
    data = query.data or ""
    message = query.message
    assert message is not None  # InGroup
    chat = RewardsChat(say, rewards, message.chat.id)
    user = query.from_user
    result = await rewards.redeem(
        chat.chat_id, user.id, data.removeprefix("reward:"), utcnow(), language=chat.language
    )
    if isinstance(result, Refusal):
        await query.answer(_refusal_text(chat, result), show_alert=True)
        return
    balance = await rewards.balance(chat.chat_id, user.id)
    await query.answer(
        chat("rewards.redeemed_toast", order=result.id, reward=result.reward_name, balance=balance)
    )
    reached = await _tell_admins(chat, admins, result, user)
    await chat.send(
        chat.chat_id,
        chat(
            "rewards.redeemed",
            member=mention(user.id, user.full_name),
            reward=result.reward_name,
            cost=result.cost,
            order=result.id,
            admins_reached=reached,
        ),
        reply_to_message_id=message.message_id,
    )


async def _tell_admins(chat: RewardsChat, admins: Admins, order: Order, member: User) -> bool:
    """Tell the group's admins privately of a new order; whether any of them got it."""
    people = await admins.people_of(order.chat_id)
    if not people:
        return False
    text = _notice(chat, order, member.full_name, member.username)
    markup = _buttons(chat, [order])
    sent = await asyncio.gather(*(chat.send(admin, text, markup=markup) for admin in people))
    return any(sent)


def _notice(chat: RewardsChat, order: Order, name: str | None, username: str | None) -> str:
    text = chat(
        "rewards.admin_notice",
        order=order.id,
        group=chat.title,
        reward=order.reward_name,
        cost=order.cost,
        member=mention(order.user_id, name or str(order.user_id)),
        username=username or "",
    )
    if order.status != OrderStatus.OPEN:
        text += "\n\n" + chat("orders.notice_closed", **chat.order_line(order))
    return text


async def orders_command(
    message: Message, command: CommandObject, rewards: Rewards, say: Say
) -> None:
    chat = RewardsChat(say, rewards, message.chat.id)
    args = (command.args or "").lower().split()
    if args in ([], ["all"]):
        text, markup = await _orders_view(chat, rewards, closed_too=bool(args))
        await chat.send(chat.chat_id, text, markup=markup, reply_to_message_id=message.message_id)
        return
    number = args[1].removeprefix("#") if len(args) == 2 else ""
    if not number.isdigit() or args[0] not in DONE_WORDS | CANCEL_WORDS:
        await say(message, ("orders.usage", {}))
        return
    by = message.sender_chat or message.from_user
    if by is None:
        return
    cancel = args[0] in CANCEL_WORDS
    close = rewards.cancel if cancel else rewards.fulfil
    result = await close(int(number), chat.chat_id, by.id, utcnow())
    if isinstance(result, Refusal):
        await say(message, (_refusal_key(result), _refusal_values(chat, result, int(number))))
    elif cancel:
        await announce_cancel(chat, rewards, result, message.message_id)
    else:
        await say(message, ("orders.fulfilled", chat.order_line(result)))


async def order_pressed(query: CallbackQuery, rewards: Rewards, admins: Admins, say: Say) -> None:
    """`order:done:<id>` or `order:cancel:<id>`: in the group's /orders list or in the private
    notice to an admin; only admins of the order's group may press them."""
    message = query.message
    parts = (query.data or "").split(":")
    if len(parts) != 3 or parts[1] not in ("done", "cancel") or not parts[2].isdigit():
        await query.answer()
        return
    order_id = int(parts[2])
    in_private = message is not None and message.chat.type == "private"
    found = await rewards.order(order_id)
    if found is None or (not in_private and (message is None or found.chat_id != message.chat.id)):
        await query.answer(
            say.text(message.chat.id if message else 0, "orders.gone"), show_alert=True
        )
        return
    chat = RewardsChat(say, rewards, found.chat_id)
    user = query.from_user
    if not await admins.is_admin(found.chat_id, user.id):
        await query.answer(chat("sop.admins_only"), show_alert=True)
        return
    cancel = parts[1] == "cancel"
    close = rewards.cancel if cancel else rewards.fulfil
    result = await close(order_id, found.chat_id, user.id, utcnow())
    if isinstance(result, Refusal):
        await query.answer(
            chat(_refusal_key(result), **_refusal_values(chat, result, order_id)), show_alert=True
        )
        shown = result.order or found
    else:
        shown = result
        await query.answer(chat("orders.cancelled_toast" if cancel else "orders.fulfilled_toast"))
    if message is not None and in_private:
        text = _notice(chat, shown, shown.member_name, shown.member_username)
        await say.delivery.edit_text(
            message.chat.id, message.message_id, text, source="rewards", reply_markup=None
        )
    elif message is not None:
        text, markup = await _orders_view(chat, rewards, closed_too=False)
        await say.delivery.edit_text(
            chat.chat_id, message.message_id, text, source="rewards", reply_markup=markup
        )
    if cancel and not isinstance(result, Refusal):
        await announce_cancel(chat, rewards, result, None)


async def announce_cancel(
    chat: RewardsChat, rewards: Rewards, order: Order, reply_to: int | None
) -> None:
    """Tell the member in the group that their order was cancelled and the points are back."""
    balance = await rewards.balance(order.chat_id, order.user_id)
    values = chat.order_line(order)
    values["member"] = mention(order.user_id, order.member_name or str(order.user_id))
    await chat.send(
        chat.chat_id,
        chat("orders.cancelled", **values, balance=balance),
        reply_to_message_id=reply_to,
    )


async def _orders_view(
    chat: RewardsChat, rewards: Rewards, *, closed_too: bool
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The group's open orders (and recently closed ones), with buttons for the open ones."""
    open_orders = await rewards.orders(chat.chat_id, OrderStatus.OPEN)
    if open_orders:
        lines = [chat("orders.header_open", count=len(open_orders))]
        lines += [chat("orders.line", **chat.order_line(o)) for o in open_orders[:LISTED]]
        if len(open_orders) > LISTED:
            lines.append(chat("orders.more", count=len(open_orders) - LISTED))
    else:
        lines = [chat("orders.none_open")]
    if closed_too:
        closed = await rewards.orders(chat.chat_id, "closed", limit=CLOSED_LISTED)
        lines.append("")
        lines.append(chat("orders.header_closed" if closed else "orders.none_closed"))
        lines += [chat("orders.closed_line", **chat.order_line(order)) for order in closed]
    return "\n".join(lines), _buttons(chat, open_orders[:LISTED])


def _buttons(chat: RewardsChat, orders: list[Order]) -> InlineKeyboardMarkup | None:
    rows = [
        [
            InlineKeyboardButton(
                text=chat("orders.done_button", id=order.id), callback_data=f"order:done:{order.id}"
            ),
            InlineKeyboardButton(
                text=chat("orders.cancel_button", id=order.id),
                callback_data=f"order:cancel:{order.id}",
            ),
        ]
        for order in orders
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def _who(order: Order) -> str:
    name = order.member_name or str(order.user_id)
    return f"{name} (@{order.member_username})" if order.member_username else name


def _refusal_key(refusal: Refusal) -> str:
    if refusal.reason in (Refused.UNKNOWN_ORDER, Refused.CLOSED):
        return f"orders.{refusal.reason.value}"
    return f"rewards.refused.{refusal.reason.value}"


def _refusal_values(chat: RewardsChat, refusal: Refusal, order_id: int = 0) -> dict[str, Any]:
    reward: Reward | None = refusal.reward
    values: dict[str, Any] = {
        "id": order_id,
        "reward": reward.name.in_language(chat.language) if reward else "",
        "cost": reward.cost if reward else 0,
        "limit": reward.per_member if reward else 0,
        "balance": refusal.balance or 0,
    }
    if refusal.order is not None:
        values.update(chat.order_line(refusal.order))
    return values


def _refusal_text(chat: RewardsChat, refusal: Refusal) -> str:
    return chat(_refusal_key(refusal), **_refusal_values(chat, refusal))


def register(router: Router) -> None:
    """Add the handlers to `router`, before the SOP engine's handler of every other button."""
    router.message.register(
        reward_commands,
        Command("rewards", "orders"),
        InGroup(otherwise={"rewards": "rewards.in_groups_only", "orders": "orders.in_groups_only"}),
        AdminsOnly("orders"),
    )
    router.callback_query.register(order_pressed, Pressed("order:"))
    router.callback_query.register(reward_pressed, Pressed("reward:"), InGroup())
