"""The operator's hands in the sandbox: people write, press, join and leave; time moves.

The page and `tidepool replay` both act through here, so an action is journaled the same way
whoever made it. Names are how transcripts refer to people and chats: a person by their first
name, a group by its title, a private chat as `@` and the person's name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.emulator import EmulatorClient
from bot.emulator._state import World
from bot.sandbox._journal import Journal
from bot.sandbox._time import SandboxClock, TimeMachine


class ActionError(Exception):
    """An action the sandbox cannot carry out (unknown person, chat or button)."""


class Operator:
    """Acts as the sandbox's people on the emulator, and journals each action."""

    def __init__(
        self,
        world: World,
        ctl: EmulatorClient,
        journal: Journal,
        clock: SandboxClock,
        time: TimeMachine,
        zone: ZoneInfo,
    ) -> None:
        self.zone = zone  # the journal's times read in the sandbox's time zone
        self.world = world
        self.ctl = ctl
        self.journal = journal
        self.clock = clock
        self.time = time

    # ----- names ------------------------------------------------------------------------------
    def person(self, name: str) -> int:
        for user in self.world.users.values():
            if user.first_name == name:
                return int(user.id)
        raise ActionError(f"nobody called {name!r} is in the sandbox")

    def name(self, user_id: int) -> str:
        user = self.world.users.get(user_id)
        if user is None:
            raise ActionError(f"no person {user_id} in the sandbox")
        return str(user.first_name)

    def chat(self, name: str) -> int:
        if name.startswith("@"):
            user_id = self.person(name[1:])
            if user_id in self.world.chats:
                return user_id
            raise ActionError(f"{name[1:]} has no private chat with the bot yet")
        for chat in self.world.chats.values():
            if chat.title == name and chat.migrated_to is None:
                return int(chat.id)
        raise ActionError(f"there is no group called {name!r}")

    def chat_name(self, chat_id: int) -> str:
        chat = self.world.chats.get(chat_id)
        if chat is None:
            return str(chat_id)
        if chat.type == "private":
            return "@" + self.name(chat_id)
        return str(chat.title)

    # ----- actions ----------------------------------------------------------------------------
    async def say(
        self, chat_id: int, user_id: int, text: str, reply_to: int | None = None
    ) -> dict[str, Any]:
        text = text.strip()
        if not text:
            raise ActionError("the message is empty")
        if chat_id == user_id and user_id not in self.world.started:
            raise ActionError(f"{self.name(user_id)} has not started the bot yet")
        self._note(user_id, "say", chat_id, text=text)
        return await self.ctl.send_message(chat_id, user_id, text, reply_to_message_id=reply_to)

    async def start(self, user_id: int) -> None:
        """The person opens the bot in private and presses Start (`/start`)."""
        self._note(user_id, "start", user_id)
        await self.ctl.start(user_id)

    async def press(self, chat_id: int, user_id: int, message_id: int, data: str) -> str:
        """Press a button of a message; returns the callback query's id."""
        rec = (
            self.world.chats[chat_id].messages.get(message_id)
            if chat_id in self.world.chats
            else None
        )
        if rec is None or rec.deleted:
            raise ActionError("that message is gone")
        label = _button_text(rec.reply_markup, data)
        if label is None:
            raise ActionError("that message has no such button")
        self._note(user_id, "press", chat_id, button=label)
        result = await self.ctl.press(chat_id, user_id, message_id, data)
        return str(result["callback_query_id"])

    async def press_label(self, chat_id: int, user_id: int, label: str) -> str:
        """Press the button called `label` on the chat's latest message that has one."""
        chat = self.world.chats[chat_id]
        for message_id in sorted(chat.messages, reverse=True):
            rec = chat.messages[message_id]
            if rec.deleted:
                continue
            for row in (rec.reply_markup or {}).get("inline_keyboard") or []:
                for button in row:
                    if button.get("text") == label and button.get("callback_data"):
                        return await self.press(
                            chat_id, user_id, message_id, button["callback_data"]
                        )
        raise ActionError(f"no message in {self.chat_name(chat_id)} has a button {label!r}")

    async def new_person(self, name: str, language: str) -> int:
        name = name.strip()[:32]
        if not name:
            raise ActionError("a new person needs a name")
        taken = {user.first_name for user in self.world.users.values()}
        if name in taken:
            raise ActionError(f"someone is already called {name!r}: pick another name")
        user = await self.ctl.create_user(name, language_code=language)
        return int(user["id"])

    async def join(self, chat_id: int, user_id: int, *, new: bool = False) -> None:
        if self.world.chats[chat_id].member(user_id).present:
            raise ActionError(f"{self.name(user_id)} is already in the group")
        self._note(user_id, "join", chat_id, **({"new": True} if new else {}))
        await self.ctl.join(chat_id, user_id)

    async def leave(self, chat_id: int, user_id: int) -> None:
        if not self.world.chats[chat_id].member(user_id).present:
            raise ActionError(f"{self.name(user_id)} is not in the group")
        self._note(user_id, "leave", chat_id)
        await self.ctl.leave(chat_id, user_id)

    async def make_admin(self, chat_id: int, user_id: int) -> None:
        membership = self.world.chats[chat_id].member(user_id)
        if not membership.present:
            raise ActionError(f"{self.name(user_id)} is not in the group")
        if membership.is_admin:
            raise ActionError(f"{self.name(user_id)} is already an admin")
        self._note(user_id, "admin", chat_id)
        await self.ctl.set_member(chat_id, user_id, "administrator", silent=False)

    async def advance(self, seconds: float) -> int:
        """Move time forward, living what falls due; returns the due moments lived."""
        if not 0 < seconds <= 366 * 86400:
            raise ActionError("time moves forward, by up to a year at a time")
        calls = len(self.world.calls)
        steps = await self.time.advance(seconds)
        self.journal.add({"do": "clock", "at": self._now(), "calls": calls})
        return steps

    async def to_next_due(self) -> datetime | None:
        calls = len(self.world.calls)
        due = await self.time.to_next_due()
        if due is not None:
            self.journal.add({"do": "clock", "at": self._now(), "calls": calls})
        return due

    def _note(self, user_id: int, do: str, chat_id: int, **fields: Any) -> None:
        self.journal.add(
            {
                "do": do,
                "at": self._now(),
                "calls": len(self.world.calls),
                "who": self.name(user_id),
                "chat": self.chat_name(chat_id) if chat_id != user_id else "@" + self.name(user_id),
                **fields,
            }
        )

    def _now(self) -> str:
        return self.clock.now().astimezone(self.zone).isoformat(timespec="seconds")


def _button_text(markup: dict[str, Any] | None, data: str) -> str | None:
    for row in (markup or {}).get("inline_keyboard") or []:
        for button in row:
            if isinstance(button, dict) and button.get("callback_data") == data:
                return str(button.get("text", ""))
    return None
