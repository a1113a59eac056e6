"""The entities the emulator finds in users' texts follow Telegram's parser, case by case:
what a moderation check relying on entities will and will not be shown."""

from __future__ import annotations

import pytest

from bot.emulator._entities import find_entities


def spans(text: str) -> list[tuple[str, str]]:
    """(type, covered text) of each entity found, cut out by UTF-16 offsets."""
    units = text.encode("utf-16-le")
    return [
        (e.type, units[2 * e.offset : 2 * (e.offset + e.length)].decode("utf-16-le"))
        for e in find_entities(text) or []
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see https://example.com/path, ok", [("url", "https://example.com/path")]),
        ("visit www.example.com now", [("url", "www.example.com")]),
        ("go to example.com.", [("url", "example.com")]),
        ("http://1.2.3.4:8080/x?y=(1))", [("url", "http://1.2.3.4:8080/x?y=(1)")]),
        ("readme.md yes, file.js no", [("url", "readme.md")]),
        ("Example.Com no, EXAMPLE.COM yes", [("url", "EXAMPLE.COM")]),
        ("价格100.5元", []),
        ("mail a.b@example.com", [("email", "a.b@example.com")]),
        ("mailto:x@y.com", [("email", "x@y.com")]),
        ("ping @spammer_bot now", [("mention", "@spammer_bot")]),
        ("@abc too short, @gif fine", [("mention", "@gif")]),
        ("a@bcdef is no mention", []),
        ("/start hi (/help)", [("bot_command", "/start"), ("bot_command", "/help")]),
        ("path/to/file", []),
        ("#打卡 #123 x#tag", [("hashtag", "#打卡")]),
        ("课程链接：https://example.com/a 欢迎", [("url", "https://example.com/a")]),
        ("看这个https://example.com/课程很好", [("url", "https://example.com/课程很好")]),
        ("看 example.com 课程", [("url", "example.com")]),
        ("看example.com课程", []),
        ("联系@spam_admin", []),
        ("联系 @spam_admin，谢谢", [("mention", "@spam_admin")]),
        ("网址 百度.中国 好", [("url", "百度.中国")]),
    ],
)
def test_entities_found(text: str, expected: list[tuple[str, str]]) -> None:
    assert spans(text) == expected


def test_offsets_count_utf16_units() -> None:
    [entity] = find_entities("😀 加群 t.me/x") or []
    assert (entity.offset, entity.length) == (6, len("t.me/x"))


def test_a_long_chinese_message_has_no_entities() -> None:
    text = "大家好，我是新来的，想请教一下课程怎么报名，上次说的资料在哪里可以下载？谢谢各位！" * 10
    assert find_entities(text) is None
