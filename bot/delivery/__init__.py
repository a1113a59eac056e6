"""The one outbound path: everything the bot sends, paced to Telegram's limits and recorded.

Telegram allows about 30 messages a second in total, one a second in a chat and 20 a minute in
a group; beyond that it answers 429 with `retry_after`. `Delivery` keeps one queue per chat and
starts the next message of whichever chat may send now, in turns, so a busy group never holds
up the others:

- a global token bucket refills at `per_second` (bursts of at most `BURST` messages);
- a chat (private ones too) sends one message at a time, in the order asked, and waits
  `1 / per_chat_second` after the previous one came back; Telegram counted that one before
  answering, so latency can only add margin;
- a group (negative id) also keeps a 60 s window of `per_group_minute` sends, again counted
  when Telegram answered.

Sends, photos and edits are paced: Telegram answers rapid edits with 429 as well, and the
emulator counts `send*` and `edit*` calls alike. Deletions, pins and unpins are not: the
published limits are about messages. They still wait their turn in the chat's queue, so a pin
never overtakes the message it pins, and they honour a chat's 429 pause.

Callers await a `Delivered`; nothing here raises for Telegram's errors. A 429 pauses the chat
(everything, when several chats get one at once) and the request is tried again, at most
`MAX_ATTEMPTS` times in all; a 403 marks a group kicked and fails what was queued for it; a
migration moves the group's queue to the new id; network errors and 5xx are retried with
backoff (a message whose answer was lost may then arrive twice: Telegram has no idempotency
key). Every delivery is recorded in the `deliveries` table, in batches, once it is over.

Texts sent with a `combine` key may share a message. When one of them is due to go, every
other text still queued in its chat with the same key, parse mode, notification setting and
buttons goes with it, even from further back in the queue: one message with their texts on
separate lines, in the order asked, up to Telegram's `TEXT_LIMIT` (the rest wait for the next
message). So 10,000 check-in replies in a group do not need 10,000 of its 20 a minute. This
happens only under backlog: a text that may go at once goes alone, as asked, and nothing waits
on purpose to gather more. A combined message is not a reply to anyone; it is sent, retried
and recorded as one request, and every caller gets the same `Delivered`, with `combined`
saying how many requests it answered; each request still has its own record.
"""

from ._combine import TEXT_LIMIT
from ._jobs import GROUP_WINDOW, Delivered, Request
from ._scheduler import (
    BACKOFF,
    BACKOFF_MAX,
    BURST,
    FLOOD_CHATS,
    FLOOD_SPAN,
    GONE,
    MAX_ATTEMPTS,
    SWEEP_EVERY,
    TICK,
)
from ._service import Delivery

__all__ = [
    "BACKOFF",
    "BACKOFF_MAX",
    "BURST",
    "FLOOD_CHATS",
    "FLOOD_SPAN",
    "GONE",
    "GROUP_WINDOW",
    "MAX_ATTEMPTS",
    "SWEEP_EVERY",
    "TEXT_LIMIT",
    "TICK",
    "Delivered",
    "Delivery",
    "Request",
]
