"""What a send step says: the variant a member gets, the text in the group's language, buttons."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from aiogram.types import FSInputFile, InlineKeyboardButton, InlineKeyboardMarkup

from bot.sop.format import SendAction, Variant
from bot.sop.templates import LANGUAGES, render

# Callback data of flow buttons: s:<sop id>:<step id>, and :<member id> for a button only that
# member may press (`only: member`).
BUTTON_PREFIX = "s:"
CALLBACK_LIMIT = 64  # bytes Telegram allows in callback data
LONGEST_USER_ID = 2**53 - 1  # Telegram's user ids fit in 53 bits: what `tidepool check` sizes


class RenderError(Exception):
    """A text could not be rendered (unknown key, a variable missing at run time)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message ready for the delivery service."""

    text: str
    variant: str | None
    markup: InlineKeyboardMarkup | None
    photo: str | FSInputFile | None


def pick_variant(variants: Sequence[Variant], sop_id: str, who: int) -> Variant:
    """The variant `who` gets in this SOP: weighted, and always the same for the same member."""
    digest = hashlib.sha256(f"{sop_id}:{who}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % sum(variant.weight for variant in variants)
    for variant in variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    raise AssertionError("unreachable: the point is below the total weight")


class FlowButton(NamedTuple):
    """What a flow button's callback data says: continue `sop` at `step`, for `member` only
    (None: for whoever presses it)."""

    sop: str
    step: str
    member: int | None = None


def button_data(sop_id: str, step_id: str, member: int | None = None) -> str:
    """The callback data of a flow button (pressable by `member` only, when given)."""
    data = f"{BUTTON_PREFIX}{sop_id}:{step_id}" + (f":{member}" if member is not None else "")
    if len(data.encode()) > CALLBACK_LIMIT:
        carried = " (with the member's id: only they may press it)" if member is not None else ""
        raise RenderError(
            f"button data {data!r}{carried} is longer than Telegram's {CALLBACK_LIMIT} bytes; "
            "shorten the SOP id or the step id"
        )
    return data


def parse_button(data: str) -> FlowButton | None:
    """What a flow button's callback data says, or None for other buttons."""
    if not data.startswith(BUTTON_PREFIX):
        return None
    sop_id, _, rest = data[len(BUTTON_PREFIX) :].partition(":")
    step_id, _, member = rest.partition(":")
    if not sop_id or not step_id or (member and not member.isdigit()):
        return None
    return FlowButton(sop_id, step_id, int(member) if member else None)


class TextCatalogue:
    """SOP texts by language: an SOP's own texts first, then the bot's catalogue, each in the
    group's language first; a text written in one language only serves every group."""

    def __init__(
        self,
        catalogues: Mapping[str, Mapping[str, str]],
        default_language: str,
        own: Mapping[str, Mapping[str, Mapping[str, str]]] | None = None,
    ) -> None:
        self.catalogues = catalogues
        self.default_language = default_language
        self.own = own or {}  # sop id -> language -> key -> source

    def _layers(self, sop_id: str | None) -> list[Mapping[str, Mapping[str, str]]]:
        own = self.own.get(sop_id) if sop_id is not None else None
        return [own, self.catalogues] if own else [self.catalogues]

    def mentions(self, keys: Iterable[str], word: str, sop_id: str | None = None) -> bool:
        """Whether any language's text of these keys contains `word` (say, a variable)."""
        return any(
            word in catalogue.get(key, "")
            for layer in self._layers(sop_id)
            for catalogue in layer.values()
            for key in keys
        )

    def render(
        self,
        key: str,
        language: str | None,
        context: Mapping[str, Any],
        sop_id: str | None = None,
    ) -> str:
        first = self.default_language
        if language is not None and language in LANGUAGES:
            first = language
        for lang in (first, *(other for other in LANGUAGES if other != first)):
            for layer in self._layers(sop_id):
                source = layer.get(lang, {}).get(key)
                if source is not None:
                    try:
                        return render(source, context)
                    except Exception as exc:
                        raise RenderError(f"text '{key}' ({lang}) cannot render: {exc}") from exc
        raise RenderError(f"text key '{key}' is in neither the SOP's texts nor the catalogue")


def compose(
    send: SendAction,
    *,
    sop_id: str,
    who: int,
    texts: TextCatalogue,
    language: str | None,
    context: Mapping[str, Any],
    content_dir: Path,
    member: int | None = None,
) -> Rendered:
    """Render a send step for one message (to `member`'s run: its `only: member` buttons
    carry their id); RenderError when it cannot be."""
    variant = pick_variant(send.variants, sop_id, who) if send.variants else None
    key = variant.template if variant is not None else send.template
    assert key is not None
    text = texts.render(key, language, context, sop_id)
    markup = None
    if send.buttons:
        rows = []
        for row in send.buttons:
            buttons = []
            for button in row:
                label = texts.render(button.text, language, context, sop_id)
                if button.url is not None:
                    buttons.append(InlineKeyboardButton(text=label, url=button.url))
                else:
                    data = button.data
                    if data is None:
                        assert button.next is not None
                        only = member if button.only == "member" else None
                        if button.only == "member" and member is None:
                            raise RenderError("an 'only: member' button needs the run's member")
                        data = button_data(sop_id, button.next, only)
                    buttons.append(InlineKeyboardButton(text=label, callback_data=data))
            rows.append(buttons)
        markup = InlineKeyboardMarkup(inline_keyboard=rows)
    photo: str | FSInputFile | None = None
    if send.photo is not None:
        if send.photo.startswith("https://"):
            photo = send.photo
        else:
            path = (content_dir / send.photo).resolve()
            if not path.is_file():
                raise RenderError(f"photo '{send.photo}' is not a file under {content_dir}")
            photo = FSInputFile(path)
    return Rendered(text, variant.id if variant is not None else None, markup, photo)
