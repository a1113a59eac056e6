"""The sandbox's own logic: Telegram's HTML made safe, transcripts written and read."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.emulator._state import CallRec
from bot.sandbox._render import plain_text, telegram_html
from bot.sandbox._transcript import (
    TranscriptError,
    bot_did,
    build,
    format_duration,
    parse,
    parse_duration,
)


def test_telegram_html_keeps_its_tags_and_escapes_the_rest() -> None:
    shown = telegram_html(
        '<b>Rules</b> <i>a</i> <script>alert(1)</script> <a href="javascript:x">x</a>'
        ' <a href="https://t.me/x">ok</a> <tg-spoiler>s</tg-spoiler> 1 &lt; 2',
        "HTML",
    )
    assert "<b>Rules</b>" in shown and "<i>a</i>" in shown
    assert "<script>" not in shown and "alert(1)" in shown  # the text stays, the tag goes
    assert "javascript:" not in shown
    assert '<a href="https://t.me/x" target="_blank" rel="noopener noreferrer">ok</a>' in shown
    assert '<span class="spoiler">s</span>' in shown
    assert "1 &lt; 2" in shown


def test_plain_messages_are_escaped_whole() -> None:
    assert telegram_html("<b>not bold</b>", None) == "&lt;b&gt;not bold&lt;/b&gt;"
    assert plain_text("<b>A</b> &amp; B", "HTML") == "A & B"


def test_unclosed_tags_are_closed() -> None:
    assert telegram_html("<b>bold <i>both", "HTML") == "<b>bold <i>both</i></b>"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (5, "5s"), (3600, "1h"), (90061, "1d1h1m1s"), (86405, "1d5s")],
)
def test_durations_round_trip(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_a_duration_without_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="unit"):
        parse_duration("15")


def call(seq: int, method: str, **params: object) -> CallRec:
    return CallRec(seq=seq, method=method, params=dict(params), at=0, ok=True)


def test_what_the_bot_did_is_what_a_member_sees() -> None:
    calls = [
        call(1, "getUpdates"),
        call(
            2,
            "sendMessage",
            chat_id="-100",
            text="<b>Hi</b> Zoe",
            parse_mode="HTML",
            reply_markup='{"inline_keyboard": [[{"text": "Rules", "callback_data": "r"}]]}',
        ),
        call(3, "answerCallbackQuery", callback_query_id="1", text="Done"),
        call(4, "deleteMessage", chat_id=-100, message_id=2),
        CallRec(seq=5, method="sendMessage", params={"chat_id": -100, "text": "x"}, at=0),
    ]
    assert bot_did(calls, lambda chat: f"chat {chat}") == [
        {"chat": "chat -100", "send": "Hi Zoe", "buttons": [["Rules"]]},
        {"answer": "Done"},
        {"chat": "chat -100", "delete": True},
    ]


def test_a_journal_becomes_a_transcript_that_reads_back() -> None:
    entries = [
        {"do": "begin", "at": "2026-12-07T10:00:00+08:00", "calls": 0},
        {
            "do": "join",
            "at": "2026-12-07T10:00:05+08:00",
            "calls": 1,
            "who": "Zoe",
            "chat": "Demo",
            "new": True,
        },
        {"do": "clock", "at": "2026-12-08T10:00:05+08:00", "calls": 2},
    ]
    calls = [
        call(1, "sendMessage", chat_id=1000, text="Hello owner"),
        call(2, "sendMessage", chat_id=-100, text="Welcome Zoe"),
        call(3, "sendMessage", chat_id=-100, text="Zoe, settling in?"),
    ]
    names = {1000: "@Mei", -100: "Demo"}
    text = build(entries, calls, names.get, {"language": "en"})
    document = parse(text)
    assert document["steps"] == [
        {"at": "0s", "begin": True, "bot": [{"chat": "@Mei", "send": "Hello owner"}]},
        {
            "at": "5s",
            "who": "Zoe",
            "join": "Demo",
            "new": True,
            "bot": [{"chat": "Demo", "send": "Welcome Zoe"}],
        },
        {"at": "1d5s", "clock": True, "bot": [{"chat": "Demo", "send": "Zoe, settling in?"}]},
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[1, 2", "not YAML"),
        ("steps: []", "not a transcript"),
        ("transcript: 1\nstart: 2026-12-07T10:00:00\nsteps: [{at: 0s}]", "begin"),
        (
            "transcript: 1\nstart: 2026-12-07T10:00:00\nsteps: [{begin: true}, {at: 1s, say: hi}]",
            "'who'",
        ),
        (
            "transcript: 1\nstart: 2026-12-07T10:00:00\nsteps: [{begin: true}, {at: 1x, clock: true}]",
            r"steps\[1\].at",
        ),
    ],
)
def test_a_broken_transcript_is_refused_with_where_and_why(text: str, problem: str) -> None:
    with pytest.raises(TranscriptError, match=problem):
        parse(text)
