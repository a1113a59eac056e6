"""The demo group a new sandbox starts with: an owner, an admin, three members and the bot."""

from __future__ import annotations

from dataclasses import dataclass

from bot.emulator import EmulatorClient

# The bot is an administrator with the rights Tidepool asks for (README: "Adding the bot").
BOT_RIGHTS = {
    "can_delete_messages": True,
    "can_pin_messages": True,
    "can_invite_users": True,
    "can_restrict_members": True,
    "can_manage_chat": True,
}


@dataclass(frozen=True)
class Person:
    """A seeded user: name and role in the demo group."""

    first_name: str
    role: str  # creator | administrator | member
    last_name: str | None = None


PEOPLE = (
    Person("Mei", "creator", "Li"),
    Person("Kai", "administrator", "Wang"),
    Person("Lin", "member"),
    Person("Ann", "member"),
    Person("Bo", "member"),
)
TITLES = {"zh": "Tidepool 演示群", "en": "Tidepool demo group"}


@dataclass(frozen=True)
class Demo:
    """What was seeded: the group's id and the owner's user id."""

    chat_id: int
    owner_id: int


async def seed(ctl: EmulatorClient, language: str) -> Demo:
    """Create the demo group in an empty emulator: people in it first, then the bot added.

    The members were there before the bot (nobody is welcomed at first start); the owner has
    started the bot in private, so the bot's notices to owners reach them.
    """
    ids: dict[str, int] = {}
    for person in PEOPLE:
        user = await ctl.create_user(
            person.first_name, last_name=person.last_name, language_code=language
        )
        ids[person.first_name] = int(user["id"])
    chat = await ctl.create_chat(TITLES.get(language, TITLES["en"]), type="supergroup")
    chat_id = int(chat["id"])
    owner = ids[PEOPLE[0].first_name]
    for person in PEOPLE:
        await ctl.set_member(chat_id, ids[person.first_name], person.role)  # type: ignore[arg-type]
    await ctl.set_bot_status(chat_id, "administrator", rights=BOT_RIGHTS, by=owner)
    await ctl.start(owner)
    return Demo(chat_id, owner)
