"""What the sandbox page shows of a chat: Telegram's HTML subset made safe, messages as views."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

# Telegram's HTML parse mode: these tags (and their synonyms), nothing else.
_TAGS = {
    "b": "b",
    "strong": "b",
    "i": "i",
    "em": "i",
    "u": "u",
    "ins": "u",
    "s": "s",
    "strike": "s",
    "del": "s",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-spoiler": "span",
    "a": "a",
}
_LINK_SCHEMES = ("http://", "https://", "tg://")


class _Sanitizer(HTMLParser):
    """Rebuilds a message's HTML keeping Telegram's tags and escaping everything else."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        shown = _TAGS.get(tag)
        if tag == "span" and ("class", "tg-spoiler") in attrs:
            shown = "span"
        if shown is None:
            return
        if tag == "a":
            href = dict(attrs).get("href") or ""
            if href.startswith(_LINK_SCHEMES):
                self.out.append(
                    f'<a href="{html.escape(href)}" target="_blank" rel="noopener noreferrer">'
                )
            else:
                self.out.append('<a class="mention">')
        elif shown == "span":
            self.out.append('<span class="spoiler">')
        else:
            self.out.append(f"<{shown}>")
        self.open.append(shown)

    def handle_endtag(self, tag: str) -> None:
        shown = _TAGS.get(tag, "span" if tag == "span" else None)
        if shown is not None and shown in self.open:
            while self.open:
                closing = self.open.pop()
                self.out.append(f"</{closing}>")
                if closing == shown:
                    break

    def handle_data(self, data: str) -> None:
        self.out.append(html.escape(data, quote=False))

    def result(self) -> str:
        self.close()
        return "".join(self.out) + "".join(f"</{tag}>" for tag in reversed(self.open))


def telegram_html(text: str | None, parse_mode: str | None) -> str:
    """Safe HTML of a message's text as a Telegram client shows it (HTML mode or plain)."""
    if not text:
        return ""
    if (parse_mode or "").upper() != "HTML":
        return html.escape(text, quote=False)
    sanitizer = _Sanitizer()
    sanitizer.feed(text)
    return sanitizer.result()


@dataclass
class Button:
    """One inline button: it sends callback data, or opens a URL."""

    text: str
    data: str | None = None
    url: str | None = None


@dataclass
class MessageView:
    """One message of the transcript, as the page shows it."""

    id: int
    sender: str
    sender_id: int | None
    from_bot: bool
    kind: str
    html: str
    time: str
    service: str | None = None
    reply_to: str | None = None
    photo: bool = False
    deleted: bool = False
    pinned: bool = False
    edited: bool = False
    buttons: list[list[Button]] = field(default_factory=list)


def buttons_of(markup: dict[str, Any] | None) -> list[list[Button]]:
    """The rows of an inline keyboard, as stored by the emulator."""
    rows = (markup or {}).get("inline_keyboard") or []
    return [
        [
            Button(str(b.get("text", "")), b.get("callback_data"), b.get("url"))
            for b in row
            if isinstance(b, dict)
        ]
        for row in rows
        if isinstance(row, list)
    ]


def name_of(user: Any) -> str:
    """A user's display name (first and last), as Telegram shows it."""
    if user is None:
        return ""
    return " ".join(part for part in (user.first_name, user.last_name) if part)


def service_text(message: Any, labels: dict[str, str]) -> str | None:
    """The line a client shows for a service message (joins, leaves, pins), or None."""
    if message.new_chat_members:
        names = ", ".join(name_of(user) for user in message.new_chat_members)
        return labels["joined"].format(names=names)
    if message.left_chat_member is not None:
        return labels["left"].format(names=name_of(message.left_chat_member))
    if message.pinned_message is not None:
        return labels["pinned_message"].format(names=name_of(message.from_user))
    if message.migrate_to_chat_id or message.migrate_from_chat_id:
        return labels["migrated"]
    if message.group_chat_created or message.supergroup_chat_created:
        return labels["created"]
    return None


def message_view(rec: Any, zone: ZoneInfo, labels: dict[str, str]) -> MessageView:
    """The view of one stored emulator message (`MessageRec`)."""
    message = rec.message
    user = message.from_user
    text = message.text if message.text is not None else message.caption
    reply = message.reply_to_message
    moment: datetime = message.date.astimezone(zone)
    return MessageView(
        id=message.message_id,
        sender=name_of(user) if user is not None else (message.chat.title or ""),
        sender_id=user.id if user is not None else None,
        from_bot=rec.from_bot,
        kind=rec.kind,
        html=telegram_html(text, rec.parse_mode),
        time=f"{moment:%m-%d %H:%M}",
        service=service_text(message, labels),
        reply_to=(
            name_of(reply.from_user) + ": " + _first_line(reply.text or reply.caption or "")
            if reply is not None and reply.from_user is not None
            else None
        ),
        photo=bool(message.photo),
        deleted=rec.deleted,
        pinned=rec.pinned,
        edited=rec.edit_count > 0,
        buttons=buttons_of(rec.reply_markup),
    )


def _first_line(text: str, limit: int = 60) -> str:
    plain = html.unescape(_strip_tags(text)).split("\n", 1)[0]
    return plain if len(plain) <= limit else plain[: limit - 1] + "…"


def _strip_tags(text: str) -> str:
    out: list[str] = []
    inside = False
    for char in text:
        if char == "<":
            inside = True
        elif char == ">" and inside:
            inside = False
        elif not inside:
            out.append(char)
    return "".join(out)


def plain_text(text: str | None, parse_mode: str | None) -> str:
    """What a reader sees of a message's text, without markup (for transcripts)."""
    if not text:
        return ""
    if (parse_mode or "").upper() != "HTML":
        return text
    return html.unescape(_strip_tags(text))
